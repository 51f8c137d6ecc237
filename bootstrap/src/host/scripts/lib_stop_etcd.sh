# host library: stop_etcd (needs is_etcd and $grace_tenths)
# Stops the etcd process $1: SIGTERM, up to grace_tenths tenths of a second for it to exit, then
# SIGKILL (`killed=`). etcd closes its last listener, the peer port, only once its server has
# stopped (leadership handed on, WAL and database closed); what it does after that is wait up to
# 1 s for its peers' connections to go idle. That wait is cut here with SIGKILL (`closed=`).

# The listening TCP sockets (inodes) among the open files of process $1; none when unreadable.
listening_sockets() {
  fds=$(ls -l "/proc/$1/fd" 2>/dev/null) || return 0
  awk '$4 == "0A" { print $10 }' "/proc/$1/net/tcp" "/proc/$1/net/tcp6" 2>/dev/null | while read -r inode; do
    case "$fds" in *"socket:[$inode]"*) echo "$inode" ;; esac
  done
}

stop_etcd() {
  # only what it held before the signal counts: no listener seen, no early SIGKILL
  held=$(listening_sockets "$1")
  kill -CONT "$1" 2>/dev/null; kill -TERM "$1"; i=0
  while is_etcd "$1" && [ "$i" -lt "$((grace_tenths * 2))" ]; do
    if [ -n "$held" ] && [ -z "$(listening_sockets "$1")" ]; then
      kill -KILL "$1" 2>/dev/null && echo "closed=$1"
      held=
    fi
    sleep 0.05; i=$((i+1))
  done
  is_etcd "$1" && kill -KILL "$1" && echo "killed=$1"
  echo "stopped=$1"
}

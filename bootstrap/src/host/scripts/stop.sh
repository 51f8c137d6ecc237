# host script: stop
# Stops the member built here: SIGTERM, up to grace_tenths tenths of a second, then SIGKILL, and
# only a process that is etcd. Under systemd: gracefully, the unit's own TimeoutStopSec; shortly,
# past the grace the unit's processes are killed and the stop job then finishes at once.
set -u
case "$supervisor" in
  process)
    if [ -f "$pid_file" ]; then
      p=$(cat "$pid_file")
      if is_etcd "$p"; then
        kill -CONT "$p" 2>/dev/null; kill -TERM "$p"; i=0
        while is_etcd "$p" && [ "$i" -lt "$grace_tenths" ]; do sleep 0.1; i=$((i+1)); done
        is_etcd "$p" && kill -KILL "$p" && echo "killed=$p"
        echo "stopped=$p"
      fi
      # only our pid file: a start that raced this stop may have written a new one
      [ "$(cat "$pid_file" 2>/dev/null)" = "$p" ] && rm -f -- "$pid_file"
    fi ;;
  systemd)
    if systemctl is-active --quiet "$unit"; then
      if [ "$grace" = graceful ]; then
        systemctl stop "$unit"
      else
        timeout "$grace_seconds" systemctl stop "$unit" || { systemctl kill --signal=SIGKILL "$unit"; systemctl stop "$unit"; echo killed=unit; }
      fi
      echo stopped=unit
    fi
    systemctl disable "$unit" >/dev/null 2>&1 || true ;;
esac

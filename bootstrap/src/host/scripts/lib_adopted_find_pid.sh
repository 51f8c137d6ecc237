# host library: adopted-find-pid
# find_pid sets `p` to the adopted member's etcd: ours from the pid file (after a start by us),
# else the process that listens on its client address and port.
find_pid() {
  p=$(cat "$pid_file" 2>/dev/null || true)
  if [ -z "$p" ] || ! is_etcd "$p"; then
    p=$(ss -Hltnp "sport = :$client_port" 2>/dev/null \
      | awk -v a="$client_address:$client_port" -v b="[$client_address]:$client_port" -v p=":$client_port" \
          '$4==a || $4==b || $4=="0.0.0.0"p || $4=="*"p || $4=="[::]"p {print; exit}' \
      | sed -n 's/.*pid=\([0-9]*\).*/\1/p')
  fi
}
container_refusal() {
  echo 'its etcd runs in a container outside kubelet: stop and start it with the container runtime that runs it' >&2
  exit 1
}

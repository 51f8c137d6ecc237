# host script: stop
# Stops the adopted member: stop_etcd (SIGTERM; SIGKILL once its storage is closed, or past
# grace_tenths tenths of a second). A unit: its own stop, bounded the same way; a static pod: its
# manifest parked and the process waited for.
set -u
stop_pid() {
  if [ -n "$p" ] && is_etcd "$p"; then stop_etcd "$p"; fi
  [ "$(cat "$pid_file" 2>/dev/null)" = "$p" ] && rm -f -- "$pid_file"
  true
}
case "$adopted_supervisor" in
  systemd)
    if systemctl is-active --quiet -- "$adopted_unit"; then
      timeout "$grace_seconds" systemctl stop -- "$adopted_unit" || { systemctl kill --signal=SIGKILL -- "$adopted_unit"; systemctl stop -- "$adopted_unit"; echo killed=unit; }
      echo stopped=unit
    fi ;;
  static-pod)
    find_pid
    mkdir -p -- "$run_dir"
    if [ -f "$manifest" ]; then mv -- "$manifest" "$parked"; echo "parked=$parked"; fi
    # kubelet stops the pod; past the bound, the process is stopped here
    i=0; while [ -n "$p" ] && is_etcd "$p" && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i+1)); done
    stop_pid ;;
  container) container_refusal ;;
  process) find_pid; stop_pid ;;
esac

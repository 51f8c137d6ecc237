# host script: start
# Starts the adopted member if it is not running, as its supervisor would: its unit started
# (never rewritten or enabled), its static pod's manifest moved back into kubelet's folder, or its
# plain process run again with the command line, ETCD_* environment and working directory it was
# adopted with. A container's etcd is refused: its runtime owns it.
set -eu
case "$adopted_supervisor" in
  systemd)
    if ! systemctl is-active --quiet -- "$adopted_unit"; then systemctl start -- "$adopted_unit"; echo started=unit; fi ;;
  static-pod)
    if [ -f "$parked" ] && [ ! -e "$manifest" ]; then mv -- "$parked" "$manifest"; echo started=kubelet; fi ;;
  container) container_refusal ;;
  process)
    find_pid
    if [ -z "$p" ] || ! is_etcd "$p"; then
      mkdir -p -- "$run_dir"
      cd "$working_dir"
      env -i PATH="$search_path" "${environment[@]+"${environment[@]}"}" setsid "${command[@]}" </dev/null >>"$log_file" 2>&1 &
      echo $! > "$pid_file"
      echo "started=$!"
    fi ;;
esac

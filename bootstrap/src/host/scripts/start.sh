# host script: start
# Starts the member if it is not running, writing the marker (this cluster's token and the
# member's name: the proof of ownership `down --purge` asks for) first.
set -eu
mkdir -p -- "$run_dir" "$data_dir"
chmod 700 "$data_dir"
if [ ! -f "$marker_file" ]; then
  printf '%s\n' "$marker" > "$marker_file"
  # a new data dir starts a new log (the last one kept as .1): the log then speaks of this data
  # dir's cluster only, which is what `formation` reads
  if [ "$supervisor" = process ] && [ -f "$log_file" ]; then mv -f -- "$log_file" "$log_file.1"; fi
fi
case "$supervisor" in
  process)
    p=$(cat "$pid_file" 2>/dev/null || true)
    if [ -z "$p" ] || ! is_etcd "$p"; then
      cd "$run_dir"
      setsid "${command[@]}" </dev/null >>"$log_file" 2>&1 &
      echo $! > "$pid_file"
      echo "started=$!"
    fi ;;
  systemd)
    # the unit file itself was delivered as a file, never through this script's text
    systemctl daemon-reload
    # (a new member is READY only once a majority runs: `up` starting members in turn waits on
    # their peer ports instead)
    if ! systemctl is-active --quiet "$unit"; then
      if [ "$wait_ready" = 1 ]; then systemctl enable --now "$unit"; else systemctl enable --now --no-block "$unit"; fi
      echo started=unit
    fi ;;
esac

# host script: stop
# Stops the member built here, and only a process that is etcd: stop_etcd (SIGTERM; SIGKILL once
# its storage is closed, or past grace_tenths tenths of a second). Under systemd: gracefully, the
# unit's own stop and TimeoutStopSec; shortly, past the grace the unit's processes are killed and
# the stop job then finishes at once.
set -u
case "$supervisor" in
  process)
    if [ -f "$pid_file" ]; then
      p=$(cat "$pid_file")
      is_etcd "$p" && stop_etcd "$p"
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

# host script: status
# `running=1` (and `pid=`) when the adopted member's etcd runs.
case "$adopted_supervisor" in
  systemd) if systemctl is-active --quiet -- "$adopted_unit"; then echo running=1; fi ;;
  *) find_pid; if [ -n "$p" ] && is_etcd "$p"; then echo running=1; echo "pid=$p"; fi ;;
esac

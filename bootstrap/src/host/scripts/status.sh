# host script: status
# `running=1` (and `pid=`) when the member built here runs: its process alive with etcd's name,
# or its unit active.
case "$supervisor" in
  process)
    if [ -f "$pid_file" ]; then
      p=$(cat "$pid_file")
      if is_etcd "$p"; then echo running=1; echo "pid=$p"; fi
    fi ;;
  systemd)
    if systemctl is-active --quiet "$unit"; then echo running=1; fi ;;
esac

# host script: formation
# `elected=N`: the leader elections the member's log shows since its data dir was made (empty
# when the log cannot be read); with status's `running=1`, whether its cluster ever formed.
case "$supervisor" in
  process)
    echo "elected=$(grep -c 'elected leader' -- "$log_file" 2>/dev/null || true)" ;;
  systemd)
    since=$(stat -c %Y -- "$marker_file" 2>/dev/null || echo 0)
    echo "elected=$(journalctl -u "$unit" --since "@$since" --no-pager -o cat 2>/dev/null | grep -c 'elected leader' || true)" ;;
esac

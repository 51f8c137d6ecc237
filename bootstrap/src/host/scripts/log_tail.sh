# host script: log-tail
# The last lines of the member's log (its unit's journal, or its log file), for error messages.
case "$log_source" in
  journal) journalctl -u "$unit" -n "$lines" --no-pager 2>/dev/null ;;
  file) tail -n "$lines" -- "$log_file" 2>/dev/null ;;
esac

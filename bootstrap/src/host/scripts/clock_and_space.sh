# host script: clock-and-space
# After free-space, for doctor: the database's size and the host's clock.
echo "db_bytes=$(stat -c %s -- "$db_file" 2>/dev/null || echo 0)"
echo "now=$(date +%s.%N)"

# host script: retire
# After the stop: a non-empty data dir moved aside (DATA.replaced-TIME: kept, never deleted) and
# the old marker dropped.
d=$data_dir
if [ -d "$d" ] && [ -n "$(ls -A -- "$d" 2>/dev/null)" ]; then
  to="$d.replaced-$(date -u +%Y%m%dT%H%M%S)"
  mv -- "$d" "$to"
  echo "moved=$to"
fi
rm -f -- "$marker_file"

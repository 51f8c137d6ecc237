# host script: purge
# The only code that deletes a data dir, and only with proof of ownership: the marker in the run
# dir says this cluster and this member, and the data dir holds nothing but etcd's own `member`
# directory. Otherwise it prints `purge_refused=REASON` and deletes nothing.
d=$data_dir
mk=$marker_file
if [ -e "$d" ] || [ -L "$d" ]; then
  # shellcheck disable=SC2010 # names only, for the message
  other=$(ls -A -- "$d" 2>/dev/null | grep -vx member | head -n 3 | tr '\n' ' ')
  if [ -L "$d" ] || [ ! -d "$d" ]; then
    echo "purge_refused=$d is not a directory (a symlink or a file); nothing deleted"
  elif [ "$(cat -- "$mk" 2>/dev/null)" != "$marker" ]; then
    echo "purge_refused=$d carries no marker of this cluster ($mk missing or another cluster's); nothing deleted"
  elif [ -n "$other" ]; then
    echo "purge_refused=$d holds files etcd did not make ($other); nothing deleted"
  else
    rm -rf -- "$d" && rm -f -- "$mk" && echo "purged=$d"
  fi
fi

# host script: probe-files
# Read-only, for adopt: facts about files, read through the process's root (/proc/PID/root, so
# container paths resolve): for each path its owner, group, mode, size and SHA-256; the content of
# public ones (certificates, CRLs, config and environment files, never keys); and, for every
# folder that holds one of them, the names of the files there that hold a private key.
set -u
r=/proc/$pid/root
fact() {
  local p=$1 f n
  f="$r$p"
  n=$(printf %s "$p" | base64 -w0)
  if [ -f "$f" ]; then
    echo "file=$n $(stat -c '%U:%G:%a:%s' -- "$f") $(sha256sum < "$f" | cut -c1-64)"
    [ "$2" = public ] && echo "content=$n $(base64 -w0 < "$f")"
  else
    echo "missing=$n"
  fi
}
for i in "${!paths[@]}"; do fact "${paths[$i]}" "${kinds[$i]}"; done
for d in "${folders[@]+"${folders[@]}"}"; do
  for f in "$r$d"/*; do
    [ -f "$f" ] && grep -q -- 'PRIVATE KEY' "$f" 2>/dev/null && echo "private_key=$(printf %s "${f#"$r"}" | base64 -w0)"
  done
done
true

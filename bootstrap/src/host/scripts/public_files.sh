# host script: public-files
# `file=PATH CONTENT` (both base64) or `missing=PATH` for each public file (certificates only).
set -u
for f in "${files[@]+"${files[@]}"}"; do
  n=$(printf %s "$f" | base64 -w0)
  if [ -f "$f" ]; then echo "file=$n $(base64 -w0 < "$f")"; else echo "missing=$n"; fi
done

# host script: binaries-present
# `have NAME SHA256` for each etcd binary already in the member's bin folder (one round trip).
set -u
for name in "${names[@]}"; do
  f="$bin_dir/$name"
  if [ -f "$f" ]; then echo "have $name $(sha256sum < "$f" | cut -d' ' -f1)"; fi
done

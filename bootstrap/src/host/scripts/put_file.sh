# host script: put-file
# The remote half of a streamed file (an etcd binary, a snapshot): stdin into an unpredictable
# temporary beside the path, then chmod and rename. Runs under sh: stdin is the data.
set -eu
umask 077
d=$(dirname -- "$path")
mkdir -p -- "$d"
tmp=$(mktemp -- "$d/.$(basename -- "$path").pki-tmp-XXXXXXXXXXXXXXXX")
cat > "$tmp"
chmod "$mode" "$tmp"
mv -f -- "$tmp" "$path"

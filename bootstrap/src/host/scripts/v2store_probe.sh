# host script: v2store-probe
# Whether the member's data holds v2 store content (etcd 3.6 refuses to start on it): `etcdutl
# check v2store`, which needs a data dir not in use, run on a private copy of the member's snap
# files and WAL (the check does not read the database) with the etcdutl beside the member's etcd.
# Prints v2store=clean, custom (the store holds v2 data), wal (only WAL records after the last v2
# snapshot are v2 requests: writes, or the quorum reads a v2-serving 3.5 makes for each /health),
# no-tool (that etcdutl lacks the check) or error (its message on stderr). The copy is removed.
set -u
bin=$(command -v -- "$binary") || { echo v2store=no-tool; exit 0; }
tool="$(dirname -- "$bin")/etcdutl"
if [ ! -x "$tool" ] || ! "$tool" check v2store --help >/dev/null 2>&1; then echo v2store=no-tool; exit 0; fi
d=$data_dir/member
[ -d "$d/wal" ] || { echo v2store=clean; exit 0; }
t=$(mktemp -d "${TMPDIR:-/tmp}/etcd-v2store.XXXXXX") || { echo v2store=error; exit 0; }
trap 'rm -rf -- "$t"' EXIT
out=
# a running member may be mid-write: a copy whose last WAL record is torn is read again
for _ in 1 2 3; do
  rm -rf -- "$t/member"; mkdir -p "$t/member/snap"
  for f in "$d"/snap/*.snap; do [ -e "$f" ] && cp -p -- "$f" "$t/member/snap/"; done
  cp -pR -- "$d/wal" "$t/member/wal"
  if out=$("$tool" check v2store --data-dir "$t" 2>&1); then echo v2store=clean; exit 0
  elif printf '%s' "$out" | grep -qi 'custom v2 content in WAL records$'; then echo v2store=wal; exit 0
  elif printf '%s' "$out" | grep -qi 'custom.*content'; then echo v2store=custom; exit 0; fi
  sleep 0.3
done
echo v2store=error; printf '%s\n' "$out" >&2

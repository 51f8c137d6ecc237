# host library: restore-tool
# etcd's own restore tool: the etcdutl beside the member's etcd (3.5+), else the etcdctl beside it
# (3.4, ETCDCTL_API=3), else whichever of the two is on PATH; in `tool`.
# shellcheck disable=SC2034 # tool is read by the script that follows
set -eu
bin=$(command -v -- "$binary") || { echo "no etcd at: $binary" >&2; exit 1; }
dir=$(dirname -- "$bin")
if [ -x "$dir/etcdutl" ]; then tool="$dir/etcdutl"
elif [ -x "$dir/etcdctl" ]; then tool="$dir/etcdctl"; export ETCDCTL_API=3
elif command -v etcdutl >/dev/null 2>&1; then tool=etcdutl
elif command -v etcdctl >/dev/null 2>&1; then tool=etcdctl; export ETCDCTL_API=3
else echo "neither etcdutl nor etcdctl beside $bin or on PATH" >&2; exit 1; fi

# host script: defrag-tool-probe
# Whether etcd's own tool beside the member's etcd can defragment a stopped member's data dir
# (`etcdutl defrag --data-dir`; etcd 3.4's `etcdctl defrag --data-dir`): prints `tool=PATH` and
# `defrag=yes` or `defrag=no`.
echo "tool=$tool"
if "$tool" defrag --help 2>&1 | grep -q -- --data-dir; then echo defrag=yes; else echo defrag=no; fi

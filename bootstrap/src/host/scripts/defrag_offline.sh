# host script: defrag-offline
# The stopped member's database rewritten without its free pages by etcd's own tool (it takes
# the database's file lock first: a member still running would make it wait, bounded by the
# caller). The rewritten file keeps the owner of the one it replaces (etcd may run as its own
# user). Prints the size before and after, in bytes.
db=$data_dir/member/snap/db
if [ ! -f "$db" ]; then echo "no database at $db" >&2; exit 1; fi
owner=$(stat -c %u:%g -- "$db")
echo "before=$(stat -c %s -- "$db")"
"$tool" defrag --data-dir "$data_dir" >&2
chown -- "$owner" "$db"
echo "after=$(stat -c %s -- "$db")"

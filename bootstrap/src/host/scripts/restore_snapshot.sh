# host script: restore-snapshot
# The snapshot (already on the host) restored into the member's data dir, which must be absent or
# empty (retire moved the old one aside; an empty one is removed, as the tool refuses an existing
# dir). With bump > 0 the revision is raised by that much and the history below it marked
# compacted (etcd-io/etcd#16028): a watcher that resumes from a revision of the old history gets
# "compacted" and re-lists instead of missing changes.
d=$data_dir
if [ -d "$d" ] && [ -z "$(ls -A -- "$d")" ]; then rmdir -- "$d"; fi
if [ -e "$d" ]; then echo "$d exists and is not empty: not restoring over it" >&2; exit 1; fi
mkdir -p -- "$(dirname -- "$d")"
bump_flags=()
if [ "$bump" -gt 0 ]; then bump_flags=(--bump-revision "$bump" --mark-compacted); fi
"$tool" snapshot restore "$snapshot" --name "$name" --initial-cluster "$initial_cluster" \
  --initial-cluster-token "$token" --initial-advertise-peer-urls "$peer_url" --data-dir "$d" \
  "${bump_flags[@]+"${bump_flags[@]}"}" >&2
chmod 700 "$d"
# owned as the data it replaces (etcd may run as its own user)
# shellcheck disable=SC2012 # the newest by name: the names carry the time
old=$(ls -d -- "$d".replaced-* 2>/dev/null | tail -n 1)
if [ -n "$old" ]; then chown -R --reference="$old" -- "$d"; fi
echo "restored=$tool"

#!/usr/bin/env bash
# Benchmark (not a test): `etcd-bootstrap backup` of a ~300 MB database against `etcdctl snapshot
# save` (the same etcd line's) from the same cluster, alternating, RUNS rounds: wall time and peak RSS
# (the child's ru_maxrss). Targets: backup <= 0.8x etcdctl's time, <= 32 MB RSS whatever the size.
# Then `restore` of the three members (stop, move aside, restore each, start, HEALTHY), with three
# watching clients connected as kube-apiservers would be, against three `etcdutl snapshot restore`
# runs by hand (restore step only). Targets: restore <= 1.0x the three by hand; its stop of the
# three members (watched) <= 1.5 s.
#
#   bash bench/backup.sh [RUNS] [MB] [FILL]     (default 3 rounds, 300 MB, FILL mb1; FILL k8s: keys
#                                                of 1-100 KB as Kubernetes writes them, quota 8 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
MB="${2:-300}"
bash scripts/install-deps.sh
export FILL="${3:-mb1}"
cargo build --release --locked -p bootstrap -p etcdctl-lite -p integration-tests --bins 2>&1 | tail -n 1
BOOT="$PWD/target/release/etcd-bootstrap"
# the default etcd (the newest 3.7): its etcdutl raises the revision on restore
export PATH="$PWD/.etcd/go-3.7:$PATH"
WORK=$(mktemp -d)
cleanup() {
  "$BOOT" -f "$WORK/c/cluster.yaml" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
. bench/filled-cluster.sh
etcdctl endpoint status -w table >&2
: >"$WORK/ours"; : >"$WORK/theirs"
for ((r = 1; r <= RUNS; r++)); do
  rm -rf "$WORK/b" "$WORK/e.db"
  measure "$BOOT" -f "$SPEC" backup --dir "$WORK/b" >>"$WORK/ours"
  # etcdctl 3.5 takes a snapshot from exactly one endpoint
  ETCDCTL_ENDPOINTS="${EP%%,*}" measure etcdctl snapshot save "$WORK/e.db" >>"$WORK/theirs"
  echo "round $r/$RUNS: backup $(tail -n1 "$WORK/ours") vs etcdctl snapshot save $(tail -n1 "$WORK/theirs") (ms, KB)" >&2
done
SNAP=$(ls "$WORK"/b/*.db)
# clients watching every member, as kube-apiservers do (etcd drains open watches when stopped)
watchers=()
start_watchers() {
  watchers=()
  for ep in ${EP//,/ }; do
    ETCDCTL_ENDPOINTS="$ep" etcdctl watch --prefix /bench >/dev/null 2>&1 &
    watchers+=($!)
  done
}
stop_watchers() { kill "${watchers[@]}" 2>/dev/null || true; wait "${watchers[@]}" 2>/dev/null || true; }
start_watchers
measure "$BOOT" -f "$SPEC" restore --force "$SNAP" >"$WORK/restore"
stop_watchers
# the data dirs each restore moved aside (kept, never deleted by the tool): room on the disk
rm -rf "$WORK"/c/members/*/*.replaced-*
# the same restore again, watched again, for its progress: how long stopping the members took
start_watchers
stop_ms=$("$BOOT" -f "$SPEC" restore --force "$SNAP" 2>&1 >/dev/null | sed -n 's/.*members stopped, the leader last (\([0-9]*\) ms).*/\1/p')
stop_watchers
rm -rf "$WORK"/c/members/*/*.replaced-*
t0=$(date +%s%N)
for i in 1 2 3; do
  etcdutl snapshot restore "$WORK/e.db" --name "etcd-$i" --data-dir "$WORK/by-hand-$i" \
    --initial-cluster "etcd-1=https://127.0.0.11:2380,etcd-2=https://127.0.0.12:2380,etcd-3=https://127.0.0.13:2380" \
    --initial-advertise-peer-urls "https://127.0.0.1$i:2380" >/dev/null 2>&1
done
byhand=$((($(date +%s%N) - t0) / 1000000))
rm -rf "$WORK"/by-hand-*
python3 - "$WORK" "$byhand" "$(du -m "$SNAP" | cut -f1)" "${stop_ms:-0}" <<'PY'
import statistics, sys
d, byhand, size, stop_ms = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rd = lambda f: [tuple(map(int, l.split())) for l in open(f"{d}/{f}") if l.strip()]
ours, theirs = rd("ours"), rd("theirs")
mo, mt = statistics.median(t for t, *_ in ours), statistics.median(t for t, *_ in theirs)
ro, rt = max(r for _, r, *_ in ours), max(r for _, r, *_ in theirs)
(rest_ms, rest_rss, rest_own), = rd("restore")
print(f"| measure ({size} MB snapshot) | etcd-bootstrap | etcdctl / etcdutl of the same etcd | ratio | target |")
print("|---|---|---|---|---|")
print(f"| backup: median ms | {mo:.0f} | {mt:.0f} (snapshot save) | {mo/mt:.2f} | <= 0.8: {'met' if mo/mt <= 0.8 else 'MISSED'} |")
print(f"| backup: peak RSS MB | {ro/1024:.1f} | {rt/1024:.1f} | {ro/rt:.2f} | <= 32 MB: {'met' if ro/1024 <= 32 else 'MISSED'} |")
print(f"| restore of 3 members: ms | {rest_ms} (stop, move aside, restore, start, HEALTHY) | {byhand} (3 x etcdutl restore only) | {rest_ms/byhand:.2f} | <= 1.0: {'met' if rest_ms <= byhand else 'MISSED'} |")
print(f"| restore: stopping 3 watched members, ms | {stop_ms} | | | <= 1500: {'met' if 0 < stop_ms <= 1500 else 'MISSED'} |")
print(f"| restore: peak RSS MB, etcd-bootstrap itself | {rest_own/1024:.1f} | | | <= 64 MB: {'met' if rest_own/1024 <= 64 else 'MISSED'} |")
print(f"| restore: peak RSS MB, the largest process it waited for | {rest_rss/1024:.1f} | (etcdutl maps the whole snapshot) | | |")
print(f"\n{len(ours)} alternating rounds")
PY

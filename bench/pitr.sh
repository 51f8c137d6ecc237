#!/usr/bin/env bash
# Benchmark (not a test): point-in-time recovery on the newest etcd 3.7. A 3-member cluster filled
# as Kubernetes fills it (MB megabytes of keys of 1-100 KB), `backup --continuous` following it
# while writers put and delete values of 1-4 KB at RATE writes per second for SECONDS:
# - the follower's peak RSS while it keeps up (target: <= 64 MB at 1,000 writes/s), and how far
#   behind it is when the writers stop (the newest revision acknowledged vs the last it sealed,
#   after its next seal);
# - `restore --to-revision` of the whole span (the full snapshot, then every change replayed on a
#   one-member etcd, then restored on the three) against `restore SNAPSHOT` of the snapshot it
#   starts from, in the same run: what the replay costs on top of a restore.
#
#   bash bench/pitr.sh [RATE] [SECONDS] [MB]     (defaults 1000 60 256)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-1000}" SECONDS_="${2:-60}" MB="${3:-256}"
bash scripts/install-deps.sh
cargo build --release --locked -p bootstrap -p etcdctl-lite -p integration-tests --bins 2>&1 | tail -n 1
BOOT="$PWD/target/release/etcd-bootstrap"
export PATH="$PWD/.etcd/go-3.7:$PATH"
WORK=$(mktemp -d)
follower=""
cleanup() {
  [ -z "$follower" ] || kill "$follower" 2>/dev/null || true
  "$BOOT" -f "$WORK/c/cluster.yaml" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export FILL=k8s ETCD_BIN="$PWD/.etcd/go-3.7/etcd"
. bench/filled-cluster.sh
"$BOOT" -f "$SPEC" backup --continuous --dir "$WORK/h" 2>"$WORK/follower.err" &
follower=$!
for _ in $(seq 1 600); do grep -q 'continuous: following' "$WORK/follower.err" && break; sleep 0.1; done
grep -q 'continuous: following' "$WORK/follower.err" || { cat "$WORK/follower.err" >&2; exit 1; }
echo "writing at $RATE/s for ${SECONDS_}s" >&2
read -r writes reached last_rev < <(target/release/bench-writes "$RATE" "$SECONDS_" "$EP" "$ETCDCTL_CACERT" "$ETCDCTL_CERT" "$ETCDCTL_KEY")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$follower/status")
state="$WORK/c/cluster.yaml.journal/continuous.json"
for _ in $(seq 1 200); do
  sealed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sealed_to"])' "$state")
  [ "$sealed" -ge "$last_rev" ] && break
  sleep 0.1
done
kill -TERM "$follower"; wait "$follower" || true; follower=""
segments=$(find "$WORK/h" -name '*.changes' | wc -l)
base=$(find "$WORK/h" -name '*.db' | sort | head -n 1)
base_rev=${base##*-r}; base_rev=${base_rev%.db}
plain=$(measure "$BOOT" -f "$SPEC" restore "$base" --force)
pitr=$(measure "$BOOT" -f "$SPEC" restore --dir "$WORK/h" --to-revision "$sealed" --force)
python3 - "$RATE" "$writes" "$reached" "$hwm" "$sealed" "$last_rev" "$segments" "$base_rev" "$plain" "$pitr" <<'PY'
import sys
rate, writes, reached, hwm, sealed, last, segs, base = map(int, sys.argv[1:9])
plain_ms, _, plain_own = map(int, sys.argv[9].split())
pitr_ms, _, pitr_own = map(int, sys.argv[10].split())
changes = sealed - base
print(f"writers: {writes} acknowledged, {reached}/s reached of {rate}/s asked")
print(f"follower: peak RSS {hwm / 1024:.1f} MB (target <= 64 MB) {'met' if hwm <= 65536 else 'MISSED'}; "
      f"{segs} segments; sealed to {sealed}, newest acknowledged {last}: {'kept up' if sealed >= last else f'{last - sealed} behind'}")
print(f"restore SNAPSHOT (revision {base}): {plain_ms} ms; restore --to-revision {sealed} ({changes} changes replayed): {pitr_ms} ms, "
      f"{pitr_ms / plain_ms:.2f}x, {changes / max(pitr_ms - plain_ms, 1) * 1000:.0f} changes/s on top; own peak RSS {pitr_own / 1024:.1f} MB")
PY

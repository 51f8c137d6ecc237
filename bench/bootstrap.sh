#!/usr/bin/env bash
# Benchmark (not a test): time from `etcd-bootstrap up --local 3` (whole process, certificates and
# outputs included) to verified quorum, against raw etcd start-to-healthy of the same three
# members started by shared/peers/start-cluster.sh (certificates made beforehand, not timed), in
# one run, alternating, RUNS rounds each. Target: <= 1.1x.
#
#   bash bench/bootstrap.sh [RUNS]     (default 7; PEERS_DIR defaults to ../shared/peers)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_DIR="${PEERS_DIR:-$(cd .. && pwd)/shared/peers}"
RUNS="${1:-7}"
bash scripts/install-deps.sh
cargo build --release --locked -p bootstrap 2>&1 | tail -n 1
BOOT="$PWD/target/release/etcd-bootstrap"
WORK=$(mktemp -d)
cleanup() {
  "$BOOT" -f "$WORK/ours/cluster.yaml" down --purge >/dev/null 2>&1 || true
  RUNDIR="$WORK/peer-run" bash "$PEERS_DIR/stop-cluster.sh" --purge "$WORK/peer-run" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bash "$PEERS_DIR/gen-pki-cfssl.sh" "$WORK/peer-pki" 3 >/dev/null
now_ms() { echo $(($(date +%s%N) / 1000000)); }
: >"$WORK/ours.ms"; : >"$WORK/peer.ms"; : >"$WORK/quorum.ms"
for ((r = 1; r <= RUNS; r++)); do
  rm -rf "$WORK/ours"
  t0=$(now_ms)
  "$BOOT" up --local 3 --dir "$WORK/ours" >/dev/null 2>"$WORK/ours.log"
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$WORK/ours.ms"
  grep -o 'quorum: HEALTHY.*(\([0-9]*\) ms)' "$WORK/ours.log" | grep -o '([0-9]* ms)' | tr -dc '0-9\n' >>"$WORK/quorum.ms"
  "$BOOT" -f "$WORK/ours/cluster.yaml" down --purge >/dev/null 2>&1
  RUNDIR="$WORK/peer-run" bash "$PEERS_DIR/start-cluster.sh" "$WORK/peer-pki" 3 >/dev/null
  cat "$WORK/peer-run/start-to-healthy-ms" >>"$WORK/peer.ms"
  RUNDIR="$WORK/peer-run" bash "$PEERS_DIR/stop-cluster.sh" --purge "$WORK/peer-run" >/dev/null
  echo "round $r/$RUNS: etcd-bootstrap $(tail -n1 "$WORK/ours.ms") ms, start-cluster.sh $(tail -n1 "$WORK/peer.ms") ms" >&2
done
python3 - "$WORK" <<'PY'
import statistics, sys
d = sys.argv[1]
read = lambda f: [int(x) for x in open(f"{d}/{f}").read().split()]
ours, peer, quorum = read("ours.ms"), read("peer.ms"), read("quorum.ms")
mo, mp, mq = statistics.median(ours), statistics.median(peer), statistics.median(quorum)
print("| measure | etcd-bootstrap up --local 3 | start-cluster.sh (raw etcd) | ratio | target |")
print("|---|---|---|---|---|")
print(f"| median ms, whole `up` vs start-to-healthy | {mo:.0f} | {mp:.0f} | {mo / mp:.2f} | <= 1.1: {'met' if mo / mp <= 1.1 else 'MISSED'} |")
print(f"| median ms, start-to-HEALTHY step of `up` | {mq:.0f} | {mp:.0f} | {mq / mp:.2f} | |")
print(f"| min..max ms | {min(ours)}..{max(ours)} | {min(peer)}..{max(peer)} | | |")
print(f"\n{len(ours)} alternating rounds; etcd 3.4's start-up probe of each peer dominates both")
PY

#!/usr/bin/env bash
# Benchmark (not a test): time from `etcd-bootstrap up --local 3` (whole process, certificates and
# outputs included) to verified quorum, against raw etcd start-to-healthy of the same three
# members started by shared/peers/start-cluster.sh (certificates made beforehand, not timed), in
# one run, alternating, RUNS rounds each. Target: <= 1.1x. Also `down` of the three members
# against shared/peers/stop-cluster.sh (SIGTERM to all at once). Target: down <= 1.5 s.
# Both sides run the same etcd: the project's 3.5.1 (.etcd/v3.5.1) when install-deps put it there.
#
#   bash bench/bootstrap.sh [RUNS]     (default 7; PEERS_DIR defaults to ../shared/peers)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_DIR="${PEERS_DIR:-$(cd .. && pwd)/shared/peers}"
RUNS="${1:-7}"
bash scripts/install-deps.sh
cargo build --release --locked -p bootstrap 2>&1 | tail -n 1
BOOT="$PWD/target/release/etcd-bootstrap"
[ -x .etcd/v3.5.1/etcd ] && export PATH="$PWD/.etcd/v3.5.1:$PATH"
WORK=$(mktemp -d)
cleanup() {
  "$BOOT" -f "$WORK/ours/cluster.yaml" down --purge >/dev/null 2>&1 || true
  RUNDIR="$WORK/peer-run" bash "$PEERS_DIR/stop-cluster.sh" --purge "$WORK/peer-run" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bash "$PEERS_DIR/gen-pki-cfssl.sh" "$WORK/peer-pki" 3 >/dev/null
now_ms() { echo $(($(date +%s%N) / 1000000)); }
: >"$WORK/ours.ms"; : >"$WORK/peer.ms"; : >"$WORK/quorum.ms"; : >"$WORK/down.ms"; : >"$WORK/stop.ms"
for ((r = 1; r <= RUNS; r++)); do
  rm -rf "$WORK/ours"
  t0=$(now_ms)
  "$BOOT" up --local 3 --dir "$WORK/ours" >/dev/null 2>"$WORK/ours.log"
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$WORK/ours.ms"
  grep -o 'quorum: HEALTHY.*(\([0-9]*\) ms)' "$WORK/ours.log" | grep -o '([0-9]* ms)' | tr -dc '0-9\n' >>"$WORK/quorum.ms"
  t0=$(now_ms)
  "$BOOT" -f "$WORK/ours/cluster.yaml" down --purge >/dev/null 2>&1
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$WORK/down.ms"
  RUNDIR="$WORK/peer-run" bash "$PEERS_DIR/start-cluster.sh" "$WORK/peer-pki" 3 >/dev/null
  cat "$WORK/peer-run/start-to-healthy-ms" >>"$WORK/peer.ms"
  t0=$(now_ms)
  RUNDIR="$WORK/peer-run" bash "$PEERS_DIR/stop-cluster.sh" --purge "$WORK/peer-run" >/dev/null
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$WORK/stop.ms"
  echo "round $r/$RUNS: up $(tail -n1 "$WORK/ours.ms") ms vs start-cluster.sh $(tail -n1 "$WORK/peer.ms") ms; down $(tail -n1 "$WORK/down.ms") ms vs stop-cluster.sh $(tail -n1 "$WORK/stop.ms") ms" >&2
done
python3 - "$WORK" <<'PY'
import statistics, sys
d = sys.argv[1]
read = lambda f: [int(x) for x in open(f"{d}/{f}").read().split()]
ours, peer, quorum, down, stop = read("ours.ms"), read("peer.ms"), read("quorum.ms"), read("down.ms"), read("stop.ms")
md, ms = statistics.median(down), statistics.median(stop)
mo, mp, mq = statistics.median(ours), statistics.median(peer), statistics.median(quorum)
print("| measure | etcd-bootstrap up --local 3 | start-cluster.sh (raw etcd) | ratio | target |")
print("|---|---|---|---|---|")
print(f"| median ms, whole `up` vs start-to-healthy | {mo:.0f} | {mp:.0f} | {mo / mp:.2f} | <= 1.1: {'met' if mo / mp <= 1.1 else 'MISSED'} |")
print(f"| median ms, start-to-HEALTHY step of `up` | {mq:.0f} | {mp:.0f} | {mq / mp:.2f} | |")
print(f"| min..max ms | {min(ours)}..{max(ours)} | {min(peer)}..{max(peer)} | | |")
print(f"| median ms, `down --purge` vs stop-cluster.sh --purge | {md:.0f} | {ms:.0f} | {md / ms:.2f} | down <= 1500 ms: {'met' if md <= 1500 else 'MISSED'} |")
print(f"\n{len(ours)} alternating rounds")
PY

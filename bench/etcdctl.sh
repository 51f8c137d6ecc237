#!/usr/bin/env bash
# Benchmark (not a test): `etcdctl-lite endpoint health` against Debian's `etcdctl endpoint health`
# (whole processes) on one live 3-member TLS cluster started by shared/peers/start-cluster.sh,
# healthy and with one member paused (SIGSTOP), in one run; prints the ratios.
# Targets: <= 0.5x etcdctl's time when healthy; with a hung member, done within 1.1x the
# configured timeout.
#
#   bash bench/etcdctl.sh            (PEERS_DIR defaults to ../shared/peers)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_DIR="${PEERS_DIR:-$(cd .. && pwd)/shared/peers}"
[ -x "$(command -v hyperfine)" ] || bash scripts/install-deps.sh
cargo build --release --locked -p etcdctl-lite 2>&1 | tail -n 1
LITE="$PWD/target/release/etcdctl-lite"
WORK=$(mktemp -d)
export RUNDIR="$WORK/run"
cleanup() {
  # resume before stopping, so a paused member can take its SIGTERM
  [ -f "$RUNDIR/pids" ] && while read -r pid _; do kill -CONT "$pid" 2>/dev/null || true; done <"$RUNDIR/pids"
  bash "$PEERS_DIR/stop-cluster.sh" "$RUNDIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
bash "$PEERS_DIR/gen-pki-cfssl.sh" "$WORK/pki" 3 >/dev/null
bash "$PEERS_DIR/start-cluster.sh" "$WORK/pki" 3 >/dev/null
EP=$(cat "$RUNDIR/endpoints")
TLS="--cacert $WORK/pki/ca.pem --cert $WORK/pki/apiserver-etcd-client.pem --key $WORK/pki/apiserver-etcd-client-key.pem"
TIMEOUT=2s   # the same --command-timeout for both tools
DIAL=1s
measure() { # NAME RUNS
  hyperfine -N -i --style none --warmup 1 --runs "$2" --export-json "$WORK/$1.json" \
    -n etcdctl-lite "$LITE --endpoints=$EP $TLS --dial-timeout=$DIAL --command-timeout=$TIMEOUT endpoint health" \
    -n etcdctl "etcdctl --endpoints=$EP $TLS --dial-timeout=$DIAL --command-timeout=$TIMEOUT endpoint health" >/dev/null 2>&1
}
measure healthy 20
# pause a follower (pausing the leader measures an election, not the tools)
LEADER=$(etcdctl --endpoints="$EP" $TLS endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["leader"])')
VICTIM=$(etcdctl --endpoints="$EP" $TLS endpoint status -w json | python3 -c "import json,sys; print(next(s['Endpoint'] for s in json.load(sys.stdin) if s['Status']['header']['member_id'] != $LEADER))")
PID=$(awk -v ip="${VICTIM#https://}" 'BEGIN{split(ip,a,":")} {print $1, $2}' "$RUNDIR/pids" | while read -r pid name; do
  grep -q "https://${VICTIM#https://}" "$RUNDIR/$name.log" 2>/dev/null && { echo "$pid"; break; }; done)
[ -n "$PID" ] || PID=$(awk 'NR==3 {print $1}' "$RUNDIR/pids")
kill -STOP "$PID"
measure hung 5
kill -CONT "$PID"

python3 - "$WORK" "$TIMEOUT" "$DIAL" <<'PY'
import json, sys
d, timeout, dial = sys.argv[1], sys.argv[2], sys.argv[3]
t = float(timeout.rstrip("s"))
print(f"| scenario | etcdctl-lite (ms) | etcdctl (ms) | lite/etcdctl | lite/timeout ({timeout}) | target |")
print("|---|---|---|---|---|---|")
for name in ("healthy", "hung"):
    r = {x["command"]: x["median"] * 1000 for x in json.load(open(f"{d}/{name}.json"))["results"]}
    ratio = r["etcdctl-lite"] / r["etcdctl"]
    per_timeout = r["etcdctl-lite"] / (t * 1000)
    if name == "healthy":
        target = f"lite/etcdctl <= 0.5: {'met' if ratio <= 0.5 else 'MISSED'}"
    else:
        target = f"lite <= 1.1x timeout: {'met' if per_timeout <= 1.1 else 'MISSED'}"
    print(f"| {name if name == 'healthy' else 'one member paused'} | {r['etcdctl-lite']:.1f} | {r['etcdctl']:.1f} | {ratio:.3f} | {per_timeout:.3f} | {target} |")
print(f"\nmedians of hyperfine runs; both tools get --dial-timeout={dial} --command-timeout={timeout}")
PY

#!/usr/bin/env bash
# Benchmark (not a test): `maintain` and `upgrade` at production size. A 3-member cluster on the
# newest etcd 3.6 filled as Kubernetes fills it (MB megabytes of keys of 1-100 KB, quota 8 GiB),
# a writer as kube-apiserver is one (one client over every endpoint, a put every 10 ms) running
# throughout:
# - `maintain` (compaction, then defragmentation member by member, the leader last): the worst
#   write latency it causes, against what etcd's defrag of one member costs (`etcdctl defrag` on
#   each member by hand, in the same run). Target: the worst write <= 1.1x the slowest member's
#   defrag (defrag blocks a member's writes while it rewrites the file; one member at a time, so
#   no write should wait for more than one of them), and no write fails. Then `maintain --offline`
#   (each member stopped while etcd's tool rewrites its database: clients use the others) on the
#   same writers, against the same defrags. Each measured twice: at etcd (the writer above)
#   and through a real kube-apiserver 1.37 serving from the cluster (its own etcd client, with
#   kube-apiserver's certificate), a client creating a ConfigMap every 10 ms over one kept
#   connection (`bench-api-latency`): what the API's users see.
# - `upgrade` to the newest 3.7: its backup-first step against `etcdctl snapshot save` of the
#   same database, and its whole time. Target: the backup step <= 1.0x snapshot save.
#
#   bash bench/maintain.sh [MB]     (default 2048; KEEP=DIR keeps the latency logs and kube-apiserver's)
set -euo pipefail
cd "$(dirname "$0")/.."
MB="${1:-2048}"
bash scripts/install-deps.sh
cargo build --release --locked -p bootstrap -p etcdctl-lite -p integration-tests --bins 2>&1 | tail -n 1
BOOT="$PWD/target/release/etcd-bootstrap"
export PATH="$PWD/.etcd/go-3.6:$PATH"
WORK=$(mktemp -d)
cleanup() {
  touch "$WORK/stop"
  [ -z "${kapi:-}" ] || kill "$kapi" 2>/dev/null || true
  "$BOOT" -f "$WORK/c/cluster.yaml" down >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
export FILL=k8s ETCD_BIN="$PWD/.etcd/go-3.6/etcd"
. bench/filled-cluster.sh
# (an `up --local` member has a bin_dir of its own: where the upgrade delivers 3.7)
etcdctl endpoint status -w table >&2
# churn so that compaction and defragmentation have something to reclaim: overwrite a third
target/release/bench-fill $((MB / 3)) "${EP%%,*}" "$ETCDCTL_CACERT" "$ETCDCTL_CERT" "$ETCDCTL_KEY" >&2
target/release/bench-latency "$EP" "$ETCDCTL_CACERT" "$ETCDCTL_CERT" "$ETCDCTL_KEY" "$WORK/stop" >"$WORK/latency" &
probe=$!
# a real kube-apiserver on loopback, serving from the cluster with kube-apiserver's etcd client
# (a bearer token of system:masters from a token file: a lab; no endpoint reconciler, which
# refuses a loopback address)
KAPI="$PWD/.k8s/go-1.37/kube-apiserver"
[ -x "$KAPI" ] || { echo "maintain.sh: $KAPI missing (scripts/build-k8s.sh all builds it)" >&2; exit 1; }
openssl genrsa -out "$WORK/sa.key" 2048 2>/dev/null && openssl rsa -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub" 2>/dev/null
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$TOKEN,bench,1000,system:masters" >"$WORK/tokens.csv"
KPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$KAPI" --etcd-servers="$EP" --etcd-cafile="$ETCDCTL_CACERT" --etcd-certfile="$ETCDCTL_CERT" --etcd-keyfile="$ETCDCTL_KEY" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none --secure-port="$KPORT" \
  --cert-dir="$WORK/kapi" --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$WORK/sa.pub" --service-account-signing-key-file="$WORK/sa.key" \
  --service-cluster-ip-range=10.96.0.0/12 --token-auth-file="$WORK/tokens.csv" --authorization-mode=RBAC >"$WORK/kapi.log" 2>&1 &
kapi=$!
for i in $(seq 1 240); do
  [ "$(curl -sk --max-time 2 -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$KPORT/readyz" || true)" = ok ] && break
  kill -0 "$kapi" 2>/dev/null || { tail -n 20 "$WORK/kapi.log" >&2; exit 1; }
  [ "$i" -lt 240 ] || { echo "maintain.sh: kube-apiserver not ready in 120 s" >&2; tail -n 20 "$WORK/kapi.log" >&2; exit 1; }
  sleep 0.5
done
"$KAPI" --version >&2
# serving as a kube-apiserver that has run a while: its watch caches hold the filled objects
# (events have none by default; a cache still listing 2 GB takes both cores from etcd and skews
# every latency)
w0=$(date +%s)
for i in $(seq 1 600); do
  synced=$(curl -sk --max-time 5 -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$KPORT/metrics" \
    | grep -cE '^apiserver_watch_cache_initializations_total\{.*resource="(pods|configmaps|secrets|leases|replicasets)"\} [1-9]' || true)
  [ "$synced" -ge 5 ] && break
  [ "$i" -lt 600 ] || { echo "maintain.sh: kube-apiserver's watch caches not filled in 300 s ($synced of 5)" >&2; exit 1; }
  sleep 0.5
done
echo "kube-apiserver: watch caches of the 5 filled resources it caches (not events) initialized in $(( $(date +%s) - w0 )) s; RSS $(awk '/VmRSS/ {print int($2/1024)}' /proc/$kapi/status) MB" >&2
target/release/bench-api-latency "https://127.0.0.1:$KPORT" "$TOKEN" "$WORK/stop" >"$WORK/api-latency" &
api_probe=$!
sleep 5
t0=$(date +%s%3N)
"$BOOT" -f "$SPEC" maintain >"$WORK/maintain.out" 2>"$WORK/maintain.err"
t1=$(date +%s%3N)
sleep 2
# what etcd's own defrag of one member costs (compacted already: the same work maintain did)
: >"$WORK/defrag"
for ep in ${EP//,/ }; do
  s=$(date +%s%3N); ETCDCTL_ENDPOINTS="$ep" etcdctl --command-timeout 600s defrag >/dev/null; e=$(date +%s%3N)
  echo "$((e - s))" >>"$WORK/defrag"
done
sleep 2
t2=$(date +%s%3N)
"$BOOT" -f "$SPEC" maintain --offline >"$WORK/offline.out" 2>"$WORK/offline.err"
t3=$(date +%s%3N)
sleep 2
save_s=$(date +%s%3N); ETCDCTL_ENDPOINTS="${EP%%,*}" etcdctl snapshot save "$WORK/e.db" >/dev/null 2>&1; save_e=$(date +%s%3N)
rm -f "$WORK/e.db"
u0=$(date +%s%3N)
"$BOOT" -f "$SPEC" upgrade --to "$PWD/.etcd/go-3.7" >"$WORK/upgrade.out" 2>"$WORK/upgrade.err"
u1=$(date +%s%3N)
touch "$WORK/stop"; wait "$probe" || true; wait "$api_probe" || true
kill "$kapi" 2>/dev/null; wait "$kapi" 2>/dev/null || true
[ -z "${KEEP:-}" ] || cp "$WORK/latency" "$WORK/api-latency" "$WORK/kapi.log" "$WORK/offline.err" "$KEEP/"
backup_ms=$(sed -n 's/.*upgrade: backup .* taken before any change (\([0-9]*\) ms).*/\1/p' "$WORK/upgrade.err")
python3 - "$WORK" "$t0" "$t1" "$t2" "$t3" "$((save_e - save_s))" "${backup_ms:-0}" "$((u1 - u0))" <<'PY'
import sys
d, t0, t1, t2, t3, save, backup, upgrade = sys.argv[1], *map(int, sys.argv[2:])
dur = t1 - t0
defrags = [int(l) for l in open(f"{d}/defrag") if l.strip()]
slowest = max(defrags)
print(f"| measure | etcd-bootstrap | etcd by hand | ratio | target |")
print("|---|---|---|---|---|")
print(f"| maintain: ms | {dur} (compact, defrag 3 members leader last, disarm, verify) | {sum(defrags)} (etcdctl defrag x 3, one at a time) | {dur/sum(defrags):.2f} | |")
print(f"| maintain --offline: ms | {t3 - t2} | | | |")
for cmd, (a0, a1) in (("maintain", (t0, t1)), ("maintain --offline", (t2, t3))):
    for name, what in (("latency", "writes to etcd"), ("api-latency", "ConfigMaps created through kube-apiserver")):
        lat = [(int(a), b) for a, b in (l.split() for l in open(f"{d}/{name}") if l.strip())]
        # the writes that ended while the command ran (a write stalled by it ends after it started)
        window = [b for a, b in lat if a0 <= a <= a1 + 100]
        before = sorted(float(b) for a, b in lat if a < t0 and b != "fail")
        ok = [float(b) for b in window if b != "fail"]
        fails = sum(1 for b in window if b == "fail")
        worst = max(ok) if ok else float("inf")
        p99 = before[int(len(before) * 0.99)] if before else 0
        print(f"| {cmd}: {what}, worst latency ms | {worst:.0f} ({len(ok)} acknowledged, {fails} failed) | {slowest} (slowest member's defrag) | {worst/slowest:.2f} | <= 1.1: {'met' if worst <= 1.1 * slowest and fails == 0 else 'MISSED'} |")
        if cmd == "maintain":
            print(f"| {what} before maintain: p99 ms | {p99:.1f} | | | |")
print(f"| upgrade: backup-first step ms | {backup} | {save} (etcdctl snapshot save) | {backup/save:.2f} | <= 1.0: {'met' if backup <= save else 'MISSED'} |")
print(f"| upgrade 3.6 -> 3.7 of 3 members: ms | {upgrade} | | | |")
PY
grep -h "defrag\|compact\|stop etcd-\|start etcd-\|upgrade etcd-" "$WORK/maintain.err" "$WORK/offline.err" "$WORK/upgrade.err" >&2 || true

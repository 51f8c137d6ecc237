#!/usr/bin/env bash
# Benchmark (not a test): whole-process time to produce the complete etcd PKI for 3, 5 and 7
# members with `pki issue` against the by-hand cfssl and openssl workflows
# (shared/peers/gen-pki-cfssl.sh, gen-pki-openssl.sh), ECDSA P-256 and RSA-2048, in one run on
# this machine, and the ratios. Targets: pki <= 1/20 of cfssl (ECDSA), <= 1/4 (RSA-2048).
#
#   bash bench/pki.sh [OUTDIR]     (PEERS_DIR defaults to ../shared/peers; OUTDIR to a temp dir,
#                                   which decides the filesystem: pass /dev/shm/x for tmpfs)
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_DIR="${PEERS_DIR:-$(cd .. && pwd)/shared/peers}"
[ -x "$(command -v hyperfine)" ] || bash scripts/install-deps.sh
[ -f "$PEERS_DIR/gen-pki-cfssl.sh" ] || { echo "peers not found in $PEERS_DIR (set PEERS_DIR)" >&2; exit 1; }
cargo build --release --locked -p pki 2>&1 | tail -n 1
PKI="$PWD/target/release/pki"
OUT="${1:-$(mktemp -d)}"
mkdir -p "$OUT"
RESULTS="$OUT/results"
mkdir -p "$RESULTS"
echo "bench: output under $OUT ($(df -T "$OUT" | awk 'NR==2 {print $2}'))" >&2

for algo in ecdsa rsa; do
  runs=15; [ "$algo" = rsa ] && runs=4
  pki_algo=ecdsa-p256; [ "$algo" = rsa ] && pki_algo=rsa-2048
  for n in 3 5 7; do
    members=""
    for ((i = 1; i <= n; i++)); do members="$members --member etcd-$i=127.0.0.$i"; done
    hyperfine -N --style none --warmup 1 --runs "$runs" --export-json "$RESULTS/$algo-$n.json" \
      --prepare "rm -rf $OUT/p $OUT/c $OUT/o; sync" \
      -n pki "$PKI issue --out $OUT/p --algo $pki_algo $members" \
      -n cfssl "bash $PEERS_DIR/gen-pki-cfssl.sh --algo $algo $OUT/c $n" \
      -n openssl "bash $PEERS_DIR/gen-pki-openssl.sh --algo $algo $OUT/o $n" >/dev/null 2>&1
  done
done

python3 - "$RESULTS" <<'PY'
import json, sys, os
d = sys.argv[1]
print("| key | members | pki (ms) | cfssl (ms) | openssl (ms) | pki/cfssl | pki/openssl | target |")
print("|---|---|---|---|---|---|---|---|")
ok = True
for algo in ("ecdsa", "rsa"):
    for n in (3, 5, 7):
        r = {x["command"]: x for x in json.load(open(os.path.join(d, f"{algo}-{n}.json")))["results"]}
        m = {k: v["median"] * 1000 for k, v in r.items()}
        ratio = m["pki"] / m["cfssl"]
        target = 1 / 20 if algo == "ecdsa" else 1 / 4
        met = ratio <= target
        ok &= met
        print(f"| {'ECDSA P-256' if algo == 'ecdsa' else 'RSA-2048'} | {n} | {m['pki']:.1f} | {m['cfssl']:.1f} | {m['openssl']:.1f} "
              f"| {ratio:.3f} | {m['pki'] / m['openssl']:.3f} | ≤ {target:.2f} {'met' if met else 'MISSED'} |")
print("\nmedians of hyperfine runs; whole processes; before each run the outputs are removed and the\nfilesystem synced, so pki (which flushes its files to disk before renaming them into place;\nthe peers do not) pays only for its own writes")
PY

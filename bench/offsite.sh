#!/usr/bin/env bash
# Benchmark (not a test): `etcd-bootstrap backup --to s3://...` of a ~300 MB database to a real S3
# server on loopback (s3s-fs, as in the tests): the whole backup (snapshot, multipart upload, read
# back and compared) against s3cmd uploading the same snapshot file (the peer), RUNS rounds
# alternating: wall time and peak RSS (the child's ru_maxrss). Target: the backup's peak RSS
# under 64 MB whatever the size (the upload holds one 8 MiB part at a time).
#
#   bash bench/offsite.sh [RUNS] [MB]     (default 3 rounds, 300 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
MB="${2:-300}"
bash scripts/install-deps.sh
cargo build --release --locked -p bootstrap 2>&1 | tail -n 1
BOOT="$PWD/target/release/etcd-bootstrap"
export PATH="$PWD/.etcd/go-3.5:$PATH"
WORK=$(mktemp -d)
S3PID=""
cleanup() {
  "$BOOT" -f "$WORK/c/cluster.yaml" down >/dev/null 2>&1 || true
  [ -n "$S3PID" ] && kill "$S3PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
. bench/filled-cluster.sh
mkdir -p "$WORK/s3/bench"
.tools/s3s/bin/s3s-fs --host 127.0.0.77 --port 9000 --access-key benchkey --secret-key benchsecret0123 "$WORK/s3" >/dev/null 2>&1 &
S3PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.77/9000) 2>/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret0123 AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.77:9000
S3CMD=(s3cmd --config=/dev/null --access_key=benchkey --secret_key=benchsecret0123 --host=127.0.0.77:9000 --host-bucket=127.0.0.77:9000 --no-ssl --region=us-east-1)
: >"$WORK/ours"; : >"$WORK/theirs"
for ((r = 1; r <= RUNS; r++)); do
  rm -rf "$WORK/b"
  measure "$BOOT" -f "$SPEC" backup --dir "$WORK/b" --to s3://bench/etcd >>"$WORK/ours"
  SNAP=$(ls "$WORK"/b/*.db)
  measure "${S3CMD[@]}" put "$SNAP" "s3://bench/by-s3cmd/$r.db" >>"$WORK/theirs"
  echo "round $r/$RUNS: backup --to $(tail -n1 "$WORK/ours") vs s3cmd put $(tail -n1 "$WORK/theirs") (ms, KB)" >&2
done
python3 - "$WORK" "$(du -m "$SNAP" | cut -f1)" <<'PY'
import statistics, sys
d, size = sys.argv[1], sys.argv[2]
rd = lambda f: [tuple(map(int, l.split())) for l in open(f"{d}/{f}") if l.strip()]
ours, theirs = rd("ours"), rd("theirs")
mo, mt = statistics.median(t for t, *_ in ours), statistics.median(t for t, *_ in theirs)
ro, rt = max(r for _, r, *_ in ours), max(r for _, r, *_ in theirs)
print(f"| measure ({size} MB snapshot) | backup --to (snapshot + upload + read back) | s3cmd put (upload only) | ratio | target |")
print("|---|---|---|---|---|")
print(f"| median ms | {mo:.0f} | {mt:.0f} | {mo/mt:.2f} | |")
print(f"| peak RSS MB | {ro/1024:.1f} | {rt/1024:.1f} | {ro/rt:.2f} | < 64 MB: {'met' if ro/1024 < 64 else 'MISSED'} |")
print(f"\n{len(ours)} alternating rounds")
PY

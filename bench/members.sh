#!/usr/bin/env bash
# Benchmark (not a test): how each operation's time grows with the members. `up`, `rotate certs`,
# the staged `rotate ca`, `replace` and `upgrade` 3.6 -> 3.7 on local clusters of 3, 5 and 7
# members, ROUNDS rounds, medians; the time per member at 5 and 7 against the time per member at
# 3 (target: at most linear growth, ratio <= 1.1).
#
#   bash bench/members.sh [ROUNDS]     (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
bash scripts/install-deps.sh
export PATH="$PWD/.etcd/go-3.7:$PATH"
cargo build --release --locked -p bootstrap -p pki -p etcdctl-lite -p integration-tests --bins 2>&1 | tail -n 1
exec target/release/bench-members "$ROUNDS"

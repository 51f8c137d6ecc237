#!/usr/bin/env bash
# Benchmark (not a test): `etcd-bootstrap up` of three members over real SSH to network-namespace
# hosts (each with its own sshd) against the same `up` on `host: local`, alternating, RUNS rounds.
# Target: SSH <= 1.5x local (one shared OpenSSH connection per host and run). Needs root (ip netns).
#
#   bash bench/ssh.sh [RUNS]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-5}"
bash scripts/install-deps.sh
[ -x .etcd/v3.5.1/etcd ] && export PATH="$PWD/.etcd/v3.5.1:$PATH"
cargo build --release --locked -p bootstrap -p pki -p etcdctl-lite -p integration-tests --bins 2>&1 | tail -n 1
exec target/release/bench-ssh-up "$RUNS"

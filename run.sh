#!/usr/bin/env bash
# The main job: builds the toolkit and issues a complete 3-member etcd PKI (kubeadm layout) into
# ./etcd-pki, printing what it made. Re-running keeps every valid certificate.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh
cargo build --release --locked -p pki 2>&1 | tail -n 1
./target/release/pki issue --out etcd-pki \
  --member etcd-1=127.0.0.1 --member etcd-2=127.0.0.2 --member etcd-3=127.0.0.3
./target/release/pki certinfo etcd-pki/members/etcd-1/etcd/server.crt

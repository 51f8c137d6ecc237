#!/usr/bin/env bash
# The main job: builds the toolkit, brings up a local 3-member TLS etcd cluster (members in the
# background on 127.0.0.11-13, everything under ./etcd-cluster), verifies its quorum, and writes
# the kubeadm and HAProxy configs that point a control plane at it. Re-running changes nothing.
# Stop it with: ./target/release/etcd-bootstrap down   (data kept; --purge deletes it)
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install-deps.sh --main   # the build tools and the default etcd; the tests install the rest
cargo build --release --locked --workspace 2>&1 | tail -n 1
./target/release/etcd-bootstrap up --local 3
echo
./target/release/etcd-bootstrap status

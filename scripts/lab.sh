#!/usr/bin/env bash
# The lab of kubeadm's "Set up a high-availability cluster with external etcd" page, on this
# machine, as a person would build it by hand: etcd 3.7 on three hosts (network namespaces reached
# over SSH) built by `etcd-bootstrap up`, HAProxy from its haproxy.cfg on the control-plane
# endpoint, three control-plane nodes written by kubeadm 1.37's own init and join phases from the
# bundles up made, and kube-apiserver, kube-controller-manager and kube-scheduler started from
# kubeadm's manifests. Prints what it sees (the Leases the controllers renew; RangeStream use) and
# tears everything down. Needs root (namespaces, mounts). Installs what it needs first.
#   scripts/lab.sh          on etcd 3.7
#   scripts/lab.sh all      also on etcd 3.6 and 3.5
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace --locked 2>&1 | tail -n 1
which=kubeadm_lab::three_kube_apiservers
[ "${1:-}" = all ] && which=kubeadm_lab
PATH="$PWD/.etcd/go-3.7:$PATH" cargo test --locked -p integration-tests --test it -- "$which" --nocapture --test-threads 1

#!/usr/bin/env bash
# kubeadm's own source at the Kubernetes tags bootstrap/src/spec/versions.rs was read from
# (KUBEADM_SOURCES), into Go's module cache with the ordinary `go` client (each module zip checked
# against the checksum database): the kubeadm_matrix test compares the version table with
# cmd/kubeadm/app/constants/constants.go and the config API folders at each tag. Downloaded once.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "fetch-kubeadm-sources: the go command is required" >&2; exit 1; }
tags=$(sed -n 's/^pub const KUBEADM_SOURCES: &\[&str\] = &\[\(.*\)\];/\1/p' bootstrap/src/spec/versions.rs | tr -d '" ' | tr ',' ' ')
[ -n "$tags" ] || { echo "fetch-kubeadm-sources: no KUBEADM_SOURCES in bootstrap/src/spec/versions.rs" >&2; exit 1; }
cache=$(go env GOMODCACHE)
for t in $tags; do
  [ -f "$cache/k8s.io/kubernetes@$t/cmd/kubeadm/app/constants/constants.go" ] && continue
  echo "fetch-kubeadm-sources: k8s.io/kubernetes@$t" >&2
  (cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download k8s.io/kubernetes@"$t")
done

#!/usr/bin/env bash
# Builds Kubernetes' own kubeadm, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
# from k8s.io/kubernetes with the
# ordinary `go` client, into .k8s/vX.Y.Z/ (git-ignored), and checks what each says its version is.
#   scripts/build-k8s.sh 1.37|1.36|all
# Each version is a small wrapper main module under third_party/k8s/vX.Y/ (go.mod + go.sum
# committed, so every byte built is pinned by the checksum database's hashes) that builds
# k8s.io/kubernetes/cmd/... as a dependency, with one replace per staging module (k8s.io/kubernetes
# requires them at v0.0.0 through its own replaces, which a dependency's go.mod cannot apply).
# Built as Kubernetes' release builds its binaries (CGO_ENABLED=0, -trimpath, the version stamped
# with -X). 1.36 builds kubeadm only (the config documents of 1.36 are validated by it). Go's
# module and build caches make a rebuild on the same machine take seconds; nothing is rebuilt
# when .k8s/vX.Y.Z/ already holds binaries that say that version.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "build-k8s: the go command is required (Go >= 1.26): https://go.dev/dl/" >&2; exit 1; }
says() { # the version a binary reports, or nothing
  case "$(basename "$1")" in
    kubeadm) "$1" version -o short 2>/dev/null ;;
    kube-apiserver|kube-controller-manager|kube-scheduler) "$1" --version 2>/dev/null | sed -n 's/^Kubernetes //p' ;;
    kubectl) "$1" version --client 2>/dev/null | sed -n 's/^Client Version: //p' ;;
  esac
}
build_version() {
  local minor=$1 dir version out tools=()
  dir=third_party/k8s/v$minor
  [ -f "$dir/go.mod" ] || { echo "build-k8s: no wrapper module for Kubernetes $minor in $dir" >&2; exit 2; }
  version=$(sed -n 's#^require k8s.io/kubernetes v\([0-9.]*\)$#\1#p' "$dir/go.mod")
  [ -n "$version" ] || { echo "build-k8s: $dir/go.mod pins no k8s.io/kubernetes" >&2; exit 1; }
  if [ "$minor" = 1.36 ]; then tools=(kubeadm); else tools=(kubeadm kube-apiserver kube-controller-manager kube-scheduler kubectl); fi
  out=.k8s/v$version
  local have=1 t
  for t in "${tools[@]}"; do [ "$(says "$out/$t")" = "v$version" ] || have=0; done
  if [ "$have" = 1 ]; then ln -sfn "v$version" ".k8s/go-$minor"; return 0; fi
  echo "build-k8s: building Kubernetes $version (${tools[*]}) from $dir (cold: several minutes)" >&2
  local stage pkgs=()
  stage=$(mktemp -d ".k8s/.build-$version.XXXXXX")
  for t in "${tools[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
  local v=k8s.io/component-base/version
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X $v.gitVersion=v$version -X $v.gitMajor=${minor%%.*} -X $v.gitMinor=${minor#*.} -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z" \
      -o "$OLDPWD/$stage/" "${pkgs[@]}")
  for t in "${tools[@]}"; do
    local said
    said=$(says "$stage/$t")
    [ "$said" = "v$version" ] || { echo "build-k8s: $stage/$t says ${said:-nothing}, not v$version" >&2; rm -rf "$stage"; exit 1; }
  done
  rm -rf "$out"
  mv "$stage" "$out"
  chmod 755 "$out"
  ln -sfn "v$version" ".k8s/go-$minor"
}
mkdir -p .k8s
case "${1:-}" in
  all) for m in 1.37 1.36; do build_version "$m"; done ;;
  1.37|1.36) build_version "$1" ;;
  *) echo "build-k8s: give 1.37, 1.36 or all" >&2; exit 2 ;;
esac

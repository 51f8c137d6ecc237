#!/usr/bin/env bash
# Installs what the toolkit and its tests need on a fresh Debian machine, and nothing twice:
#   protobuf-compiler  protoc, needed to build etcd-client
#   etcd-server etcd-client   real etcd 3.4 and etcdctl for tests and bring-up
#   openssl golang-cfssl      independent verifiers and the cfssl peer
#   haproxy                   `haproxy -c` checks generated configs
#   openssh-server openssh-client iproute2   SSH bring-up tests across network namespaces
#   make hyperfine            the cfssl Makefile test; benchmarks
set -euo pipefail
PKGS=(protobuf-compiler etcd-server etcd-client openssl golang-cfssl haproxy openssh-server openssh-client iproute2 make hyperfine procps)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The haproxy and ssh packages start system services; the tests start their own.
  $SUDO systemctl disable --now haproxy ssh >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "install-deps: cargo (Rust >= 1.88) is required: https://rustup.rs" >&2; exit 1; }

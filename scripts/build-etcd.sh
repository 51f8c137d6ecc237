#!/usr/bin/env bash
# Builds etcd, etcdctl and etcdutl of one etcd line from etcd's own Go modules, with the ordinary
# `go` client, into .etcd/vX.Y.Z/ (git-ignored), and checks what each says to --version.
#   scripts/build-etcd.sh 3.7|3.6|3.5|all
# Each line is a small wrapper main module under third_party/etcd/vX.Y/ (go.mod + go.sum committed,
# so every byte built is pinned by the checksum database's hashes): etcd's own modules carry
# `replace` directives, which `go install module@version` refuses and a dependency's go.mod cannot
# apply. Built as etcd's release script builds (CGO_ENABLED=0, -trimpath). The module and build
# caches (GOMODCACHE, GOCACHE: Go's defaults under $HOME) make a rebuild on the same machine take
# seconds; nothing is rebuilt when .etcd/vX.Y.Z/ already holds the three binaries of that version.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || { echo "build-etcd: the go command is required (Go >= 1.26): https://go.dev/dl/" >&2; exit 1; }
build_line() {
  local line=$1 dir version out
  dir=third_party/etcd/v$line
  [ -f "$dir/go.mod" ] || { echo "build-etcd: no wrapper module for etcd $line in $dir" >&2; exit 2; }
  version=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 v\([0-9.]*\).*#\1#p' "$dir/go.mod")
  [ -n "$version" ] || { echo "build-etcd: $dir/go.mod pins no go.etcd.io/etcd/server/v3" >&2; exit 1; }
  out=.etcd/v$version
  if [ "$("$out/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: //p')" = "$version" ] \
     && [ "$("$out/etcdctl" version 2>/dev/null | sed -n 's/^etcdctl version: //p')" = "$version" ] \
     && [ "$("$out/etcdutl" version 2>/dev/null | sed -n 's/^etcdutl version: //p')" = "$version" ]; then
    ln -sfn "v$version" ".etcd/go-$line"
    return 0
  fi
  echo "build-etcd: building etcd $version (etcd, etcdctl, etcdutl) from $dir" >&2
  local stage
  stage=$(mktemp -d ".etcd/.build-$version.XXXXXX")
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-X go.etcd.io/etcd/api/v3/version.GitSHA=v$version" -o "$OLDPWD/$stage/" ./etcd ./etcdctl ./etcdutl)
  for tool in etcd etcdctl etcdutl; do
    local said
    if [ "$tool" = etcd ]; then said=$("$stage/etcd" --version | sed -n 's/^etcd Version: //p'); else said=$("$stage/$tool" version | sed -n "s/^$tool version: //p"); fi
    [ "$said" = "$version" ] || { echo "build-etcd: $stage/$tool says ${said:-nothing}, not $version" >&2; rm -rf "$stage"; exit 1; }
  done
  rm -rf "$out"
  mv "$stage" "$out"
  chmod 755 "$out"
  ln -sfn "v$version" ".etcd/go-$line"
}
mkdir -p .etcd
case "${1:-}" in
  all) for l in 3.7 3.6 3.5; do build_line "$l"; done ;;
  3.7|3.6|3.5) build_line "$1" ;;
  *) echo "build-etcd: give 3.7, 3.6, 3.5 or all" >&2; exit 2 ;;
esac

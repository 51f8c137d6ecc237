#!/usr/bin/env bash
# Two independent S3 servers for the off-host backup tests, into .tools/ (git-ignored):
# - s3s-fs, the s3s project's S3 server over a directory (Rust; SigV4 authentication, multipart
#   uploads, ListObjectsV2), built from crates.io at a pinned version with its own lock file
#   (`cargo install --locked`; cargo checks every crate against the registry's checksums);
# - versitygw, the Versity S3 Gateway over a POSIX directory (Go; SigV4 checked, multipart,
#   ListObjectsV2), built by the `go` client from the wrapper module third_party/versitygw/
#   (go.mod + go.sum committed: every byte pinned by the checksum database's hashes).
# Debian ships no S3 server (its rclone is built without `serve s3`).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "fetch-s3-server: $*" >&2; exit 1; }

VERSION=0.14.1
DEST=.tools/s3s
if [ "$("$DEST/bin/s3s-fs" --version 2>/dev/null || true)" != "s3s-fs $VERSION" ]; then
  echo "fetch-s3-server: building s3s-fs $VERSION (about two minutes, once)" >&2
  cargo install --quiet --locked --features binary --root "$DEST" "s3s-fs@$VERSION" >&2 || die "cargo install s3s-fs@$VERSION failed"
fi
"$DEST/bin/s3s-fs" --version | grep -qx "s3s-fs $VERSION" || die "$DEST/bin/s3s-fs does not run"

command -v go >/dev/null || die "the go command is required (Go >= 1.26): https://go.dev/dl/"
MOD=third_party/versitygw
VGW=$(sed -n 's#^require github.com/versity/versitygw \(v[0-9.]*\)$#\1#p' "$MOD/go.mod")
[ -n "$VGW" ] || die "$MOD/go.mod pins no github.com/versity/versitygw"
OUT=.tools/versitygw/$VGW
says() { "$1" --version 2>/dev/null | sed -n 's/^Version *: //p'; }
if [ "$(says "$OUT/versitygw" || true)" != "$VGW" ]; then
  echo "fetch-s3-server: building versitygw $VGW from $MOD (about a minute cold)" >&2
  mkdir -p .tools/versitygw
  stage=$(mktemp -d ".tools/versitygw/.build-$VGW.XXXXXX")
  (cd "$MOD" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X main.Version=$VGW -X main.Build=$VGW -X main.BuildTime=1970-01-01T00:00:00Z" \
      -o "$OLDPWD/$stage/" github.com/versity/versitygw/cmd/versitygw) || { rm -rf "$stage"; die "go build of versitygw $VGW failed"; }
  rm -rf "$OUT"
  mv "$stage" "$OUT"
  chmod 755 "$OUT"
fi
[ "$(says "$OUT/versitygw")" = "$VGW" ] || die "$OUT/versitygw does not say $VGW"
ln -sfn "$VGW" .tools/versitygw/current

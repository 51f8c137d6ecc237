#!/usr/bin/env bash
# A real S3-compatible server for the off-host backup tests, into .tools/s3s/ (git-ignored):
# s3s-fs, the s3s project's S3 server over a directory (SigV4 authentication, multipart uploads,
# ListObjectsV2), built from crates.io at a pinned version with its own lock file (`cargo install
# --locked`; cargo checks every crate against the registry's checksums). Debian ships no S3
# server (its rclone is built without `serve s3`), and this machine reaches no other source.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.14.1
DEST=.tools/s3s
die() { echo "fetch-s3-server: $*" >&2; exit 1; }
if [ "$("$DEST/bin/s3s-fs" --version 2>/dev/null || true)" != "s3s-fs $VERSION" ]; then
  echo "fetch-s3-server: building s3s-fs $VERSION (about two minutes, once)" >&2
  cargo install --quiet --locked --features binary --root "$DEST" "s3s-fs@$VERSION" >&2 || die "cargo install s3s-fs@$VERSION failed"
fi
"$DEST/bin/s3s-fs" --version | grep -qx "s3s-fs $VERSION" || die "$DEST/bin/s3s-fs does not run"

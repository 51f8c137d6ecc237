#!/usr/bin/env bash
# The newest etcd 3.5 Debian ships (unstable's etcd-server and etcd-client: etcd, etcdctl, etcdutl;
# 3.5.30 when this was written), into .etcd/vX.Y.Z/ with .etcd/debian-3.5 pointing at it.
#
# Debian's archive through the private apt configuration of scripts/private-apt.sh (download and
# `dpkg-deb -x`; nothing is installed, no system apt state changes). The version is what is
# checked, not a file hash: when the archive moves on to a newer 3.5.x, that one is taken; a 3.5
# below kubeadm's minimum for external etcd (3.5.24), or no 3.5 at all, is refused with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=3.5.24
LINK=.etcd/debian-3.5

die() { echo "fetch-debian-etcd: $*" >&2; exit 1; }
. scripts/private-apt.sh

private_apt_refresh_or_keep fetch-debian-etcd "$LINK/etcd" "$LINK"

candidate=$(private_apt_candidate etcd-server)
[ -n "$candidate" ] || die "Debian's unstable has no etcd-server package"
upstream=${candidate#*:}
upstream=${upstream%%-*}
# it names a directory: exactly 3.5.N, nothing else
case "$upstream" in
  3.5.*[!0-9]*|3.5.) die "Debian's unstable etcd-server version $candidate is not of the form 3.5.N" ;;
  3.5.*) ;;
  *) die "Debian's unstable ships etcd $upstream, not a 3.5: the suite's newest-3.5 pass needs one (a 3.5 from snapshot.debian.org, or an update of this script)" ;;
esac
if [ "$(printf '%s\n%s\n' "$MIN" "$upstream" | sort -V | head -n1)" != "$MIN" ]; then
  die "Debian's unstable ships etcd $upstream, below kubeadm's minimum for external etcd ($MIN); refusing it"
fi

dest=.etcd/v$upstream
have=$("$dest/etcd" --version 2>/dev/null | sed -n 's/^etcd Version: //p' || true)
if [ "$have" != "$upstream" ] || [ ! -x "$dest/etcdctl" ] || [ ! -x "$dest/etcdutl" ]; then
  echo "fetch-debian-etcd: fetching etcd $upstream (Debian unstable etcd-server and etcd-client $candidate)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  private_apt_unpack "$tmp" "etcd-server=$candidate" "etcd-client=$candidate" || die "downloading etcd-server and etcd-client $candidate failed"
  mkdir -p "$dest"
  for b in etcd etcdctl etcdutl; do
    [ -x "$tmp/root/usr/bin/$b" ] || die "the $candidate packages hold no usr/bin/$b"
    cp "$tmp/root/usr/bin/$b" "$dest/.$b.tmp"
    chmod 0755 "$dest/.$b.tmp"
    mv -f "$dest/.$b.tmp" "$dest/$b"
  done
fi
got=$("$dest/etcd" --version | sed -n 's/^etcd Version: //p')
[ "$got" = "$upstream" ] || die "$dest/etcd reports etcd $got, not $upstream"
[ "$("$dest/etcdutl" version | sed -n 's/^etcdutl version: //p')" = "$upstream" ] || die "$dest/etcdutl does not report $upstream"
ln -sfn "v$upstream" "$LINK"

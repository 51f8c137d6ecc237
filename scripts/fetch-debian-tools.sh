#!/usr/bin/env bash
# Debian's promtool and node_exporter, the consumers `doctor`'s Prometheus output is checked
# against, into .tools/ (git-ignored): downloaded from Debian's unstable archive through the
# private apt configuration of scripts/private-apt.sh and unpacked (`dpkg-deb -x`), never
# installed (the packages would start services and pull a web UI's JavaScript). The version is
# what the archive has; each binary is checked by running it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.tools
die() { echo "fetch-debian-tools: $*" >&2; exit 1; }
. scripts/private-apt.sh

have() { [ -x "$DEST/promtool" ] && [ -x "$DEST/node_exporter" ]; }
private_apt_refresh_or_keep fetch-debian-tools "$DEST/promtool" "$DEST"
prom=$(private_apt_candidate promtool)
nodex=$(private_apt_candidate prometheus-node-exporter)
[ -n "$prom" ] && [ -n "$nodex" ] || die "Debian's unstable lacks promtool or prometheus-node-exporter"
want="promtool=$prom prometheus-node-exporter=$nodex"
if ! have || [ "$(cat "$DEST/VERSIONS" 2>/dev/null)" != "$want" ]; then
  echo "fetch-debian-tools: fetching promtool and node_exporter ($want)" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  private_apt_unpack "$tmp" "promtool=$prom" "prometheus-node-exporter=$nodex" || die "downloading $want failed"
  mkdir -p "$DEST"
  for b in promtool:usr/bin/promtool node_exporter:usr/bin/prometheus-node-exporter; do
    name=${b%%:*}; src=$tmp/root/${b#*:}
    [ -x "$src" ] || die "the packages hold no ${b#*:}"
    cp "$src" "$DEST/.$name.tmp" && chmod 0755 "$DEST/.$name.tmp" && mv -f "$DEST/.$name.tmp" "$DEST/$name"
  done
  echo "$want" > "$DEST/VERSIONS"
fi
"$DEST/promtool" --version >/dev/null 2>&1 || die "$DEST/promtool does not run"
"$DEST/node_exporter" --version >/dev/null 2>&1 || die "$DEST/node_exporter does not run"

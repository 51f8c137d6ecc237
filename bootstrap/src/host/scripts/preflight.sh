# host script: preflight
# Facts about the host as key=value lines, judged by host/preflight.rs.
set -u
if command -v "$binary" >/dev/null 2>&1; then
  echo "etcd_version=$("$binary" --version 2>/dev/null | head -n1 | sed 's/.*: *//')"
else
  echo etcd_missing=1
fi
for port in "$client_port" "$peer_port"; do
  ss -Hltn "sport = :$port" 2>/dev/null | awk -v port="$port" '{print "listener=" port " " $4}'
done
if [ "$supervisor" = systemd ]; then
  # systemd must be this host's init and answer; otherwise units would be written and never run
  # (containers, minimal hosts)
  st=$(systemctl is-system-running 2>/dev/null)
  case "$st" in
    running|degraded|starting|initializing|maintenance) ;;
    *) echo "systemd_unusable=${st:-no systemctl}" ;;
  esac
fi
if [ -d "$data_dir" ] && [ -n "$(ls -A -- "$data_dir" 2>/dev/null)" ]; then echo data_nonempty=1; fi
if [ -f "$marker_file" ]; then echo "marker=$(cat -- "$marker_file")"; fi
for o in "${others[@]+"${others[@]}"}"; do
  ip route get "$o" >/dev/null 2>&1 || echo "unroutable=$o"
done

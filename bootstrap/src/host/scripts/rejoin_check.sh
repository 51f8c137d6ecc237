# host script: rejoin-check
# Before an adopted member is replaced in place: whether systemd has loaded its unit file as it is
# (`reload=`), and `missing=PATH` (base64) for each of its TLS files not on the host.
set -u
if [ -n "$adopted_unit" ]; then echo "reload=$(systemctl show -p NeedDaemonReload --value -- "$adopted_unit")"; fi
for p in "${tls_files[@]+"${tls_files[@]}"}"; do
  [ -f "$p" ] || echo "missing=$(printf %s "$p" | base64 -w0)"
done

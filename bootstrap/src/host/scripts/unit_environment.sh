# host script: unit-environment
# An adopted unit's own environment as systemd will give it: `environment=` (its Environment=,
# base64) and one `envfile=` (base64) for each of its EnvironmentFile=s that exists.
set -u
echo "environment=$(systemctl show -p Environment --value -- "$adopted_unit" | base64 -w0)"
systemctl show -p EnvironmentFiles --value -- "$adopted_unit" | while IFS= read -r l; do
  f=${l%% (ignore_errors=*}
  [ -f "$f" ] && echo "envfile=$(base64 -w0 < "$f")"
done
true

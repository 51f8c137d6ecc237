# host script: v2-probe
# Whether the member's running etcd serves the v2 API (gone in 3.6): `--enable-v2` on its command
# line or ETCD_ENABLE_V2 in its environment, read from /proc of the process its pid file (or its
# systemd unit) names. Prints `v2=flag` / `v2=env`.
pid=$(cat "$pid_file" 2>/dev/null || systemctl show -p MainPID --value -- "$unit" 2>/dev/null || true)
if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/cmdline" ]; then
  tr '\0' '\n' < "/proc/$pid/cmdline" | grep -Eqx -- '--enable-v2(=(true|1))?' && echo v2=flag
  tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -Eqx 'ETCD_ENABLE_V2=(true|1)' && echo v2=env
fi
true

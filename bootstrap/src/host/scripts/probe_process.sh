# host script: probe-process
# Read-only, for adopt: the running etcd that listens on the member's address and port, found
# from the listening socket (not by name): its pid, start time, identity, argv, environment,
# working directory and cgroup, and the systemd unit or static-pod manifest that runs it. Every
# value that may hold anything is base64; nothing found is run.
set -u
addr=$client_address; port=$client_port
b64() { base64 -w0 < "$1" 2>/dev/null; echo; }
# the listener: the member's own address, or a wildcard one
line=$(ss -Hltnp "sport = :$port" 2>/dev/null | awk -v a="$addr:$port" -v b="[$addr]:$port" -v p=":$port" '$4==a || $4==b || $4=="0.0.0.0"p || $4=="*"p || $4=="[::]"p {print; exit}')
[ -n "$line" ] || { echo "listener=none"; exit 0; }
pid=$(printf '%s\n' "$line" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1)
{ [ -n "$pid" ] && [ -d "/proc/$pid" ]; } || { echo "listener=unreadable"; exit 0; }
echo "pid=$pid"
echo "start=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null)"
echo "comm=$(cat "/proc/$pid/comm" 2>/dev/null)"
echo "exe=$(printf %s "$(readlink "/proc/$pid/exe" 2>/dev/null)" | base64 -w0)"
echo "cwd=$(printf %s "$(readlink "/proc/$pid/cwd" 2>/dev/null)" | base64 -w0)"
echo "cmdline=$(b64 "/proc/$pid/cmdline")"
echo "environ=$(b64 "/proc/$pid/environ")"
echo "cgroup=$(b64 "/proc/$pid/cgroup")"
unit=$(sed -n 's#^0::.*/\([^/]*\.service\)$#\1#p; s#^[0-9]*:name=systemd:.*/\([^/]*\.service\)$#\1#p' "/proc/$pid/cgroup" 2>/dev/null | head -n1)
if [ -n "$unit" ] && command -v systemctl >/dev/null 2>&1; then
  echo "unit=$unit"
  echo "unit_show=$(systemctl show -p FragmentPath,DropInPaths,ExecStart,Environment,EnvironmentFiles,WorkingDirectory,User -- "$unit" 2>/dev/null | base64 -w0)"
fi
for m in /etc/kubernetes/manifests/etcd.yaml /etc/kubernetes/manifests/etcd.manifest; do
  [ -f "$m" ] && echo "manifest=$(printf %s "$m" | base64 -w0) $(b64 "$m")"
done
true

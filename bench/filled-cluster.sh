# Sourced by the benchmarks that need a filled cluster: `up --local 3` under $WORK/c, etcdctl's
# environment pointed at it with kube-apiserver's client, and MB values of 1 MB put. Sets SPEC,
# P (the PKI dir) and EP (the endpoints); needs BOOT, WORK and MB. Also `measure CMD...`: wall
# milliseconds and peak RSS (KB, the child's ru_maxrss) of one command, on one line.
"$BOOT" up --local 3 --dir "$WORK/c" >/dev/null
SPEC="$WORK/c/cluster.yaml"
P="$WORK/c/pki"
EP=$(grep -o 'https://[0-9.]*:2379' "$WORK/c/out/kubeadm/init.yaml" | paste -sd, -)
export ETCDCTL_API=3 ETCDCTL_ENDPOINTS="$EP" ETCDCTL_CACERT="$P/etcd/ca.crt" \
  ETCDCTL_CERT="$WORK/c/out/control-plane/cp-1/etc/kubernetes/pki/apiserver-etcd-client.crt" \
  ETCDCTL_KEY="$WORK/c/out/control-plane/cp-1/etc/kubernetes/pki/apiserver-etcd-client.key"
head -c 750000 /dev/urandom | base64 -w0 >"$WORK/value" # 1 MB of text; no early-closing pipe under pipefail
echo "filling: $MB values of 1 MB" >&2
for ((i = 0; i < MB; i++)); do etcdctl put "/bench/$i" <"$WORK/value" >/dev/null; done
measure() { python3 -c 'import resource,subprocess,sys,time
t=time.time(); r=subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ms=(time.time()-t)*1000; rss=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.exit(r.returncode) if r.returncode else print(f"{ms:.0f} {rss}")' "$@"; }

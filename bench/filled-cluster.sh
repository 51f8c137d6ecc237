# Sourced by the benchmarks that need a filled cluster: `up --local 3` under $WORK/c, etcdctl's
# environment pointed at it with kube-apiserver's client, and MB megabytes of values put. Sets
# SPEC, P (the PKI dir) and EP (the endpoints); needs BOOT, WORK and MB. FILL picks how:
#   FILL=mb1 (default)  MB values of 1 MB each (etcdctl put)
#   FILL=k8s            as Kubernetes fills it: many keys of 1-100 KB under /registry/ (bench-fill,
#                       16 in flight), etcd's quota raised to 8 GiB (what etcd suggests at most) so
#                       that databases of 2 GB and more fit; ETCD_BIN picks the etcd (default: the
#                       newest this machine has)
# Also `measure CMD...`: wall milliseconds, peak RSS of the largest process of the tree (KB, the
# children's ru_maxrss: the command or a child it waited for) and the command's own peak RSS (KB,
# its VmHWM read every 20 ms), on one line.
FILL="${FILL:-mb1}"
"$BOOT" up --local 3 --dir "$WORK/c" >/dev/null
SPEC="$WORK/c/cluster.yaml"
P="$WORK/c/pki"
EP=$(grep -o 'https://[0-9.]*:2379' "$WORK/c/out/kubeadm/init.yaml" | paste -sd, -)
export ETCDCTL_API=3 ETCDCTL_ENDPOINTS="$EP" ETCDCTL_CACERT="$P/etcd/ca.crt" \
  ETCDCTL_CERT="$WORK/c/out/control-plane/cp-1/etc/kubernetes/pki/apiserver-etcd-client.crt" \
  ETCDCTL_KEY="$WORK/c/out/control-plane/cp-1/etc/kubernetes/pki/apiserver-etcd-client.key"
case "$FILL" in
  mb1)
    head -c 750000 /dev/urandom | base64 -w0 >"$WORK/value" # 1 MB of text; no early-closing pipe under pipefail
    echo "filling: $MB values of 1 MB" >&2
    for ((i = 0; i < MB; i++)); do etcdctl put "/bench/$i" <"$WORK/value" >/dev/null; done
    ;;
  k8s)
    # made afresh with the quota (and on $ETCD_BIN when given: `up --local` takes the newest etcd)
    "$BOOT" -f "$SPEC" down --purge >/dev/null
    [ -z "${ETCD_BIN:-}" ] || sed -i "s|^etcd_binary: .*|etcd_binary: $ETCD_BIN|" "$SPEC"
    sed -i 's/^  quota_backend_bytes: null$/  quota_backend_bytes: 8589934592/' "$SPEC"
    grep -q '^  quota_backend_bytes: 8589934592$' "$SPEC" || { echo "filled-cluster: no quota_backend_bytes in $SPEC to raise" >&2; exit 1; }
    "$BOOT" -f "$SPEC" up >/dev/null
    echo "filling: $MB MB as Kubernetes does (keys of 1-100 KB)" >&2
    target/release/bench-fill "$MB" "${EP%%,*}" "$ETCDCTL_CACERT" "$ETCDCTL_CERT" "$ETCDCTL_KEY" >&2
    ;;
  *) echo "filled-cluster: FILL=$FILL is neither mb1 nor k8s" >&2; exit 2 ;;
esac
measure() { python3 -c 'import resource,subprocess,sys,time
t=time.time(); p=subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); own=0
while p.poll() is None:
    try:
        own=max(own, int(next(l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmHWM:")).split()[1]))
    except (OSError, StopIteration): pass
    time.sleep(0.02)
ms=(time.time()-t)*1000; rss=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.exit(p.returncode) if p.returncode else print(f"{ms:.0f} {rss} {own}")' "$@"; }

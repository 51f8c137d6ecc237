//! The lab people build by hand after kubeadm's "HA with external etcd" page: etcd on three test
//! hosts (network namespaces reached over SSH), three control-plane nodes (namespaces of their
//! own, each with a private /etc), the HAProxy `up` generated on the control-plane endpoint, and
//! on each node what kubeadm's own phases write from the bundle `up` made for it, with
//! kube-apiserver started on the exact command line of the manifest kubeadm wrote (as a kubelet
//! would start the static pod). Everything runs on this machine's bridge between namespaces.

use crate::netns::Hosts;
use crate::{Ran, run_bounded, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kubernetes' own binaries of `minor`, built by scripts/build-k8s.sh.
pub fn k8s_tool(minor: &str, name: &str) -> PathBuf {
    let p = workspace_root().join(format!(".k8s/go-{minor}/{name}"));
    assert!(p.is_file(), "{}: run scripts/build-k8s.sh all (the README's test command does)", p.display());
    p
}

/// Kubernetes 1.37's own binaries (scripts/build-k8s.sh).
pub struct K8s {
    pub kubeadm: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
}

impl K8s {
    pub fn v137() -> K8s {
        let t = |n| k8s_tool("1.37", n);
        K8s {
            kubeadm: t("kubeadm"),
            kube_apiserver: t("kube-apiserver"),
            kube_controller_manager: t("kube-controller-manager"),
            kube_scheduler: t("kube-scheduler"),
            kubectl: t("kubectl"),
        }
    }

    /// The node's three static pods as a kubelet starts them: kube-apiserver first (until
    /// /readyz), then kube-controller-manager and kube-scheduler (they elect leaders with Leases
    /// and renew them every few seconds; the controller manager signs cluster-info for joins).
    pub fn start_control_plane(&self, node: &mut Node) {
        node.run_static_pod("kube-apiserver", &self.kube_apiserver);
        node.wait_ready(Duration::from_secs(90));
        node.run_static_pod("kube-controller-manager", &self.kube_controller_manager);
        node.run_static_pod("kube-scheduler", &self.kube_scheduler);
    }
}

/// A control-plane node: a network namespace of the lab's bridge, and a process holding a mount
/// namespace where /etc is an overlay whose changes land in `upper` (this machine's /etc is never
/// written). Commands run inside both through nsenter.
pub struct Node {
    pub name: String,
    pub address: String,
    pub upper: PathBuf,
    holder: Child,
    /// The static pods started, by component name (kube-apiserver, ...).
    running: Vec<(String, Child)>,
    dir: PathBuf,
}

impl Node {
    pub fn start(dir: &Path, name: &str, namespace: &str, address: &str) -> Node {
        let (upper, work) = (dir.join(format!("{name}-etc/upper")), dir.join(format!("{name}-etc/work")));
        std::fs::create_dir_all(&upper).expect("overlay upper");
        std::fs::create_dir_all(&work).expect("overlay work");
        let holder = Command::new("ip")
            .args(["netns", "exec", namespace, "unshare", "-m", "--propagation", "private", "sh", "-c"])
            .arg(format!("mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc && exec sleep 86400", upper.display(), work.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("start the node's namespace holder");
        let node = Node { name: name.into(), address: address.into(), upper, holder, running: vec![], dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !node.sh("mountpoint -q /etc", Duration::from_secs(5)).ok() {
            assert!(Instant::now() < deadline, "{name}: /etc overlay not mounted within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-m", "-n", "--"]);
        c
    }

    /// Runs `script` on the node (its network, its /etc), bounded.
    pub fn sh(&self, script: &str, limit: Duration) -> Ran {
        run_bounded(self.enter().args(["sh", "-c", script]), limit)
    }

    /// A control-plane component as a kubelet starts the static pod kubeadm wrote for it
    /// (`manifests/COMPONENT.yaml`): the manifest's command line exactly, its first word being
    /// our build of the same version.
    pub fn run_static_pod(&mut self, component: &str, binary: &Path) {
        let manifest = self.upper.join(format!("kubernetes/manifests/{component}.yaml"));
        let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let pod: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("the manifest is YAML");
        let command: Vec<String> = pod["spec"]["containers"][0]["command"]
            .as_sequence()
            .expect("the manifest's command")
            .iter()
            .map(|v| v.as_str().expect("a command word").to_string())
            .collect();
        assert_eq!(command[0], component, "{}", manifest.display());
        let child = self
            .enter()
            .arg(binary)
            .args(&command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(self.log_of(component)).expect("component log"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {component}: {e}"));
        self.running.push((component.to_string(), child));
    }

    /// A static pod whose process exited started again, as a kubelet does (restartPolicy
    /// Always): kube-controller-manager and kube-scheduler exit when they lose their Lease, as
    /// they do while every kube-apiserver is stopped. Returns whether it was restarted.
    pub fn restart_if_exited(&mut self, component: &str, binary: &Path) -> bool {
        let exited = self.running.iter_mut().find(|(c, _)| c == component).is_none_or(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
        if exited {
            self.running.retain(|(c, _)| c != component);
            self.run_static_pod(component, binary);
        }
        exited
    }

    /// Stops a component (SIGTERM, then SIGKILL after 30 s), as a kubelet does.
    pub fn stop(&mut self, component: &str) {
        while let Some(i) = self.running.iter().position(|(c, _)| c == component) {
            let (_, mut c) = self.running.remove(i);
            crate::signal(c.id(), crate::Signal::Term);
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_of(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{}-{component}.log", self.name))
    }

    pub fn log(&self, component: &str) -> String {
        std::fs::read_to_string(self.log_of(component)).unwrap_or_default()
    }

    /// Waits until this node's kube-apiserver answers /readyz with 200 (bounded).
    pub fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.sh(&format!("curl -sk --max-time 3 -o /dev/null -w '%{{http_code}}' https://{}:6443/readyz", self.address), Duration::from_secs(10));
            if r.stdout.trim() == "200" {
                return;
            }
            if let Some((_, c)) = self.running.iter_mut().find(|(n, _)| n == "kube-apiserver")
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("{}: kube-apiserver exited ({status}):\n{}", self.name, tail(&self.log("kube-apiserver")));
            }
            assert!(Instant::now() < deadline, "{}: kube-apiserver not ready within {limit:?}:\n{}", self.name, tail(&self.log("kube-apiserver")));
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for Node {
    fn drop(&mut self) {
        let names: Vec<String> = self.running.iter().map(|(n, _)| n.clone()).collect();
        for n in names.iter().rev() {
            self.stop(n);
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The whole lab: `hosts` (etcd-1..3 on the first three, cp-1..3 on the others), the spec, the
/// HAProxy and the nodes.
pub struct Lab {
    pub dir: PathBuf,
    pub spec: PathBuf,
    pub endpoint: String,
    pub nodes: Vec<Node>,
    haproxy: Option<Child>,
    // dropped last: the namespaces outlive what runs in them
    pub hosts: Hosts,
}

impl Lab {
    /// The hosts, and a spec for Kubernetes `version`: etcd over SSH from a release archive of
    /// `etcd` (and the tools beside it), the control-plane endpoint on the bridge's own address.
    pub fn create(dir: &Path, version: &str, etcd: &Path) -> Lab {
        let hosts = Hosts::create(6, dir);
        let members = hosts.member_entries_of(dir, 3);
        let lb = hosts.hosts[0].address.rsplit_once('.').map(|(p, _)| format!("{p}.1")).expect("an IPv4 bridge");
        let nodes: String = hosts.hosts[3..].iter().enumerate().map(|(i, h)| format!("    - {{name: cp-{}, address: {}}}\n", i + 1, h.address)).collect();
        let (archive, sha, _) = crate::bootstrap::etcd_archive_of(dir, etcd);
        let spec = dir.join("cluster.yaml");
        std::fs::write(
            &spec,
            format!(
                "name: lab\netcd_archive: {archive}\netcd_sha256: {sha}\nmembers:\n{members}kubernetes:\n  version: {version}\n  control_plane_endpoint: {lb}:6443\n  pod_subnet: 10.244.0.0/16\n  control_plane_nodes:\n{nodes}",
                archive = archive.display()
            ),
        )
        .expect("write the spec");
        Lab { dir: dir.to_path_buf(), spec, endpoint: format!("{lb}:6443"), nodes: vec![], haproxy: None, hosts }
    }

    /// HAProxy on the generated haproxy.cfg, unchanged, on this machine (the bridge's address is
    /// the endpoint) with its CA copied where the cfg says (/etc/haproxy, in an overlay on /etc in
    /// a private mount namespace: this machine's /etc is never written).
    pub fn start_haproxy(&mut self) {
        let cfg = self.dir.join("out/haproxy/haproxy.cfg");
        let (upper, work) = (self.dir.join("lb-etc/upper"), self.dir.join("lb-etc/work"));
        std::fs::create_dir_all(&upper).expect("overlay upper");
        std::fs::create_dir_all(&work).expect("overlay work");
        let text = std::fs::read_to_string(&cfg).expect("haproxy.cfg");
        let ca = text.split_whitespace().skip_while(|w| *w != "ca-file").nth(1).expect("the cfg's ca-file").to_string();
        let script = format!(
            "set -e\nmount -t overlay overlay -o lowerdir=/etc,upperdir={u},workdir={w} /etc\nmkdir -p \"$(dirname {ca})\"\ncp {made} {ca}\nexec {haproxy} -f {cfg} -db\n",
            u = upper.display(),
            w = work.display(),
            made = self.dir.join("out/haproxy/kubernetes-ca.crt").display(),
            haproxy = crate::tool("haproxy", "HAPROXY_BIN").display(),
            cfg = cfg.display(),
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.join("haproxy.log")).expect("haproxy log"))
            .stderr(std::fs::File::create(self.dir.join("haproxy.err")).expect("haproxy log"))
            .spawn()
            .expect("start haproxy");
        self.haproxy = Some(child);
        // listening on the endpoint, or a clear failure (another server on the port, a bad cfg)
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&self.endpoint.parse().expect("IP:port"), Duration::from_millis(200)).is_err() {
            if let Some(Ok(Some(status))) = self.haproxy.as_mut().map(|c| c.try_wait()) {
                panic!("haproxy exited ({status}): {}", std::fs::read_to_string(self.dir.join("haproxy.err")).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "haproxy does not listen on {} within 10 s", self.endpoint);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first node, as `kubeadm init` makes it, by its own phases: certificates, kubeconfig
    /// files and the kube-apiserver manifest from init.yaml and the node's bundle; kube-apiserver
    /// started; then the shared configuration and certificates uploaded (with the certificate
    /// key) and the bootstrap token made, for the joins.
    pub fn init_first(&mut self, k8s: &K8s) {
        let kubeadm = &k8s.kubeadm;
        let h = &self.hosts.hosts[3];
        let mut node = Node::start(&self.dir, "cp-1", &h.namespace, &h.address);
        let k = kubeadm.display();
        let script = format!(
            "set -e\ncp -a {bundle} /etc/kubernetes\ncp {init} /etc/kubernetes/init.yaml\n\
             {k} init phase certs all --config /etc/kubernetes/init.yaml\n\
             {k} init phase kubeconfig all --config /etc/kubernetes/init.yaml\n\
             {k} init phase control-plane all --config /etc/kubernetes/init.yaml\n",
            bundle = self.dir.join("out/control-plane/cp-1/etc/kubernetes").display(),
            init = self.dir.join("out/kubeadm/init.yaml").display(),
        );
        node.sh(&script, Duration::from_secs(120)).assert_ok();
        k8s.start_control_plane(&mut node);
        let after = format!(
            "set -e\n{k} init phase upload-config all --config /etc/kubernetes/init.yaml\n\
             {k} init phase upload-certs --upload-certs --config /etc/kubernetes/init.yaml\n\
             {k} init phase bootstrap-token --config /etc/kubernetes/init.yaml\n"
        );
        node.sh(&after, Duration::from_secs(120)).assert_ok();
        self.nodes.push(node);
    }

    /// Node `index` (1, 2), as `kubeadm join --control-plane` makes it: its join-cp-N.yaml and
    /// bundle, discovery through the load balancer with the token and CA hash, the shared
    /// certificates downloaded with the certificate key, its own certificates, kubeconfig files
    /// and manifest; kube-apiserver started.
    pub fn join(&mut self, index: usize, k8s: &K8s) {
        let kubeadm = &k8s.kubeadm;
        let name = format!("cp-{}", index + 1);
        let h = &self.hosts.hosts[3 + index];
        let mut node = Node::start(&self.dir, &name, &h.namespace, &h.address);
        let script = format!(
            "set -e\ncp -a {bundle} /etc/kubernetes\ncp {join} /etc/kubernetes/join.yaml\n{k} join phase control-plane-prepare all --config /etc/kubernetes/join.yaml\n",
            bundle = self.dir.join(format!("out/control-plane/{name}/etc/kubernetes")).display(),
            join = self.dir.join(format!("out/kubeadm/join-{name}.yaml")).display(),
            k = kubeadm.display(),
        );
        let r = node.sh(&script, Duration::from_secs(120));
        assert!(
            r.ok(),
            "{name}: kubeadm join's phases: {}{}\nhaproxy: {}",
            r.stdout,
            r.stderr,
            std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default()
        );
        k8s.start_control_plane(&mut node);
        self.nodes.push(node);
    }

    /// kubectl with kubeadm's admin kubeconfig of node 1 (its server: the control-plane endpoint,
    /// the load balancer), run from this machine.
    pub fn kubectl(&self, kubectl: &Path, args: &[&str]) -> Ran {
        let conf = self.nodes[0].upper.join("kubernetes/admin.conf");
        run_bounded(Command::new(kubectl).arg("--kubeconfig").arg(conf).args(args), Duration::from_secs(60))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.nodes.clear();
        if let Some(mut c) = self.haproxy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(crate::bin("etcd-bootstrap")).arg("-f").arg(&self.spec).arg("down").output();
    }
}

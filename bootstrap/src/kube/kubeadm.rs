//! kubeadm configuration for a control plane on external etcd: `ClusterConfiguration` with
//! `etcd.external`, an `InitConfiguration` for the first node and a `JoinConfiguration` for each
//! other node (kubeadm.k8s.io/v1beta4; v1beta3 on request), plus [`validate`], which applies
//! kubeadm's own rules (validation.go) so configs are checked where kubeadm cannot run.

use crate::spec::{Spec, split_host_port};
use serde_yaml_ng::{Mapping, Value};

/// kubeadm's standard paths on a control-plane node.
pub const CA_FILE: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const CERT_FILE: &str = "/etc/kubernetes/pki/apiserver-etcd-client.crt";
pub const KEY_FILE: &str = "/etc/kubernetes/pki/apiserver-etcd-client.key";

// the config API versions are data of the version table, which kubeadm emits from
pub use crate::spec::versions::ApiVersion;

/// The secrets of one bring-up, kept across re-runs so outputs do not change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinSecrets {
    /// `[a-z0-9]{6}.[a-z0-9]{16}`
    pub bootstrap_token: String,
    /// 64 hex characters: the AES key of the kubeadm-certs Secret.
    pub certificate_key: String,
    /// `sha256:<hex>` of the Kubernetes CA's public key (the CA is pre-made so this is known).
    pub ca_cert_hash: String,
    /// The kubeadm config API chosen when the configs were first written: a re-run keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeadm_api: Option<ApiVersion>,
}

impl JoinSecrets {
    /// Every value in its exact format (they are read back from a file a user can edit, and go
    /// into YAML and onto command lines).
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        check_token(&self.bootstrap_token, "bootstrap_token", &mut problems);
        check_cert_key(Some(&self.certificate_key), "certificate_key", &mut problems);
        let hash_ok = self.ca_cert_hash.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if !hash_ok {
            problems.push(format!("ca_cert_hash: {:?} is not sha256:<64 hex>", self.ca_cert_hash));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }

    pub fn generate(ca_cert_hash: String) -> Result<JoinSecrets, String> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let mut bytes = [0u8; 54];
        rng.fill(&mut bytes).map_err(|_| "the system random generator failed".to_string())?;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let pick = |b: u8| ALPHABET[(b as usize) % ALPHABET.len()] as char;
        let id: String = bytes[..6].iter().map(|b| pick(*b)).collect();
        let secret: String = bytes[6..22].iter().map(|b| pick(*b)).collect();
        Ok(JoinSecrets { bootstrap_token: format!("{id}.{secret}"), certificate_key: hex::encode(&bytes[22..54]), ca_cert_hash, kubeadm_api: None })
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String(k.into()), v);
    }
    Value::Mapping(m)
}

fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn list(items: impl IntoIterator<Item = Value>) -> Value {
    Value::Sequence(items.into_iter().collect())
}

/// The ClusterConfiguration document.
pub fn cluster_configuration(spec: &Spec, api: ApiVersion) -> Value {
    let k = &spec.kubernetes;
    let endpoints = list(spec.members.iter().map(|m| s(m.client_url())));
    let mut sans: Vec<String> = Vec::new();
    if let Some((host, _)) = split_host_port(&k.control_plane_endpoint) {
        sans.push(host);
    }
    sans.extend(k.control_plane_nodes.iter().map(|n| n.address.to_string()));
    sans.extend(k.cert_sans.iter().cloned());
    sans.dedup();
    let mut networking = vec![("serviceSubnet", s(&k.service_subnet)), ("dnsDomain", s(&k.dns_domain))];
    if let Some(pod) = &k.pod_subnet {
        networking.push(("podSubnet", s(pod)));
    }
    map(vec![
        ("apiVersion", s(api.group())),
        ("kind", s("ClusterConfiguration")),
        ("clusterName", s(&spec.name)),
        ("kubernetesVersion", s(&k.version)),
        ("controlPlaneEndpoint", s(&k.control_plane_endpoint)),
        ("certificatesDir", s("/etc/kubernetes/pki")),
        ("networking", map(networking)),
        ("apiServer", map(vec![("certSANs", list(sans.into_iter().map(s)))])),
        ("etcd", map(vec![("external", map(vec![("endpoints", endpoints), ("caFile", s(CA_FILE)), ("certFile", s(CERT_FILE)), ("keyFile", s(KEY_FILE))]))])),
    ])
}

fn node_registration(spec: &Spec, name: &str) -> Value {
    let mut entries = vec![("name", s(name))];
    // absent, kubeadm detects the runtime itself; a wrong default would break CRI-O nodes
    if let Some(socket) = &spec.kubernetes.cri_socket {
        entries.push(("criSocket", s(socket)));
    }
    if spec.kubernetes.allow_old_etcd {
        // the operator chose an etcd below kubeadm's minimum (a lab cluster): kubeadm's own check
        // would stop init/join, so it is made a warning, by name
        entries.push(("ignorePreflightErrors", list([s("ExternalEtcdVersion")])));
    }
    map(entries)
}

/// `init.yaml`: InitConfiguration for the first node, then the ClusterConfiguration.
pub fn init_document(spec: &Spec, secrets: &JoinSecrets, api: ApiVersion) -> String {
    let first = &spec.kubernetes.control_plane_nodes[0];
    let init = map(vec![
        ("apiVersion", s(api.group())),
        ("kind", s("InitConfiguration")),
        (
            "bootstrapTokens",
            list([map(vec![
                ("token", s(&secrets.bootstrap_token)),
                ("ttl", s("24h0m0s")),
                ("groups", list([s("system:bootstrappers:kubeadm:default-node-token")])),
                ("usages", list([s("signing"), s("authentication")])),
            ])]),
        ),
        ("localAPIEndpoint", local_api_endpoint(first.address, first.bind_port)),
        ("nodeRegistration", node_registration(spec, &first.name)),
        ("certificateKey", s(&secrets.certificate_key)),
    ]);
    to_yaml(&[init, cluster_configuration(spec, api)])
}

/// kubeadm reads a loopback `advertiseAddress` as "the global unicast address on lo" and fails
/// when lo has none, as on most hosts (`SetAPIEndpointDynamicDefaults`; `kubeadm config validate`
/// 1.37.2: "unable to select an IP from lo network interface"). A node given a loopback address
/// (`up --local`) gets none written, and kubeadm takes the host's default-route address.
fn local_api_endpoint(address: std::net::IpAddr, port: u16) -> Value {
    let mut fields = vec![];
    if !address.is_loopback() {
        fields.push(("advertiseAddress", s(address.to_string())));
    }
    fields.push(("bindPort", Value::from(port)));
    map(fields)
}

/// `join-NODE.yaml` for control-plane node `index` (> 0).
pub fn join_document(spec: &Spec, index: usize, secrets: &JoinSecrets, api: ApiVersion) -> String {
    let node = &spec.kubernetes.control_plane_nodes[index];
    let join = map(vec![
        ("apiVersion", s(api.group())),
        ("kind", s("JoinConfiguration")),
        (
            "discovery",
            map(vec![(
                "bootstrapToken",
                map(vec![
                    ("token", s(&secrets.bootstrap_token)),
                    ("apiServerEndpoint", s(&spec.kubernetes.control_plane_endpoint)),
                    ("caCertHashes", list([s(&secrets.ca_cert_hash)])),
                ]),
            )]),
        ),
        ("nodeRegistration", node_registration(spec, &node.name)),
        ("controlPlane", map(vec![("localAPIEndpoint", local_api_endpoint(node.address, node.bind_port)), ("certificateKey", s(&secrets.certificate_key))])),
    ]);
    to_yaml(&[join])
}

/// The runbook from a HEALTHY etcd cluster to a kubeadm control plane, node by node: the load
/// balancer first (with `check lb`), then `kubeadm init` on the first node and a CNI, then each
/// join. A document to read, not a script to run: every step names the machine it runs on.
/// `spec_file` and `out` appear in commands, shell-quoted.
pub fn runbook(spec: &Spec, spec_file: &str, out: &std::path::Path) -> String {
    use crate::plan::sh_quote;
    let k = &spec.kubernetes;
    let q = |p: &std::path::Path| sh_quote(&p.display().to_string());
    let check = format!("etcd-bootstrap -f {} check lb", sh_quote(spec_file));
    let mut s = format!(
        "# Runbook: a kubeadm control plane on the external etcd cluster {name}\n\n\
         Generated by etcd-bootstrap on every `up`. Read it; do not run it as a script: each step names the\n\
         machine it runs on. The etcd cluster is HEALTHY when this is written; check it any time with\n\
         `etcd-bootstrap -f {spec} status`.\n\n\
         ## 1. The load balancer ({ep}), on the load-balancer host\n\n\
         1. Install HAProxy, then copy `{cfg}` to `/etc/haproxy/haproxy.cfg`, and `{lbca}` to\n   `{lbca_dest}` (its health checks verify the API servers with that CA; `haproxy -c` fails until it is there).\n\
         2. `haproxy -c -f /etc/haproxy/haproxy.cfg && systemctl restart haproxy`\n\
         3. On this machine: `{check}` must say `NO-BACKEND` (HAProxy runs; no apiserver yet).\n   `TIMEOUT`: the host or a firewall drops packets. `REFUSED`: nothing listens on the port.\n\n",
        name = spec.name,
        spec = sh_quote(spec_file),
        ep = k.control_plane_endpoint,
        cfg = out.join("haproxy/haproxy.cfg").display(),
        lbca = out.join("haproxy/kubernetes-ca.crt").display(),
        lbca_dest = k.load_balancer_ca_file.display(),
    );
    if k.without_load_balancer() {
        let lb = s.find("## 1. The load balancer").unwrap_or(s.len());
        s.truncate(lb);
        s.push_str(&format!(
            "## 1. No load balancer

             `control_plane_endpoint` ({ep}) is the API server of the only control-plane node: there is no
             HAProxy to set up. A second control-plane node later needs a load balancer in front, and kubeadm
             cannot change `controlPlaneEndpoint` afterwards: prefer a DNS name or LB address from the start.
             `{check}` says `REFUSED` until `kubeadm init` has run.

",
            ep = k.control_plane_endpoint
        ));
    }
    for (i, n) in k.control_plane_nodes.iter().enumerate() {
        let folder = out.join("control-plane").join(&n.name);
        // a node whose user gets root through sudo (`become: sudo`): its host, and sudo where root is needed
        let sudo = if n.become_with.or(spec.become_with) == Some(crate::spec::Become::Sudo) { "sudo " } else { "" };
        let dest = n.host.clone().filter(|h| h != "local" && !sudo.is_empty()).unwrap_or_else(|| format!("root@{}", n.address));
        let copy = format!("tar -C {} -cf - etc | ssh {} '{sudo}tar -C / --no-overwrite-dir --no-same-owner -xpf -'", q(&folder), sh_quote(&dest));
        if i == 0 {
            let init = out.join("kubeadm/init.yaml");
            s.push_str(&format!(
                "## 2. {name} ({addr}): kubeadm init\n\n\
                 1. Copy `{folder}/` onto {name}'s `/`, modes kept (the etcd CA, kube-apiserver's etcd client\n   certificate and key, and the Kubernetes CA with its key), e.g.\n   `{copy}`\n\
                 2. Copy `{init}` to {name} with mode 0600 (it holds the bootstrap token and the certificate key).\n\
                 3. On {name}: `{sudo}kubeadm init --config init.yaml --upload-certs`\n\
                 4. On {name}: install a CNI plugin for the pod subnet {pods} (Calico, Cilium, Flannel: per its\n   documentation). Nodes turn Ready only then: `kubectl get nodes`.\n\
                 5. On this machine: `{check}` must say `READY`.\n\n",
                name = n.name,
                addr = n.address,
                folder = folder.display(),
                init = init.display(),
                pods = k.pod_subnet.as_deref().map(|p| format!("`{p}`")).unwrap_or_else(|| "(none set in the spec: the CNI's default)".into()),
            ));
        } else {
            let join = out.join(format!("kubeadm/join-{}.yaml", n.name));
            s.push_str(&format!(
                "## {step}. {name} ({addr}): kubeadm join\n\n\
                 Within 2 hours of `kubeadm init` (the uploaded certificates expire; later, run\n\
                 `kubeadm init phase upload-certs --upload-certs --certificate-key KEY` on {first} with the key from the join file).\n\n\
                 1. Copy `{folder}/` onto {name}'s `/`, modes kept, e.g.\n   `{copy}`\n\
                 2. Copy `{join}` to {name} with mode 0600.\n\
                 3. On {name}: `{sudo}kubeadm join --config join-{name}.yaml`\n\n",
                step = i + 2,
                name = n.name,
                addr = n.address,
                first = k.control_plane_nodes[0].name,
                folder = folder.display(),
                join = join.display(),
            ));
        }
    }
    s.push_str(&format!(
        "## Done when\n\n\
         - `kubectl get nodes` shows every control-plane node Ready;\n\
         - `{check}` says `READY`;\n\
         - `etcd-bootstrap -f {spec} status` says `HEALTHY`.\n",
        spec = sh_quote(spec_file)
    ));
    s
}

fn to_yaml(docs: &[Value]) -> String {
    docs.iter().map(|d| serde_yaml_ng::to_string(d).unwrap_or_default()).collect::<Vec<_>>().join("---\n")
}

/// kubeadm's validation rules for what we generate (and anything a user edits afterwards).
/// `files_root` is where the control-plane folder mirrors `/` (to check the files exist).
pub fn validate(yaml: &str, files_root: Option<&std::path::Path>) -> Vec<String> {
    let mut problems = Vec::new();
    let docs: Vec<Value> = match serde_yaml_ng::Deserializer::from_str(yaml).map(<Value as serde::Deserialize>::deserialize).collect::<Result<_, _>>() {
        Ok(d) => d,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    for doc in &docs {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if !matches!(api, "kubeadm.k8s.io/v1beta4" | "kubeadm.k8s.io/v1beta3") {
            problems.push(format!("{kind}: apiVersion {api:?} is not kubeadm.k8s.io/v1beta4 or v1beta3"));
        }
        match kind {
            "ClusterConfiguration" => validate_cluster(doc, files_root, &mut problems),
            "InitConfiguration" => {
                for t in doc.get("bootstrapTokens").and_then(Value::as_sequence).into_iter().flatten() {
                    check_token(t.get("token").and_then(Value::as_str).unwrap_or(""), "InitConfiguration.bootstrapTokens", &mut problems);
                }
                check_cert_key(doc.get("certificateKey").and_then(Value::as_str), "InitConfiguration", &mut problems);
                let ep = doc.get("localAPIEndpoint");
                check_ip(
                    ep.and_then(|e| e.get("advertiseAddress")).and_then(Value::as_str),
                    "InitConfiguration.localAPIEndpoint.advertiseAddress",
                    &mut problems,
                );
            }
            "JoinConfiguration" => {
                let bt = doc.get("discovery").and_then(|d| d.get("bootstrapToken"));
                check_token(bt.and_then(|b| b.get("token")).and_then(Value::as_str).unwrap_or(""), "JoinConfiguration.discovery.bootstrapToken", &mut problems);
                let hashes: Vec<&str> =
                    bt.and_then(|b| b.get("caCertHashes")).and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str).collect();
                let skip = bt.and_then(|b| b.get("unsafeSkipCAVerification")).and_then(Value::as_bool).unwrap_or(false);
                if hashes.is_empty() && !skip {
                    problems.push("JoinConfiguration: token discovery without caCertHashes (and without unsafeSkipCAVerification)".into());
                }
                for h in hashes {
                    let ok = h.strip_prefix("sha256:").is_some_and(|x| x.len() == 64 && x.chars().all(|c| c.is_ascii_hexdigit()));
                    if !ok {
                        problems.push(format!("JoinConfiguration: caCertHash {h:?} is not sha256:<64 hex>"));
                    }
                }
                match bt.and_then(|b| b.get("apiServerEndpoint")).and_then(Value::as_str).and_then(split_host_port) {
                    Some(_) => {}
                    None => problems.push("JoinConfiguration.discovery.bootstrapToken.apiServerEndpoint must be HOST:PORT".into()),
                }
                let cp = doc.get("controlPlane");
                check_cert_key(cp.and_then(|c| c.get("certificateKey")).and_then(Value::as_str), "JoinConfiguration.controlPlane", &mut problems);
                check_ip(
                    cp.and_then(|c| c.get("localAPIEndpoint")).and_then(|e| e.get("advertiseAddress")).and_then(Value::as_str),
                    "JoinConfiguration.controlPlane.localAPIEndpoint.advertiseAddress",
                    &mut problems,
                );
            }
            other => problems.push(format!("unexpected kind {other:?}")),
        }
    }
    problems
}

fn validate_cluster(doc: &Value, files_root: Option<&std::path::Path>, problems: &mut Vec<String>) {
    match doc.get("controlPlaneEndpoint").and_then(Value::as_str).and_then(split_host_port) {
        Some(_) => {}
        None => problems.push("ClusterConfiguration.controlPlaneEndpoint must be HOST:PORT of the load balancer".into()),
    }
    let Some(etcd) = doc.get("etcd") else {
        problems.push("ClusterConfiguration.etcd is missing".into());
        return;
    };
    if etcd.get("local").is_some() == etcd.get("external").is_some() {
        problems.push("ClusterConfiguration.etcd: exactly one of local and external".into());
    }
    let Some(ext) = etcd.get("external") else { return };
    let file = |k: &str| ext.get(k).and_then(Value::as_str).map(str::to_string);
    let (ca, cert, key) = (file("caFile"), file("certFile"), file("keyFile"));
    let tls = ca.is_some() || cert.is_some() || key.is_some();
    let endpoints: Vec<&str> = ext.get("endpoints").and_then(Value::as_sequence).into_iter().flatten().filter_map(Value::as_str).collect();
    if endpoints.is_empty() {
        problems.push("etcd.external.endpoints: empty".into());
    }
    for e in endpoints {
        let scheme_ok = e.starts_with("https://") || (!tls && e.starts_with("http://"));
        if !scheme_ok {
            problems.push(format!("etcd.external.endpoints: {e:?} must be an https:// URL when TLS files are set"));
        }
        if e.split("://").nth(1).and_then(split_host_port).is_none() {
            problems.push(format!("etcd.external.endpoints: {e:?} has no host:port"));
        }
    }
    if cert.is_some() != key.is_some() {
        problems.push("etcd.external: certFile and keyFile go together".into());
    }
    if cert.is_some() && ca.is_none() {
        problems.push("etcd.external: caFile is required with certFile/keyFile".into());
    }
    for (k, v) in [("caFile", &ca), ("certFile", &cert), ("keyFile", &key)] {
        if let Some(p) = v {
            if !p.starts_with('/') {
                problems.push(format!("etcd.external.{k}: {p:?} must be an absolute path"));
            } else if let Some(root) = files_root {
                let on_disk = root.join(p.trim_start_matches('/'));
                if !on_disk.is_file() {
                    problems.push(format!("etcd.external.{k}: {p} is not in the control-plane folder ({})", on_disk.display()));
                }
            }
        }
    }
    let net = doc.get("networking");
    for k in ["podSubnet", "serviceSubnet"] {
        if let Some(v) = net.and_then(|n| n.get(k)).and_then(Value::as_str)
            && crate::spec::parse_cidr(v).is_none()
        {
            problems.push(format!("networking.{k}: {v:?} is not a CIDR"));
        }
    }
}

fn check_token(t: &str, what: &str, problems: &mut Vec<String>) {
    let ok = t
        .split_once('.')
        .is_some_and(|(a, b)| a.len() == 6 && b.len() == 16 && (a.chars().chain(b.chars())).all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if !ok {
        problems.push(format!("{what}: token {t:?} does not match [a-z0-9]{{6}}.[a-z0-9]{{16}}"));
    }
}

fn check_cert_key(k: Option<&str>, what: &str, problems: &mut Vec<String>) {
    match k {
        Some(k) if k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit()) => {}
        Some(k) => problems.push(format!("{what}.certificateKey: {k:?} is not 64 hex characters (a 32-byte AES key)")),
        None => {}
    }
}

fn check_ip(v: Option<&str>, what: &str, problems: &mut Vec<String>) {
    let Some(v) = v else { return };
    match v.parse::<std::net::IpAddr>() {
        Err(_) => problems.push(format!("{what}: {v:?} is not an IP address")),
        // as kubeadm reads it: a selector for lo's global address, which most hosts lack
        Ok(ip) if ip.is_loopback() => {
            problems.push(format!("{what}: {v} is loopback: kubeadm takes it as \"a global address on lo\" and fails without one; leave it out"))
        }
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        serde_yaml_ng::from_str(
            "name: prod\nmembers:\n  - {name: etcd-1, address: 10.0.0.11}\n  - {name: etcd-2, address: 10.0.0.12}\n  - {name: etcd-3, address: 10.0.0.13}\nkubernetes: {version: v1.31.2, control_plane_endpoint: 'lb.example.com:6443', pod_subnet: 10.244.0.0/16, control_plane_nodes: [{name: cp-1, address: 10.0.0.21}, {name: cp-2, address: 10.0.0.22}]}\n",
        )
        .unwrap()
    }

    #[test]
    fn the_runbook_says_sudo_where_a_nodes_user_needs_root() {
        let out = std::path::Path::new("/out");
        let plain = runbook(&spec(), "cluster.yaml", out);
        assert!(plain.contains("| ssh root@10.0.0.21 'tar -C /") && plain.contains("`kubeadm init --config") && !plain.contains("sudo"), "{plain}");
        let mut s = spec();
        s.become_with = Some(crate::spec::Become::Sudo);
        s.kubernetes.control_plane_nodes[0].host = Some("ubuntu@10.0.0.21".into());
        let sudo = runbook(&s, "cluster.yaml", out);
        assert!(sudo.contains("| ssh ubuntu@10.0.0.21 'sudo tar -C /") && sudo.contains("`sudo kubeadm init --config"), "{sudo}");
        assert!(sudo.contains("`sudo kubeadm join --config join-cp-2.yaml`"), "{sudo}");
    }

    fn secrets() -> JoinSecrets {
        JoinSecrets::generate(format!("sha256:{}", "ab".repeat(32))).unwrap()
    }

    /// kubeadm 1.37 takes a loopback advertiseAddress as "lo's global address" and fails without
    /// one: a loopback node (`up --local`) gets none, and such an address is refused by the rules.
    #[test]
    fn a_loopback_node_address_is_not_written_as_advertise_address() {
        let mut spec = spec();
        spec.kubernetes.control_plane_nodes[0].address = "127.0.0.101".parse().unwrap();
        spec.kubernetes.control_plane_nodes[1].address = "127.0.0.102".parse().unwrap();
        let init = init_document(&spec, &secrets(), ApiVersion::V1Beta4);
        let join = join_document(&spec, 1, &secrets(), ApiVersion::V1Beta4);
        assert!(!init.contains("advertiseAddress") && init.contains("bindPort: 6443"), "{init}");
        assert!(!join.contains("advertiseAddress") && join.contains("bindPort: 6443"), "{join}");
        assert_eq!(validate(&init, None), Vec::<String>::new());
        let written = init_document(&self::spec(), &secrets(), ApiVersion::V1Beta4).replace("advertiseAddress: 10.0.0.21", "advertiseAddress: 127.0.0.1");
        assert!(validate(&written, None).iter().any(|p| p.contains("127.0.0.1 is loopback")), "{:?}", validate(&written, None));
    }

    #[test]
    fn generated_documents_pass_kubeadms_rules() {
        for api in [ApiVersion::V1Beta4, ApiVersion::V1Beta3] {
            let init = init_document(&spec(), &secrets(), api);
            assert_eq!(validate(&init, None), Vec::<String>::new(), "{init}");
            assert!(
                init.contains("https://10.0.0.12:2379") && init.contains(CERT_FILE) && init.contains("controlPlaneEndpoint: lb.example.com:6443"),
                "{init}"
            );
            let join = join_document(&spec(), 1, &secrets(), api);
            assert_eq!(validate(&join, None), Vec::<String>::new(), "{join}");
            assert!(join.contains(&"kind: JoinConfiguration".to_string()) && join.contains("advertiseAddress: 10.0.0.22"));
        }
    }

    #[test]
    fn cri_socket_only_when_the_spec_sets_one() {
        let mut sp = spec();
        sp.kubernetes.cri_socket = None;
        for api in [ApiVersion::V1Beta4, ApiVersion::V1Beta3] {
            assert!(!init_document(&sp, &secrets(), api).contains("criSocket"), "kubeadm detects the runtime itself");
        }
        sp.kubernetes.cri_socket = Some("unix:///var/run/crio/crio.sock".into());
        assert!(init_document(&sp, &secrets(), ApiVersion::V1Beta4).contains("criSocket: unix:///var/run/crio/crio.sock"));
    }

    #[test]
    fn the_validator_catches_what_kubeadm_would() {
        let bad = init_document(&spec(), &secrets(), ApiVersion::V1Beta4)
            .replace("https://10.0.0.11:2379", "http://10.0.0.11:2379")
            .replace(KEY_FILE, "pki/apiserver-etcd-client.key")
            .replace("controlPlaneEndpoint: lb.example.com:6443", "controlPlaneEndpoint: lb.example.com");
        let p = validate(&bad, None).join("\n");
        assert!(p.contains("must be an https:// URL"), "{p}");
        assert!(p.contains("must be an absolute path"), "{p}");
        assert!(p.contains("controlPlaneEndpoint must be HOST:PORT"), "{p}");
    }

    #[test]
    fn secrets_have_kubeadms_formats() {
        let s = secrets();
        let mut p = vec![];
        check_token(&s.bootstrap_token, "t", &mut p);
        check_cert_key(Some(&s.certificate_key), "k", &mut p);
        assert!(p.is_empty(), "{p:?}");
        assert_ne!(s, secrets(), "random each time");
    }
}

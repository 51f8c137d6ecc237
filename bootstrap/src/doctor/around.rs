//! What is around the etcd members: the API load balancer (`check lb`), the etcd files
//! kube-apiserver holds on each control-plane node the spec can reach, and, for an adopted
//! cluster, every risk `adopt` names.

use super::judge::{self, check};
use super::{Check, Found, Level, Options};
use crate::kube::kubeadm::{CA_FILE, CERT_FILE};
use crate::run::context::Ctx;
use std::time::Duration;

/// How long the load balancer may take to answer.
const LB_LIMIT: Duration = Duration::from_secs(2);

pub fn checks(ctx: &Ctx, opts: &Options) -> Found {
    let mut c = Vec::new();
    if ctx.plan.loaded.spec.adopted.is_some() {
        c.extend(adoption_risks(ctx));
    } else {
        c.extend(load_balancer(ctx));
        c.extend(node_files(ctx, opts));
    }
    (c, vec![])
}

/// `check lb` from here and every node with a host: not ready yet (nothing listens, no backend)
/// is a WARN, as before `kubeadm init`; an answer that is wrong (untrusted, no TLS) a FAIL.
fn load_balancer(ctx: &Ctx) -> Vec<Check> {
    match crate::run::lb::check_lb(ctx.plan, LB_LIMIT) {
        Ok(all) => all
            .iter()
            .map(|v| {
                let level = match v.exit_code() {
                    0 => Level::Ok,
                    1 => Level::Warn,
                    _ => Level::Fail,
                };
                let from = if v.from == "this machine" { None } else { Some(v.from.split(' ').next().unwrap_or(&v.from)) };
                check("load-balancer", from, level, format!("{}: {}", v.state, v.summary), "etcd-bootstrap check lb says what to fix; RUNBOOK.md section 1")
            })
            .collect(),
        Err(e) => vec![check("load-balancer", None, Level::Unknown, e.to_string(), "etcd-bootstrap up writes the Kubernetes CA the check needs")],
    }
}

/// On each control-plane node with a `host`: kube-apiserver's etcd CA file holds a CA the
/// members trust, and its client certificate is signed by one and not expiring.
fn node_files(ctx: &Ctx, opts: &Options) -> Vec<Check> {
    let plan = ctx.plan;
    let trusted = trusted_cas(ctx);
    let nodes: Vec<&crate::spec::NodeSpec> = plan.loaded.spec.kubernetes.control_plane_nodes.iter().filter(|n| n.host.is_some()).collect();
    let read: Vec<Result<crate::host::transport::ScriptOutput, crate::host::transport::TransportError>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|n| s.spawn(move || crate::host::transport::for_node(n).run(&public_files_script(&[CA_FILE, CERT_FILE]), crate::run::live::SCRIPT_LIMIT)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut out = Vec::new();
    for (n, r) in nodes.iter().zip(read) {
        let node = Some(n.name.as_str());
        let files = match r {
            Ok(o) => parse_public_files(&o),
            Err(e) => {
                out.push(check("apiserver-files", node, Level::Unknown, e.to_string(), "check that the node answers (ssh)"));
                continue;
            }
        };
        out.push(judge_node(
            &n.name,
            files.iter().find(|(p, _)| p == CA_FILE).and_then(|(_, c)| c.as_deref()),
            files.iter().find(|(p, _)| p == CERT_FILE).and_then(|(_, c)| c.as_deref()),
            &trusted,
            opts,
        ));
    }
    out
}

/// The CAs the members trust now: the rotation's bundle while one is under way, else the CA.
fn trusted_cas(ctx: &Ctx) -> Vec<Vec<u8>> {
    let bundle = crate::plan::trust_bundle_path(ctx.plan);
    let path = if bundle.exists() { bundle } else { ctx.plan.pki().ca().cert };
    std::fs::read(&path).ok().map(|pem| pki::pemfile::certificates(&pem, &path.display().to_string()).unwrap_or_default()).unwrap_or_default()
}

/// Pure: one node's verdict from its two files (PEM; `None`: missing) and the members' CAs.
pub fn judge_node(node: &str, ca: Option<&[u8]>, cert: Option<&[u8]>, trusted: &[Vec<u8>], opts: &Options) -> Check {
    let n = Some(node);
    let (Some(ca), Some(cert)) = (ca, cert) else {
        return check(
            "apiserver-files",
            n,
            Level::Warn,
            format!("{CA_FILE} or {CERT_FILE} is not there (before kubeadm init?)"),
            "copy out/control-plane/NODE/ to the node (RUNBOOK.md)",
        );
    };
    let node_cas = pki::pemfile::certificates(ca, CA_FILE).unwrap_or_default();
    if !node_cas.iter().any(|c| trusted.contains(c)) {
        return check(
            "apiserver-files",
            n,
            Level::Fail,
            format!("{CA_FILE} holds none of the CAs the members trust: kube-apiserver cannot verify etcd"),
            "copy out/control-plane/NODE/etc/kubernetes/pki/etcd/ca.crt to the node and restart kube-apiserver",
        );
    }
    let Ok(der) = pki::pemfile::first_certificate(cert, CERT_FILE) else {
        return check(
            "apiserver-files",
            n,
            Level::Fail,
            format!("{CERT_FILE} is not a certificate"),
            "copy the control-plane folder's apiserver-etcd-client.crt and .key to the node",
        );
    };
    let signed = trusted.iter().any(|ca| pki::verify::signed_by_der(&der, ca));
    if !signed {
        return check(
            "apiserver-files",
            n,
            Level::Fail,
            format!("{CERT_FILE} is not signed by a CA the members trust: etcd refuses kube-apiserver"),
            "copy the control-plane folder's apiserver-etcd-client.crt and .key to the node and restart kube-apiserver",
        );
    }
    match pki::inspect::cert_info(&der, CERT_FILE) {
        Ok(info) => {
            let mut c = judge::expiry(
                "apiserver-files",
                "kube-apiserver's etcd client certificate expires",
                info.not_after_unix,
                opts.now,
                opts.cert_warn_days,
                "etcd-bootstrap rotate certs, then copy the control-plane folder to the node",
            );
            c.member = Some(node.to_string());
            c
        }
        Err(e) => check("apiserver-files", n, Level::Fail, e.to_string(), "copy the control-plane folder's files to the node"),
    }
}

/// Prints `file=PATH CONTENT` (both base64) or `missing=PATH` for each public file.
fn public_files_script(paths: &[&str]) -> String {
    crate::host::script::Script::of(crate::host::script::body::PUBLIC_FILES).set_words("files", paths).text()
}

fn parse_public_files(out: &crate::host::transport::ScriptOutput) -> Vec<(String, Option<Vec<u8>>)> {
    use crate::adopt::probe::unbase64;
    out.stdout
        .lines()
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("file=") {
                let (p, c) = rest.split_once(' ').unwrap_or((rest, ""));
                Some((String::from_utf8_lossy(&unbase64(p)).into_owned(), Some(unbase64(c))))
            } else {
                l.strip_prefix("missing=").map(|p| (String::from_utf8_lossy(&unbase64(p)).into_owned(), None))
            }
        })
        .collect()
}

/// An adopted cluster: `adopt`'s inventory again, each risk a WARN with its fix.
fn adoption_risks(ctx: &Ctx) -> Vec<Check> {
    let plan = ctx.plan;
    let Some(a) = &plan.loaded.spec.adopted else { return vec![] };
    let req = crate::adopt::Request {
        endpoints: plan.endpoints(),
        cacert: a.cacert.clone(),
        cert: a.cert.clone(),
        key: a.key.clone(),
        hosts: plan.members.iter().map(|m| (m.spec.name.clone(), m.spec.host.clone())).collect(),
        ssh_options: plan.members.iter().find(|m| !m.spec.is_local()).map(|m| m.spec.ssh_options.clone()).unwrap_or_default(),
        become_with: plan.members.iter().find(|m| !m.spec.is_local()).and_then(|m| m.spec.become_with).unwrap_or_default(),
    };
    match crate::adopt::adopt(&req, &crate::progress::Progress::new(true)) {
        Ok(inv) if inv.findings.is_empty() => vec![check("risks", None, Level::Ok, "none of the risks adopt looks for".into(), "")],
        Ok(inv) => inv.findings.iter().map(|f| check("risk", f.member.as_deref(), Level::Warn, f.what.clone(), &f.fix)).collect(),
        Err(e) => vec![check("risks", None, Level::Unknown, e.to_string(), "run etcd-bootstrap adopt with the spec's client files to see why")],
    }
}

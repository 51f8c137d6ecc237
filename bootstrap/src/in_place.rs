//! An adopted member's files, where its operator put them: found again from the running process
//! (its listening socket, as `adopt` found it), read without reading a key, checked, and the
//! renewal of its certificates at their own paths, planned as a pure function.

use crate::adopt::probe::{self, FileFacts};
use crate::context::Ctx;
use crate::error::{BootError, Result};
use crate::plan::MemberPlan;
use crate::spec_adopted::AdoptedMember;
use pki::ca::LeafTemplate;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What an adopted member's host shows now.
#[derive(Debug, Clone)]
pub struct MemberFiles {
    pub pid: u32,
    /// Its TLS files: certificates and CAs with their content, keys with owner, mode and hash.
    pub files: Vec<FileFacts>,
    pub missing: Vec<PathBuf>,
}

impl MemberFiles {
    pub fn file(&self, path: &Path) -> Option<&FileFacts> {
        self.files.iter().find(|f| f.path == path)
    }
}

pub(crate) fn adopted(m: &MemberPlan) -> Result<&AdoptedMember> {
    m.spec.adopted.as_ref().ok_or_else(|| BootError::Precondition { what: m.spec.name.clone(), reason: "not an adopted member".into() })
}

impl Ctx<'_> {
    /// Finds the member's etcd from its client port and reads its TLS files. Refused when the
    /// process's command line is not the one adopted (the spec is stale) or a file is missing.
    pub(crate) fn read_in_place(&self, m: &MemberPlan) -> Result<MemberFiles> {
        let a = adopted(m)?;
        let stale = |why: String| BootError::Precondition {
            what: m.spec.name.clone(),
            reason: format!("{why}; the spec describes it as adopted: run `etcd-bootstrap adopt ... -o NEW-SPEC` again"),
        };
        let out = self.run_on(m, &probe::process_script(&m.spec.address.to_string(), m.spec.client_port))?;
        let facts = probe::parse_process(&out).map_err(|why| stale(format!("no etcd found: {why}")))?;
        if facts.argv.iter().skip(1).ne(a.command_line.iter()) {
            return Err(stale(format!("pid {} runs another command line than the one adopted", facts.pid)));
        }
        let wanted: Vec<(PathBuf, bool)> = a.tls.iter().map(|(k, p)| (p.clone(), !k.contains("key-file"))).collect();
        let out = self.run_on(m, &probe::files_script(facts.pid, &wanted))?;
        let (files, missing, _) = probe::parse_files(&out);
        if !missing.is_empty() {
            return Err(stale(format!("{} missing", missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))));
        }
        Ok(MemberFiles { pid: facts.pid, files, missing })
    }
}

/// `certs check` on an adopted cluster: the operator's CA here, and each member's certificates
/// and trusted CAs on its host (a file used twice is listed once).
pub fn certs_report(ctx: &Ctx, threshold: pki::expiry::Threshold) -> Result<pki::expiry::Report> {
    let a = ctx.plan.loaded.spec.adopted.as_ref().ok_or_else(|| BootError::Precondition { what: "certs check".into(), reason: "not an adopted cluster".into() })?;
    let ca_pem = std::fs::read(&a.cacert).map_err(|e| BootError::Output { path: a.cacert.display().to_string(), reason: e.to_string() })?;
    let ca_der = pki::pemfile::first_certificate(&ca_pem, &a.cacert.display().to_string())?;
    let mut authorities = vec![pki::expiry::check_file("etcd-ca", &a.cacert, a.ca_key.as_deref(), None, None, threshold)];
    let mut certificates = Vec::new();
    for m in &ctx.plan.members {
        let found = ctx.read_in_place(m)?;
        let am = adopted(m)?;
        let sans = vec![format!("IP:{}", m.spec.address)];
        let mut seen: Vec<&PathBuf> = Vec::new();
        for (setting, path) in &am.tls {
            let Some(f) = found.file(path).filter(|_| !setting.contains("key-file") && !setting.contains("crl-file") && !seen.contains(&path)) else { continue };
            seen.push(path);
            let uses: Vec<&str> = am.tls.iter().filter(|(_, p)| *p == path).filter_map(|(k, _)| role_word(k)).collect();
            let label = format!("{}/{}", m.spec.name, uses.join("+"));
            let shown = Path::new(&format!("{}:{}", m.spec.host, path.display())).to_path_buf();
            let pem = f.content.clone().unwrap_or_default();
            if setting.contains("trusted-ca") {
                authorities.push(pki::expiry::check_pem(&label, &shown, &pem, None, None, None, threshold));
            } else {
                certificates.push(pki::expiry::check_pem(&label, &shown, &pem, None, Some(&ca_der), Some(&sans), threshold));
            }
        }
    }
    Ok(pki::expiry::Report { layout: "adopted".into(), certificates, authorities })
}

/// What a TLS file setting is for, in a report's words (`peer-cert-file` -> `peer`).
fn role_word(setting: &str) -> Option<&'static str> {
    Some(match setting {
        "cert-file" => "server",
        "peer-cert-file" => "peer",
        "trusted-ca-file" => "client-ca",
        "peer-trusted-ca-file" => "peer-ca",
        _ => return None,
    })
}

/// One certificate file a member serves with, as found.
#[derive(Debug, Clone)]
pub struct Held {
    pub member: String,
    pub address: IpAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

/// One new certificate and the files it replaces.
#[derive(Debug, Clone)]
pub struct NewLeaf {
    /// (member, certificate file, key file) that receive it.
    pub holders: Vec<(String, PathBuf, PathBuf)>,
    pub template: LeafTemplate,
    /// The certificate it replaces (its key is kept unless `new_key`).
    pub old_der: Vec<u8>,
    pub new_key: bool,
}

/// The renewal, pure: every distinct certificate re-issued with its own subject, SANs and
/// usages for the files that hold it. `split`: a certificate held by several members becomes
/// one per member (CN the member's name, SANs without the other members' addresses, a new
/// key each). `rekey`: new keys for all.
pub fn plan_rotation(held: &[Held], validity: time::Duration, split: bool, rekey: bool) -> std::result::Result<Vec<NewLeaf>, String> {
    let mut leaves: Vec<NewLeaf> = Vec::new();
    for h in held {
        let shared = held.iter().any(|o| o.der == h.der && o.member != h.member);
        let what = format!("{}: {}", h.member, h.cert.display());
        let mut template = pki::renew::template_from_cert(&h.der, validity, &what).map_err(|e| e.to_string())?;
        if split && shared {
            let others: Vec<IpAddr> = held.iter().filter(|o| o.member != h.member).map(|o| o.address).collect();
            template.sans.retain(|s| !matches!(s, rcgen::SanType::IpAddress(ip) if others.contains(ip)));
            template.subject.common_name = h.member.clone();
        }
        let holder = (h.member.clone(), h.cert.clone(), h.key.clone());
        let own = split && shared;
        match leaves.iter_mut().find(|l| l.old_der == h.der && (!own || l.holders.iter().all(|(m, _, _)| *m == h.member))) {
            Some(l) if !l.holders.contains(&holder) => l.holders.push(holder),
            Some(_) => {}
            None => leaves.push(NewLeaf { holders: vec![holder], template, old_der: h.der.clone(), new_key: rekey || own }),
        }
    }
    Ok(leaves)
}

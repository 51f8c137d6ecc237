//! An adopted member's files, where its operator put them: found again from the running process
//! (its listening socket, as `adopt` found it), read without reading a key, checked, and the
//! renewal of its certificates at their own paths, planned as a pure function.

use crate::adopt::probe::{self, FileFacts};
use crate::error::{BootError, Result};
use crate::plan::MemberPlan;
use crate::run::context::Ctx;
use crate::spec::adopted::AdoptedMember;
use pki::ca::LeafTemplate;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    m.adopted()
}

impl Ctx<'_> {
    /// Finds the member's etcd from its client port and reads its TLS files. Refused when the
    /// process's command line is not the one adopted (the spec is stale) or a file is missing.
    pub(crate) fn read_in_place(&self, m: &MemberPlan) -> Result<MemberFiles> {
        let a = adopted(m)?;
        let stale = |why: String| BootError::Precondition {
            what: format!("work on {} in place", m.spec.name),
            reason: format!("{why}; the spec describes it as adopted: run `etcd-bootstrap adopt ... -o NEW-SPEC` again"),
        };
        let out = self.run_on(m, &probe::process_script(&m.spec.address.to_string(), m.spec.client_port))?;
        let facts = probe::parse_process(&out).map_err(|why| stale(format!("no etcd found: {why}")))?;
        // a member `replace` started as a joiner runs with one argument more until its next restart
        let tail = crate::in_place::rejoin::joiner_tail(m)?;
        let argv: Vec<&String> = facts.argv.iter().skip(1).collect();
        let argv = match (argv.split_last(), &tail) {
            (Some((last, rest)), Some(tail)) if *last == tail => rest.to_vec(),
            _ => argv,
        };
        if argv.into_iter().ne(a.command_line.iter()) {
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
    let a =
        ctx.plan.loaded.spec.adopted.as_ref().ok_or_else(|| BootError::Precondition { what: "certs check".into(), reason: "not an adopted cluster".into() })?;
    let ca_pem = std::fs::read(&a.cacert).map_err(crate::error::io("read", &a.cacert))?;
    let ca_der = pki::pemfile::first_certificate(&ca_pem, &a.cacert.display().to_string())?;
    let mut authorities = vec![pki::expiry::check_file("etcd-ca", &a.cacert, a.ca_key.as_deref(), None, None, threshold)];
    let mut certificates = Vec::new();
    for m in &ctx.plan.members {
        let found = ctx.read_in_place(m)?;
        let am = adopted(m)?;
        let sans = vec![format!("IP:{}", m.spec.address)];
        let mut seen: Vec<&PathBuf> = Vec::new();
        for (setting, path) in &am.tls {
            let Some(f) = found.file(path).filter(|_| !setting.contains("key-file") && !setting.contains("crl-file") && !seen.contains(&path)) else {
                continue;
            };
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

/// How an in-place renewal makes keys.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    /// New keys for all.
    pub rekey: bool,
    /// A certificate every member shares becomes one per member (new keys).
    pub split: bool,
}

/// Every certificate file the members serve with, re-issued by `ca` (each must be signed by one
/// of `issuers`, DER) and written back where it is, member by member, each gated on serving the
/// new certificate and answering the health check (HEALTHY at the end). Every member is read and
/// checked before the first change. Returns how many certificates were issued.
pub(crate) fn renew(ctx: &Ctx, ca: &pki::ca::Ca, issuers: &[&[u8]], how: Renewal, wait: Duration) -> Result<usize> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    let (held, found) = read_held(ctx, issuers)?;
    let leaves = plan_rotation(&held, plan.issue.validity, how.split, how.rekey).map_err(refusal)?;
    ctx.changing("renew")?;
    let t = Instant::now();
    let issued = issue(plan, ca, &leaves)?;
    let rekeyed = leaves.iter().filter(|l| l.new_key).count();
    let keys = if rekeyed == 0 { "every key kept".to_string() } else { format!("{rekeyed} with a new key") };
    progress.step("renew", &format!("{} certificates re-issued ({keys})", leaves.len()), Some(t.elapsed()));
    for i in ctx.stopped_at_first(&plan.members, "rotate") {
        let (m, files) = (&plan.members[i], &found[i]);
        ctx.changing(&format!("rotate {}", m.spec.name))?;
        let t = Instant::now();
        let mine: Vec<(String, u32, Vec<u8>)> = issued
            .files
            .iter()
            .filter(|(member, _, _)| *member == m.spec.name)
            // the file's own mode (and, by the script, its owner) is kept
            .map(|(_, path, data)| {
                (path.clone(), files.file(Path::new(path)).and_then(|f| u32::from_str_radix(&f.mode, 8).ok()).unwrap_or(0o600), data.clone())
            })
            .collect();
        ctx.run_on(m, &crate::host::scripts::deliver(&mine))?;
        if let Some((_, der)) = issued.serves.iter().find(|(n, _)| *n == m.spec.name) {
            ctx.wait_serves(m, der, wait)?;
        }
        ctx.wait_member_healthy(m, wait, &format!("rotating {}", m.spec.name))?;
        progress.step(
            &format!("rotate {}", m.name()),
            &format!("{} files renewed in place; serves the new certificate; healthy", mine.len()),
            Some(t.elapsed()),
        );
    }
    ctx.verify_healthy(wait, "rotating every member")?;
    Ok(leaves.len())
}

fn refusal(reason: String) -> BootError {
    BootError::Precondition { what: "renew in place".into(), reason }
}

/// Every member read, and every certificate it serves with found signed by one of `issuers`,
/// before anything changes.
fn read_held(ctx: &Ctx, issuers: &[&[u8]]) -> Result<(Vec<Held>, Vec<MemberFiles>)> {
    let plan = ctx.plan;
    let (mut held, mut found) = (Vec::new(), Vec::new());
    for m in &plan.members {
        let am = adopted(m)?;
        if matches!(am.supervisor, crate::spec::adopted::AdoptedSupervisor::Container) {
            return Err(refusal(format!("{}: its files are inside a container; renew them there", m.spec.name)));
        }
        let files = ctx.read_in_place(m)?;
        for (c, k) in am.leaf_pairs() {
            let (cert, key) = (am.tls[c].clone(), am.tls[k].clone());
            let pem = files.file(&cert).and_then(|f| f.content.clone()).unwrap_or_default();
            let der = pki::pemfile::first_certificate(&pem, &cert.display().to_string())?;
            if !issuers.iter().any(|i| pki::verify::signed_by_der(&der, i)) {
                let ca = plan.loaded.spec.adopted.as_ref().map(|a| a.cacert.display().to_string()).unwrap_or_default();
                return Err(refusal(format!("{}: {} is not signed by the CA {ca}; give the CA that signed it", m.spec.name, cert.display())));
            }
            held.push(Held { member: m.spec.name.clone(), address: m.spec.address, cert, key, der });
        }
        found.push(files);
    }
    Ok((held, found))
}

/// What the renewal writes: (member, path, bytes) and the server certificate each will serve.
struct Issued {
    files: Vec<(String, String, Vec<u8>)>,
    serves: Vec<(String, Vec<u8>)>,
}

/// Signs every planned leaf (the old key's public half, or a new key) and lays out its files.
fn issue(plan: &crate::plan::Plan, ca: &pki::ca::Ca, leaves: &[NewLeaf]) -> Result<Issued> {
    let mut out = Issued { files: Vec::new(), serves: Vec::new() };
    for leaf in leaves {
        let what = leaf.holders[0].1.display().to_string();
        let (issued, key_pem) = if leaf.new_key {
            let key = pki::keys::PrivateKey::generate(plan.issue.algorithm)?;
            (ca.sign(&leaf.template, key.key_pair())?, Some(key.to_pkcs8_pem()))
        } else {
            (pki::renew::reissue_for_same_key(ca, &leaf.template, &leaf.old_der, &what)?, None)
        };
        for (member, cert, key) in &leaf.holders {
            out.files.push((member.clone(), cert.display().to_string(), issued.pem.clone().into_bytes()));
            if let Some(k) = &key_pem {
                out.files.push((member.clone(), key.display().to_string(), k.clone().into_bytes()));
            }
            let am = plan.members.iter().find(|m| &m.spec.name == member).and_then(|m| m.spec.adopted.as_ref());
            if am.and_then(|a| a.tls_file("cert-file")) == Some(cert) {
                out.serves.push((member.clone(), issued.der.clone()));
            }
        }
    }
    Ok(out)
}

/// `ca_pem` as every CA file the member trusts (`trusted-ca-file`, `peer-trusted-ca-file`), at
/// their own paths with their own owner and mode.
pub(crate) fn deliver_trust(ctx: &Ctx, m: &MemberPlan, ca_pem: &[u8]) -> Result<()> {
    let a = adopted(m)?;
    let found = ctx.read_in_place(m)?;
    let mut files: Vec<(String, u32, Vec<u8>)> = Vec::new();
    for setting in ["trusted-ca-file", "peer-trusted-ca-file"] {
        if let Some(path) = a.tls_file(setting).filter(|p| !files.iter().any(|(f, _, _)| Path::new(f) == p.as_path())) {
            let mode = found.file(path).and_then(|f| u32::from_str_radix(&f.mode, 8).ok()).unwrap_or(0o644);
            files.push((path.display().to_string(), mode, ca_pem.to_vec()));
        }
    }
    let out = ctx.run_on(m, &crate::host::scripts::deliver(&files))?;
    if out.ok() { Ok(()) } else { Err(crate::run::live::host_err(m, "delivering its CA files", &out)) }
}

/// A client certificate for the toolkit from `ca`, with the subject and usages of the operator's
/// (`adopted.cert`) and a new key: what operations talk to etcd with once the old CA is gone.
pub(crate) fn issue_own_client(plan: &crate::plan::Plan, ca: &pki::ca::Ca, cert: &Path, key: &Path) -> Result<()> {
    let a =
        plan.loaded.spec.adopted.as_ref().ok_or_else(|| BootError::Precondition { what: "issue a client".into(), reason: "not an adopted cluster".into() })?;
    let old = std::fs::read(&a.cert).map_err(crate::error::io("read", &a.cert))?;
    let der = pki::pemfile::first_certificate(&old, &a.cert.display().to_string())?;
    let template = pki::renew::template_from_cert(&der, plan.issue.validity, &a.cert.display().to_string())?;
    let k = pki::keys::PrivateKey::generate(plan.issue.algorithm)?;
    let issued = ca.sign(&template, k.key_pair())?;
    pki::files::write_all(&[pki::files::PlannedFile::public(cert, issued.pem), pki::files::PlannedFile::secret(key, k.to_pkcs8_pem())], true)?;
    Ok(())
}

/// An adopted member's settings as its running etcd read them (command line, environment,
/// config file), or `None` when they cannot be parsed (judged elsewhere: adopt's risks).
pub fn adopted_settings(
    ctx: &crate::run::context::Ctx,
    m: &crate::plan::MemberPlan,
    what: &str,
) -> crate::error::Result<Option<crate::adopt::effective::Effective>> {
    let a = crate::in_place::rejoin::as_started(ctx, m)?;
    let config = crate::in_place::rejoin::config_text(ctx, m, what)?;
    let argv: Vec<String> = std::iter::once(a.binary.display().to_string()).chain(a.command_line.iter().cloned()).collect();
    let environ: Vec<(String, String)> = a.environment.clone().into_iter().collect();
    Ok(crate::adopt::effective::from_running(&argv, &environ, &a.working_dir, config.as_deref()).ok())
}

pub mod rejoin;

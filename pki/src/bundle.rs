//! Issuing a cluster's whole certificate set into a PKI directory, all-or-nothing.
//!
//! Re-running with the same members changes nothing: certificates that are still valid for their
//! role (signed by this CA, same CN, SANs and usages, matching key, not about to expire) are kept
//! byte for byte. Anything that exists but does not fit is reported, every problem at once, and
//! replaced only with `force`. The CA key is never replaced.

use crate::ca::{Ca, CaOptions};
use crate::cluster::{self, Member, Role};
use crate::error::{PkiError, Result};
use crate::files::{self, Outcome, PlannedFile};
use crate::keys::{KeyAlgorithm, PrivateKey};
use crate::layout::{Layout, PkiDir};
use crate::pemfile;
use crate::verify::leaf_problems;
use std::path::{Path, PathBuf};
use time::Duration;

/// Where the CA comes from.
#[derive(Debug, Clone)]
pub enum CaSource {
    /// Use the CA in the PKI directory; create it (with these options) if there is none.
    InDirOrCreate(CaOptions),
    /// An existing CA elsewhere (kubeadm's, cfssl's, openssl's); its key is not copied.
    Files { cert: PathBuf, key: PathBuf },
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub dir: PathBuf,
    pub layout: Layout,
    pub members: Vec<Member>,
    pub algorithm: KeyAlgorithm,
    pub validity: Duration,
    pub ca: CaSource,
    /// Replace existing certificates that do not fit (never the CA key).
    pub force: bool,
    /// A kept certificate must still be valid for at least this long.
    pub min_remaining: Duration,
}

/// One written (or kept) file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: PathBuf,
    pub what: String,
    pub outcome: Outcome,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct IssueReport {
    pub ca_created: bool,
    pub files: Vec<FileReport>,
    pub issued: usize,
    pub kept: usize,
}

/// Issues (or reuses) the full set for `req.members` under `req.dir`.
pub fn issue_into(req: &IssueRequest) -> Result<IssueReport> {
    cluster::validate_members(&req.members)?;
    // from the first look at the directory to the last write: one writer at a time
    let _lock = crate::lock::lock_dir(&req.dir, crate::lock::DEFAULT_WAIT)?;
    let dir = PkiDir::new(&req.dir, req.layout);
    let roles = cluster::all_roles(&req.members);
    // A new CA's key is generated together with the leaf keys, on all cores (RSA keys are slow).
    let mut new_ca_keys: Option<Vec<PrivateKey>> = None;
    let (ca, ca_created) = match obtain_ca(&dir, &req.ca)? {
        Some(ca) => (ca, false),
        None => {
            let CaSource::InDirOrCreate(opts) = &req.ca else {
                return Err(PkiError::Refused("no CA to sign with".into()));
            };
            let orphans: Vec<String> =
                roles.iter().flat_map(|r| [dir.leaf(r).cert, dir.leaf(r).key]).filter(|p| p.exists()).map(|p| p.display().to_string()).collect();
            if !orphans.is_empty() && !req.force {
                return Err(PkiError::Refused(format!(
                    "there is no CA in {} but certificates exist ({}); restore the CA, pass it with --ca-cert/--ca-key, or re-issue everything with --force",
                    req.dir.display(),
                    orphans.join(", ")
                )));
            }
            let mut keys = if opts.algorithm == req.algorithm {
                cluster::generate_keys(req.algorithm, roles.len() + 1)?
            } else {
                let mut k = vec![PrivateKey::generate(opts.algorithm)?];
                k.extend(cluster::generate_keys(req.algorithm, roles.len())?);
                k
            };
            let ca_key = keys.remove(0);
            new_ca_keys = Some(keys);
            (Ca::create_with_key(opts, ca_key)?, true)
        }
    };

    let mut to_issue: Vec<Role> = Vec::new();
    let mut kept: Vec<(Role, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let fresh = std::fs::read_dir(&req.dir).map(|mut d| d.all(|e| e.is_ok_and(|e| e.file_name() == crate::lock::LOCK_FILE))).unwrap_or(true);
    for role in &roles {
        let pair = dir.leaf(role);
        let (cert, key) = if fresh { (None, None) } else { (read_opt(&pair.cert)?, read_opt(&pair.key)?) };
        match (cert, key) {
            (None, None) => to_issue.push(role.clone()),
            _ if ca_created => to_issue.push(role.clone()), // checked above: --force was given
            (Some(c), Some(k)) => {
                let template = cluster::template(role, &req.members, req.validity)?;
                let what = pair.cert.display().to_string();
                let found = match (pemfile::first_certificate(&c, &what), PrivateKey::from_pem(&k, &pair.key.display().to_string())) {
                    (Ok(der), Ok(key)) => leaf_problems(&ca, &der, Some(&key), &template, req.min_remaining, &what)?,
                    (Err(e), _) | (_, Err(e)) => vec![e.to_string()],
                };
                if found.is_empty() {
                    kept.push((role.clone(), c, k));
                } else if req.force {
                    to_issue.push(role.clone());
                } else {
                    problems.push(format!("{} ({}): {}", pair.cert.display(), role.describe(), found.join("; ")));
                }
            }
            (Some(_), None) | (None, Some(_)) if req.force => to_issue.push(role.clone()),
            (c, _) => {
                let (have, missing) = if c.is_some() { (&pair.cert, &pair.key) } else { (&pair.key, &pair.cert) };
                problems.push(format!("{} exists but {} does not ({})", have.display(), missing.display(), role.describe()));
            }
        }
    }
    if !problems.is_empty() {
        return Err(PkiError::Refused(format!(
            "existing certificates do not fit this cluster; nothing was changed:\n  - {}\n\
             Re-issue them with --force (new keys; the CA is kept), or use another --out directory.",
            problems.join("\n  - ")
        )));
    }

    let issued = match new_ca_keys {
        Some(keys) => cluster::issue_with_keys(&ca, &req.members, &to_issue, keys, req.validity)?,
        None => cluster::issue(&ca, &req.members, &to_issue, req.algorithm, req.validity)?,
    };
    let mut plan: Vec<(PlannedFile, String)> = Vec::new();
    if ca_created {
        let pair = dir.ca();
        plan.push((PlannedFile::public(&pair.cert, ca.cert_pem()), "CA certificate".into()));
        plan.push((PlannedFile::ca_key(&pair.key, key_pem(ca.key(), req.layout)?), "CA key (keep it here)".into()));
    } else if !dir.ca().cert.exists() {
        plan.push((PlannedFile::public(dir.ca().cert, ca.cert_pem()), "CA certificate (copy)".into()));
    }
    for m in &req.members {
        let path = dir.ca_copy_in(&dir.member_dir(&m.name));
        plan.push((PlannedFile::public(path, ca.cert_pem()), format!("CA certificate for member {}", m.name)));
    }
    let cp = dir.ca_copy_in(&dir.control_plane_dir());
    plan.push((PlannedFile::public(cp, ca.cert_pem()), "CA certificate for kube-apiserver".into()));
    for leaf in &issued {
        let pair = dir.leaf(&leaf.role);
        plan.push((PlannedFile::public(&pair.cert, leaf.cert.pem.as_bytes()), leaf.role.describe()));
        plan.push((PlannedFile::secret(&pair.key, key_pem(&leaf.key, req.layout)?), format!("key of the {}", leaf.role.describe())));
    }
    for (role, cert, key) in &kept {
        let pair = dir.leaf(role);
        plan.push((PlannedFile::public(&pair.cert, cert.clone()), role.describe()));
        plan.push((PlannedFile::secret(&pair.key, key.clone()), format!("key of the {}", role.describe())));
    }
    let files_only: Vec<PlannedFile> = plan.iter().map(|(f, _)| f.clone()).collect();
    let outcomes = files::write_all(&files_only, req.force)?;
    Ok(IssueReport {
        ca_created,
        files: plan.into_iter().zip(outcomes).map(|((f, what), outcome)| FileReport { path: f.path, what, outcome, mode: f.mode }).collect(),
        issued: issued.len(),
        kept: kept.len(),
    })
}

fn key_pem(key: &PrivateKey, layout: Layout) -> Result<Vec<u8>> {
    Ok(match layout {
        Layout::Kubeadm => key.to_pkcs8_pem().into_bytes(),
        Layout::Cfssl => key.to_cfssl_pem()?.into_bytes(),
    })
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match crate::files::read_input(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read { path: path.into(), source }),
    }
}

/// Loads the CA the request names, or the one in the directory; `None` = one must be created.
fn obtain_ca(dir: &PkiDir, source: &CaSource) -> Result<Option<Ca>> {
    match source {
        CaSource::Files { cert, key } => Ok(Some(Ca::load_files(cert, key)?)),
        CaSource::InDirOrCreate(_) => {
            let pair = dir.ca();
            match (pair.cert.exists(), pair.key.exists()) {
                (true, true) => Ok(Some(Ca::load_files(&pair.cert, &pair.key)?)),
                (false, false) => Ok(None),
                (true, false) => Err(PkiError::Exists {
                    path: pair.cert.clone(),
                    hint: format!("but its key {} is missing; restore the key, or pass the CA with --ca-cert/--ca-key", pair.key.display()),
                }),
                (false, true) => Err(PkiError::Exists {
                    path: pair.key.clone(),
                    hint: format!("but the CA certificate {} is missing; restore it (a CA key is never replaced)", pair.cert.display()),
                }),
            }
        }
    }
}

/// Creates a new CA in `dir`. Refuses if there is any CA there already: a CA key is never replaced.
pub fn init_ca(dir: &Path, layout: Layout, opts: &CaOptions) -> Result<Vec<FileReport>> {
    let pki_dir = PkiDir::new(dir, layout);
    let pair = pki_dir.ca();
    let _lock = crate::lock::lock_dir(dir, crate::lock::DEFAULT_WAIT)?;
    for p in [&pair.cert, &pair.key] {
        if p.exists() {
            return Err(PkiError::Exists {
                path: p.clone(),
                hint: "a CA is there already and is never replaced; use another --out, or `pki issue` to use it".into(),
            });
        }
    }
    let ca = Ca::create(opts)?;
    let files = vec![
        (PlannedFile::public(&pair.cert, ca.cert_pem()), "CA certificate"),
        (PlannedFile::ca_key(&pair.key, key_pem(ca.key(), layout)?), "CA key (keep it here)"),
    ];
    let planned: Vec<PlannedFile> = files.iter().map(|(f, _)| f.clone()).collect();
    let outcomes = files::write_all(&planned, false)?;
    Ok(files.into_iter().zip(outcomes).map(|((f, what), outcome)| FileReport { path: f.path, what: what.into(), outcome, mode: f.mode }).collect())
}

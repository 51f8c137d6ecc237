//! `check-expiration`: every certificate of a PKI directory (kubeadm or cfssl layout) with its
//! expiry, residual time and CA, like `kubeadm certs check-expiration` — plus the checks kubeadm
//! does not make: the chain (signed by this CA), key/certificate match, and SANs still covering
//! the members' addresses.

use crate::ca::fmt_time;
use crate::cluster::{Member, Role};
use crate::error::{PkiError, Result};
use crate::hosts::san_text;
use crate::inspect::cert_info;
use crate::keys::PrivateKey;
use crate::layout::{Layout, PkiDir};
use crate::pemfile;
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// When a certificate counts as expiring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Less than this much time left.
    Within(Duration),
    /// This fraction (0..1) of its lifetime has passed.
    LifetimeUsed(f64),
}

impl std::str::FromStr for Threshold {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| format!("--within {s:?}: expected e.g. 30d or 66%"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("--within {s:?}: a percentage is 0..100"));
            }
            return Ok(Threshold::LifetimeUsed(v / 100.0));
        }
        crate::validity::parse_duration(s, "--within").map(Threshold::Within).map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Expiring,
    Expired,
    Invalid,
}

/// One certificate's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub certificate: String,
    pub path: PathBuf,
    pub expires: String,
    pub residual: String,
    pub residual_seconds: i64,
    pub authority: String,
    pub status: Status,
    pub problems: Vec<String>,
}

impl Checked {
    /// A certificate that is missing or cannot be read: invalid, with why.
    fn unusable(name: &str, path: &Path, problem: String) -> Checked {
        Checked {
            certificate: name.into(),
            path: path.into(),
            expires: "-".into(),
            residual: "-".into(),
            residual_seconds: 0,
            authority: "-".into(),
            status: Status::Invalid,
            problems: vec![problem],
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub layout: String,
    pub certificates: Vec<Checked>,
    pub authorities: Vec<Checked>,
}

impl Report {
    /// 0 all fine, 1 something expiring, 2 something expired or invalid.
    pub fn exit_code(&self) -> u8 {
        match self.certificates.iter().chain(&self.authorities).map(|c| c.status).max() {
            Some(Status::Expired | Status::Invalid) => crate::exit::CRITICAL,
            Some(Status::Expiring) => crate::exit::WARNING,
            _ => crate::exit::OK,
        }
    }
}

fn status_of(not_before: i64, not_after: i64, now: i64, threshold: Threshold) -> Status {
    if now >= not_after {
        return Status::Expired;
    }
    let expiring = match threshold {
        Threshold::Within(d) => not_after - now < d.whole_seconds(),
        Threshold::LifetimeUsed(f) => {
            let life = (not_after - not_before).max(1) as f64;
            (now - not_before) as f64 / life >= f
        }
    };
    if expiring { Status::Expiring } else { Status::Ok }
}

/// One certificate file (and its key, when given) checked: expiry, the CA's signature, SANs.
pub fn check_file(name: &str, cert: &Path, key: Option<&Path>, ca_der: Option<&[u8]>, expected_sans: Option<&[String]>, threshold: Threshold) -> Checked {
    match crate::files::read_input(cert) {
        Ok(pem) => check_pem(name, cert, &pem, key, ca_der, expected_sans, threshold),
        Err(e) => Checked::unusable(name, cert, format!("cannot read: {e}")),
    }
}

/// [`check_file`] for a certificate already read (`cert` names where it came from; a host's
/// file read over SSH).
pub fn check_pem(
    name: &str,
    cert: &Path,
    pem: &[u8],
    key: Option<&Path>,
    ca_der: Option<&[u8]>,
    expected_sans: Option<&[String]>,
    threshold: Threshold,
) -> Checked {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let what = cert.display().to_string();
    let mut problems = Vec::new();
    let parsed = pemfile::first_certificate(pem, &what).map_err(|e| e.to_string());
    let der = match parsed {
        Ok(d) => d,
        Err(e) => {
            return Checked::unusable(name, cert, e);
        }
    };
    let info = match cert_info(&der, &what) {
        Ok(i) => i,
        Err(e) => {
            return Checked::unusable(name, cert, e.to_string());
        }
    };
    if let Some(ca) = ca_der
        && !crate::verify::signed_by_der(&der, ca)
    {
        problems.push("not signed by the CA in this directory".into());
    }
    if let Some(key) = key {
        match crate::files::read_input(key)
            .map_err(|e| e.to_string())
            .and_then(|b| PrivateKey::from_pem(&b, &key.display().to_string()).map_err(|e| e.to_string()))
        {
            Ok(k) => {
                if x509_parser::parse_x509_certificate(&der).map(|(_, x)| x.public_key().subject_public_key.data.as_ref() != k.public_key_raw()).unwrap_or(true)
                {
                    problems.push(format!("key {} does not match", key.display()));
                }
            }
            Err(e) => problems.push(format!("key: {e}")),
        }
    }
    if let Some(want) = expected_sans {
        let missing: Vec<&String> = want.iter().filter(|w| !info.typed_sans.contains(w)).collect();
        if !missing.is_empty() {
            problems.push(format!("SANs no longer cover {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")));
        }
    }
    let mut status = status_of(info.not_before_unix, info.not_after_unix, now, threshold);
    if !problems.is_empty() {
        status = Status::Invalid;
    }
    let residual = info.not_after_unix - now;
    Checked {
        certificate: name.into(),
        path: cert.into(),
        expires: fmt_time(OffsetDateTime::from_unix_timestamp(info.not_after_unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)),
        residual: if residual < 0 { "expired".into() } else { crate::validity::human(Duration::seconds(residual)) },
        residual_seconds: residual,
        authority: if info.is_ca && info.cfssl.issuer.text == info.cfssl.subject.text {
            "-".into()
        } else {
            crate::inspect::escape_control(&info.cfssl.issuer.common_name)
        },
        status,
        problems,
    }
}

/// The members found in `members/` (names only; no addresses known).
fn discovered_members(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("members"))
        .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Checks every certificate in `dir`. `members` (with addresses) enables the SAN coverage check.
pub fn check_dir(dir: &Path, members: Option<&[Member]>, threshold: Threshold) -> Result<Report> {
    let layout = PkiDir::detect(dir)
        .ok_or_else(|| PkiError::bad_input(dir.display().to_string(), "no CA found (neither etcd/ca.crt nor ca.pem): is this a PKI directory?"))?;
    let pki = PkiDir::new(dir, layout);
    let ca_pair = pki.ca();
    let ca_der = crate::files::read_input(&ca_pair.cert).ok().and_then(|b| pemfile::first_certificate(&b, "CA").ok());
    let ca_key = ca_pair.key.exists().then_some(ca_pair.key.as_path());
    let authorities = vec![check_file("etcd-ca", &ca_pair.cert, ca_key, None, None, threshold)];
    let names: Vec<String> = match members {
        Some(m) => m.iter().map(|m| m.name.clone()).collect(),
        None => discovered_members(dir),
    };
    let mut roles: Vec<Role> = Vec::new();
    for n in &names {
        roles.push(Role::Server(n.clone()));
        roles.push(Role::Peer(n.clone()));
    }
    roles.push(Role::ApiserverEtcdClient);
    roles.push(Role::HealthcheckClient);
    let mut certificates = Vec::new();
    for role in roles {
        let pair = pki.leaf(&role);
        if !pair.cert.exists() {
            if matches!(role, Role::HealthcheckClient) {
                continue; // optional
            }
            certificates.push(Checked::unusable(&label(&role), &pair.cert, "missing".into()));
            continue;
        }
        let expected: Option<Vec<String>> = match (&role, members) {
            (Role::Server(n) | Role::Peer(n), Some(ms)) => ms.iter().find(|m| &m.name == n).map(|m| m.sans().iter().map(san_text).collect()),
            _ => None,
        };
        certificates.push(check_file(&label(&role), &pair.cert, Some(pair.key.as_path()), ca_der.as_deref(), expected.as_deref(), threshold));
    }
    Ok(Report { layout: if layout == Layout::Kubeadm { "kubeadm".into() } else { "cfssl".into() }, certificates, authorities })
}

fn label(role: &Role) -> String {
    match role {
        Role::Server(m) => format!("{m}/server"),
        Role::Peer(m) => format!("{m}/peer"),
        Role::ApiserverEtcdClient => "apiserver-etcd-client".into(),
        Role::HealthcheckClient => "etcd/healthcheck-client".into(),
    }
}

/// kubeadm-style tables.
/// kubeadm's two tables; an adopted cluster's files lie where its operator put them, so its
/// report shows each certificate's file (`HOST:PATH`) beside its role.
pub fn render_table(r: &Report) -> String {
    let with_path = r.layout == "adopted";
    let path = |c: &Checked| if with_path { vec![c.path.display().to_string()] } else { vec![] };
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    let file: &[&str] = if with_path { &["FILE"] } else { &[] };
    t.set_header([&["CERTIFICATE"][..], file, &["EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "STATUS", "PROBLEMS"]].concat());
    for c in &r.certificates {
        t.add_row(
            [
                vec![c.certificate.clone()],
                path(c),
                vec![c.expires.clone(), c.residual.clone(), c.authority.clone(), format!("{:?}", c.status).to_lowercase(), c.problems.join("; ")],
            ]
            .concat(),
        );
    }
    let mut a = comfy_table::Table::new();
    a.load_preset(comfy_table::presets::NOTHING);
    a.set_header([&["CERTIFICATE AUTHORITY"][..], file, &["EXPIRES", "RESIDUAL TIME", "STATUS", "PROBLEMS"]].concat());
    for c in &r.authorities {
        a.add_row(
            [
                vec![c.certificate.clone()],
                path(c),
                vec![c.expires.clone(), c.residual.clone(), format!("{:?}", c.status).to_lowercase(), c.problems.join("; ")],
            ]
            .concat(),
        );
    }
    format!("{}\n\n{}\n", t.trim_fmt(), a.trim_fmt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let day = 86_400;
        assert_eq!(status_of(0, 100 * day, 50 * day, Threshold::Within(Duration::days(30))), Status::Ok);
        assert_eq!(status_of(0, 100 * day, 80 * day, Threshold::Within(Duration::days(30))), Status::Expiring);
        assert_eq!(status_of(0, 100 * day, 100 * day, Threshold::Within(Duration::days(30))), Status::Expired);
        assert_eq!(status_of(0, 100 * day, 70 * day, Threshold::LifetimeUsed(0.66)), Status::Expiring);
        assert_eq!("66%".parse::<Threshold>().unwrap(), Threshold::LifetimeUsed(0.66));
        assert_eq!("30d".parse::<Threshold>().unwrap(), Threshold::Within(Duration::days(30)));
        assert!("abc".parse::<Threshold>().is_err());
    }
}

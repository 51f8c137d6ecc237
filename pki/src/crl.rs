//! Revocation: `revoked.json` beside the CA records what was revoked (serial, reason, when), and
//! the CRL — signed by the CA — is regenerated from it, twice: `crl.pem` for people and openssl,
//! and `crl.der`, the same bytes undecorated, for etcd: etcd 3.6 and later read their
//! `--client-crl-file`/`--peer-crl-file` with Go's `x509.ParseRevocationList`, which takes DER
//! only ("x509: malformed crl" for a PEM file, and every TLS handshake is then refused); 3.4 and
//! 3.5's `x509.ParseCRL` take either. etcd reads the file on every new connection, so delivering a
//! new CRL takes effect at once.

use crate::ca::Ca;
use crate::error::{PkiError, Result};
use crate::files::{self, PlannedFile};
use crate::layout::{Layout, PkiDir};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedEntry {
    /// Hex, as certinfo prints it (colons optional).
    pub serial: String,
    pub reason: String,
    pub revoked_at: i64,
    #[serde(default)]
    pub subject: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RevocationState {
    pub crl_number: u64,
    pub revoked: Vec<RevokedEntry>,
}

/// Where the state and the CRL live in a PKI directory.
/// The DER copy of the CRL at `crl_pem` (`crl.der` beside it): the file etcd is pointed at.
pub fn der_path(crl_pem: &Path) -> PathBuf {
    crl_pem.with_file_name("crl.der")
}

pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    match PkiDir::detect(dir).unwrap_or(Layout::Kubeadm) {
        Layout::Kubeadm => (dir.join("etcd/revoked.json"), dir.join("etcd/crl.pem")),
        Layout::Cfssl => (dir.join("revoked.json"), dir.join("crl.pem")),
    }
}

/// What `revoke` adds to the CRL: each certificate file (refused unless `ca` issued it: a CRL
/// can only revoke its own certificates) and each `--serial`, with `reason` (checked) and `now`.
pub fn entries_for(files: &[PathBuf], serials: &[String], reason: &str, ca: &Ca, now: i64) -> Result<Vec<RevokedEntry>> {
    parse_reason(reason).map_err(|e| PkiError::bad_input("--reason", e))?;
    let mut entries = Vec::new();
    for f in files {
        let shown = f.display().to_string();
        let bytes = files::read_input(f).map_err(|source| PkiError::Read { path: f.clone(), source })?;
        let der = crate::pemfile::first_certificate(&bytes, &shown)?;
        let info = crate::inspect::cert_info(&der, &shown)?;
        if !crate::verify::signed_by(&der, ca) {
            return Err(PkiError::Refused(format!("{shown} was not issued by this CA; a CRL can only revoke its own certificates")));
        }
        entries.push(RevokedEntry { serial: info.serial_hex, reason: reason.to_string(), revoked_at: now, subject: info.cfssl.subject.text });
    }
    entries.extend(serials.iter().map(|s| RevokedEntry { serial: s.clone(), reason: reason.to_string(), revoked_at: now, subject: String::new() }));
    if entries.is_empty() {
        return Err(PkiError::Refused("name certificate files or --serial to revoke".into()));
    }
    Ok(entries)
}

pub fn parse_reason(s: &str) -> std::result::Result<RevocationReason, String> {
    Ok(match s {
        "unspecified" => RevocationReason::Unspecified,
        "key-compromise" | "keyCompromise" => RevocationReason::KeyCompromise,
        "affiliation-changed" | "affiliationChanged" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessation-of-operation" | "cessationOfOperation" => RevocationReason::CessationOfOperation,
        "certificate-hold" | "certificateHold" => RevocationReason::CertificateHold,
        "privilege-withdrawn" | "privilegeWithdrawn" => RevocationReason::PrivilegeWithdrawn,
        other => {
            return Err(format!(
                "unknown reason {other:?}; use unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation, certificate-hold, privilege-withdrawn"
            ));
        }
    })
}

fn serial_bytes(hex_serial: &str) -> Result<Vec<u8>> {
    let clean: String = hex_serial.chars().filter(|c| *c != ':').collect();
    hex::decode(&clean).map_err(|_| PkiError::bad_input("--serial", format!("{hex_serial:?} is not a hex serial (as `pki certinfo` prints it)")))
}

fn load_state(path: &Path) -> Result<RevocationState> {
    match crate::files::read_input(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| PkiError::Json { file: path.display().to_string(), reason: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RevocationState::default()),
        Err(source) => Err(PkiError::Read { path: path.into(), source }),
    }
}

/// Adds entries (skipping serials already revoked) and rewrites the CRL. Returns the CRL path.
pub fn revoke(dir: &Path, ca: &Ca, entries: Vec<RevokedEntry>) -> Result<PathBuf> {
    if !ca.can_sign_crl() {
        return Err(PkiError::bad_ca("certificate", "its keyUsage lacks cRLSign, so it cannot sign a CRL"));
    }
    let _lock = crate::lock::lock_dir(dir, crate::lock::DEFAULT_WAIT)?;
    let (state_path, _) = paths(dir);
    let mut state = load_state(&state_path)?;
    for e in entries {
        serial_bytes(&e.serial)?;
        let norm = |s: &str| s.replace(':', "").to_ascii_lowercase();
        if !state.revoked.iter().any(|r| norm(&r.serial) == norm(&e.serial)) {
            state.revoked.push(e);
        }
    }
    write_crl(dir, ca, state)
}

/// (Re)writes the CRL from the recorded state (an empty CRL when nothing is revoked).
pub fn refresh(dir: &Path, ca: &Ca) -> Result<PathBuf> {
    let _lock = crate::lock::lock_dir(dir, crate::lock::DEFAULT_WAIT)?;
    let (state_path, _) = paths(dir);
    let state = load_state(&state_path)?;
    write_crl(dir, ca, state)
}

fn write_crl(dir: &Path, ca: &Ca, mut state: RevocationState) -> Result<PathBuf> {
    let (state_path, crl_path) = paths(dir);
    state.crl_number += 1;
    let now = time::OffsetDateTime::now_utc();
    let mut revoked = Vec::new();
    for e in &state.revoked {
        revoked.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial_bytes(&e.serial)?),
            revocation_time: time::OffsetDateTime::from_unix_timestamp(e.revoked_at).unwrap_or(now),
            reason_code: parse_reason(&e.reason).ok(),
            invalidity_date: None,
        });
    }
    let (_, x) = x509_parser::parse_x509_certificate(ca.cert_der()).map_err(|e| PkiError::bad_ca("certificate", e))?;
    let ski = x.iter_extensions().find_map(|ext| match ext.parsed_extension() {
        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    });
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(5),
        next_update: now + time::Duration::days(365),
        crl_number: SerialNumber::from_slice(&state.crl_number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: ski.map(KeyIdMethod::PreSpecified).unwrap_or(KeyIdMethod::Sha256),
    };
    let crl = params.signed_by(&ca.issuer()?).map_err(|e| PkiError::crypto("signing the CRL", e))?;
    let pem = crate::pemfile::encode("X509 CRL", crl.der());
    let json = serde_json::to_string_pretty(&state).map_err(|e| PkiError::crypto("revocation state", e))? + "\n";
    let der = der_path(&crl_path);
    files::write_all(&[PlannedFile::public(&state_path, json), PlannedFile::public(&crl_path, pem), PlannedFile::public(&der, crl.der().to_vec())], true)?;
    Ok(crl_path)
}

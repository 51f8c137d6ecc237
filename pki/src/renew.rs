//! `renew`: re-issues leaves with the same subject, SANs and usages as the certificate they
//! replace — keeping the key by default (`rekey` for a new one) — and keeps the previous files as
//! timestamped backups. All files of one renewal are written together, atomically.

use crate::ca::{Ca, LeafTemplate, Subject};
use crate::cluster::Role;
use crate::error::{PkiError, Result};
use crate::files::{self, PlannedFile};
use crate::keys::PrivateKey;
use crate::layout::{Layout, PkiDir};
use crate::pemfile;
use crate::usage::{ExtendedPurpose, KeyBit, Usage, UsageSet};
use ::time::Duration;
use rcgen::SanType;
use std::path::{Path, PathBuf};
use x509_parser::prelude::*;

/// What was renewed.
#[derive(Debug, Clone)]
pub struct Renewed {
    pub role: Role,
    pub cert: PathBuf,
    pub backups: Vec<PathBuf>,
    pub serial: String,
    pub not_after: String,
    pub rekeyed: bool,
}

/// The template that reproduces `der`: same subject, SANs, key usage and extended key usage.
pub fn template_from_cert(der: &[u8], validity: Duration, what: &str) -> Result<LeafTemplate> {
    let (_, x) = parse_x509_certificate(der).map_err(|e| PkiError::bad_input(what, format!("not a certificate: {e}")))?;
    let all = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| -> Vec<String> { it.filter_map(|a| a.as_str().ok().map(str::to_string)).collect() };
    let s = x.subject();
    let subject = Subject {
        common_name: all(&mut s.iter_common_name()).into_iter().next().unwrap_or_default(),
        country: all(&mut s.iter_country()),
        state: all(&mut s.iter_state_or_province()),
        locality: all(&mut s.iter_locality()),
        organization: all(&mut s.iter_organization()),
        organizational_unit: all(&mut s.iter_organizational_unit()),
    };
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = x.subject_alternative_name() {
        for g in &ext.value.general_names {
            let san = match g {
                GeneralName::DNSName(d) => d.to_string().try_into().map(SanType::DnsName).ok(),
                GeneralName::IPAddress(b) if b.len() == 4 => <[u8; 4]>::try_from(*b).ok().map(|a| SanType::IpAddress(a.into())),
                GeneralName::IPAddress(b) if b.len() == 16 => <[u8; 16]>::try_from(*b).ok().map(|a| SanType::IpAddress(a.into())),
                GeneralName::RFC822Name(e) => e.to_string().try_into().map(SanType::Rfc822Name).ok(),
                GeneralName::URI(u) => u.to_string().try_into().map(SanType::URI).ok(),
                _ => None,
            };
            match san {
                Some(s) => sans.push(s),
                None => return Err(PkiError::bad_input(what, format!("cannot carry SAN {g} over"))),
            }
        }
    }
    let mut usages = Vec::new();
    if let Ok(Some(ku)) = x.key_usage() {
        let k = ku.value;
        for (set, bit) in [
            (k.digital_signature(), KeyBit::DigitalSignature),
            (k.non_repudiation(), KeyBit::ContentCommitment),
            (k.key_encipherment(), KeyBit::KeyEncipherment),
            (k.data_encipherment(), KeyBit::DataEncipherment),
            (k.key_agreement(), KeyBit::KeyAgreement),
        ] {
            if set {
                usages.push(Usage::Key(bit));
            }
        }
    }
    if let Ok(Some(eku)) = x.extended_key_usage() {
        let e = eku.value;
        for (set, p) in [
            (e.server_auth, ExtendedPurpose::ServerAuth),
            (e.client_auth, ExtendedPurpose::ClientAuth),
            (e.code_signing, ExtendedPurpose::CodeSigning),
            (e.email_protection, ExtendedPurpose::EmailProtection),
            (e.time_stamping, ExtendedPurpose::TimeStamping),
            (e.ocsp_signing, ExtendedPurpose::OcspSigning),
            (e.any, ExtendedPurpose::Any),
        ] {
            if set {
                usages.push(Usage::Extended(p));
            }
        }
    }
    if x.is_ca() {
        return Err(PkiError::Refused(format!("{what} is a CA certificate; renew leaves only (a CA is re-created, never silently renewed)")));
    }
    Ok(LeafTemplate { subject, sans, usages: UsageSet::from_usages(&usages), validity, ca_constraint: None })
}

/// Parses a renewal target: `etcd-1` (server and peer), `etcd-1/server`, `etcd-1/peer`,
/// `apiserver-etcd-client`, `healthcheck-client`.
pub fn parse_target(t: &str) -> std::result::Result<Vec<Role>, String> {
    Ok(match t {
        "apiserver-etcd-client" => vec![Role::ApiserverEtcdClient],
        "healthcheck-client" | "etcd/healthcheck-client" => vec![Role::HealthcheckClient],
        other => match other.split_once('/') {
            Some((m, "server")) => vec![Role::Server(m.into())],
            Some((m, "peer")) => vec![Role::Peer(m.into())],
            Some((_, kind)) => return Err(format!("unknown certificate {kind:?} in {t:?}; use MEMBER/server or MEMBER/peer")),
            None if !other.is_empty() => vec![Role::Server(other.into()), Role::Peer(other.into())],
            None => return Err("empty target".into()),
        },
    })
}

/// `FILE.STAMP.bak`, or `FILE.STAMP-N.bak` if that exists: a backup never replaces a backup
/// (the caller holds the directory's lock, and the files are written create-only as well).
fn backup_name(path: &Path, stamp: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    (1..)
        .map(|n| if n == 1 { format!("{name}.{stamp}.bak") } else { format!("{name}.{stamp}-{n}.bak") })
        .map(|candidate| path.with_file_name(candidate))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or_else(|| path.with_file_name(format!("{name}.{stamp}.bak")))
}

/// Every leaf present in `dir`.
pub fn all_targets(dir: &PkiDir) -> Vec<Role> {
    let mut roles = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir.root.join("members"))
        .map(|rd| rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    for n in names {
        roles.push(Role::Server(n.clone()));
        roles.push(Role::Peer(n));
    }
    roles.push(Role::ApiserverEtcdClient);
    roles.push(Role::HealthcheckClient);
    roles.into_iter().filter(|r| dir.leaf(r).cert.exists()).collect()
}

/// Renews `roles` in `dir` with `ca`; all files written together.
pub fn renew(dir: &Path, ca: &Ca, roles: &[Role], validity: Duration, rekey: bool) -> Result<Vec<Renewed>> {
    let _lock = crate::lock::lock_dir(dir, crate::lock::DEFAULT_WAIT)?;
    let layout = PkiDir::detect(dir).unwrap_or(Layout::Kubeadm);
    let pki = PkiDir::new(dir, layout);
    let stamp = {
        let f = ::time::macros::format_description!("[year][month][day]T[hour][minute][second]");
        ::time::OffsetDateTime::now_utc().format(&f).unwrap_or_default()
    };
    let issuer = ca.issuer()?;
    let mut planned = Vec::new();
    let mut out = Vec::new();
    for role in roles {
        let pair = pki.leaf(role);
        let what = pair.cert.display().to_string();
        let cert_pem = crate::files::read_input(&pair.cert).map_err(|source| PkiError::Read { path: pair.cert.clone(), source })?;
        let key_pem = crate::files::read_input(&pair.key).map_err(|source| PkiError::Read { path: pair.key.clone(), source })?;
        let der = pemfile::first_certificate(&cert_pem, &what)?;
        let template = template_from_cert(&der, validity, &what)?;
        let old_key = PrivateKey::from_pem(&key_pem, &pair.key.display().to_string())?;
        let key = if rekey { PrivateKey::generate(old_key.algorithm())? } else { old_key };
        let issued = ca.sign_with(&issuer, &template, key.key_pair())?;
        let cert_backup = backup_name(&pair.cert, &stamp);
        let mut backups = vec![cert_backup.clone()];
        planned.push(PlannedFile { create_only: true, ..PlannedFile::public(cert_backup, cert_pem.clone()) });
        planned.push(PlannedFile::public(&pair.cert, issued.pem.clone()));
        if rekey {
            let key_backup = backup_name(&pair.key, &stamp);
            backups.push(key_backup.clone());
            planned.push(PlannedFile { create_only: true, ..PlannedFile::secret(key_backup, key_pem.clone()) });
            let pem = if layout == Layout::Cfssl { key.to_cfssl_pem()? } else { key.to_pkcs8_pem() };
            planned.push(PlannedFile::secret(&pair.key, pem));
        }
        let info = crate::inspect::cert_info(&issued.der, &what)?;
        out.push(Renewed { role: role.clone(), cert: pair.cert.clone(), backups, serial: info.serial_hex, not_after: info.cfssl.not_after, rekeyed: rekey });
    }
    files::write_all(&planned, true)?;
    Ok(out)
}

/// Signs `template` for the public key the certificate `der` carries: a renewal whose private
/// key stays where it is, never read (a member's key on its host).
pub fn reissue_for_same_key(ca: &Ca, template: &LeafTemplate, der: &[u8], what: &str) -> Result<crate::ca::Issued> {
    let (_, x) = parse_x509_certificate(der).map_err(|e| PkiError::bad_input(what, format!("not a certificate: {e}")))?;
    let spki = rcgen::SubjectPublicKeyInfo::from_der(x.public_key().raw)
        .map_err(|e| PkiError::bad_input(what, format!("its public key cannot be carried over: {e}")))?;
    ca.sign(template, &spki)
}

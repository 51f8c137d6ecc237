//! Checks of an existing leaf against the CA and what it should be: used to reuse valid
//! certificates on re-runs (so re-running changes nothing) and to explain why one cannot be.

use crate::ca::{Ca, LeafTemplate};
use crate::error::Result;
use crate::hosts::san_text;
use crate::inspect::cert_info;
use crate::keys::PrivateKey;
use x509_parser::prelude::*;

/// Whether the certificate `der` was signed by `ca` (signature checked, issuer name equal).
pub fn signed_by(der: &[u8], ca: &Ca) -> bool {
    signed_by_der(der, ca.cert_der())
}

/// [`signed_by`] a CA known by its certificate alone (DER).
pub fn signed_by_der(der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, leaf)), Ok((_, ca_cert))) = (parse_x509_certificate(der), parse_x509_certificate(ca_der)) else {
        return false;
    };
    leaf.issuer().as_raw() == ca_cert.subject().as_raw() && leaf.verify_signature(Some(ca_cert.public_key())).is_ok()
}

/// Every way in which (`cert_der`, `key`) differs from `expected` under `ca`; empty = reusable.
/// `min_remaining` is the validity a reused certificate must still have.
pub fn leaf_problems(
    ca: &Ca,
    cert_der: &[u8],
    key: Option<&PrivateKey>,
    expected: &LeafTemplate,
    min_remaining: ::time::Duration,
    what: &str,
) -> Result<Vec<String>> {
    let info = cert_info(cert_der, what)?;
    let mut problems = Vec::new();
    if !signed_by(cert_der, ca) {
        problems.push("it was not signed by this CA".to_string());
    }
    if info.cfssl.subject.common_name != expected.subject.common_name {
        problems.push(format!("its CN is {:?}, expected {:?}", info.cfssl.subject.common_name, expected.subject.common_name));
    }
    let mut have: Vec<String> = info.typed_sans.clone();
    let mut want: Vec<String> = expected.sans.iter().map(san_text).collect();
    have.sort();
    want.sort();
    if have != want {
        let missing: Vec<_> = want.iter().filter(|w| !have.contains(w)).cloned().collect();
        let extra: Vec<_> = have.iter().filter(|h| !want.contains(h)).cloned().collect();
        problems.push(format!(
            "its SANs differ (missing: {}; not expected: {})",
            if missing.is_empty() { "-".into() } else { missing.join(", ") },
            if extra.is_empty() { "-".into() } else { extra.join(", ") }
        ));
    }
    let wants_server = expected.usages.extended.contains(&rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let wants_client = expected.usages.extended.contains(&rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let has = |n: &str| info.ext_key_usage.iter().any(|e| e == n);
    if (wants_server && !has("Server Auth")) || (wants_client && !has("Client Auth")) {
        problems.push(format!("its extended key usage is [{}]", info.ext_key_usage.join(", ")));
    }
    if let Some(key) = key {
        let (_, x) = parse_x509_certificate(cert_der).map_err(|e| crate::PkiError::bad_input(what, e))?;
        if x.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            problems.push("its key file does not match the certificate".to_string());
        }
    }
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    if info.not_after_unix < now {
        problems.push(format!("it expired on {}", info.cfssl.not_after));
    } else if info.not_after_unix - now < min_remaining.whole_seconds() {
        problems.push(format!("it expires soon ({})", info.cfssl.not_after));
    }
    Ok(problems)
}

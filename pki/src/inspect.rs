//! Reading certificates and CSRs back: what `certinfo` shows and what checks compare against.
//! The JSON field names of [`CfsslCertInfo`] are cfssl's (`cfssl certinfo`), so scripts that
//! parse cfssl's output keep working; [`CertInfo`] adds what cfssl leaves out.

use crate::ca::fmt_time;
use crate::error::{PkiError, Result};
use crate::pemfile;
use serde::Serialize;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::*;

/// A distinguished name, with cfssl's field names.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct NameInfo {
    pub common_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub country: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub organization: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub organizational_unit: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locality: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub province: String,
    /// Every attribute value in order, as cfssl lists them.
    pub names: Vec<String>,
    /// The whole name, RFC 4514 style (`CN=etcd-1,O=etcd`).
    #[serde(skip)]
    pub text: String,
}

/// Exactly what `cfssl certinfo` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CfsslCertInfo {
    pub subject: NameInfo,
    pub issuer: NameInfo,
    pub serial_number: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    pub sigalg: String,
    pub authority_key_id: String,
    pub subject_key_id: String,
    pub pem: String,
}

/// Everything `pki certinfo` shows.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    #[serde(flatten)]
    pub cfssl: CfsslCertInfo,
    pub serial_hex: String,
    pub key_algorithm: String,
    pub key_usage: Vec<String>,
    pub ext_key_usage: Vec<String>,
    pub is_ca: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_len: Option<u32>,
    /// SANs typed as openssl prints them (`DNS:x`, `IP:1.2.3.4`).
    #[serde(skip)]
    pub typed_sans: Vec<String>,
    #[serde(skip)]
    pub not_before_unix: i64,
    #[serde(skip)]
    pub not_after_unix: i64,
}

/// What `certinfo` shows for a CSR.
#[derive(Debug, Clone, Serialize)]
pub struct CsrInfo {
    pub subject: NameInfo,
    pub sans: Vec<String>,
    pub key_algorithm: String,
    pub sigalg: String,
    pub signature_valid: bool,
    pub requested_ca: bool,
}

fn name_info(name: &X509Name<'_>) -> NameInfo {
    let first = |it: &mut dyn Iterator<Item = &AttributeTypeAndValue<'_>>| it.next().and_then(|a| a.as_str().ok()).unwrap_or_default().to_string();
    NameInfo {
        common_name: first(&mut name.iter_common_name()),
        country: first(&mut name.iter_country()),
        organization: first(&mut name.iter_organization()),
        organizational_unit: first(&mut name.iter_organizational_unit()),
        locality: first(&mut name.iter_locality()),
        province: first(&mut name.iter_state_or_province()),
        names: name.iter_attributes().filter_map(|a| a.as_str().ok().map(str::to_string)).collect(),
        text: name.to_string(),
    }
}

fn key_id_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn sigalg_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.11" => "SHA256WithRSA",
        "1.2.840.113549.1.1.12" => "SHA384WithRSA",
        "1.2.840.113549.1.1.13" => "SHA512WithRSA",
        "1.2.840.113549.1.1.5" => "SHA1WithRSA",
        "1.2.840.10045.4.3.2" => "ECDSAWithSHA256",
        "1.2.840.10045.4.3.3" => "ECDSAWithSHA384",
        "1.2.840.10045.4.3.4" => "ECDSAWithSHA512",
        "1.3.101.112" => "Ed25519",
        other => return other.to_string(),
    }
    .to_string()
}

fn key_algorithm_name(spki: &SubjectPublicKeyInfo<'_>) -> String {
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(_)) => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".into(),
                Some("1.3.132.0.34") => "ECDSA P-384".into(),
                Some("1.3.132.0.35") => "ECDSA P-521".into(),
                other => format!("ECDSA {}", other.unwrap_or("?")),
            }
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".into(),
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}

fn general_names(names: &[GeneralName<'_>]) -> (Vec<String>, Vec<String>) {
    let mut plain = Vec::new();
    let mut typed = Vec::new();
    for n in names {
        let (p, t) = match n {
            GeneralName::DNSName(d) => (d.to_string(), format!("DNS:{d}")),
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                    16 => std::net::IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                    _ => hex::encode(b),
                };
                (ip.clone(), format!("IP:{ip}"))
            }
            GeneralName::RFC822Name(e) => (e.to_string(), format!("email:{e}")),
            GeneralName::URI(u) => (u.to_string(), format!("URI:{u}")),
            other => (format!("{other:?}"), format!("{other:?}")),
        };
        plain.push(p);
        typed.push(t);
    }
    (plain, typed)
}

/// Parses one certificate (DER).
pub fn cert_info(der: &[u8], what: &str) -> Result<CertInfo> {
    let (_, x) = parse_x509_certificate(der).map_err(|e| PkiError::bad_input(what, format!("not a valid certificate: {e}")))?;
    let mut ski = String::new();
    let mut aki = String::new();
    let (mut sans, mut typed_sans) = (vec![], vec![]);
    let mut key_usage = vec![];
    let mut ext_key_usage = vec![];
    let (mut is_ca, mut path_len) = (false, None);
    for ext in x.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = key_id_hex(k.0),
            ParsedExtension::AuthorityKeyIdentifier(a) => aki = a.key_identifier.as_ref().map(|k| key_id_hex(k.0)).unwrap_or_default(),
            ParsedExtension::SubjectAlternativeName(s) => (sans, typed_sans) = general_names(&s.general_names),
            ParsedExtension::BasicConstraints(bc) => {
                is_ca = bc.ca;
                path_len = bc.path_len_constraint;
            }
            ParsedExtension::KeyUsage(ku) => {
                for (set, name) in [
                    (ku.digital_signature(), "Digital Signature"),
                    (ku.non_repudiation(), "Content Commitment"),
                    (ku.key_encipherment(), "Key Encipherment"),
                    (ku.data_encipherment(), "Data Encipherment"),
                    (ku.key_agreement(), "Key Agreement"),
                    (ku.key_cert_sign(), "Certificate Sign"),
                    (ku.crl_sign(), "CRL Sign"),
                ] {
                    if set {
                        key_usage.push(name.to_string());
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(e) => {
                for (set, name) in [
                    (e.any, "Any"),
                    (e.server_auth, "Server Auth"),
                    (e.client_auth, "Client Auth"),
                    (e.code_signing, "Code Signing"),
                    (e.email_protection, "Email Protection"),
                    (e.time_stamping, "Time Stamping"),
                    (e.ocsp_signing, "OCSP Signing"),
                ] {
                    if set {
                        ext_key_usage.push(name.to_string());
                    }
                }
                ext_key_usage.extend(e.other.iter().map(|o| o.to_id_string()));
            }
            _ => {}
        }
    }
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    let rfc3339 = |t: ::time::OffsetDateTime| t.format(&::time::format_description::well_known::Rfc3339).unwrap_or_else(|_| fmt_time(t));
    Ok(CertInfo {
        cfssl: CfsslCertInfo {
            subject: name_info(x.subject()),
            issuer: name_info(x.issuer()),
            serial_number: x.serial.to_string(),
            sans,
            not_before: rfc3339(nb),
            not_after: rfc3339(na),
            sigalg: sigalg_name(&x.signature_algorithm.algorithm.to_id_string()),
            authority_key_id: aki,
            subject_key_id: ski,
            pem: pemfile::encode("CERTIFICATE", der),
        },
        serial_hex: x.raw_serial_as_string(),
        key_algorithm: key_algorithm_name(x.public_key()),
        key_usage,
        ext_key_usage,
        is_ca,
        path_len,
        typed_sans,
        not_before_unix: nb.unix_timestamp(),
        not_after_unix: na.unix_timestamp(),
    })
}

/// Parses one CSR (DER) and checks its self-signature.
pub fn csr_info(der: &[u8], what: &str) -> Result<CsrInfo> {
    let (_, csr) = X509CertificationRequest::from_der(der).map_err(|e| PkiError::bad_input(what, format!("not a valid certificate request: {e}")))?;
    let mut sans = vec![];
    let mut requested_ca = false;
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::SubjectAlternativeName(s) => sans = general_names(&s.general_names).0,
                ParsedExtension::BasicConstraints(bc) => requested_ca = bc.ca,
                _ => {}
            }
        }
    }
    Ok(CsrInfo {
        subject: name_info(&csr.certification_request_info.subject),
        sans,
        key_algorithm: key_algorithm_name(&csr.certification_request_info.subject_pki),
        sigalg: sigalg_name(&csr.signature_algorithm.algorithm.to_id_string()),
        signature_valid: csr.verify_signature().is_ok(),
        requested_ca,
    })
}

/// A certificate or a CSR, whichever the PEM holds.
#[allow(clippy::large_enum_variant)] // built once per file shown
pub enum Inspected {
    Cert(Box<CertInfo>),
    Csr(CsrInfo),
}

/// Reads the first certificate or CSR from PEM text (or raw DER).
pub fn inspect(bytes: &[u8], what: &str) -> Result<Inspected> {
    if bytes.first() == Some(&0x30) {
        return match cert_info(bytes, what) {
            Ok(c) => Ok(Inspected::Cert(Box::new(c))),
            Err(_) => csr_info(bytes, what).map(Inspected::Csr),
        };
    }
    for b in pemfile::blocks(bytes, what)? {
        match b.tag() {
            "CERTIFICATE" => return cert_info(b.contents(), what).map(|c| Inspected::Cert(Box::new(c))),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => return csr_info(b.contents(), what).map(Inspected::Csr),
            _ => {}
        }
    }
    Err(PkiError::bad_input(what, format!("no certificate or certificate request in it (found: {})", pemfile::labels(bytes))))
}

/// Text from a certificate, safe to print on a terminal: control characters (C0, DEL, C1)
/// become `\XX` as openssl prints them, and a backslash becomes `\\`, so an ESC sequence or
/// a newline in a subject cannot forge lines or move the cursor.
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xff { out.push_str(&format!("\\{n:02X}")) } else { out.push_str(&format!("\\u{n:04X}")) }
            }
            c => out.push(c),
        }
    }
    out
}

fn escape_all(v: &[String]) -> Vec<String> {
    v.iter().map(|s| escape_control(s)).collect()
}

/// The human rendering of a certificate.
pub fn render_cert(info: &CertInfo, now_unix: i64) -> String {
    let left = info.not_after_unix - now_unix;
    let status = if left < 0 {
        format!("EXPIRED {} ago", crate::validity::human(::time::Duration::seconds(-left)))
    } else if now_unix < info.not_before_unix {
        "NOT YET VALID".to_string()
    } else {
        format!("{} left", crate::validity::human(::time::Duration::seconds(left)))
    };
    let c = &info.cfssl;
    let none = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    let ca = if info.is_ca {
        match info.path_len {
            Some(n) => format!("yes (path length {n})"),
            None => "yes".to_string(),
        }
    } else {
        "no".to_string()
    };
    format!(
        "Subject:         {}\nIssuer:          {}\nSerial:          {}\nValidity:        {} → {} ({status})\n\
         SANs:            {}\nKey:             {}\nSignature:       {}\nKey usage:       {}\n\
         Ext. key usage:  {}\nCA:              {ca}\nSubject key ID:  {}\nAuthority key ID: {}\n",
        escape_control(&c.subject.text),
        escape_control(&c.issuer.text),
        info.serial_hex,
        c.not_before,
        c.not_after,
        none(&escape_all(&info.typed_sans)),
        info.key_algorithm,
        c.sigalg,
        none(&info.key_usage),
        none(&info.ext_key_usage),
        if c.subject_key_id.is_empty() { "-" } else { &c.subject_key_id },
        if c.authority_key_id.is_empty() { "-" } else { &c.authority_key_id },
    )
}

/// The human rendering of a CSR.
pub fn render_csr(info: &CsrInfo) -> String {
    format!(
        "Certificate request\nSubject:         {}\nSANs:            {}\nKey:             {}\nSignature:       {} ({})\nAsks for CA:     {}\n",
        escape_control(&info.subject.text),
        if info.sans.is_empty() { "-".to_string() } else { escape_all(&info.sans).join(", ") },
        info.key_algorithm,
        info.sigalg,
        if info.signature_valid { "valid" } else { "INVALID" },
        if info.requested_ca { "yes (a CA signing it decides; pki never grants it)" } else { "no" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_a_subject_cannot_forge_lines() {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "evil\u{1b}[2J\nSubject:         CN=trusted");
        params.subject_alt_names = vec![rcgen::SanType::DnsName("a\nb".try_into().unwrap())];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = cert_info(cert.der(), "evil.crt").unwrap();
        let text = render_cert(&info, 0);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert_eq!(text.lines().filter(|l| l.starts_with("Subject:")).count(), 1);
        assert!(text.contains("evil\\1B[2J\\0ASubject:"), "{text}");
        assert_eq!(escape_control("a\\b"), "a\\\\b");
    }
}

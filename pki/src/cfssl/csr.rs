//! cfssl's CSR request JSON (`csr.json`): CN, names, hosts, key, ca.

use super::Strictness;
use super::json_keys::{self, check};
use crate::ca::{CaOptions, Subject};
use crate::error::{PkiError, Result};
use crate::keys::KeyAlgorithm;
use crate::validity::parse_validity;
use serde_json::Value;
use time::Duration;

/// cfssl's default CA lifetime for `gencert -initca` (5 years).
pub const DEFAULT_CA_EXPIRY: Duration = Duration::hours(43800);

/// A parsed CSR request.
#[derive(Debug, Clone)]
pub struct CsrRequest {
    pub subject: Subject,
    pub hosts: Vec<String>,
    pub key: KeyAlgorithm,
    pub ca_expiry: Option<Duration>,
    pub path_len: Option<u8>,
}

impl CsrRequest {
    /// The options for a CA made from this request (`gencert -initca`).
    pub fn ca_options(&self) -> CaOptions {
        CaOptions { subject: self.subject.clone(), algorithm: self.key, validity: self.ca_expiry.unwrap_or(DEFAULT_CA_EXPIRY), path_len: self.path_len }
    }
}

/// Parses CSR JSON. Unknown keys are errors (warnings when lenient), all reported at once.
pub fn parse(bytes: &[u8], file: &str, strictness: Strictness, warnings: &mut Vec<String>) -> Result<CsrRequest> {
    let v = json_keys::parse(bytes, file)?;
    if !v.is_object() {
        return Err(PkiError::Json { file: file.into(), reason: "expected a JSON object like {\"CN\": ..., \"key\": ...}".into() });
    }
    let mut unknown = Vec::new();
    let mut problems = Vec::new();
    check(&v, "", &["CN", "names", "hosts", "key", "ca", "serialnumber"], &mut unknown);
    let cn = json_keys::string(&v, "", "CN", &mut problems).unwrap_or_default();
    let hosts = json_keys::strings(&v, "", "hosts", &mut problems);
    let mut subject = Subject::cn(cn);
    match json_keys::get(&v, "names") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) => {
            for (i, n) in names.iter().enumerate() {
                let path = format!("names[{i}]");
                check(n, &path, &["C", "ST", "L", "O", "OU", "SerialNumber"], &mut unknown);
                let mut push = |key: &str, into: &mut Vec<String>| {
                    if let Some(s) = json_keys::string(n, &path, key, &mut problems).filter(|s| !s.is_empty()) {
                        into.push(s);
                    }
                };
                push("C", &mut subject.country);
                push("ST", &mut subject.state);
                push("L", &mut subject.locality);
                push("O", &mut subject.organization);
                push("OU", &mut subject.organizational_unit);
            }
        }
        Some(other) => problems.push(format!("names: expected a list of objects, got {other}")),
    }
    let mut key = KeyAlgorithm::EcdsaP256;
    if let Some(k) = json_keys::get(&v, "key").filter(|k| !k.is_null()) {
        check(k, "key", &["algo", "size"], &mut unknown);
        let algo = json_keys::string(k, "key", "algo", &mut problems).unwrap_or_else(|| "ecdsa".into());
        let size = match json_keys::get(k, "size") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(u32::MAX),
            Some(other) => {
                problems.push(format!("key.size: expected a number, got {other}"));
                0
            }
        };
        match KeyAlgorithm::from_cfssl(&algo.to_ascii_lowercase(), size) {
            Ok(a) => key = a,
            Err(e) => problems.push(format!("key: {e}")),
        }
    }
    let (mut ca_expiry, mut path_len) = (None, None);
    if let Some(ca) = json_keys::get(&v, "ca").filter(|c| !c.is_null()) {
        check(ca, "ca", &["expiry", "pathlen", "pathlenzero", "backdate"], &mut unknown);
        if let Some(e) = json_keys::string(ca, "ca", "expiry", &mut problems) {
            match parse_validity(&e, &format!("{file}: ca.expiry")) {
                Ok(d) => ca_expiry = Some(d),
                Err(e) => problems.push(e.to_string()),
            }
        }
        let zero = matches!(json_keys::get(ca, "pathlenzero"), Some(Value::Bool(true)));
        match json_keys::get(ca, "pathlen") {
            Some(Value::Number(n)) => match n.as_u64().and_then(|n| u8::try_from(n).ok()) {
                Some(0) if !zero => path_len = None, // cfssl: pathlen 0 without pathlenzero = unlimited
                Some(n) => path_len = Some(n),
                None => problems.push(format!("ca.pathlen: expected 0..255, got {n}")),
            },
            None | Some(Value::Null) if zero => path_len = Some(0),
            None | Some(Value::Null) => {}
            Some(other) => problems.push(format!("ca.pathlen: expected a number, got {other}")),
        }
    }
    if strictness == Strictness::Lenient {
        warnings.extend(unknown.into_iter().map(|u| format!("{file}: {u} (ignored)")));
    } else {
        problems.extend(unknown);
    }
    if let Err(errs) = crate::hosts::sans_from_hosts(&hosts) {
        problems.extend(errs.into_iter().map(|e| format!("hosts: {e}")));
    }
    if !problems.is_empty() {
        return Err(PkiError::Json { file: file.into(), reason: problems.join("; ") });
    }
    Ok(CsrRequest { subject, hosts, key, ca_expiry, path_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_request() {
        let j = br#"{"CN":"etcd-1","hosts":["10.0.0.1","etcd-1","localhost"],"key":{"algo":"rsa","size":2048},"names":[{"O":"etcd","OU":"x"}]}"#;
        let r = parse(j, "csr.json", Strictness::Strict, &mut vec![]).unwrap();
        assert_eq!(r.subject.common_name, "etcd-1");
        assert_eq!(r.key, KeyAlgorithm::Rsa(2048));
        assert_eq!(r.subject.organization, vec!["etcd"]);
        assert_eq!(r.hosts.len(), 3);
    }

    #[test]
    fn unknown_key_is_an_error_naming_file_and_key() {
        let j = br#"{"CN":"ca","ca":{"expire":"87600h"}}"#;
        let e = parse(j, "ca-csr.json", Strictness::Strict, &mut vec![]).unwrap_err().to_string();
        assert!(e.contains("ca-csr.json") && e.contains("ca.expire") && e.contains("\"expiry\""), "{e}");
        let mut w = vec![];
        parse(j, "ca-csr.json", Strictness::Lenient, &mut w).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn malformed_json_names_the_position() {
        let e = parse(b"{\"CN\": \"x\",}", "csr.json", Strictness::Strict, &mut vec![]).unwrap_err().to_string();
        assert!(e.contains("csr.json") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn ca_section() {
        let j = br#"{"CN":"ca","key":{"algo":"ecdsa","size":384},"ca":{"expiry":"87600h","pathlen":1}}"#;
        let r = parse(j, "c", Strictness::Strict, &mut vec![]).unwrap();
        assert_eq!(r.ca_expiry, Some(Duration::hours(87600)));
        assert_eq!(r.path_len, Some(1));
        assert_eq!(r.key, KeyAlgorithm::EcdsaP384);
    }
}

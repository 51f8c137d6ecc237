//! Subject alternative names from the strings users write: cfssl's `hosts`, `-hostname`,
//! member addresses and DNS names. Classification follows cfssl: IP, else email, else URI,
//! else DNS name — but an invalid DNS name is an error, not a silent SAN.

use rcgen::SanType;
use std::net::IpAddr;

/// Classifies one host string into a SAN; `Err` says why it is not a valid host.
pub fn san_from_host(host: &str) -> Result<SanType, String> {
    let h = host.trim();
    if h.is_empty() {
        return Err("empty host name".into());
    }
    if let Ok(ip) = h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if h.contains('@') {
        return h.to_string().try_into().map(SanType::Rfc822Name).map_err(|e| format!("invalid email {h:?}: {e}"));
    }
    if h.contains("://") {
        return h.to_string().try_into().map(SanType::URI).map_err(|e| format!("invalid URI {h:?}: {e}"));
    }
    validate_dns_name(h)?;
    h.to_ascii_lowercase().try_into().map(SanType::DnsName).map_err(|e| format!("invalid DNS name {h:?}: {e}"))
}

/// A host name that names one machine: RFC 1123, no wildcard (member and node names, which
/// become a certificate's CN and DNS SAN, file names and unit names).
pub fn validate_host_name(name: &str) -> Result<(), String> {
    if name.starts_with("*.") {
        return Err(format!("invalid name {name:?}: a wildcard names many hosts; give this one's own name"));
    }
    validate_dns_name(name)
}

/// RFC 1123 host name, optionally with one leading `*.` wildcard label.
pub fn validate_dns_name(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid host {name:?}: {why}"));
    let body = name.strip_prefix("*.").unwrap_or(name);
    if body.len() > 253 {
        return bad("longer than 253 characters");
    }
    if body.split('.').count() == 4 && body.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit())) {
        return bad("looks like an IPv4 address but is not a valid one");
    }
    for label in body.split('.') {
        if label.is_empty() {
            return bad("empty label (double dot, or a leading/trailing dot)");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
        if let Some(c) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return bad(&format!("character {c:?} is not allowed in a DNS name"));
        }
    }
    Ok(())
}

/// Human text of a SAN, as openssl prints it (`DNS:x`, `IP Address:1.2.3.4`).
pub fn san_text(san: &SanType) -> String {
    match san {
        SanType::DnsName(d) => format!("DNS:{}", d.as_str()),
        SanType::IpAddress(ip) => format!("IP:{ip}"),
        SanType::Rfc822Name(e) => format!("email:{}", e.as_str()),
        SanType::URI(u) => format!("URI:{}", u.as_str()),
        other => format!("{other:?}"),
    }
}

/// Classifies every host, de-duplicating (cfssl 1.2 kept duplicates); all errors at once.
pub fn sans_from_hosts<S: AsRef<str>>(hosts: &[S]) -> Result<Vec<SanType>, Vec<String>> {
    let mut sans: Vec<SanType> = Vec::new();
    let mut errors = Vec::new();
    for h in hosts {
        match san_from_host(h.as_ref()) {
            Ok(s) if !sans.contains(&s) => sans.push(s),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(sans) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(matches!(san_from_host("10.0.0.1").unwrap(), SanType::IpAddress(_)));
        assert!(matches!(san_from_host("::1").unwrap(), SanType::IpAddress(_)));
        assert!(matches!(san_from_host("a@b.c").unwrap(), SanType::Rfc822Name(_)));
        assert!(matches!(san_from_host("spiffe://x/y").unwrap(), SanType::URI(_)));
        assert!(matches!(san_from_host("*.etcd.local").unwrap(), SanType::DnsName(_)));
    }

    #[test]
    fn invalid_hosts_are_errors() {
        for h in ["", "etcd_1", "a..b", "-x.com", "10.0.0.256", "has space"] {
            assert!(san_from_host(h).is_err(), "{h:?} should be refused");
        }
    }

    #[test]
    fn duplicates_are_dropped() {
        let s = sans_from_hosts(&["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.1"]).unwrap();
        assert_eq!(s.len(), 2);
    }
}

//! The global options every command shares — etcdctl's `--endpoints`, `--cacert`, `--cert`,
//! `--key`, `--dial-timeout`, `--command-timeout` — validated up front, so a missing file or a
//! CA file that is not PEM is reported as such (tonic silently skips an unparsable CA).

use crate::error::{CtlError, Result};
use std::time::Duration;

/// Default `--dial-timeout`: a TLS handshake that has not finished by then is a hung member.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `--command-timeout`: etcdctl's is 5 s; on a healthy cluster a linearizable read takes
/// milliseconds, so 2 s still leaves room for a slow WAN while a hung member costs at most that.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest --cacert/--cert/--key file read.
const MAX_PEM_FILE: u64 = 16 << 20;

/// The longest timeout accepted: a check that may wait longer is not a health check.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// `--dial-timeout`/`--command-timeout` values: `5s`, `500ms`, `1m`, `1h`, or a bare number of
/// seconds; positive and at most [`MAX_TIMEOUT`].
pub fn parse_timeout(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("invalid duration {s:?} (examples: 2s, 500ms, 1m)");
    let (num, unit) = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).map(|i| s.split_at(i)).unwrap_or((s, "s"));
    if num.is_empty() || num.len() > 20 {
        return Err(bad());
    }
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("invalid duration unit {other:?} in {s:?} (use ms, s, m or h)")),
    };
    if secs.is_nan() || secs <= 0.0 {
        return Err("a timeout must be positive".into());
    }
    if secs > MAX_TIMEOUT.as_secs_f64() {
        return Err(format!("{s}: a timeout is at most 1h"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// TLS material, read and checked.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_path: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub cert_path: Option<String>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsMaterial(ca: {:?}, cert: {:?})", self.ca_path, self.cert_path)
    }
}

/// Connection options, validated.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub endpoints: Vec<String>,
    pub tls: Option<TlsMaterial>,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
    /// Clients kept across calls (the verdicts of one operation); `None`: a new connection per call.
    pub kept: Option<crate::connect::KeptClients>,
}

impl ClientOptions {
    /// Validates raw flag values: endpoints, files (readable, right PEM), timeouts.
    pub fn new(
        endpoints: &[String],
        cacert: Option<&str>,
        cert: Option<&str>,
        key: Option<&str>,
        dial_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<ClientOptions> {
        let endpoints: Vec<String> = endpoints.iter().flat_map(|e| e.split(',')).map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect();
        if endpoints.is_empty() {
            return Err(CtlError::Usage("no endpoints: give --endpoints or ETCDCTL_ENDPOINTS".into()));
        }
        if cert.is_some() != key.is_some() {
            return Err(CtlError::Usage("--cert and --key go together (ETCDCTL_CERT / ETCDCTL_KEY)".into()));
        }
        let tls_wanted = cacert.is_some() || cert.is_some();
        let mut normalized = Vec::new();
        for e in &endpoints {
            normalized.push(normalize_endpoint(e, tls_wanted)?);
        }
        if dial_timeout.is_zero() || command_timeout.is_zero() {
            return Err(CtlError::Usage("timeouts must be positive".into()));
        }
        if dial_timeout > MAX_TIMEOUT || command_timeout > MAX_TIMEOUT {
            return Err(CtlError::Usage("timeouts are at most 1h".into()));
        }
        let tls = if tls_wanted || normalized.iter().any(|e| e.starts_with("https://")) {
            let ca_pem = cacert.map(|p| read_pem(p, "CERTIFICATE", "--cacert")).transpose()?;
            let identity = match (cert, key) {
                (Some(c), Some(k)) => {
                    let pair = (read_pem(c, "CERTIFICATE", "--cert")?, read_key(k)?);
                    check_pair(&pair.0, &pair.1, c, k)?;
                    Some(pair)
                }
                _ => None,
            };
            Some(TlsMaterial { ca_path: cacert.map(String::from), ca_pem, cert_path: cert.map(String::from), identity })
        } else {
            None
        };
        Ok(ClientOptions { endpoints: normalized, tls, dial_timeout, command_timeout, kept: None })
    }

    /// The same options for other endpoints (`--cluster` discovery).
    pub fn with_endpoints(&self, endpoints: Vec<String>) -> ClientOptions {
        ClientOptions { endpoints, ..self.clone() }
    }

    /// The same options, keeping their clients in `kept` for the next call.
    pub fn keeping(self, kept: &crate::connect::KeptClients) -> ClientOptions {
        ClientOptions { kept: Some(kept.clone()), ..self }
    }
}

/// `host:port` gets a scheme (https when TLS files are given, as etcdctl does).
fn normalize_endpoint(e: &str, tls: bool) -> Result<String> {
    let with_scheme = if e.contains("://") {
        e.to_string()
    } else if tls {
        format!("https://{e}")
    } else {
        format!("http://{e}")
    };
    let rest = with_scheme
        .strip_prefix("https://")
        .or_else(|| with_scheme.strip_prefix("http://"))
        .ok_or_else(|| CtlError::Usage(format!("endpoint {e:?}: only http:// and https:// are supported")))?;
    let hostport = rest.trim_end_matches('/');
    let usage = || CtlError::Usage(format!("endpoint {e:?}: expected [https://]HOST:PORT, e.g. https://10.0.0.11:2379 or https://[::1]:2379"));
    let (host, port) = hostport.rsplit_once(':').ok_or_else(usage)?;
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(usage());
    }
    let host_ok = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || valid_host_name(host),
    };
    if !host_ok {
        return Err(usage());
    }
    if with_scheme.starts_with("http://") && tls {
        return Err(CtlError::Usage(format!("endpoint {e:?} is plain http:// but TLS files were given; use https://")));
    }
    Ok(format!("{}{}", &with_scheme[..with_scheme.len() - rest.len()], hostport))
}

/// A DNS name (letters, digits, `-`, dots between labels).
fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

fn read(path: &str, flag: &str) -> Result<Vec<u8>> {
    // PEM files are small: a mistaken path (a disk image, /dev/zero) is refused, not read
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_FILE + 1).read_to_end(&mut buf))
        .map_err(|e| CtlError::File { path: path.into(), reason: format!("cannot read the {flag} file: {e}") })?;
    if buf.len() as u64 > MAX_PEM_FILE {
        return Err(CtlError::File { path: path.into(), reason: format!("the {flag} file is larger than {} MiB; not a PEM file", MAX_PEM_FILE >> 20) });
    }
    Ok(buf)
}

fn read_pem(path: &str, label: &str, flag: &str) -> Result<Vec<u8>> {
    let bytes = read(path, flag)?;
    let blocks = pem::parse_many(&bytes).unwrap_or_default();
    if !blocks.iter().any(|b| b.tag() == label) {
        let found: Vec<String> = blocks.iter().map(|b| b.tag().to_string()).collect();
        return Err(CtlError::File {
            path: path.into(),
            reason: format!(
                "{flag} must be a PEM file with a {label} block; found {}",
                if found.is_empty() { "no PEM at all".to_string() } else { found.join(", ") }
            ),
        });
    }
    Ok(bytes)
}

fn read_key(path: &str) -> Result<Vec<u8>> {
    let bytes = read(path, "--key")?;
    let blocks = pem::parse_many(&bytes).unwrap_or_default();
    let err = |reason: &str| Err(CtlError::File { path: path.into(), reason: reason.into() });
    let encrypted = |b: &pem::Pem| b.tag() == "ENCRYPTED PRIVATE KEY" || b.headers().get("Proc-Type").is_some_and(|v| v.contains("ENCRYPTED"));
    if blocks.iter().any(encrypted) {
        return err("--key is encrypted; etcd clients need the key unencrypted (openssl pkey -in KEY -out KEY.plain, then chmod 600)");
    }
    if !blocks.iter().any(|b| b.tag().ends_with("PRIVATE KEY")) {
        if blocks.iter().any(|b| b.tag() == "CERTIFICATE") {
            return err("--key is a certificate, not a private key: pass the certificate with --cert and its key with --key");
        }
        return err("--key must be a PEM private key");
    }
    Ok(bytes)
}

/// The key must be the certificate's: found here, it is named before any connection (a TLS
/// handshake would only say "transport error"). A key type rustls cannot load is left to the
/// handshake to report.
fn check_pair(cert_pem: &[u8], key_pem: &[u8], cert_path: &str, key_path: &str) -> Result<()> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (Ok(cert), Ok(key)) = (CertificateDer::from_pem_slice(cert_pem), PrivateKeyDer::from_pem_slice(key_pem)) else { return Ok(()) };
    let Ok(signing) = rustls::crypto::ring::default_provider().key_provider.load_private_key(key) else { return Ok(()) };
    match rustls::sign::CertifiedKey::new(vec![cert], signing).keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(CtlError::File {
            path: key_path.into(),
            reason: format!("--key is not the key of --cert {cert_path} (their public keys differ): pass the key made with that certificate"),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_schemes_and_are_checked() {
        assert_eq!(normalize_endpoint("10.0.0.1:2379", true).unwrap(), "https://10.0.0.1:2379");
        assert_eq!(normalize_endpoint("https://[::1]:2379/", true).unwrap(), "https://[::1]:2379");
        assert!(normalize_endpoint("10.0.0.1", true).is_err());
        assert!(normalize_endpoint("http://10.0.0.1:2379", true).is_err());
        assert!(normalize_endpoint("unix://x", false).is_err());
        for bad in
            ["https://[::1", "https://[::1]", "https://[::1:2379", "https://[zz]:2379", "https://a b:2379", "https://:2379", "https://h:0", "https://h_x:1"]
        {
            assert!(normalize_endpoint(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("3").unwrap(), Duration::from_secs(3));
        for bad in ["18446744073709551615s", "0", "-1s", "2h", "1e9s", "NaNs", "inf", "s", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_timeout(&s);
            let _ = normalize_endpoint(&s, true);
            let _ = normalize_endpoint(&s, false);
        }
    }

    #[test]
    fn an_encrypted_key_or_a_certificate_as_key_is_named() {
        let d = tempfile::tempdir().unwrap();
        let enc = d.path().join("enc.key");
        std::fs::write(&enc, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n").unwrap();
        let e = read_key(enc.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("enc.key") && e.contains("encrypted"), "{e}");
        let crt = d.path().join("client.crt");
        std::fs::write(&crt, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let e = read_key(crt.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("client.crt") && e.contains("is a certificate"), "{e}");
    }

    #[test]
    fn missing_and_wrong_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.crt");
        std::fs::write(&p, "not pem").unwrap();
        let e = ClientOptions::new(&["127.0.0.1:2379".into()], Some(p.to_str().unwrap()), None, None, DEFAULT_DIAL_TIMEOUT, DEFAULT_COMMAND_TIMEOUT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ca.crt") && e.contains("--cacert"), "{e}");
        let e = ClientOptions::new(&["127.0.0.1:2379".into()], Some("/nope/ca.crt"), None, None, DEFAULT_DIAL_TIMEOUT, DEFAULT_COMMAND_TIMEOUT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nope/ca.crt") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_named_before_connecting() {
        let f = |n: &str| format!("{}/../fixtures/{n}", env!("CARGO_MANIFEST_DIR"));
        let open = |cert: &str, key: &str| {
            ClientOptions::new(
                &["127.0.0.1:2379".into()],
                Some(&f("openssl-ec-ca.crt")),
                Some(&f(cert)),
                Some(&f(key)),
                DEFAULT_DIAL_TIMEOUT,
                DEFAULT_COMMAND_TIMEOUT,
            )
        };
        assert!(open("client-only.crt", "client-only.key.insecure").is_ok());
        let e = open("client-only.crt", "other-ca.key.insecure").unwrap_err().to_string();
        assert!(e.contains("other-ca.key.insecure") && e.contains("is not the key of --cert") && e.contains("client-only.crt"), "{e}");
        // RSA, Ed25519 and PKCS#8 keys are compared as well
        for (cert, key) in [("openssl-rsa-ca.crt", "openssl-ed25519-ca.key.insecure"), ("openssl-ed25519-ca.crt", "openssl-pkcs8-ca.key.insecure")] {
            assert!(open(cert, key).unwrap_err().to_string().contains("is not the key of --cert"), "{cert} with {key}");
        }
        for (cert, key) in [("openssl-rsa-ca.crt", "openssl-rsa-ca.key.insecure"), ("openssl-ed25519-ca.crt", "openssl-ed25519-ca.key.insecure")] {
            assert!(open(cert, key).is_ok(), "{cert} with its own key");
        }
    }
}

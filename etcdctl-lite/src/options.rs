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
        let endpoints: Vec<String> = endpoints
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect();
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
        let tls = if tls_wanted || normalized.iter().any(|e| e.starts_with("https://")) {
            let ca_pem = cacert.map(|p| read_pem(p, "CERTIFICATE", "--cacert")).transpose()?;
            let identity = match (cert, key) {
                (Some(c), Some(k)) => Some((read_pem(c, "CERTIFICATE", "--cert")?, read_key(k)?)),
                _ => None,
            };
            Some(TlsMaterial { ca_path: cacert.map(String::from), ca_pem, cert_path: cert.map(String::from), identity })
        } else {
            None
        };
        Ok(ClientOptions { endpoints: normalized, tls, dial_timeout, command_timeout })
    }

    /// The same options for other endpoints (`--cluster` discovery).
    pub fn with_endpoints(&self, endpoints: Vec<String>) -> ClientOptions {
        ClientOptions { endpoints, ..self.clone() }
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
    let port_ok = hostport.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !port_ok {
        return Err(CtlError::Usage(format!("endpoint {e:?}: expected [https://]HOST:PORT, e.g. https://10.0.0.11:2379")));
    }
    if with_scheme.starts_with("http://") && tls {
        return Err(CtlError::Usage(format!("endpoint {e:?} is plain http:// but TLS files were given; use https://")));
    }
    Ok(format!("{}{}", &with_scheme[..with_scheme.len() - rest.len()], hostport))
}

fn read(path: &str, flag: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| CtlError::File { path: path.into(), reason: format!("cannot read the {flag} file: {e}") })
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
    if !blocks.iter().any(|b| b.tag().ends_with("PRIVATE KEY")) {
        return Err(CtlError::File {
            path: path.into(),
            reason: "--key must be a PEM private key (did you pass the certificate?)".into(),
        });
    }
    Ok(bytes)
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
}

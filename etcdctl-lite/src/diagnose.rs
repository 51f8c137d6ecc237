//! Turning what goes wrong on the wire into what the user should check. etcd-client reports TLS
//! problems as "transport error", "connection closed" or a timeout; when a failure looks like
//! TLS, a rustls handshake of our own against the endpoint finds out exactly what it was.

use crate::options::{ClientOptions, TlsMaterial};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError};
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What kind of failure, for counting and for the quorum verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Nothing listens: the member is down.
    Refused,
    /// No answer in time: the member is hung, or packets are dropped.
    Timeout,
    /// TLS refused (wrong CA, name, client certificate).
    Tls,
    /// The member answers but has no leader.
    NoLeader,
    /// The member is a learner (cannot serve linearizable reads).
    Learner,
    /// Anything else.
    Other,
}

/// A translated failure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn timeout(limit: Duration) -> Failure {
        Failure { kind: FailureKind::Timeout, message: format!("no answer within {} (member hung, overloaded, or packets dropped)", fmt_duration(limit)) }
    }
    /// The member answered a status request but has no leader, so the request waited in vain.
    pub fn no_leader(limit: Duration) -> Failure {
        Failure {
            kind: FailureKind::NoLeader,
            message: format!("no leader: the member answers but has none (election in progress, or quorum lost); no answer within {}", fmt_duration(limit)),
        }
    }
}

pub fn fmt_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// The whole error chain as one string.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let t = e.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = e.source();
    }
    s
}

/// First classification from the client error alone.
pub fn classify(err: &etcd_client::Error) -> Failure {
    let text = chain(err);
    let lower = text.to_ascii_lowercase();
    let kind = if lower.contains("connection refused") {
        FailureKind::Refused
    } else if lower.contains("no leader") {
        FailureKind::NoLeader
    } else if lower.contains("not supported for learner") {
        FailureKind::Learner
    } else if lower.contains("deadline") || lower.contains("timed out") || lower.contains("timeout") || lower.contains("elapsed") {
        FailureKind::Timeout
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("connection closed")
        || lower.contains("broken pipe")
        || lower.contains("connection reset")
        || lower.contains("transport error")
        || lower.contains("operation was canceled")
        || lower.contains("unknownissuer")
    {
        FailureKind::Tls
    } else {
        FailureKind::Other
    };
    let message = match kind {
        FailureKind::Refused => "connection refused: no etcd is listening there (member down?)".to_string(),
        FailureKind::NoLeader => "etcdserver: no leader (this member cannot reach a quorum)".to_string(),
        FailureKind::Learner => "member is a learner: it does not serve linearizable reads until promoted".to_string(),
        FailureKind::Timeout if lower.contains("handshake") => {
            "TLS handshake timed out: the member accepts connections but does not answer (hung or overloaded)".to_string()
        }
        FailureKind::Timeout => "no answer in time (member hung, overloaded, or packets dropped)".to_string(),
        _ => grpc_message(&text),
    };
    Failure { kind, message }
}

/// The server's own words out of tonic's rendering
/// (`grpc request error: code: '...', message: "etcdserver: leader changed", ...`).
fn grpc_message(text: &str) -> String {
    if let Some(start) = text.find("message: \"") {
        let rest = &text[start + 10..];
        if let Some(end) = rest.find('"') {
            let msg = &rest[..end];
            if !msg.is_empty() {
                return msg.to_string();
            }
        }
    }
    text.trim().to_string()
}

/// Classifies `err`; if it may be TLS (or is an opaque transport error), probes the endpoint
/// with a handshake of our own to say exactly what is wrong.
pub async fn explain(err: &etcd_client::Error, endpoint: &str, opts: &ClientOptions) -> Failure {
    let first = classify(err);
    if !matches!(first.kind, FailureKind::Tls | FailureKind::Other) {
        return first;
    }
    let Some(tls) = opts.tls.clone() else { return first };
    let endpoint = endpoint.to_string();
    let limit = opts.dial_timeout;
    let probed = tokio::task::spawn_blocking(move || probe(&endpoint, &tls, limit)).await.ok().flatten();
    probed.unwrap_or(first)
}

/// Records the server's certificate chain, then defers to the real verifier.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_words_are_extracted() {
        let t = "grpc request error: code: 'The service is currently unavailable', message: \"etcdserver: leader changed\", details: []";
        assert_eq!(grpc_message(t), "etcdserver: leader changed");
        assert_eq!(grpc_message("plain"), "plain");
    }
}

#[derive(Debug)]
struct Recording {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl rustls::client::danger::ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            s.push(end_entity.to_vec());
        }
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

pub(crate) fn der_certs(pem_bytes: &[u8]) -> Vec<CertificateDer<'static>> {
    pem::parse_many(pem_bytes).unwrap_or_default().into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| CertificateDer::from(b.into_contents())).collect()
}

fn subject_of(der: &[u8]) -> (String, String, Vec<String>, bool) {
    use x509_parser::prelude::*;
    match parse_x509_certificate(der) {
        Ok((_, c)) => {
            let sans = c
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|s| {
                    s.value
                        .general_names
                        .iter()
                        .map(|g| match g {
                            GeneralName::DNSName(d) => d.to_string(),
                            GeneralName::IPAddress(b) if b.len() == 4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
                            GeneralName::IPAddress(b) if b.len() == 16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let client_auth = c.extended_key_usage().ok().flatten().map(|e| e.value.client_auth || e.value.any).unwrap_or(true);
            (c.subject().to_string(), c.issuer().to_string(), sans, client_auth)
        }
        Err(_) => ("?".into(), "?".into(), vec![], true),
    }
}

/// A client config that verifies against the CA in `tls` (presenting the client certificate if
/// any) and records the server's certificate; plus where it records it.
type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

fn recording_config(tls: &TlsMaterial) -> Option<(rustls::ClientConfig, Seen)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in tls.ca_pem.as_deref().map(der_certs).unwrap_or_default() {
        let _ = roots.add(c);
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().ok()?;
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let verifier = Arc::new(Recording { inner, seen: seen.clone() });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &tls.identity {
        Some((cert, key)) => {
            let key =
                rustls::pki_types::PrivateKeyDer::try_from(pem::parse_many(key).ok()?.into_iter().find(|b| b.tag().ends_with("PRIVATE KEY"))?.into_contents())
                    .ok()?;
            builder.with_client_auth_cert(der_certs(cert), key).ok()?
        }
        None => builder.with_no_client_auth(),
    };
    Some((config, seen))
}

/// `https://host:port` -> (host for SNI/verification, socket address).
fn endpoint_target(endpoint: &str) -> Option<(String, std::net::SocketAddr)> {
    let hostport = endpoint.trim_start_matches("https://").trim_start_matches("http://");
    let (host, _) = hostport.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Some((host, hostport.to_socket_addrs().ok()?.next()?))
}

/// A TLS handshake of our own against `endpoint`; `None` if it succeeded (then the problem is
/// elsewhere) or could not be run.
pub fn probe(endpoint: &str, tls: &TlsMaterial, limit: Duration) -> Option<Failure> {
    let (host, addr) = endpoint_target(endpoint)?;
    let ca_subject = tls.ca_pem.as_deref().map(der_certs).unwrap_or_default().first().map(|c| subject_of(c).0).unwrap_or_else(|| "none".into());
    let (mut config, seen) = recording_config(tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(host.clone()).ok()?;
    let mut sock = match TcpStream::connect_timeout(&addr, limit) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Some(Failure { kind: FailureKind::Refused, message: "connection refused: no etcd is listening there (member down?)".into() });
        }
        Err(_) => return Some(Failure::timeout(limit)),
    };
    sock.set_read_timeout(Some(limit)).ok()?;
    sock.set_write_timeout(Some(limit)).ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let result = (|| -> Result<(), std::io::Error> {
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        // TLS 1.3 checks the client certificate after our Finished: a refusal arrives as an alert
        // (or a close) on the first read; an accepting etcd sends its HTTP/2 SETTINGS instead.
        conn.writer().write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
        while conn.wants_write() {
            conn.write_tls(&mut sock)?;
        }
        for _ in 0..4 {
            if conn.read_tls(&mut sock)? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            }
            let state = conn.process_new_packets().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if state.plaintext_bytes_to_read() > 0 {
                return Ok(());
            }
        }
        Ok(())
    })();
    let err = match result {
        Ok(()) => return None,
        Err(e) => e,
    };
    let rustls_err = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).cloned();
    let server_cert = seen.lock().ok().and_then(|s| s.first().cloned());
    let (srv_subject, srv_issuer, srv_sans, _) = server_cert.as_deref().map(subject_of).unwrap_or(("?".into(), "?".into(), vec![], true));
    let cacert = tls.ca_path.clone().unwrap_or_else(|| "(none given)".into());
    let message = match rustls_err {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature)) => format!(
            "the server's certificate is not signed by the CA in --cacert {cacert} (server certificate {srv_subject}, issued by {srv_issuer}; --cacert holds {ca_subject})"
        ),
        Some(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => format!(
            "the server's certificate does not cover {host}: expected {host} in its SANs, the certificate ({srv_subject}) has [{}]; re-issue it with {host}, or connect by one of those names",
            srv_sans.join(", ")
        ),
        Some(rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. })) => {
            format!("the server's certificate ({srv_subject}) has expired; renew it")
        }
        Some(rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. })) => {
            format!("the server's certificate ({srv_subject}) is not for server use (no serverAuth usage): a client certificate is installed as the server's")
        }
        Some(rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired,
        )) => client_cert_refused(tls, &ca_subject),
        Some(other) => format!("TLS failed: {other}"),
        None if err.kind() == std::io::ErrorKind::WouldBlock || err.kind() == std::io::ErrorKind::TimedOut => {
            return Some(Failure::timeout(limit));
        }
        None if err.kind() == std::io::ErrorKind::UnexpectedEof || err.kind() == std::io::ErrorKind::ConnectionReset => {
            // etcd may close the connection without an alert when it rejects the client certificate.
            client_cert_refused(tls, &ca_subject)
        }
        None => format!("TLS failed: {err}"),
    };
    Some(Failure { kind: FailureKind::Tls, message })
}

fn client_cert_refused(tls: &TlsMaterial, ca_subject: &str) -> String {
    let Some((cert, _)) = &tls.identity else {
        return "the server requires a client certificate: pass --cert and --key (ETCDCTL_CERT, ETCDCTL_KEY)".into();
    };
    let path = tls.cert_path.clone().unwrap_or_default();
    let ours = der_certs(cert);
    let (subject, issuer, _, client_auth) = ours.first().map(|c| subject_of(c)).unwrap_or(("?".into(), "?".into(), vec![], true));
    if !client_auth {
        return format!("the server rejected the client certificate --cert {path} ({subject}): it has no clientAuth usage");
    }
    if let Some(why) = ours.first().and_then(|der| locally_known_refusal(der, tls.ca_path.as_deref())) {
        return format!("the server rejected the client certificate --cert {path} ({subject}): {why}");
    }
    if tls.ca_pem.is_some() && issuer != ca_subject {
        return format!(
            "the server rejected the client certificate --cert {path} ({subject}): it was issued by {issuer}, not by the cluster's CA ({ca_subject} in --cacert)"
        );
    }
    format!(
        "the server rejected the client certificate --cert {path} ({subject}, issued by {issuer}): it is not signed by a CA the server trusts (its --trusted-ca-file), or it is expired"
    )
}

/// What can be told about a refused client certificate without the server: it has expired (or
/// is not yet valid), or the CRL next to the CA file (`crl.pem`, as pki writes it) revokes it.
fn locally_known_refusal(der: &[u8], ca_path: Option<&str>) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, cert) = parse_x509_certificate(der).ok()?;
    let now = ASN1Time::now();
    let validity = cert.validity();
    if validity.not_after < now {
        return Some(format!("it expired on {} (renew it: pki renew, or etcd-bootstrap rotate certs)", validity.not_after));
    }
    if validity.not_before > now {
        return Some(format!("it is not valid before {} (check this machine's clock)", validity.not_before));
    }
    let crl_path = std::path::Path::new(ca_path?).parent()?.join("crl.pem");
    let crl_pem = std::fs::read(&crl_path).ok()?;
    for block in ::pem::parse_many(&crl_pem).ok()?.into_iter().filter(|b| b.tag() == "X509 CRL") {
        if let Ok((_, crl)) = parse_x509_crl(block.contents())
            && crl.issuer() == cert.issuer()
            && crl.iter_revoked_certificates().any(|r| r.raw_serial() == cert.raw_serial())
        {
            return Some(format!("it is revoked (serial {} is in {})", cert.raw_serial_as_string(), crl_path.display()));
        }
    }
    None
}

/// The certificate `endpoint` presents right now (a fresh TLS handshake, verified against the CA
/// in `tls`), as DER. Used to confirm a member serves a rotated certificate.
pub fn presented_certificate(endpoint: &str, tls: &TlsMaterial, limit: Duration) -> Option<Vec<u8>> {
    let (host, addr) = endpoint_target(endpoint)?;
    let (config, seen) = recording_config(tls)?;
    let mut sock = TcpStream::connect_timeout(&addr, limit).ok()?;
    sock.set_read_timeout(Some(limit)).ok()?;
    sock.set_write_timeout(Some(limit)).ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from(host).ok()?).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).ok()?;
    }
    seen.lock().ok().and_then(|s| s.first().cloned())
}

//! etcd's `GET /version` on a client URL: the member's server version and the cluster version
//! (which moves to a new minor only once every member runs it). Not in the gRPC API, so this is
//! a small HTTPS/1.1 request of our own with the client's TLS material, bounded.

use crate::options::ClientOptions;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// `{"etcdserver":"3.5.1","etcdcluster":"3.5.0"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Versions {
    #[serde(rename = "etcdserver")]
    pub server: String,
    #[serde(rename = "etcdcluster")]
    pub cluster: String,
}

/// The minor of an etcd version string (`3.7.4` -> 7), for choosing the printer of that line.
pub fn minor_of(version: &str) -> Option<u64> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    (parts.next()? == "3").then_some(())?;
    parts.next()?.parse().ok()
}

fn tls_config(opts: &ClientOptions) -> Result<rustls::ClientConfig, String> {
    let tls = opts.tls.as_ref().ok_or("no TLS material")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in tls.ca_pem.as_deref().map(crate::diagnose::der_certs).unwrap_or_default() {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(|e| e.to_string())?.with_root_certificates(roots);
    Ok(match &tls.identity {
        Some((cert, key)) => {
            let key = pem::parse_many(key)
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|b| b.tag().ends_with("PRIVATE KEY"))
                .ok_or("no private key")?
                .into_contents();
            let key = rustls::pki_types::PrivateKeyDer::try_from(key).map_err(|e| e.to_string())?;
            builder.with_client_auth_cert(crate::diagnose::der_certs(cert), key).map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    })
}

/// `GET /version` on `endpoint` (`https://host:port`), each step bounded by `limit`.
pub fn get(endpoint: &str, opts: &ClientOptions, limit: Duration) -> Result<Versions, String> {
    let hostport = endpoint.strip_prefix("https://").ok_or("not an https:// endpoint")?.trim_end_matches('/');
    let (host, _) = hostport.rsplit_once(':').ok_or("no port")?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let addr = hostport.to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut sock = TcpStream::connect_timeout(&addr, limit).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(limit)).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(Arc::new(tls_config(opts)?), name).map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(format!("GET /version HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let _ = tls.take(64 * 1024).read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).ok_or("no HTTP answer")?;
    // the body may be chunked: the JSON object is what matters
    let json = body.find('{').and_then(|a| body.rfind('}').map(|b| &body[a..=b])).ok_or_else(|| format!("no JSON in {body:?}"))?;
    serde_json::from_str(json).map_err(|e| format!("{e} in {json:?}"))
}

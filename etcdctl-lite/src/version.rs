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
    let raw = read_response(&mut tls);
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).ok_or("no HTTP answer")?;
    // the body may be chunked: the JSON object is what matters
    let json = body.find('{').and_then(|a| body.rfind('}').map(|b| &body[a..=b])).ok_or_else(|| format!("no JSON in {body:?}"))?;
    serde_json::from_str(json).map_err(|e| format!("{e} in {json:?}"))
}

/// One HTTP/1.1 answer, read until it is whole (etcd keeps the connection open despite
/// `Connection: close`: reading to the end waited out the whole bound), at most 64 KiB; what
/// came before an error or the bound.
fn read_response(stream: &mut impl Read) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while raw.len() < 64 * 1024 && !is_whole(&raw) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    raw
}

/// Whether `raw` holds the headers and the whole body: Content-Length bytes, or a chunked body
/// up to its last chunk.
fn is_whole(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = answer.parse(raw) else { return false };
    let body = &raw[head..];
    match answer.headers.iter().find(|h| h.name.eq_ignore_ascii_case("content-length")) {
        Some(h) => std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok()).is_some_and(|n| body.len() >= n),
        None => body.ends_with(b"0\r\n\r\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_whole_at_its_content_length_or_last_chunk() {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n";
        let body = r#"{"etcdserver":"3.6.17","etcdcluster":"3.6.0"}"#;
        assert!(!is_whole(head.as_bytes()));
        assert!(!is_whole(format!("{head}{}", &body[..20]).as_bytes()));
        assert!(is_whole(format!("{head}{body}").as_bytes()));
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2d\r\n";
        assert!(!is_whole(format!("{chunked}{body}\r\n").as_bytes()));
        assert!(is_whole(format!("{chunked}{body}\r\n0\r\n\r\n").as_bytes()));
        assert!(!is_whole(b"HTTP/1.1 200"));
    }

    #[test]
    fn reading_stops_at_a_whole_answer_without_waiting_for_the_close() {
        // a stream that fails after the answer stands for a server that keeps the connection
        struct ThenHang(std::io::Cursor<Vec<u8>>);
        impl Read for ThenHang {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match self.0.read(buf)? {
                    0 => panic!("read past a whole answer"),
                    n => Ok(n),
                }
            }
        }
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        assert_eq!(read_response(&mut ThenHang(std::io::Cursor::new(answer.clone()))), answer);
    }
}

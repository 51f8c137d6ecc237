//! The load-balancer check (`check lb`, and the gate of `rotate ca --continue`): is the
//! Kubernetes API load balancer (the spec's `control_plane_endpoint`) what
//! `kubeadm init` needs? A TCP connect tells the network's story (refused: the host answers but
//! nothing listens; timeout: the LB or a firewall drops packets); a TLS handshake and `GET
//! /readyz` through the LB, verified against the Kubernetes CA, tell the LB's (closed right after
//! connecting: no healthy apiserver behind it; 200: an apiserver is ready behind it). Read-only.

use crate::error::{BootError, Result};
use crate::plan::Plan;
use serde::Serialize;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the probe saw, in the order it looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The name did not resolve, or no route to it.
    Unreachable(String),
    /// No answer to the TCP connect within the bound.
    Timeout,
    /// TCP reset: the host answers, nothing listens on the port.
    Refused,
    /// Connected, then closed (or reset) before any TLS answer: an LB with no healthy backend.
    ClosedAfterConnect,
    /// Connected, but nothing answered the TLS handshake within the bound.
    NoTlsAnswer,
    /// A TLS answer that does not verify against the Kubernetes CA for this name.
    Untrusted(String),
    /// `/readyz` answered with this status line and body.
    Readyz { status: u16, body: String },
    /// (From a node without curl) a backend holds the connection open; /readyz not checked.
    Connected,
}

/// The verdict of `check lb`.
#[derive(Debug, Clone, Serialize)]
pub struct LbVerdict {
    /// Where the check ran: `this machine`, or a control-plane node (`cp-1 (ssh root@10.0.0.21)`).
    pub from: String,
    /// READY, NO-BACKEND, REFUSED, NOT-READY, CONNECTED, TIMEOUT, UNREACHABLE, NO-TLS-ANSWER, UNTRUSTED.
    pub state: &'static str,
    pub endpoint: String,
    pub summary: String,
    /// Milliseconds from the first packet to the verdict.
    pub took_ms: u128,
}

impl LbVerdict {
    /// 0 ready, 1 not ready yet (what is expected before `kubeadm init`), 2 broken.
    pub fn exit_code(&self) -> u8 {
        match self.state {
            "READY" => crate::exit::OK,
            "NO-BACKEND" | "REFUSED" | "NOT-READY" | "CONNECTED" => crate::exit::WARNING,
            _ => crate::exit::CRITICAL,
        }
    }
}

/// Turns what was seen into the verdict's words (pure).
pub fn judge(endpoint: &str, seen: &Seen) -> (&'static str, String) {
    match seen {
        Seen::Readyz { status: 200, body } => ("READY", format!("kube-apiserver answers /readyz through the load balancer at {endpoint} ({})", body.trim())),
        Seen::Readyz { status, body } => (
            "NOT-READY",
            format!(
                "an apiserver behind {endpoint} answers /readyz with {status}: {}",
                body.lines().filter(|l| l.contains("failed")).collect::<Vec<_>>().join("; ")
            ),
        ),
        Seen::ClosedAfterConnect => (
            "NO-BACKEND",
            format!(
                "{endpoint} accepts connections and closes them: the load balancer runs, with no healthy kube-apiserver behind it (expected before kubeadm init; afterwards check the apiservers and the CA file its health checks use)"
            ),
        ),
        Seen::Refused => (
            "REFUSED",
            format!(
                "{endpoint} is reachable but nothing listens on the port: HAProxy is not running or not bound there (with a plain TCP forwarder: no apiserver yet)"
            ),
        ),
        Seen::Timeout => (
            "TIMEOUT",
            format!("no answer from {endpoint}: the load balancer is down or a firewall drops the packets (a refused connection would have come back at once)"),
        ),
        Seen::Unreachable(why) => ("UNREACHABLE", format!("{endpoint}: {why}")),
        Seen::NoTlsAnswer => (
            "NO-TLS-ANSWER",
            format!("{endpoint} accepts connections but nothing answers TLS: a backend is hung, or the load balancer does not forward to an apiserver"),
        ),
        Seen::Connected => ("CONNECTED", format!("{endpoint}: a backend holds the connection open; /readyz not checked (no curl there)")),
        Seen::Untrusted(why) => (
            "UNTRUSTED",
            format!(
                "TLS through {endpoint} does not verify against the Kubernetes CA: {why} (the apiserver certificate must come from that CA and name the endpoint's host in its SANs)"
            ),
        ),
    }
}

/// `check lb` from this machine, then from every control-plane node the spec can reach.
pub fn check_lb(plan: &Plan, limit: Duration) -> Result<Vec<LbVerdict>> {
    let endpoint = plan.loaded.spec.kubernetes.control_plane_endpoint.clone();
    let (host, port) = crate::spec::split_host_port(&endpoint)
        .ok_or_else(|| BootError::SpecField { field: "kubernetes.control_plane_endpoint".into(), reason: format!("{endpoint:?} is not host:port") })?;
    let ca_path = plan.issue.dir.join("kubernetes/ca.crt");
    let ca = std::fs::read(&ca_path)
        .map_err(|e| BootError::Output { path: ca_path.display().to_string(), reason: format!("{e}; the Kubernetes CA is made by `up`: run it first") })?;
    let ca_der = pki::pemfile::first_certificate(&ca, &ca_path.display().to_string())?;
    let t = Instant::now();
    let seen = probe(&host, port, &ca_der, limit);
    let (state, summary) = judge(&endpoint, &seen);
    let mut verdicts = vec![LbVerdict { from: "this machine".into(), state, endpoint: endpoint.clone(), summary, took_ms: t.elapsed().as_millis() }];
    let ca_pem = String::from_utf8_lossy(&ca).into_owned();
    let nodes: Vec<&crate::spec::NodeSpec> = plan.loaded.spec.kubernetes.control_plane_nodes.iter().filter(|n| n.host.is_some()).collect();
    let from_nodes: Vec<LbVerdict> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes.iter().map(|n| s.spawn(|| from_node(n, &host, port, &ca_pem, &endpoint, limit))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    verdicts.extend(from_nodes);
    Ok(verdicts)
}

/// The probe script on a control-plane node (over its transport).
fn from_node(n: &crate::spec::NodeSpec, host: &str, port: u16, ca_pem: &str, endpoint: &str, limit: Duration) -> LbVerdict {
    let dest = n.host.as_deref().unwrap_or("local");
    let t = crate::host::transport::for_host(dest, &n.ssh_options, n.become_with.unwrap_or_default());
    let from = format!("{} ({})", n.name, t.describe());
    let started = Instant::now();
    let seen = match t.run(&crate::host::scripts::lb_probe(host, port, ca_pem, limit.as_secs().max(1)), limit * 4 + Duration::from_secs(10)) {
        Ok(out) => parse_seen(out.value("seen").as_deref().unwrap_or("")),
        Err(e) => Seen::Unreachable(format!("cannot run the check on the node: {e}")),
    };
    let (state, summary) = judge(endpoint, &seen);
    LbVerdict { from, state, endpoint: endpoint.to_string(), summary, took_ms: started.elapsed().as_millis() }
}

/// The node script's `seen=` word (see `scripts::lb_probe`).
pub fn parse_seen(word: &str) -> Seen {
    match word.split_once(':').unwrap_or((word, "")) {
        ("refused", _) => Seen::Refused,
        ("timeout", _) => Seen::Timeout,
        ("closed", _) => Seen::ClosedAfterConnect,
        ("open", _) => Seen::Connected,
        ("no-tls-answer", _) => Seen::NoTlsAnswer,
        ("untrusted", why) => Seen::Untrusted(why.to_string()),
        ("readyz", code) => match code.parse::<u16>() {
            Ok(c) if c > 0 => Seen::Readyz { status: c, body: if c == 200 { "ok".into() } else { String::new() } },
            _ => Seen::Unreachable(format!("no HTTP answer (curl code {code:?})")),
        },
        ("unreachable", why) => Seen::Unreachable(why.to_string()),
        _ => Seen::Unreachable(format!("the check on the node printed {word:?}")),
    }
}

/// Connect, handshake, `GET /readyz`, each bounded by `limit`.
pub fn probe(host: &str, port: u16, ca_der: &[u8], limit: Duration) -> Seen {
    let addr: SocketAddr = match (host, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => return Seen::Unreachable(format!("{host} resolves to no address")),
        Err(e) => return Seen::Unreachable(format!("{host} does not resolve: {e}")),
    };
    let mut sock = match TcpStream::connect_timeout(&addr, limit) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Seen::Refused,
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => return Seen::Timeout,
        Err(e) => return Seen::Unreachable(e.to_string()),
    };
    let _ = sock.set_read_timeout(Some(limit));
    let _ = sock.set_write_timeout(Some(limit));
    let config = match client_config(ca_der) {
        Ok(c) => c,
        Err(e) => return Seen::Untrusted(e),
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_string()) else {
        return Seen::Unreachable(format!("{host:?} is not a name TLS can verify"));
    };
    let mut conn = match rustls::ClientConnection::new(Arc::new(config), name) {
        Ok(c) => c,
        Err(e) => return Seen::Untrusted(e.to_string()),
    };
    while conn.is_handshaking() {
        match conn.complete_io(&mut sock) {
            Ok((0, 0)) => return Seen::ClosedAfterConnect,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe) => {
                return Seen::ClosedAfterConnect;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Seen::NoTlsAnswer,
            Err(e) => return Seen::Untrusted(e.to_string()),
        }
    }
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {host}\r\nUser-Agent: etcd-bootstrap\r\nConnection: close\r\n\r\n");
    if let Err(e) = tls.write_all(request.as_bytes()) {
        return Seen::Unreachable(format!("writing the request failed: {e}"));
    }
    let mut response = Vec::new();
    // bounded: at most 64 KiB, each read bounded by the socket timeout
    let mut buf = [0u8; 4096];
    while response.len() < 64 * 1024 {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    parse_response(&response)
}

fn client_config(ca_der: &[u8]) -> std::result::Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(ca_der.to_vec())).map_err(|e| format!("the Kubernetes CA is not usable: {e}"))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `HTTP/1.x STATUS ...\r\n...\r\n\r\nBODY` (no chunked decoding: /readyz answers are tiny).
pub fn parse_response(raw: &[u8]) -> Seen {
    let text = String::from_utf8_lossy(raw);
    let status = text.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(status) => {
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            Seen::Readyz { status, body: body.chars().take(2000).collect() }
        }
        None if raw.is_empty() => Seen::ClosedAfterConnect,
        None => Seen::Untrusted(format!("not an HTTP answer: {:?}", text.chars().take(80).collect::<String>())),
    }
}

/// `check lb`'s verdicts: one line each (the first from this machine, then from each node), or
/// JSON.
pub fn render(all: &[LbVerdict], json: bool) -> Result<String> {
    if json {
        return serde_json::to_string_pretty(all).map(|j| j + "\n").map_err(|e| BootError::Verification(e.to_string()));
    }
    Ok(all
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let from = if i == 0 { String::new() } else { format!("from {}: ", v.from) };
            format!("{from}{}: {} ({} ms)\n", v.state, v.summary, v.took_ms)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_observation_has_its_own_word_and_exit_code() {
        let cases = [
            (Seen::Readyz { status: 200, body: "ok".into() }, "READY", 0),
            (Seen::Readyz { status: 500, body: "[-]etcd failed: reason withheld\n".into() }, "NOT-READY", 1),
            (Seen::ClosedAfterConnect, "NO-BACKEND", 1),
            (Seen::Refused, "REFUSED", 1),
            (Seen::Timeout, "TIMEOUT", 2),
            (Seen::Unreachable("no route".into()), "UNREACHABLE", 2),
            (Seen::NoTlsAnswer, "NO-TLS-ANSWER", 2),
            (Seen::Untrusted("unknown issuer".into()), "UNTRUSTED", 2),
            (Seen::Connected, "CONNECTED", 1),
        ];
        for (seen, word, code) in cases {
            let (state, summary) = judge("lb:6443", &seen);
            assert_eq!(state, word);
            assert!(summary.contains("lb:6443"), "{summary}");
            let v = LbVerdict { from: "this machine".into(), state, endpoint: "lb:6443".into(), summary, took_ms: 0 };
            assert_eq!(v.exit_code(), code, "{word}");
        }
        assert!(judge("lb:6443", &Seen::Readyz { status: 500, body: "[+]ping ok\n[-]etcd failed: x\n".into() }).1.contains("[-]etcd failed"));
    }

    #[test]
    fn responses_parse_without_panics() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), Seen::Readyz { status: 200, body: "ok".into() });
        assert_eq!(parse_response(b""), Seen::ClosedAfterConnect);
        assert!(matches!(parse_response(b"\xff\xfe garbage"), Seen::Untrusted(_)));
        assert!(matches!(parse_response(b"HTTP/1.0 200"), Seen::Readyz { status: 200, .. }));
    }

    #[test]
    fn the_node_scripts_words_map_to_observations() {
        assert_eq!(parse_seen("refused"), Seen::Refused);
        assert_eq!(parse_seen("readyz:200"), Seen::Readyz { status: 200, body: "ok".into() });
        assert!(matches!(parse_seen("readyz:000"), Seen::Unreachable(_)));
        assert!(matches!(parse_seen("unreachable:No route to host"), Seen::Unreachable(w) if w == "No route to host"));
        assert!(matches!(parse_seen(""), Seen::Unreachable(_)));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_response(&raw);
        }
    }
}

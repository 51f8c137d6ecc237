//! Each member's Prometheus metrics (`/metrics`), read over its client URL with the healthcheck
//! client (or the plain-HTTP metrics listener the spec asks for): WAL fsync and backend commit
//! latency, leader changes.

use super::{Check, Gauge, Level, judge};
use crate::plan::MemberPlan;
use crate::run::context::Ctx;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;

pub fn checks(ctx: &Ctx, now: i64) -> (Vec<Check>, Vec<Gauge>) {
    let (mut c, mut g) = (Vec::new(), Vec::new());
    let texts = crate::run::live::per_member(ctx.plan, |m| fetch(ctx, m));
    let store = crate::run::journal_store::Store::for_spec(std::path::Path::new(&ctx.plan.loaded.file));
    let mut samples: Samples = std::fs::read_to_string(store.doctor_samples_path()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    for (m, t) in ctx.plan.members.iter().zip(texts) {
        let name = m.spec.name.as_str();
        match t {
            Ok(text) => {
                let fsync = judge::quantile(0.99, &judge::histogram(&text, "etcd_disk_wal_fsync_duration_seconds"));
                let commit = judge::quantile(0.99, &judge::histogram(&text, "etcd_disk_backend_commit_duration_seconds"));
                c.push(judge::latency("wal-fsync", name, fsync, 0.010, 0.5));
                c.push(judge::latency("backend-commit", name, commit, 0.025, 0.25));
                if let Some(n) = judge::counter(&text, "etcd_server_leader_changes_seen_total") {
                    g.push(Gauge {
                        name: "etcd_bootstrap_leader_changes_seen",
                        help: "Leader changes the member has seen since it started.",
                        labels: vec![("member", name.into())],
                        value: n,
                    });
                    let mine = samples.entry(name.to_string()).or_default();
                    c.push(judge::leader_changes(name, n, judge::window_start(mine, now), now));
                    mine.retain(|(t, _)| now - t <= 2 * judge::LEADER_WINDOW);
                    mine.push((now, n));
                }
                for (metric, v) in [("etcd_bootstrap_wal_fsync_p99_seconds", fsync), ("etcd_bootstrap_backend_commit_p99_seconds", commit)] {
                    if let Some(v) = v {
                        g.push(Gauge { name: metric, help: "p99 latency since the member started.", labels: vec![("member", name.into())], value: v });
                    }
                }
            }
            Err(e) => c.push(Check {
                name: "metrics".into(),
                member: Some(name.into()),
                level: Level::Unknown,
                evidence: e,
                fix: "check that the member serves /metrics".into(),
            }),
        }
    }
    // kept for the next run (a minute timer); losing it only restarts the window
    if let Ok(text) = serde_json::to_string(&samples) {
        let _ = pki::files::write_all(&[pki::files::PlannedFile::public(store.doctor_samples_path(), text + "\n")], true);
    }
    (c, g)
}

/// Per member, (time, leader changes seen) as earlier runs read them.
type Samples = std::collections::BTreeMap<String, Vec<(i64, f64)>>;

fn fetch(ctx: &Ctx, m: &MemberPlan) -> Result<String, String> {
    let host = m.spec.url_host();
    match ctx.plan.loaded.spec.etcd.metrics_port {
        Some(port) => {
            let mut sock = connect(&host, port)?;
            get(&mut sock, &host)
        }
        None => {
            let mut sock = connect(&host, m.spec.client_port)?;
            let config = tls_config(ctx)?;
            let ip = m.spec.address.to_string();
            let name = rustls::pki_types::ServerName::try_from(ip).map_err(|e| e.to_string())?;
            let mut conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
            let mut tls = rustls::Stream::new(&mut conn, &mut sock);
            get(&mut tls, &host)
        }
    }
}

fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addr = (host.trim_start_matches('[').trim_end_matches(']'), port).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let sock = TcpStream::connect_timeout(&addr, super::METRICS_TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    let _ = sock.set_read_timeout(Some(super::METRICS_TIMEOUT));
    let _ = sock.set_write_timeout(Some(super::METRICS_TIMEOUT));
    Ok(sock)
}

/// HTTP/1.0 (no chunked answer), bounded to 16 MiB.
fn get(s: &mut impl ReadWrite, host: &str) -> Result<String, String> {
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {host}\r\nUser-Agent: etcd-bootstrap doctor\r\n\r\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    let _ = s.take(16 << 20).read_to_end(&mut body);
    let text = String::from_utf8_lossy(&body).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200") {
        return Err(format!("/metrics answered {status:?}"));
    }
    Ok(rest.to_string())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn tls_config(ctx: &Ctx) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let (ca, cert, key) = ctx.plan.client_files();
    let bundle = crate::plan::trust_bundle_path(ctx.plan);
    let ca = if bundle.exists() { bundle } else { ca };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots.add(cert.map_err(|e| format!("{}: {e}", ca.display()))?).map_err(|e| e.to_string())?;
    }
    let chain: Vec<_> =
        rustls::pki_types::CertificateDer::pem_file_iter(&cert).map_err(|e| format!("{}: {e}", cert.display()))?.filter_map(|c| c.ok()).collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| e.to_string())
}

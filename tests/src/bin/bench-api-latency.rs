//! Benchmark helper (not a test; used by `bench/maintain.sh`): a client of a real
//! kube-apiserver, creating a ConfigMap every 10 ms over one kept connection (as a controller
//! does) until STOPFILE exists, printing `UNIX_MS LATENCY_MS` per object created (`UNIX_MS
//! fail` otherwise, and why on stderr), the same lines `bench-latency` prints for etcd, so a run sees the latency an
//! operation on etcd causes to the API's writes.
//!
//!   bench-api-latency URL TOKEN STOPFILE   (URL https://127.0.0.1:PORT; TOKEN a bearer token
//!                                           the server knows; a loopback lab: its self-signed
//!                                           certificate is not checked)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    assert!(a.len() == 4, "usage: bench-api-latency URL TOKEN STOPFILE");
    let url = format!("{}/api/v1/namespaces/default/configmaps", a[1].trim_end_matches('/'));
    let bearer = format!("Bearer {}", a[2]);
    let stop = std::path::PathBuf::from(&a[3]);
    let tls = ureq::tls::TlsConfig::builder().disable_verification(true).build();
    let agent: ureq::Agent =
        ureq::Agent::config_builder().tls_config(tls).timeout_global(Some(Duration::from_secs(60))).http_status_as_error(false).build().into();
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"bench-"},"data":{"k":"a value of about a hundred bytes, as small objects in a real cluster are......"}}"#;
    let mut out = std::io::stdout().lock();
    while !stop.exists() {
        let t = Instant::now();
        let r = agent.post(&url).header("Content-Type", "application/json").header("Authorization", &bearer).send(body);
        // the answer read whole: the connection is kept for the next request
        let answer = r.map_err(|e| e.to_string()).and_then(|mut resp| {
            let body = resp.body_mut().read_to_vec().map_err(|e| e.to_string())?;
            match resp.status().as_u16() {
                201 => Ok(()),
                code => Err(format!("HTTP {code}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]))),
            }
        });
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        match answer {
            Ok(()) => writeln!(out, "{at} {:.1}", t.elapsed().as_secs_f64() * 1000.0).unwrap(),
            Err(e) => {
                writeln!(out, "{at} fail").unwrap();
                eprintln!("bench-api-latency: {at} after {:.0} ms: {e}", t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

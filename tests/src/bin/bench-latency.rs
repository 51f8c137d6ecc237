//! Benchmark helper (not a test; used by `bench/maintain.sh`): a writer as kube-apiserver is one
//! to etcd — one client over every endpoint — putting a small key every 10 ms until STOPFILE
//! exists, printing `UNIX_MS LATENCY_MS` per acknowledged write (`UNIX_MS fail` for a failed
//! one, and why on stderr; the time the write ended, comparable with `date +%s%3N`) on stdout, so a run can see the write latency an operation causes.
//! A put that never reached a server (the endpoint refused the connection: a member stopped) is
//! sent again at once, as etcd's Go client does for a request it never sent; its latency counts
//! every attempt.
//!
//!   bench-latency ENDPOINTS CACERT CERT KEY STOPFILE
#![allow(clippy::unwrap_used, clippy::expect_used)]

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::io::Write;
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    assert!(a.len() == 6, "usage: bench-latency ENDPOINTS CACERT CERT KEY STOPFILE");
    let endpoints: Vec<String> = a[1].split(',').map(String::from).collect();
    let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&a[2]))).identity(Identity::from_pem(read(&a[3]), read(&a[4])));
    let opts = ConnectOptions::new().with_tls(tls).with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(30));
    let stop = std::path::PathBuf::from(&a[5]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(endpoints, Some(opts)).await.expect("connect");
        let mut out = std::io::stdout().lock();
        let mut i = 0u64;
        while !stop.exists() {
            i += 1;
            let t = Instant::now();
            let mut r = c.put("/bench/latency", i.to_string(), None).await;
            for _ in 0..10 {
                match &r {
                    Err(e) if e.to_string().contains("tcp connect error") => r = c.put("/bench/latency", i.to_string(), None).await,
                    _ => break,
                }
            }
            let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            match r {
                Ok(_) => writeln!(out, "{at} {:.1}", t.elapsed().as_secs_f64() * 1000.0).unwrap(),
                Err(e) => {
                    writeln!(out, "{at} fail").unwrap();
                    eprintln!("bench-latency: {at} after {:.0} ms: {e}", t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

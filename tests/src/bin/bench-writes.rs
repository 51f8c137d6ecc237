//! Benchmark helper (not a test; used by `bench/pitr.sh`): writes as kube-apiservers do — one
//! client over every endpoint, puts and a delete in ten of keys under /registry/ with values of
//! 1-4 KB — at RATE writes per second (32 in flight, each paced) for SECONDS, then prints how many
//! were acknowledged, the rate reached, and the last acknowledged revision.
//!
//!   bench-writes RATE SECONDS ENDPOINTS CACERT CERT KEY
#![allow(clippy::unwrap_used, clippy::expect_used)]

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const TASKS: u64 = 32;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    assert!(a.len() == 7, "usage: bench-writes RATE SECONDS ENDPOINTS CACERT CERT KEY");
    let (rate, seconds): (u64, u64) = (a[1].parse().expect("RATE"), a[2].parse().expect("SECONDS"));
    let endpoints: Vec<String> = a[3].split(',').map(String::from).collect();
    let read = |p: &str| std::fs::read(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&a[4]))).identity(Identity::from_pem(read(&a[5]), read(&a[6])));
    let opts = ConnectOptions::new().with_tls(tls).with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (done, top) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicI64::new(0)));
    let t = Instant::now();
    rt.block_on(async {
        let client = Client::connect(endpoints, Some(opts)).await.expect("connect");
        let blob: Arc<String> = Arc::new((0..4096).map(|i| (b'a' + (i * 7 % 26) as u8) as char).collect());
        let period = Duration::from_secs_f64(TASKS as f64 / rate.max(1) as f64);
        let mut tasks = vec![];
        for w in 0..TASKS {
            let (mut c, blob, done, top) = (client.clone(), blob.clone(), done.clone(), top.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let end = Instant::now() + Duration::from_secs(seconds);
                let mut i = 0u64;
                while Instant::now() < end {
                    tick.tick().await;
                    i += 1;
                    let key = format!("/registry/pods/ns-{w}/pod-{}", i % 500);
                    let r = if i.is_multiple_of(10) {
                        c.delete(key, None).await.map(|r| r.header().map(|h| h.revision()))
                    } else {
                        let size = 1024 + ((i * 2_654_435_761 + w) % 3072) as usize;
                        c.put(key, &blob[..size], None).await.map(|r| r.header().map(|h| h.revision()))
                    };
                    if let Ok(rev) = r {
                        done.fetch_add(1, Ordering::Relaxed);
                        top.fetch_max(rev.unwrap_or(0), Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let n = done.load(Ordering::Relaxed);
    println!("{n} {:.0} {}", n as f64 / t.elapsed().as_secs_f64(), top.load(Ordering::Relaxed));
}

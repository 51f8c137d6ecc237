//! Benchmark helper (not a test; used by `bench/backup.sh ... k8s`): fills a cluster the way
//! Kubernetes fills it — many keys under /registry/ with values of 1 to 100 KB (sizes spread
//! evenly by a fixed pseudo-random sequence, so every run writes the same), 16 requests in
//! flight — until MB megabytes of values are written. Prints keys and bytes written.
//!
//! Each value is an object a kube-apiserver decodes (JSON of the kind its key names, the bulk
//! in an annotation): a real kube-apiserver serving from the filled cluster lists and watches
//! them as it would its own (`bench/maintain.sh`; undecodable values keep it from ever being ready).
//!
//!   bench-fill MB ENDPOINT CACERT CERT KEY
#![allow(clippy::unwrap_used, clippy::expect_used)]

use etcdctl_lite::options::ClientOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The resource (its key's segment) and its stored apiVersion and kind.
const KINDS: [(&str, &str, &str); 6] = [
    ("pods", "v1", "Pod"),
    ("configmaps", "v1", "ConfigMap"),
    ("secrets", "v1", "Secret"),
    ("events", "v1", "Event"),
    ("leases", "coordination.k8s.io/v1", "Lease"),
    ("replicasets", "apps/v1", "ReplicaSet"),
];

/// Object `i` as JSON of `n` bytes (or its smallest, if larger): `filler` makes up the size.
fn object(i: u64, n: usize, filler: &str) -> String {
    let (_, api, kind) = KINDS[(i % 6) as usize];
    let head = format!(r#"{{"apiVersion":"{api}","kind":"{kind}","metadata":{{"name":"obj-{i:08}","namespace":"ns-{}","annotations":{{"fill":""#, i % 97);
    let tail = r#""}}}"#;
    let pad = n.saturating_sub(head.len() + tail.len()).min(filler.len());
    format!("{head}{}{tail}", &filler[..pad])
}

/// The value size of key `i`: 1 KB .. 100 KB, from a splitmix64 step (no rand crate needed).
fn size_of(i: u64) -> usize {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    1024 + (z % (99 * 1024)) as usize
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    assert!(a.len() == 6, "usage: bench-fill MB ENDPOINT CACERT CERT KEY");
    let target = a[1].parse::<u64>().expect("MB") << 20;
    let opts =
        ClientOptions::new(&[a[2].clone()], Some(&a[3]), Some(&a[4]), Some(&a[5]), Duration::from_secs(5), Duration::from_secs(30)).expect("client files");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (keys, bytes) = rt.block_on(async {
        let client = etcdctl_lite::connect::client_for(&a[2], &opts).await.expect("connect");
        // one text blob that values are cut from (compressible as JSON is, not as zeros)
        let blob: Arc<String> = Arc::new((0..100 * 1024).map(|i| (b'a' + (i * 7 % 26) as u8) as char).collect());
        let (next, written) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut tasks = vec![];
        for _ in 0..16 {
            let (mut c, blob, next, written) = (client.clone(), blob.clone(), next.clone(), written.clone());
            tasks.push(tokio::spawn(async move {
                while written.load(Ordering::Relaxed) < target {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let n = size_of(i);
                    let key = format!("/registry/{}/ns-{}/obj-{i:08}", KINDS[(i % 6) as usize].0, i % 97);
                    c.put(key, object(i, n, &blob), None).await.expect("put");
                    written.fetch_add(n as u64, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        (next.load(Ordering::Relaxed), written.load(Ordering::Relaxed))
    });
    println!("{keys} keys, {bytes} bytes of values");
}

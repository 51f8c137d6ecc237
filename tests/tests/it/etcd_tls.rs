//! A real 3-member etcd (Debian etcd-server) starts with `pki`'s certificates, client and peer
//! certificate auth on, and Debian's `etcdctl` with the apiserver client certificate finds it healthy.

use integration_tests::cluster::Cluster;

#[test]
fn real_etcd_cluster_runs_on_our_certificates() {
    let cluster = Cluster::start(3);
    let out = cluster.etcdctl(&["endpoint", "health", "--cluster"]).assert_ok();
    assert_eq!(out.stdout.matches("is healthy").count() + out.stderr.matches("is healthy").count(), 3, "{}{}", out.stdout, out.stderr);
    cluster.etcdctl(&["put", "/registry/test", "v"]).assert_ok();
    let got = cluster.etcdctl(&["get", "/registry/test", "--print-value-only"]).assert_ok();
    assert_eq!(got.stdout.trim(), "v");
    // peers talk TLS with each other: every member knows the others' TLS peer URLs
    let members = cluster.etcdctl(&["member", "list"]).assert_ok().stdout;
    assert_eq!(members.matches("https://").count(), 6, "{members}");
    for i in 0..3 {
        let log = cluster.log_tail(i, 1000);
        let bad: Vec<&str> =
            log.lines().filter(|l| l.contains("incompatible key usage") || (l.contains("rejected connection") && l.contains("certificate"))).collect();
        assert!(bad.is_empty(), "member {i}:\n{}", bad.join("\n"));
    }
}

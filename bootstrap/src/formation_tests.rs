use super::*;

// Lines as etcd 3.5 writes them (captured from real members), and as etcd 3.4's capnslog does.
const REFUSED: &str = r#"{"level":"warn","ts":"2026-12-05T22:59:40.719454Z","caller":"rafthttp/probing_status.go:68","msg":"prober detected unhealthy status","round-tripper-name":"ROUND_TRIPPER_SNAPSHOT","remote-peer-id":"a711c88252f39df9","rtt":"0s","error":"dial tcp 127.0.0.52:2380: connect: connection refused"}"#;
const NO_ROUTE_34: &str =
    "2026-12-05 22:59:40.713276 W | rafthttp: health check for peer 97df83d413af38b could not connect: dial tcp 10.213.7.3:2380: connect: no route to host";
const BIND_FATAL: &str = r#"{"level":"fatal","ts":"2026-12-05T22:59:35.700100Z","caller":"etcdmain/etcd.go:204","msg":"discovery failed","error":"listen tcp 10.255.255.1:2380: bind: cannot assign requested address","stacktrace":"go.etcd.io/etcd/server/etcdmain.startEtcdOrProxyV2\n\tgo.etcd.io/etcd/server/etcdmain/etcd.go:204"}"#;
const TLS_SAN: &str = r#"{"level":"warn","ts":"2026-12-05T23:01:02.000000Z","caller":"embed/config_logging.go:169","msg":"rejected connection","remote-addr":"127.0.0.1:51234","server-name":"","ip-addresses":["10.0.0.13"],"dns-names":[],"error":"tls: \"127.0.0.1\" does not match any of DNSNames [] (lookup  on 127.0.0.53:53: no such host)"}"#;
const X509: &str = r#"{"level":"warn","msg":"peer became inactive (message send to peer failed)","error":"failed to dial 8e9e05c52164694d on stream Message (tls: failed to verify certificate: x509: certificate signed by unknown authority)"}"#;

fn member(name: &str, running: bool, log: &str) -> MemberFacts {
    MemberFacts { name: name.into(), running, elected: Some(0), log: log.into() }
}

#[test]
fn only_a_cluster_that_provably_never_formed_counts_as_never_formed() {
    let fresh = Some(member("etcd-1", true, ""));
    assert!(never_formed(false, &[fresh.clone(), fresh.clone()]));
    // a verdict once had quorum, a leader was once elected, or a host did not answer: protected
    assert!(!never_formed(true, std::slice::from_ref(&fresh)));
    assert!(!never_formed(false, &[fresh.clone(), Some(MemberFacts { elected: Some(1), ..member("etcd-2", true, "") })]));
    assert!(!never_formed(false, &[fresh.clone(), Some(MemberFacts { elected: None, ..member("etcd-2", true, "") })]));
    assert!(!never_formed(false, &[fresh, None]));
    assert!(!never_formed(false, &[]));
}

#[test]
fn causes_are_read_from_real_log_lines_and_each_said_once() {
    let facts = [
        member("etcd-1", true, &format!("{REFUSED}\n{REFUSED}\n{TLS_SAN}\n")),
        member("etcd-2", true, &format!("{REFUSED}\n{TLS_SAN}\n")),
        member("etcd-3", false, &format!("{NO_ROUTE_34}\n{BIND_FATAL}\n")),
    ];
    let causes = likely_causes(&facts);
    assert_eq!(causes.len(), 4, "{causes:#?}");
    assert!(causes[0].starts_with("members etcd-1, etcd-2: refused peer connections from 127.0.0.1: the connecting member's peer certificate does not cover the address it connected from"), "{causes:#?}");
    assert_eq!(causes[1], "member etcd-3: exited: discovery failed: listen tcp 10.255.255.1:2380: bind: cannot assign requested address");
    assert_eq!(causes[2], "member etcd-3: cannot reach the peer at 10.213.7.3:2380: no route to host (a firewall or a route between the hosts)");
    assert_eq!(
        causes[3],
        "members etcd-1, etcd-2: cannot reach the peer at 127.0.0.52:2380: connection refused (nothing listens there: is that member running, on that address and port?)"
    );
}

#[test]
fn an_untrusted_peer_and_a_silent_exit_are_named() {
    let causes = likely_causes(&[member("etcd-1", true, X509), member("etcd-2", false, "")]);
    assert_eq!(
        causes,
        vec![
            "member etcd-1: does not accept a peer's certificate (certificate signed by unknown authority)".to_string(),
            "member etcd-2: exited, or never started (its log is empty)".to_string(),
        ]
    );
}

proptest::proptest! {
    #[test]
    fn no_log_makes_the_reader_panic(log in "\\PC{0,300}", name in "[a-z0-9-]{1,10}") {
        let _ = likely_causes(&[member(&name, false, &log), member("x", true, &log)]);
    }
}

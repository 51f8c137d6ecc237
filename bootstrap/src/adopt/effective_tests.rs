use super::effective::*;
use std::path::Path;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[test]
fn flags_are_read_as_go_flag_reads_them() {
    let (flags, rest) = parse_flags(&argv(&[
        "/usr/local/bin/etcd",
        "--name",
        "etcd-1",
        "-data-dir=/var/lib/etcd",
        "--client-cert-auth",
        "--pre-vote=false",
        "--snapshot-count",
        "10000",
        "stray",
        "--ignored",
    ]));
    assert_eq!(
        flags,
        [("name", "etcd-1"), ("data-dir", "/var/lib/etcd"), ("client-cert-auth", "true"), ("pre-vote", "false"), ("snapshot-count", "10000")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // Go's flag package stops at the first word that is not a flag
    assert_eq!(rest, ["stray", "--ignored"]);
    let (flags, rest) = parse_flags(&argv(&["etcd", "--", "--name", "x"]));
    assert!(flags.is_empty() && rest == ["--name", "x"]);
}

#[test]
fn a_flag_wins_over_its_variable_and_variables_fill_the_rest() {
    let env: Vec<(String, String)> = [("ETCD_NAME", "from-env"), ("ETCD_DATA_DIR", "/srv/etcd"), ("ETCD_EMPTY", ""), ("ETCDCTL_API", "3"), ("PATH", "/bin")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let e = from_running(&argv(&["etcd", "--name", "from-flag"]), &env, Path::new("/"), None).unwrap();
    assert_eq!(e.get("name"), Some("from-flag"));
    assert_eq!(e.get("data-dir"), Some("/srv/etcd"));
    assert_eq!(e.settings["data-dir"].origin, Origin::Env);
    assert!(e.get("empty").is_none() && e.get("api").is_none(), "empty and non-ETCD_ variables are not settings");
    assert_eq!(e.given_by(), "flags and environment");
}

#[test]
fn the_default_data_dir_is_name_dot_etcd_in_the_working_directory() {
    let e = from_running(&argv(&["etcd", "--name", "etcd1"]), &[], Path::new("/"), None).unwrap();
    assert_eq!(e.data_dir(), Path::new("/etcd1.etcd"));
    let e = from_running(&argv(&["etcd", "--data-dir", "data"]), &[], Path::new("/srv"), None).unwrap();
    assert_eq!(e.data_dir(), Path::new("/srv/data"));
    let e = from_running(&argv(&["etcd"]), &[], Path::new("/var/lib"), None).unwrap();
    assert_eq!(e.data_dir(), Path::new("/var/lib/default.etcd"));
}

#[test]
fn a_config_file_replaces_every_flag_and_variable() {
    let yaml = "name: etcd-3\ndata-dir: /var/lib/etcd\nlisten-client-urls: https://10.0.0.3:2379,https://127.0.0.1:2379\nlog-outputs: [stderr]\nclient-transport-security:\n  cert-file: /etc/etcd/server.crt\n  client-cert-auth: true\npeer-transport-security:\n  cert-file: /etc/etcd/peer.crt\n  allowed-cn: etcd\n";
    let env = vec![("ETCD_NAME".to_string(), "ignored".to_string())];
    let e = from_running(&argv(&["etcd", "--config-file", "etcd.yml", "--name", "ignored-too"]), &env, Path::new("/etc/etcd"), Some(yaml)).unwrap();
    assert_eq!(e.config_file.as_deref(), Some(Path::new("/etc/etcd/etcd.yml")));
    assert_eq!(e.name(), "etcd-3");
    assert_eq!(e.urls("listen-client-urls"), ["https://10.0.0.3:2379", "https://127.0.0.1:2379"]);
    assert_eq!(e.get("cert-file"), Some("/etc/etcd/server.crt"));
    assert_eq!(e.get("peer-cert-file"), Some("/etc/etcd/peer.crt"));
    assert_eq!(e.get("peer-cert-allowed-cn"), Some("etcd"));
    assert_eq!(e.get("log-outputs"), Some("stderr"));
    assert!(e.is_on("client-cert-auth", false));
    assert_eq!(e.given_by(), "config file");
    // ETCD_CONFIG_FILE when the flag is absent
    let env = vec![("ETCD_CONFIG_FILE".to_string(), "/etc/etcd/etcd.yml".to_string())];
    assert_eq!(config_file_of(&argv(&["etcd"]), &env, Path::new("/")).as_deref(), Some(Path::new("/etc/etcd/etcd.yml")));
    // named but unreadable: said, not guessed
    assert!(from_running(&argv(&["etcd", "--config-file=/x.yml"]), &[], Path::new("/"), None).unwrap_err().contains("/x.yml"));
}

#[test]
fn tls_files_are_listed_with_relative_paths_resolved() {
    let e =
        from_running(&argv(&["etcd", "--cert-file", "pki/etcd.pem", "--peer-key-file=/etc/etcd/pki/etcd-key.pem"]), &[], Path::new("/etc/etcd"), None).unwrap();
    let files = e.tls_files();
    assert!(files.contains(&("cert-file".into(), "/etc/etcd/pki/etcd.pem".into())));
    assert!(files.contains(&("peer-key-file".into(), "/etc/etcd/pki/etcd-key.pem".into())));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // what a host returns is hostile input: nothing may panic on it
        #[test]
        fn nothing_panics_on_any_argv_environment_or_config_file(words in proptest::collection::vec(".{0,24}", 0..12), env in proptest::collection::vec((".{0,12}", ".{0,24}"), 0..8), text in ".{0,200}", cwd in ".{0,20}") {
            let cwd = Path::new(&cwd);
            let _ = parse_flags(&words);
            let e = from_running(&words, &env, cwd, Some(&text));
            if let Ok(e) = e {
                let _ = (e.data_dir(), e.tls_files(), e.given_by(), e.urls("listen-client-urls"), e.is_on("pre-vote", true));
            }
            let _ = config_file_settings(&text);
        }
    }
}

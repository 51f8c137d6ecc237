//! `pki` as `cfssl`/`cfssljson` (symlinks): a Makefile written for cfssl runs unchanged, output
//! matches cfssl's contract, and cfssl's silent mistakes are clear errors.

use integration_tests::{Ran, bin, openssl, run, tool, tree};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temp dir with `bin/cfssl` and `bin/cfssljson` symlinked to `pki`, and the config files.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("bin");
    std::fs::create_dir(&b).unwrap();
    std::os::unix::fs::symlink(bin("pki"), b.join("cfssl")).unwrap();
    std::os::unix::fs::symlink(bin("pki"), b.join("cfssljson")).unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    std::fs::write(
        cfg.join("ca-csr.json"),
        r#"{"CN": "etcd-ca", "key": {"algo": "ecdsa", "size": 256}, "names": [{"O": "etcd", "OU": "ops"}], "ca": {"expiry": "87600h"}}"#,
    )
    .unwrap();
    std::fs::write(
        cfg.join("ca-config.json"),
        r#"{"signing": {"default": {"expiry": "8760h"}, "profiles": {
            "server": {"expiry": "8760h", "usages": ["signing", "key encipherment", "server auth", "client auth"]},
            "peer":   {"expiry": "8760h", "usages": ["signing", "key encipherment", "server auth", "client auth"]},
            "client": {"expiry": "8760h", "usages": ["signing", "key encipherment", "client auth"]}}}}"#,
    )
    .unwrap();
    std::fs::write(cfg.join("req-csr.json"), r#"{"CN": "etcd", "hosts": ["localhost", "127.0.0.1"], "key": {"algo": "rsa", "size": 2048}}"#).unwrap();
    std::fs::write(cfg.join("client-csr.json"), r#"{"CN": "kube-apiserver-etcd-client", "key": {"algo": "ecdsa", "size": 256}}"#).unwrap();
    (tmp, b)
}

fn in_ws(dir: &Path, bin_dir: &Path, program: &str, args: &[&str]) -> Ran {
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new(program).current_dir(dir).env("PATH", path).env_remove("PKI_CFSSL_LENIENT").args(args))
}

const MAKEFILE: &str = "CFSSL = cfssl
JSON = cfssljson

all: certs/ca.pem certs/etcd1.pem certs/peer-etcd1.pem certs/client.pem certs/signed.pem

certs/ca.pem: config/ca-csr.json
\tmkdir -p certs
\t$(CFSSL) gencert -initca config/ca-csr.json | $(JSON) -bare certs/ca

certs/etcd1.pem: certs/ca.pem config/ca-config.json config/req-csr.json
\t$(CFSSL) gencert \\
\t  -ca certs/ca.pem \\
\t  -ca-key certs/ca-key.pem \\
\t  -config config/ca-config.json \\
\t  -profile server \\
\t  -hostname=127.0.0.1,localhost,etcd1 \\
\t  config/req-csr.json | $(JSON) -bare certs/etcd1

certs/peer-etcd1.pem: certs/ca.pem config/ca-config.json config/req-csr.json
\t$(CFSSL) gencert -ca=certs/ca.pem -ca-key=certs/ca-key.pem -config=config/ca-config.json -profile=peer \\
\t  -hostname=127.0.0.1,etcd1 config/req-csr.json | $(JSON) -bare certs/peer-etcd1

certs/client.pem: certs/ca.pem config/ca-config.json config/client-csr.json
\t$(CFSSL) gencert -ca=certs/ca.pem -ca-key=certs/ca-key.pem -config=config/ca-config.json -profile=client \\
\t  config/client-csr.json | $(JSON) -bare certs/client

certs/signed.pem: certs/ca.pem
\topenssl req -new -newkey rsa:2048 -nodes -keyout certs/signed-key.pem -subj /CN=signed -addext subjectAltName=DNS:signed.example -out certs/signed.csr 2>/dev/null
\t$(CFSSL) sign -ca certs/ca.pem -ca-key certs/ca-key.pem -config config/ca-config.json -profile server certs/signed.csr | $(JSON) -bare certs/signed

clean:
\trm -rf certs
";

#[test]
fn a_cfssl_makefile_runs_unchanged() {
    let (tmp, b) = workspace();
    let d = tmp.path();
    std::fs::write(d.join("Makefile"), MAKEFILE).unwrap();
    in_ws(d, &b, "make", &[]).assert_ok();
    let certs = tree(&d.join("certs"));
    for f in ["ca.pem", "ca-key.pem", "ca.csr", "etcd1.pem", "etcd1-key.pem", "etcd1.csr", "peer-etcd1.pem", "client.pem", "client-key.pem", "signed.pem"] {
        assert!(certs.contains(&f.to_string()), "missing certs/{f}: {certs:?}");
    }
    let mode = |f: &str| std::fs::metadata(d.join("certs").join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("ca-key.pem"), 0o600);
    assert_eq!(mode("etcd1-key.pem"), 0o600);
    assert_eq!(mode("ca.pem"), 0o664);
    assert_eq!(mode("ca.csr"), 0o644);
    // cfssl's key formats
    assert!(std::fs::read_to_string(d.join("certs/ca-key.pem")).unwrap().starts_with("-----BEGIN EC PRIVATE KEY-----"));
    assert!(std::fs::read_to_string(d.join("certs/etcd1-key.pem")).unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    for (cert, purpose) in
        [("certs/etcd1.pem", "sslserver"), ("certs/peer-etcd1.pem", "sslclient"), ("certs/client.pem", "sslclient"), ("certs/signed.pem", "sslserver")]
    {
        openssl(d, &["verify", "-CAfile", "certs/ca.pem", "-purpose", purpose, cert]).assert_ok();
    }
    let san = openssl(d, &["x509", "-noout", "-ext", "subjectAltName", "-in", "certs/etcd1.pem"]).assert_ok().stdout;
    assert!(san.contains("DNS:etcd1") && san.contains("IP Address:127.0.0.1"), "-hostname overrides hosts: {san}");
    let signed = openssl(d, &["x509", "-noout", "-ext", "subjectAltName,basicConstraints", "-in", "certs/signed.pem"]).assert_ok().stdout;
    assert!(signed.contains("DNS:signed.example") && signed.contains("CA:FALSE"), "{signed}");
    // the CA's subject and lifetime come from the CSR JSON
    let ca = openssl(d, &["x509", "-noout", "-subject", "-enddate", "-in", "certs/ca.pem"]).assert_ok().stdout;
    assert!(ca.contains("O = etcd") && ca.contains("CN = etcd-ca"), "{ca}");
    // a second make has nothing to do, and a direct re-run refuses to overwrite the CA key
    let again = in_ws(d, &b, "make", &[]).assert_ok();
    assert!(again.stdout.contains("Nothing to be done"), "{}", again.stdout);
    let key = std::fs::read(d.join("certs/ca-key.pem")).unwrap();
    let over = in_ws(d, &b, "bash", &["-c", "cfssl gencert -initca config/ca-csr.json | cfssljson -bare certs/ca"]).assert_fails();
    assert!(over.stderr.contains("certs/ca"), "{}", over.stderr);
    assert_eq!(key, std::fs::read(d.join("certs/ca-key.pem")).unwrap(), "the CA key must survive");
    // real cfssl reads what we wrote
    let real = run(Command::new(tool("cfssl", "CFSSL_BIN")).current_dir(d).args(["certinfo", "-cert", "certs/etcd1.pem"])).assert_ok();
    assert!(real.stdout.contains("\"common_name\": \"etcd\""), "{}", real.stdout);
}

#[test]
fn output_contract_matches_real_cfssl() {
    let (tmp, b) = workspace();
    let d = tmp.path();
    let ours = in_ws(d, &b, "cfssl", &["gencert", "-initca", "config/ca-csr.json"]).assert_ok();
    let real = run(Command::new(tool("cfssl", "CFSSL_BIN")).current_dir(d).args(["gencert", "-initca", "config/ca-csr.json"])).assert_ok();
    let keys = |s: &str| -> Vec<String> {
        assert_eq!(s.trim_end().lines().count(), 1, "one line of JSON: {s}");
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(&ours.stdout), keys(&real.stdout));
    assert!(ours.stderr.contains("[INFO] signed certificate with serial number"), "logs go to stderr: {}", ours.stderr);
    // print-defaults parses as the same JSON as cfssl's
    for what in ["csr", "config"] {
        let a = in_ws(d, &b, "cfssl", &["print-defaults", what]).assert_ok().stdout;
        let r = run(Command::new(tool("cfssl", "CFSSL_BIN")).args(["print-defaults", what])).assert_ok().stdout;
        let (a, r): (serde_json::Value, serde_json::Value) = (serde_json::from_str(&a).unwrap(), serde_json::from_str(&r).unwrap());
        assert_eq!(a.as_object().unwrap().keys().collect::<Vec<_>>(), r.as_object().unwrap().keys().collect::<Vec<_>>(), "{what}");
    }
    // cfssljson -stdout prints instead of writing; -f reads a file
    std::fs::write(d.join("out.json"), &ours.stdout).unwrap();
    let printed = in_ws(d, &b, "cfssljson", &["-f", "out.json", "-bare", "-stdout"]).assert_ok().stdout;
    assert!(printed.contains("BEGIN CERTIFICATE") && printed.contains("BEGIN EC PRIVATE KEY"));
    assert!(!d.join("out.pem").exists());
    // certinfo prints cfssl's fields
    in_ws(d, &b, "cfssljson", &["-f", "out.json", "-bare", "x"]).assert_ok();
    let info = in_ws(d, &b, "cfssl", &["certinfo", "-cert", "x.pem"]).assert_ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    for k in ["subject", "issuer", "serial_number", "not_before", "not_after", "sigalg", "authority_key_id", "subject_key_id", "pem"] {
        assert!(v.get(k).is_some(), "certinfo lacks {k}: {info}");
    }
    // envelope mode (no -bare)
    let env = format!("{{\"success\":true,\"result\":{},\"errors\":[],\"messages\":[]}}", ours.stdout.trim());
    std::fs::write(d.join("env.json"), env).unwrap();
    in_ws(d, &b, "cfssljson", &["-f", "env.json", "y"]).assert_ok();
    assert!(d.join("y.pem").exists() && d.join("y-key.pem").exists());
}

fn strict_failure(args: &[&str], needles: &[&str]) {
    let (tmp, b) = workspace();
    let d = tmp.path();
    in_ws(d, &b, "bash", &["-c", "cfssl gencert -initca config/ca-csr.json | cfssljson -bare ca"]).assert_ok();
    let before = tree(d);
    let out = in_ws(d, &b, "cfssl", args).assert_fails();
    for n in needles {
        assert!(out.stderr.contains(n), "stderr lacks {n:?}: {}", out.stderr);
    }
    assert!(out.stdout.is_empty(), "nothing on stdout for cfssljson to write: {}", out.stdout);
    assert_eq!(before, tree(d));
}

#[test]
fn cfssls_silent_mistakes_are_errors() {
    let base = ["gencert", "-ca=ca.pem", "-ca-key=ca-key.pem"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let check = |args: Vec<String>, needles: &[&str]| strict_failure(&args.iter().map(String::as_str).collect::<Vec<_>>(), needles);
    // mistyped profile: cfssl silently uses "default"
    check(with(&["-config=config/ca-config.json", "-profile=peeer", "config/req-csr.json"]), &["no signing profile named \"peeer\"", "did you mean \"peer\""]);
    // unknown usage word: cfssl drops it
    let (tmp, _) = workspace();
    let bad_cfg = tmp.path().join("bad.json");
    std::fs::write(&bad_cfg, r#"{"signing":{"profiles":{"p":{"usages":["signing","server-auth"],"expiry":"8760h"}}}}"#).unwrap();
    check(
        with(&[&format!("-config={}", bad_cfg.display()), "-profile=p", "config/req-csr.json"]),
        &["unknown usage \"server-auth\"", "did you mean \"server auth\""],
    );
    // unknown JSON key: cfssl ignores it
    let typo = tmp.path().join("typo.json");
    std::fs::write(&typo, r#"{"signing":{"profiles":{"p":{"usages":["signing"],"expire":"1h"}}}}"#).unwrap();
    check(
        with(&[&format!("-config={}", typo.display()), "-profile=p", "config/req-csr.json"]),
        &["signing.profiles.p.expire: unknown key", "did you mean \"expiry\""],
    );
    // a leaf outliving its CA
    let long = tmp.path().join("long.json");
    std::fs::write(&long, r#"{"signing":{"profiles":{"p":{"usages":["signing","server auth"],"expiry":"200000h"}}}}"#).unwrap();
    check(with(&[&format!("-config={}", long.display()), "-profile=p", "config/req-csr.json"]), &["after its CA"]);
    // wrong PEM as the CA key, a key not matching the CA
    check(vec!["gencert".into(), "-ca=ca.pem".into(), "-ca-key=ca.pem".into(), "config/req-csr.json".into()], &["ca.pem", "no private key found"]);
    check(with(&["-hostname=bad_host!", "config/req-csr.json"]), &["invalid hosts"]);
    check(vec!["gencert".into(), "-initca".into(), "missing.json".into()], &["missing.json"]);
    check(vec!["gencrt".into()], &["unknown command \"gencrt\""]);
}

#[test]
fn malformed_csr_json_names_file_and_position() {
    let (tmp, b) = workspace();
    std::fs::write(tmp.path().join("bad.json"), "{\"CN\": \"x\",\n \"key\": {\"algo\": \"rsa\" \"size\": 2048}}").unwrap();
    let out = in_ws(tmp.path(), &b, "cfssl", &["gencert", "-initca", "bad.json"]).assert_fails();
    assert!(out.stderr.contains("bad.json: malformed JSON at line 2"), "{}", out.stderr);
    std::fs::write(tmp.path().join("small.json"), r#"{"CN": "x", "key": {"algo": "rsa", "size": 1024}}"#).unwrap();
    let out = in_ws(tmp.path(), &b, "cfssl", &["gencert", "-initca", "small.json"]).assert_fails();
    assert!(out.stderr.contains("too small"), "{}", out.stderr);
    let out = in_ws(tmp.path(), &b, "cfssljson", &["-bare", "z"]).assert_fails();
    assert!(out.stderr.contains("no input"), "{}", out.stderr);
}

#[test]
fn lenient_mode_is_explicit() {
    let (tmp, b) = workspace();
    let d = tmp.path();
    in_ws(d, &b, "bash", &["-c", "cfssl gencert -initca config/ca-csr.json | cfssljson -bare ca"]).assert_ok();
    let path = format!("{}:{}", b.display(), std::env::var("PATH").unwrap_or_default());
    let out = run(Command::new("cfssl").current_dir(d).env("PATH", path).env("PKI_CFSSL_LENIENT", "1").args([
        "gencert",
        "-ca=ca.pem",
        "-ca-key=ca-key.pem",
        "-config=config/ca-config.json",
        "-profile=nope",
        "config/req-csr.json",
    ]));
    // the default profile of this config has no usages: still refused, with the warning shown
    assert!(out.stderr.contains("using the default profile"), "{}", out.stderr);
}

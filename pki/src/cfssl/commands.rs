//! `cfssl COMMAND ...`: gencert, genkey, sign, certinfo, print-defaults, version.

use super::config::{Profile, SigningConfig};
use super::csr::{self, CsrRequest};
use super::{Io, Strictness, flags, log};
use crate::ca::{Ca, LeafTemplate, Subject};
use crate::error::{PkiError, Result};
use crate::hosts::sans_from_hosts;
use crate::inspect;
use crate::keys::PrivateKey;
use crate::pemfile;
use rcgen::CertificateParams;
use serde_json::json;

const USAGE: &str = "Usage:
Available commands:
	gencert          -initca CSRJSON | -ca=ca.pem -ca-key=ca-key.pem [-config=ca-config.json] [-profile=P] [-hostname=a,b] CSRJSON
	genkey           [-initca] CSRJSON
	sign             -ca=ca.pem -ca-key=ca-key.pem [-config=ca-config.json] [-profile=P] [-hostname=a,b] CSR.pem
	certinfo         -cert=FILE | -csr=FILE
	print-defaults   csr | config | list
	version
Top-level flags:
	-loglevel=N      accepted for compatibility
(pki acting as cfssl; strict by default, PKI_CFSSL_LENIENT=1 for cfssl's lenient behaviour)
";

/// Runs `cfssl ARGS`; returns the exit code.
pub fn run(args: &[String], io: &mut Io<'_>) -> i32 {
    let strictness = Strictness::from_env();
    let Some((cmd, rest)) = args.split_first() else {
        let _ = write!(io.stderr, "{USAGE}");
        return 1;
    };
    let mut warnings = Vec::new();
    let result = match cmd.as_str() {
        "gencert" => gencert(rest, io, strictness, &mut warnings),
        "genkey" => genkey(rest, io, strictness, &mut warnings),
        "sign" => sign(rest, io, strictness, &mut warnings),
        "certinfo" => certinfo(rest, io),
        "print-defaults" => print_defaults(rest, io),
        "version" => {
            let _ = writeln!(io.stdout, "Version: 1.6.5 (pki {} acting as cfssl)\nRuntime: rust", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "help" | "-h" | "-help" | "--help" => {
            let _ = write!(io.stdout, "{USAGE}");
            Ok(())
        }
        other => {
            Err(PkiError::Refused(format!("unknown command {other:?}; pki's cfssl mode supports gencert, genkey, sign, certinfo, print-defaults, version")))
        }
    };
    for w in warnings {
        log(io, "WARNING", &w);
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            log(io, "ERROR", &e.to_string());
            1
        }
    }
}

fn usage_err(e: String) -> PkiError {
    PkiError::Refused(e)
}

/// Reads a file argument, `-` meaning stdin.
fn read_input(path: &str, io: &mut Io<'_>) -> Result<Vec<u8>> {
    if path == "-" {
        return crate::files::read_bounded(&mut io.stdin).map_err(|source| PkiError::Read { path: "<stdin>".into(), source });
    }
    crate::files::read_input(path).map_err(|source| PkiError::Read { path: path.into(), source })
}

fn one_positional<'a>(p: &'a flags::Parsed, what: &str) -> Result<&'a str> {
    match p.positional.as_slice() {
        [one] => Ok(one),
        [] => Err(usage_err(format!("missing {what} (a file name, or - for stdin)"))),
        more => Err(usage_err(format!("expected one {what}, got {}: {}", more.len(), more.join(" ")))),
    }
}

fn load_config(p: &flags::Parsed, strictness: Strictness, warnings: &mut Vec<String>) -> Result<(SigningConfig, String)> {
    match p.get("config") {
        Some(path) => {
            let bytes = crate::files::read_input(path).map_err(|source| PkiError::Read { path: path.into(), source })?;
            Ok((super::config::parse(&bytes, path, strictness, warnings)?, path.to_string()))
        }
        None => Ok((SigningConfig::cfssl_default(), "cfssl's default config".to_string())),
    }
}

fn load_ca(p: &flags::Parsed) -> Result<Ca> {
    let (Some(cert), Some(key)) = (p.get("ca"), p.get("ca-key")) else {
        return Err(usage_err("signing needs both -ca=CA.pem and -ca-key=CA-KEY.pem".into()));
    };
    Ca::load_files(cert.as_ref(), key.as_ref())
}

fn hostname_override(p: &flags::Parsed, hosts: &mut Vec<String>) {
    if let Some(h) = p.get("hostname") {
        *hosts = h.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    }
}

fn reject_remote(p: &flags::Parsed) -> Result<()> {
    if p.get("remote").is_some() {
        return Err(usage_err("-remote is not supported: pki signs locally and does no network I/O".into()));
    }
    Ok(())
}

/// The CA decides everything but subject and SANs; cfssl's leaf-outliving-CA is refused unless lenient.
fn template(subject: Subject, hosts: &[String], profile: &Profile, ca: &Ca, strictness: Strictness, warnings: &mut Vec<String>) -> Result<LeafTemplate> {
    let sans = sans_from_hosts(hosts).map_err(|e| usage_err(format!("invalid hosts: {}", e.join("; "))))?;
    let mut validity = profile.expiry;
    let room = ca.not_after() - time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    if strictness == Strictness::Lenient && validity > room {
        warnings.push(format!("the certificate would outlive its CA; its expiry is cut to the CA's ({})", crate::ca::fmt_time(ca.not_after())));
        validity = room;
    }
    if hosts.is_empty() && profile.ca_constraint.is_none() && profile.usages.extended.contains(&rcgen::ExtendedKeyUsagePurpose::ServerAuth) {
        warnings.push("this certificate lacks a \"hosts\" field: it cannot serve TLS for any name".into());
    }
    Ok(LeafTemplate { subject, sans, usages: profile.usages.clone(), validity, ca_constraint: profile.ca_constraint })
}

fn csr_pem(req: &CsrRequest, key: &PrivateKey) -> Result<String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = req.subject.to_dn();
    params.subject_alt_names = sans_from_hosts(&req.hosts).map_err(|e| usage_err(e.join("; ")))?;
    let csr = params.serialize_request(key.key_pair()).map_err(|e| PkiError::crypto("encoding the CSR", e))?;
    Ok(pemfile::encode("CERTIFICATE REQUEST", csr.der()))
}

fn emit(io: &mut Io<'_>, value: serde_json::Value) -> Result<()> {
    writeln!(io.stdout, "{value}").map_err(|source| PkiError::Write { path: "<stdout>".into(), source })
}

fn gencert(args: &[String], io: &mut Io<'_>, strictness: Strictness, warnings: &mut Vec<String>) -> Result<()> {
    let p = flags::parse(args, &["initca"], &["ca", "ca-key", "config", "profile", "hostname", "cn", "loglevel", "remote", "label"]).map_err(usage_err)?;
    reject_remote(&p)?;
    let file = one_positional(&p, "CSR JSON")?.to_string();
    let bytes = read_input(&file, io)?;
    let mut req = csr::parse(&bytes, &file, strictness, warnings)?;
    hostname_override(&p, &mut req.hosts);
    if let Some(cn) = p.get("cn") {
        req.subject.common_name = cn.to_string();
    }
    log(io, "INFO", "generate received request");
    log(io, "INFO", "received CSR");
    let (algo, size) = req.key.cfssl_words();
    log(io, "INFO", &format!("generating key: {algo}-{size}"));
    if p.flag("initca") {
        let key = match p.get("ca-key") {
            Some(path) => {
                let b = crate::files::read_input(path).map_err(|source| PkiError::Read { path: path.into(), source })?;
                PrivateKey::from_pem(&b, path)?
            }
            None => PrivateKey::generate(req.key)?,
        };
        let csr = csr_pem(&req, &key)?;
        log(io, "INFO", "encoded CSR");
        let ca = Ca::create_with_key(&req.ca_options(), key)?;
        log(io, "INFO", &format!("signed certificate with serial number {}", serial_of(ca.cert_der())));
        return emit(io, json!({"cert": ca.cert_pem(), "csr": csr, "key": ca.key().to_cfssl_pem()?}));
    }
    let ca = load_ca(&p)?;
    let (config, config_name) = load_config(&p, strictness, warnings)?;
    let profile = config.profile(p.get("profile"), &config_name, strictness, warnings)?;
    let template = template(req.subject.clone(), &req.hosts, profile, &ca, strictness, warnings)?;
    let key = PrivateKey::generate(req.key)?;
    let csr = csr_pem(&req, &key)?;
    log(io, "INFO", "encoded CSR");
    let cert = ca.sign(&template, key.key_pair())?;
    log(io, "INFO", &format!("signed certificate with serial number {}", serial_of(&cert.der)));
    emit(io, json!({"cert": cert.pem, "csr": csr, "key": key.to_cfssl_pem()?}))
}

fn genkey(args: &[String], io: &mut Io<'_>, strictness: Strictness, warnings: &mut Vec<String>) -> Result<()> {
    let p = flags::parse(args, &["initca"], &["config", "loglevel"]).map_err(usage_err)?;
    if p.flag("initca") {
        let mut forwarded = vec!["-initca".to_string()];
        forwarded.extend(p.positional.iter().cloned());
        return gencert(&forwarded, io, strictness, warnings);
    }
    let file = one_positional(&p, "CSR JSON")?.to_string();
    let bytes = read_input(&file, io)?;
    let req = csr::parse(&bytes, &file, strictness, warnings)?;
    let key = PrivateKey::generate(req.key)?;
    let csr = csr_pem(&req, &key)?;
    emit(io, json!({"csr": csr, "key": key.to_cfssl_pem()?}))
}

fn sign(args: &[String], io: &mut Io<'_>, strictness: Strictness, warnings: &mut Vec<String>) -> Result<()> {
    let p = flags::parse(args, &[], &["ca", "ca-key", "config", "profile", "hostname", "csr", "loglevel", "remote", "label"]).map_err(usage_err)?;
    reject_remote(&p)?;
    let file = match p.get("csr") {
        Some(f) => f.to_string(),
        None => one_positional(&p, "CSR (PEM)")?.to_string(),
    };
    let bytes = read_input(&file, io)?;
    let der = pemfile::blocks(&bytes, &file)?
        .into_iter()
        .find(|b| b.tag().ends_with("CERTIFICATE REQUEST"))
        .map(|b| b.into_contents())
        .ok_or_else(|| PkiError::bad_input(&file, format!("no CERTIFICATE REQUEST block (found: {})", pemfile::labels(&bytes))))?;
    let info = inspect::csr_info(&der, &file)?;
    if !info.signature_valid {
        return Err(PkiError::bad_input(&file, "the CSR's signature does not verify; it was altered or is corrupt"));
    }
    if info.requested_ca {
        warnings.push(format!("{file} asks to be a CA; ignored: the signing profile decides"));
    }
    let spki = csr_spki(&der, &file)?;
    let mut hosts = info.sans.clone();
    hostname_override(&p, &mut hosts);
    let subject = Subject {
        common_name: info.subject.common_name.clone(),
        country: non_empty(&info.subject.country),
        state: non_empty(&info.subject.province),
        locality: non_empty(&info.subject.locality),
        organization: non_empty(&info.subject.organization),
        organizational_unit: non_empty(&info.subject.organizational_unit),
    };
    let ca = load_ca(&p)?;
    let (config, config_name) = load_config(&p, strictness, warnings)?;
    let profile = config.profile(p.get("profile"), &config_name, strictness, warnings)?;
    let template = template(subject, &hosts, profile, &ca, strictness, warnings)?;
    let cert = ca.sign(&template, &spki)?;
    log(io, "INFO", &format!("signed certificate with serial number {}", serial_of(&cert.der)));
    emit(io, json!({"cert": cert.pem}))
}

fn non_empty(s: &str) -> Vec<String> {
    if s.is_empty() { vec![] } else { vec![s.to_string()] }
}

fn csr_spki(der: &[u8], file: &str) -> Result<rcgen::SubjectPublicKeyInfo> {
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der).map_err(|e| PkiError::bad_input(file, e))?;
    rcgen::SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| PkiError::bad_input(file, format!("unsupported public key: {e}")))
}

fn serial_of(der: &[u8]) -> String {
    inspect::cert_info(der, "certificate").map(|i| i.cfssl.serial_number).unwrap_or_default()
}

fn certinfo(args: &[String], io: &mut Io<'_>) -> Result<()> {
    let p = flags::parse(args, &[], &["cert", "csr", "domain", "serial", "aki", "db-config", "loglevel"]).map_err(usage_err)?;
    if p.get("domain").is_some() || p.get("serial").is_some() {
        return Err(usage_err("-domain and -serial/-aki are not supported: pki does no network or database I/O".into()));
    }
    let out = if let Some(f) = p.get("cert") {
        let bytes = read_input(f, io)?;
        let der = pemfile::first_certificate(&bytes, f)?;
        serde_json::to_string_pretty(&inspect::cert_info(&der, f)?.cfssl)
    } else if let Some(f) = p.get("csr") {
        let bytes = read_input(f, io)?;
        let der = pemfile::blocks(&bytes, f)?
            .into_iter()
            .find(|b| b.tag().ends_with("CERTIFICATE REQUEST"))
            .map(|b| b.into_contents())
            .ok_or_else(|| PkiError::bad_input(f, "no CERTIFICATE REQUEST block"))?;
        serde_json::to_string_pretty(&inspect::csr_info(&der, f)?)
    } else {
        return Err(usage_err("certinfo needs -cert=FILE or -csr=FILE".into()));
    };
    let out = out.map_err(|e| PkiError::crypto("rendering JSON", e))?;
    writeln!(io.stdout, "{out}").map_err(|source| PkiError::Write { path: "<stdout>".into(), source })
}

const DEFAULT_CSR: &str = r#"{
    "CN": "example.net",
    "hosts": [
        "example.net",
        "www.example.net"
    ],
    "key": {
        "algo": "ecdsa",
        "size": 256
    },
    "names": [
        {
            "C": "US",
            "ST": "CA",
            "L": "San Francisco"
        }
    ]
}"#;

const DEFAULT_CONFIG: &str = r#"{
    "signing": {
        "default": {
            "expiry": "168h"
        },
        "profiles": {
            "www": {
                "expiry": "8760h",
                "usages": [
                    "signing",
                    "key encipherment",
                    "server auth"
                ]
            },
            "client": {
                "expiry": "8760h",
                "usages": [
                    "signing",
                    "key encipherment",
                    "client auth"
                ]
            }
        }
    }
}"#;

fn print_defaults(args: &[String], io: &mut Io<'_>) -> Result<()> {
    let text = match args.first().map(String::as_str) {
        Some("csr") => DEFAULT_CSR,
        Some("config") => DEFAULT_CONFIG,
        Some("list") | None => "Default configurations are available for:\n\tcsr\n\tconfig",
        Some(other) => return Err(usage_err(format!("no defaults for {other:?}; use csr, config or list"))),
    };
    writeln!(io.stdout, "{text}").map_err(|source| PkiError::Write { path: "<stdout>".into(), source })
}

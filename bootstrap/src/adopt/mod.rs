//! `adopt`: a read-only inventory of an etcd cluster this toolkit did not build. From etcd's API
//! (the operator's client files): members, cluster ID, versions, leader, alarms, DB sizes and the
//! certificate each member serves. On each member's host (locally, or over SSH): the etcd process
//! behind the member's client URL, found from its listening socket, with its command line,
//! environment, config file, working directory, supervisor, data dir and every TLS file it uses
//! (owner, mode, hash). Then every risk found, each with its fix (`risks`). Nothing is written
//! anywhere and no binary found on a host is run.

pub mod effective;
pub mod flags;
pub mod next_minor;
pub mod probe;
pub mod report;
pub mod risks;
pub mod spec_out;

#[cfg(test)]
mod effective_tests;
#[cfg(test)]
mod risks_tests;
#[cfg(test)]
mod spec_out_tests;

use crate::error::{BootError, Result};
use effective::Effective;
use etcdctl_lite::options::ClientOptions;
use probe::{FileFacts, ProcessFacts};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// What the operator gives `adopt`.
#[derive(Debug, Clone)]
pub struct Request {
    pub endpoints: Vec<String>,
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Member name -> `local` or an SSH destination.
    pub hosts: Vec<(String, String)>,
    pub ssh_options: Vec<String>,
    /// How the probes get root on SSH hosts (`--become sudo`).
    pub become_with: crate::spec::Become,
}

/// A certificate as the inventory shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// `IP:10.0.0.1`, `DNS:etcd-1`.
    pub sans: Vec<String>,
    pub ext_key_usage: Vec<String>,
    pub is_ca: bool,
    pub not_after: String,
    #[serde(skip)]
    pub not_after_unix: i64,
    pub sha256: String,
    /// SHA-256 of its SubjectPublicKeyInfo: two certificates with one key have the same.
    #[serde(default)]
    pub public_key_sha256: String,
}

impl CertSummary {
    pub fn from_der(der: &[u8], what: &str) -> Option<CertSummary> {
        let info = pki::inspect::cert_info(der, what).ok()?;
        use sha2::Digest;
        Some(CertSummary {
            subject: info.cfssl.subject.text.clone(),
            issuer: info.cfssl.issuer.text.clone(),
            sans: info.typed_sans.clone(),
            ext_key_usage: info.ext_key_usage.clone(),
            is_ca: info.is_ca,
            not_after: info.cfssl.not_after.clone(),
            not_after_unix: info.not_after_unix,
            sha256: hex::encode(sha2::Sha256::digest(der)),
            public_key_sha256: x509_parser::parse_x509_certificate(der)
                .map(|(_, c)| hex::encode(sha2::Sha256::digest(c.tbs_certificate.subject_pki.raw)))
                .unwrap_or_default(),
        })
    }

    pub fn from_pem(pem: &[u8], what: &str) -> Option<CertSummary> {
        CertSummary::from_der(&pki::pemfile::first_certificate(pem, what).ok()?, what)
    }

    /// Whether a SAN covers `host` (an IP or a DNS name, exactly).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.sans.iter().any(|s| {
            s.strip_prefix("IP:").or_else(|| s.strip_prefix("IP Address:")).or_else(|| s.strip_prefix("DNS:")).is_some_and(|v| v.eq_ignore_ascii_case(host))
        })
    }
}

/// One member, as the API and its host show it.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub name: String,
    pub id: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
    pub is_leader: bool,
    pub version: Option<String>,
    pub db_size: Option<i64>,
    pub served: Option<CertSummary>,
    /// `local` or the SSH destination its facts were read from.
    pub host: String,
    pub process: Option<ProcessFacts>,
    pub config: Option<Effective>,
    pub data_dir: Option<PathBuf>,
    pub files: Vec<FileFacts>,
    /// Certificates among `files`, parsed (setting -> summary).
    pub certs: Vec<(String, CertSummary)>,
    pub missing: Vec<PathBuf>,
    /// Files next to its TLS files that hold a private key.
    pub private_keys: Vec<PathBuf>,
    /// Why the host's facts are missing or partial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The inventory: the cluster, its members, and every risk with its fix.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub cluster_id: String,
    pub members: Vec<Member>,
    pub alarms: Vec<String>,
    pub findings: Vec<risks::Finding>,
}

fn etcd_err(what: &str) -> impl FnOnce(etcdctl_lite::CtlError) -> BootError + '_ {
    move |source| BootError::Etcd { what: what.to_string(), source }
}

/// The whole read-only inventory.
pub fn adopt(req: &Request, progress: &crate::progress::Progress) -> Result<Inventory> {
    let s = |p: &PathBuf| p.display().to_string();
    let opts =
        ClientOptions::new(&req.endpoints, Some(&s(&req.cacert)), Some(&s(&req.cert)), Some(&s(&req.key)), Duration::from_secs(2), Duration::from_secs(5))
            .map_err(etcd_err("the client files (--cacert, --cert, --key)"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(BootError::Runtime)?;
    let statuses = rt.block_on(etcdctl_lite::ops::status(&opts));
    let cluster_id = one_cluster(&statuses)?;
    let list = rt.block_on(etcdctl_lite::ops::member_list(&opts)).map_err(etcd_err("listing the members"))?;
    let alarms = rt
        .block_on(etcdctl_lite::ops::alarm_list(&opts))
        .map(|a| a.alarms.iter().map(|x| format!("{:x}: {}", x.member_id, x.alarm)).collect())
        .unwrap_or_default();
    let leader = statuses.iter().filter_map(|s| s.result.as_ref().ok()).map(|s| s.leader).find(|l| *l != 0).unwrap_or(0);
    progress.step("adopt", &format!("cluster {cluster_id:x}: {} members", list.members.len()), None);
    // every member's host is known before any is read: the ones missing said at once
    let mut elsewhere: Vec<String> = list
        .members
        .iter()
        .filter(|m| !req.hosts.iter().any(|(n, _)| *n == m.name))
        .filter_map(|m| m.client_urls.first().and_then(|u| url_host_port(u)).filter(|(a, _)| !is_local_address(a)).map(|(a, _)| format!("{} ({a})", m.name)))
        .collect();
    elsewhere.sort();
    if !elsewhere.is_empty() {
        return Err(BootError::BadArgument {
            flag: "--host".into(),
            reason: format!("not on this machine: {}; give --host NAME=DEST (an SSH destination) for each", elsewhere.join(", ")),
        });
    }
    let mut members = Vec::new();
    for m in &list.members {
        let status = m.client_urls.first().map(|u| rt.block_on(etcdctl_lite::ops::status(&opts.clone().with_endpoints(vec![u.clone()])))).unwrap_or_default();
        let status = status.into_iter().find_map(|s| s.result.ok());
        let served = m.client_urls.first().and_then(|u| {
            let der = etcdctl_lite::diagnose::presented_certificate(u, opts.tls.as_ref()?, Duration::from_secs(2))?;
            CertSummary::from_der(&der, u)
        });
        let mut member = Member {
            name: m.name.clone(),
            id: format!("{:x}", m.id),
            client_urls: m.client_urls.clone(),
            peer_urls: m.peer_urls.clone(),
            is_learner: m.is_learner,
            is_leader: m.id == leader,
            version: status.as_ref().map(|s| s.version.clone()),
            db_size: status.as_ref().map(|s| s.db_size),
            served,
            host: String::new(),
            process: None,
            config: None,
            data_dir: None,
            files: vec![],
            certs: vec![],
            missing: vec![],
            private_keys: vec![],
            problem: None,
        };
        inspect_host(req, &mut member)?;
        progress.step(&format!("adopt {}", member.name), &host_summary(&member), None);
        members.push(member);
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    let mut inv = Inventory { cluster_id: format!("{cluster_id:x}"), members, alarms, findings: vec![] };
    inv.findings = risks::findings(&inv, time::OffsetDateTime::now_utc().unix_timestamp());
    Ok(inv)
}

/// The cluster ID every answering endpoint reports; endpoints of two clusters are refused.
fn one_cluster(statuses: &[etcdctl_lite::model::EndpointStatus]) -> Result<u64> {
    let mut seen: Vec<(u64, &str)> = Vec::new();
    for s in statuses {
        if let Ok(st) = &s.result
            && !seen.iter().any(|(c, _)| *c == st.cluster_id)
        {
            seen.push((st.cluster_id, &s.endpoint));
        }
    }
    match seen.as_slice() {
        [] => Err(BootError::Precondition {
            what: "adopt".into(),
            reason: format!(
                "no endpoint answered: {}",
                statuses.iter().filter_map(|s| s.result.as_ref().err().map(|e| format!("{}: {}", s.endpoint, e.message))).collect::<Vec<_>>().join("; ")
            ),
        }),
        [(id, _)] => Ok(*id),
        many => Err(BootError::Precondition {
            what: "adopt".into(),
            reason: format!(
                "the endpoints belong to different clusters ({}); give the endpoints of one cluster",
                many.iter().map(|(c, e)| format!("{c:x} at {e}")).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

fn host_summary(m: &Member) -> String {
    match (&m.process, &m.problem) {
        (Some(p), _) => format!(
            "pid {} on {} ({}, settings by {}), data dir {}",
            p.pid,
            m.host,
            supervisor_word(&p.supervisor),
            m.config.as_ref().map(|c| c.given_by()).unwrap_or("?"),
            m.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "?".into())
        ),
        (None, Some(why)) => format!("on {}: {why}", m.host),
        (None, None) => format!("on {}", m.host),
    }
}

pub fn supervisor_word(s: &crate::spec::adopted::AdoptedSupervisor) -> String {
    match s {
        crate::spec::adopted::AdoptedSupervisor::Systemd { unit, .. } => format!("systemd unit {unit}"),
        crate::spec::adopted::AdoptedSupervisor::StaticPod { manifest } => format!("kubelet static pod {manifest}"),
        crate::spec::adopted::AdoptedSupervisor::Container => "a container".into(),
        crate::spec::adopted::AdoptedSupervisor::Process => "a plain process".into(),
    }
}

/// The member's client URL's host and port.
fn client_address(m: &Member) -> Option<(String, u16)> {
    url_host_port(m.client_urls.first()?)
}

/// A URL's host (brackets removed) and port.
pub(crate) fn url_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next()?;
    let (host, port) = hostport.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse().ok()?))
}

/// Whether `ip` is an address of this machine (binding to it succeeds only then).
fn is_local_address(ip: &str) -> bool {
    ip.parse::<std::net::IpAddr>().is_ok_and(|a| std::net::UdpSocket::bind((a, 0)).is_ok())
}

/// Reads the member's host: the process, its effective settings, its files.
fn inspect_host(req: &Request, m: &mut Member) -> Result<()> {
    let Some((address, port)) = client_address(m) else {
        m.problem = Some("it advertises no client URL".into());
        return Ok(());
    };
    let host = match req.hosts.iter().find(|(n, _)| *n == m.name) {
        Some((_, h)) => h.clone(),
        // checked for every member before: it is on this machine
        None => "local".to_string(),
    };
    m.host = host.clone();
    let transport = crate::host::transport::for_host(&host, &req.ssh_options, req.become_with);
    let limit = Duration::from_secs(30);
    let out = transport.run(&probe::process_script(&address, port), limit).map_err(BootError::on_host(&m.name, &transport.describe()))?;
    let facts = match probe::parse_process(&out) {
        Ok(f) => f,
        Err(why) => {
            m.problem = Some(why);
            return Ok(());
        }
    };
    // the config file first: it decides every other setting
    let config_file = effective::config_file_of(&facts.argv, &facts.environ, &facts.cwd);
    let config_text = match &config_file {
        Some(f) => {
            let out =
                transport.run(&probe::files_script(facts.pid, &[(f.clone(), true)]), limit).map_err(BootError::on_host(&m.name, &transport.describe()))?;
            probe::parse_files(&out).0.into_iter().next().and_then(|f| f.content).map(|c| String::from_utf8_lossy(&c).into_owned())
        }
        None => None,
    };
    let config = match effective::from_running(&facts.argv, &facts.environ, &facts.cwd, config_text.as_deref()) {
        Ok(c) => c,
        Err(why) => {
            m.problem = Some(why);
            m.process = Some(facts);
            return Ok(());
        }
    };
    let mut wanted: Vec<(PathBuf, bool)> = config.tls_files().into_iter().map(|(k, p)| (p, !k.contains("key-file"))).collect();
    wanted.extend(config.config_file.iter().map(|f| (f.clone(), true)));
    wanted.extend(environment_files(&facts).into_iter().map(|f| (f, true)));
    let mut seen = std::collections::HashSet::new();
    wanted.retain(|(p, _)| seen.insert(p.clone()));
    let out = transport.run(&probe::files_script(facts.pid, &wanted), limit).map_err(BootError::on_host(&m.name, &transport.describe()))?;
    let (files, missing, keys) = probe::parse_files(&out);
    m.certs = config
        .tls_files()
        .into_iter()
        .filter(|(k, _)| k.ends_with("cert-file") || k.ends_with("trusted-ca-file"))
        .filter_map(|(k, p)| {
            files.iter().find(|f| f.path == p).and_then(|f| CertSummary::from_pem(f.content.as_deref()?, &p.display().to_string())).map(|c| (k, c))
        })
        .collect();
    m.data_dir = Some(config.data_dir());
    m.files = files;
    m.missing = missing;
    m.private_keys = keys;
    m.config = Some(config);
    m.process = Some(facts);
    Ok(())
}

/// The environment files of the member's systemd unit (`EnvironmentFiles=/etc/etcd.env (ignore_errors=no)`).
pub fn environment_files(p: &ProcessFacts) -> Vec<PathBuf> {
    p.unit_properties
        .iter()
        .filter(|(k, _)| k == "EnvironmentFiles")
        .flat_map(|(_, v)| v.split(" (ignore_errors=").next().map(str::trim).filter(|f| f.starts_with('/')).map(PathBuf::from))
        .collect()
}

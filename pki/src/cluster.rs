//! The etcd certificate set for a cluster, to kubeadm's spec (certlist.go): a server and a peer
//! certificate per member, one `kube-apiserver-etcd-client` certificate shared by every API server,
//! and a `kube-etcd-healthcheck-client` certificate for probes and operators.

use crate::ca::{Ca, Issued, LeafTemplate, Subject};
use crate::error::{PkiError, Result};
use crate::hosts::{san_from_host, validate_dns_name};
use crate::keys::{KeyAlgorithm, PrivateKey};
use crate::usage::{ExtendedPurpose, KeyBit, Usage, UsageSet};
use rcgen::SanType;
use std::collections::HashSet;
use std::net::IpAddr;
use time::Duration;

pub const APISERVER_CLIENT_CN: &str = "kube-apiserver-etcd-client";
pub const HEALTHCHECK_CLIENT_CN: &str = "kube-etcd-healthcheck-client";

/// One etcd member as the PKI sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// etcd `--name`; also the certificate CN and a DNS SAN (kubeadm uses the node name).
    pub name: String,
    /// The addresses the member advertises (client and peer URLs use them).
    pub ips: Vec<IpAddr>,
    /// Extra DNS names the member is reached by.
    #[serde(default)]
    pub dns_names: Vec<String>,
}

impl Member {
    /// Parses `NAME=IP[,IP|DNS...]` as given on the command line.
    pub fn parse_flag(text: &str) -> std::result::Result<Member, String> {
        let (name, rest) = text.split_once('=').ok_or_else(|| format!("--member {text:?}: expected NAME=IP[,IP|DNS...], e.g. etcd-1=10.0.0.11"))?;
        let mut member = Member { name: name.trim().to_string(), ips: vec![], dns_names: vec![] };
        for item in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.parse::<IpAddr>() {
                Ok(ip) => member.ips.push(ip),
                Err(_) => member.dns_names.push(item.to_string()),
            }
        }
        Ok(member)
    }

    /// The SANs of this member's server and peer certificates, in kubeadm's order: name,
    /// localhost, the member's IPs, loopback v4 and v6, extra DNS names.
    pub fn sans(&self) -> Vec<SanType> {
        let mut hosts: Vec<String> = vec![self.name.clone(), "localhost".into()];
        hosts.extend(self.ips.iter().map(|ip| ip.to_string()));
        hosts.extend(["127.0.0.1".to_string(), "::1".to_string()]);
        hosts.extend(self.dns_names.iter().cloned());
        let mut sans: Vec<SanType> = Vec::new();
        for h in hosts {
            if let Ok(s) = san_from_host(&h)
                && !sans.contains(&s)
            {
                sans.push(s);
            }
        }
        sans
    }
}

/// Checks a member list; returns every problem at once.
pub fn validate_members(members: &[Member]) -> Result<()> {
    let mut problems = Vec::new();
    if members.is_empty() {
        problems.push("no members: give at least one (e.g. --member etcd-1=10.0.0.11)".to_string());
    }
    let mut names = HashSet::new();
    let mut ips = HashSet::new();
    for (i, m) in members.iter().enumerate() {
        let label = if m.name.is_empty() { format!("member #{}", i + 1) } else { format!("member {:?}", m.name) };
        if m.name.is_empty() {
            problems.push(format!("{label}: empty name"));
        } else if let Err(e) = crate::hosts::validate_host_name(&m.name) {
            problems.push(format!("{label}: the name is used as CN and DNS SAN and must be a DNS name: {e}"));
        } else if !names.insert(m.name.to_ascii_lowercase()) {
            problems.push(format!("{label}: duplicate member name"));
        }
        if m.ips.is_empty() {
            problems.push(format!("{label}: no IP address (the advertised URLs need one)"));
        }
        for ip in &m.ips {
            if ip.is_unspecified() {
                problems.push(format!("{label}: {ip} cannot be advertised; give the member's real address"));
            } else if !ips.insert(*ip) {
                problems.push(format!("{label}: IP {ip} is also used by another member"));
            }
        }
        for d in &m.dns_names {
            if let Err(e) = validate_dns_name(d) {
                problems.push(format!("{label}: {e}"));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(PkiError::InvalidCluster(problems)) }
}

/// Which certificate of the set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Server(String),
    Peer(String),
    ApiserverEtcdClient,
    HealthcheckClient,
}

impl Role {
    pub fn describe(&self) -> String {
        match self {
            Role::Server(m) => format!("server certificate of member {m}"),
            Role::Peer(m) => format!("peer certificate of member {m}"),
            Role::ApiserverEtcdClient => "kube-apiserver etcd client certificate".into(),
            Role::HealthcheckClient => "healthcheck client certificate".into(),
        }
    }
}

/// The usages of server and peer certificates: both serve and dial (etcd's gRPC gateway dials
/// itself with the server cert; peers dial each other with the peer cert).
pub fn member_usages() -> UsageSet {
    UsageSet::from_usages(&[
        Usage::Key(KeyBit::DigitalSignature),
        Usage::Key(KeyBit::KeyEncipherment),
        Usage::Extended(ExtendedPurpose::ServerAuth),
        Usage::Extended(ExtendedPurpose::ClientAuth),
    ])
}

pub fn client_usages() -> UsageSet {
    UsageSet::from_usages(&[Usage::Key(KeyBit::DigitalSignature), Usage::Key(KeyBit::KeyEncipherment), Usage::Extended(ExtendedPurpose::ClientAuth)])
}

/// The template for one role.
pub fn template(role: &Role, members: &[Member], validity: Duration) -> Result<LeafTemplate> {
    let member = |name: &str| members.iter().find(|m| m.name == name).ok_or_else(|| PkiError::Refused(format!("no member named {name:?} in the cluster")));
    let (subject, sans, usages) = match role {
        Role::Server(m) | Role::Peer(m) => {
            let m = member(m)?;
            (Subject::cn(&m.name), m.sans(), member_usages())
        }
        Role::ApiserverEtcdClient => (Subject::cn(APISERVER_CLIENT_CN), vec![], client_usages()),
        Role::HealthcheckClient => (Subject::cn(HEALTHCHECK_CLIENT_CN), vec![], client_usages()),
    };
    Ok(LeafTemplate { subject, sans, usages, validity, ca_constraint: None })
}

/// Every role of a cluster's set, in a stable order.
pub fn all_roles(members: &[Member]) -> Vec<Role> {
    let mut roles = Vec::new();
    for m in members {
        roles.push(Role::Server(m.name.clone()));
        roles.push(Role::Peer(m.name.clone()));
    }
    roles.push(Role::ApiserverEtcdClient);
    roles.push(Role::HealthcheckClient);
    roles
}

/// A certificate with its new key.
#[derive(Debug)]
pub struct IssuedLeaf {
    pub role: Role,
    pub cert: Issued,
    pub key: PrivateKey,
}

/// Issues `roles` with fresh keys. Keys are generated on all cores (RSA keys take ~100 ms each);
/// signing is cheap and uses one issuer.
pub fn issue(ca: &Ca, members: &[Member], roles: &[Role], algorithm: KeyAlgorithm, validity: Duration) -> Result<Vec<IssuedLeaf>> {
    let keys = generate_keys(algorithm, roles.len())?;
    issue_with_keys(ca, members, roles, keys, validity)
}

/// Issues `roles` with the given fresh keys (one per role, in order).
pub fn issue_with_keys(ca: &Ca, members: &[Member], roles: &[Role], keys: Vec<PrivateKey>, validity: Duration) -> Result<Vec<IssuedLeaf>> {
    validate_members(members)?;
    if keys.len() != roles.len() {
        return Err(PkiError::crypto("issuing", format!("{} keys for {} certificates", keys.len(), roles.len())));
    }
    let templates = roles.iter().map(|r| template(r, members, validity)).collect::<Result<Vec<_>>>()?;
    let issuer = ca.issuer()?;
    roles
        .iter()
        .zip(templates)
        .zip(keys)
        .map(|((role, t), key)| {
            let cert = ca.sign_with(&issuer, &t, key.key_pair())?;
            Ok(IssuedLeaf { role: role.clone(), cert, key })
        })
        .collect()
}

/// Generates `count` keys; in parallel when the algorithm is slow enough to be worth threads.
pub fn generate_keys(algorithm: KeyAlgorithm, count: usize) -> Result<Vec<PrivateKey>> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(count);
    if !matches!(algorithm, KeyAlgorithm::Rsa(_)) || threads <= 1 {
        return (0..count).map(|_| PrivateKey::generate(algorithm)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<PrivateKey>>>> = (0..count).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let key = PrivateKey::generate(algorithm);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(key);
                    }
                }
            });
        }
    });
    slots.into_iter().map(|m| m.into_inner().ok().flatten().unwrap_or_else(|| Err(PkiError::crypto("key generation", "a worker thread failed")))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, ip: &str) -> Member {
        Member { name: name.into(), ips: vec![ip.parse().unwrap()], dns_names: vec![] }
    }

    #[test]
    fn all_problems_reported_at_once() {
        let members = vec![m("etcd-1", "10.0.0.1"), m("etcd-1", "10.0.0.1"), m("bad_name", "10.0.0.3")];
        let e = validate_members(&members).unwrap_err().to_string();
        assert!(e.contains("duplicate member name"), "{e}");
        assert!(e.contains("IP 10.0.0.1 is also used"), "{e}");
        assert!(e.contains("\"bad_name\""), "{e}");
        assert!(validate_members(&[]).unwrap_err().to_string().contains("no members"));
    }

    #[test]
    fn member_sans_follow_kubeadm() {
        let mut mem = m("etcd-a", "10.0.0.5");
        mem.dns_names.push("etcd-a.example.com".into());
        let sans: Vec<String> = mem.sans().iter().map(crate::hosts::san_text).collect();
        assert_eq!(sans, ["DNS:etcd-a", "DNS:localhost", "IP:10.0.0.5", "IP:127.0.0.1", "IP:::1", "DNS:etcd-a.example.com"]);
    }

    #[test]
    fn member_flag() {
        let mem = Member::parse_flag("etcd-1=10.0.0.1,etcd-1.lan,fd00::1").unwrap();
        assert_eq!(mem.ips.len(), 2);
        assert_eq!(mem.dns_names, vec!["etcd-1.lan"]);
        assert!(Member::parse_flag("etcd-1").is_err());
    }
}

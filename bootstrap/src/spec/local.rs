//! The embedded default for `up --local N`: an N-member TLS cluster on this machine's loopback
//! (members on 127.0.0.11, .12, ... with etcd's standard ports; when another cluster already
//! listens there, the first free block of 127.0.B.0), everything under one folder, members as
//! background processes with pid files and logs until `down`.

use crate::spec::{KubernetesSpec, MemberSpec, NodeSpec, PkiSpec, Spec, Supervisor};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

pub fn spec(n: usize, dir: &Path) -> Spec {
    spec_in_block(n, dir, 0)
}

/// The first `B` in 0..=255 for which 127.0.B.11.. (each member's client and peer port) and the
/// control plane's 127.0.B.100-103:6443 are free here: a second local cluster (or one a user
/// left running) never collides with this one. Probed by binding each address once.
pub fn free_block(n: usize) -> Option<u8> {
    let free = |ip: Ipv4Addr, port: u16| std::net::TcpListener::bind((ip, port)).is_ok();
    (0..=255u8).find(|&b| {
        (1..=n).all(|i| [2379, 2380].iter().all(|&p| free(Ipv4Addr::new(127, 0, b, 10 + i as u8), p)))
            && (100..=103).all(|h| free(Ipv4Addr::new(127, 0, b, h), 6443))
    })
}

/// [`spec`] on the loopback block 127.0.`block`.0.
pub fn spec_in_block(n: usize, dir: &Path, block: u8) -> Spec {
    let members = (1..=n)
        .map(|i| {
            let name = format!("etcd-{i}");
            let home = dir.join("members").join(&name);
            MemberSpec {
                name,
                address: IpAddr::V4(Ipv4Addr::new(127, 0, block, 10 + i as u8)),
                dns_names: vec![],
                client_port: 2379,
                peer_port: 2380,
                data_dir: home.join("data"),
                pki_dir: home.join("pki"),
                run_dir: home.clone(),
                // a local cluster keeps everything under its folder: an upgrade never writes the system
                bin_dir: home.join("bin"),
                host: "local".into(),
                ssh_options: vec![],
                supervisor: Some(Supervisor::Process),
                adopted: None,
                become_with: None,
            }
        })
        .collect();
    Spec {
        name: "local".into(),
        token: None,
        etcd_binary: "etcd".into(),
        etcd_archive: None,
        etcd_sha256: None,
        pki: PkiSpec { dir: "pki".into(), ..PkiSpec::default() },
        etcd: Default::default(),
        output_dir: "out".into(),
        members,
        adopted: None,
        become_with: None,
        kubernetes: KubernetesSpec {
            // the newest kubeadm (it reads v1beta4 only; its etcd line is 3.7)
            version: crate::spec::versions::DEFAULT_KUBERNETES.into(),
            control_plane_endpoint: format!("127.0.{block}.100:6443"),
            cert_sans: vec![],
            pod_subnet: Some("10.244.0.0/16".into()),
            service_subnet: "10.96.0.0/12".into(),
            dns_domain: "cluster.local".into(),
            control_plane_nodes: (1..=3)
                .map(|i| NodeSpec {
                    name: format!("cp-{i}"),
                    address: IpAddr::V4(Ipv4Addr::new(127, 0, block, 100 + i)),
                    bind_port: 6443,
                    host: None,
                    ssh_options: vec![],
                    become_with: None,
                })
                .collect(),
            load_balancer_ca_file: dir.join("out/haproxy/kubernetes-ca.crt"),
            cri_socket: None,
            // `up --local` sets it only when the newest etcd this machine has is below kubeadm's
            // minimum (a lab cluster); with install-deps' etcd 3.5.30 it stays off
            allow_old_etcd: false,
        },
    }
}

/// Whether `version` is below kubeadm's minimum for the spec's Kubernetes version, so that a local
/// cluster on it must be a lab cluster (`allow_old_etcd`).
pub fn needs_lab_allowance(spec: &Spec, version: crate::spec::versions::Version) -> bool {
    let k8s = crate::spec::rules::kubernetes_version(&spec.kubernetes.version).map(|(a, b, c)| crate::spec::versions::Version(a, b, c));
    k8s.is_ok_and(|k| crate::spec::versions::check_etcd(k, version).is_err())
}

/// Where `up --local` looks for etcd: every `etcd` on PATH, and the project's own copies
/// (`.etcd/vX.Y.Z/etcd`, as install-deps puts them) under the current directory and two levels
/// above the running binary (`target/release/` → the project).
pub fn etcd_candidates(cwd: &Path, exe: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join("etcd")).collect()).unwrap_or_default();
    let roots = std::iter::once(cwd.to_path_buf()).chain(exe.and_then(|e| e.parent()?.parent()?.parent()).map(Path::to_path_buf));
    for root in roots {
        if let Ok(entries) = std::fs::read_dir(root.join(".etcd")) {
            out.extend(entries.flatten().map(|e| e.path().join("etcd")));
        }
    }
    out.retain(|p| p.is_file());
    out
}

/// The newest etcd among `candidates` (by what each says to `--version`), as an absolute path:
/// of `line` (kubeadm's etcd line for the spec's Kubernetes) when there is one of it.
pub fn newest_etcd(candidates: &[PathBuf], line: Option<(u64, u64)>) -> Option<(PathBuf, crate::spec::versions::Version)> {
    let found: Vec<(PathBuf, crate::spec::versions::Version)> = candidates
        .iter()
        .filter_map(|p| {
            let out = std::process::Command::new(p).arg("--version").output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let v = crate::spec::versions::etcd_version_output(&text)?;
            Some((p.canonicalize().ok()?, v))
        })
        .collect();
    let of_line = found.iter().filter(|(_, v)| line == Some((v.0, v.1))).max_by_key(|(_, v)| *v).cloned();
    of_line.or_else(|| found.into_iter().max_by_key(|(_, v)| *v))
}

/// kubeadm's etcd line for the Kubernetes version `spec` names.
pub fn etcd_line(spec: &Spec) -> Option<(u64, u64)> {
    let (a, b, c) = crate::spec::rules::kubernetes_version(&spec.kubernetes.version).ok()?;
    crate::spec::versions::release_for(crate::spec::versions::Version(a, b, c)).ok()?.etcd_line
}

/// `up --local N`: write the embedded default spec (absolute paths) into DIR/cluster.yaml.
///
/// What it chose that the operator should know (another loopback block, the etcd it uses) is
/// returned as notes for stderr.
pub fn ensure(n: usize, dir: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let mut notes = Vec::new();
    if n == 0 || n > 9 {
        return Err(format!("--local {n}: give 1 to 9 members (3 or 5 recommended)"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dir = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("cluster.yaml");
    if path.exists() {
        // an existing local spec is reused as it is (its token included), if it is one
        let existing = crate::spec::Spec::load(&path).map_err(|e| e.to_string())?;
        let s = &existing.spec;
        if s.name != "local" || s.members.len() != n {
            return Err(format!(
                "{} holds another cluster's spec ({} members named {:?}); run `etcd-bootstrap -f {} down` and use another --dir, or drop --local to use it",
                path.display(),
                s.members.len(),
                s.name,
                path.display()
            ));
        }
        return Ok((path, notes));
    }
    // a fresh token per cluster: etcd derives member and cluster IDs from it
    let block = free_block(n).ok_or("--local: every loopback block 127.0.B.0 has a cluster on it; stop one (etcd-bootstrap down)")?;
    let mut spec = spec_in_block(n, &dir, block);
    if block != 0 {
        notes.push(format!("--local: 127.0.0.11 is taken (another cluster?); this one listens on 127.0.{block}.11.."));
    }
    spec.token = Some(format!("local-{}", hex_token()?));
    // the newest etcd this machine has (the project's upstream 3.5 when install-deps put it there)
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let line = etcd_line(&spec);
    if let Some((etcd, version)) = newest_etcd(&etcd_candidates(&cwd, std::env::current_exe().ok().as_deref()), line) {
        notes.push(format!("--local uses etcd {version} ({})", etcd.display()));
        spec.etcd_binary = etcd.display().to_string();
        // below kubeadm's minimum only when this machine has nothing newer: then a lab cluster
        spec.kubernetes.allow_old_etcd = needs_lab_allowance(&spec, version);
    }
    let text = serde_yaml_ng::to_string(&spec).map_err(|e| e.to_string())?;
    pki::files::write_atomic(&path, text.as_bytes(), 0o644).map_err(|e| e.to_string())?;
    Ok((path, notes))
}

/// 8 random hex characters; a failed system RNG is an error, never a fixed token.
fn hex_token() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "--local: the system's random number generator failed; the cluster token was not made".to_string())?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_etcd_wins() {
        let d = tempfile::tempdir().unwrap();
        let mk = |dir: &str, version: &str| {
            let p = d.path().join(dir).join("etcd");
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("#!/bin/sh\necho 'etcd Version: {version}'\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let a = mk(".etcd/v3.4.23", "3.4.23");
        let b = mk(".etcd/v3.5.1", "3.5.1");
        let found = etcd_candidates(d.path(), None);
        assert!(found.contains(&a) && found.contains(&b), "{found:?}");
        let (path, v) = newest_etcd(&[a.clone(), b.clone()], None).unwrap();
        assert_eq!((path, v), (b.canonicalize().unwrap(), crate::spec::versions::Version(3, 5, 1)));
        // kubeadm's line first: the newest 3.6 for Kubernetes 1.36, though a 3.7 is there
        let c = mk(".etcd/v3.6.17", "3.6.17");
        let e = mk(".etcd/v3.7.4", "3.7.4");
        let all = [a, b, c.clone(), e.clone()];
        assert_eq!(newest_etcd(&all, Some((3, 6))).unwrap().0, c.canonicalize().unwrap());
        assert_eq!(newest_etcd(&all, Some((3, 7))).unwrap().0, e.canonicalize().unwrap());
        // none of the line here: the newest there is
        assert_eq!(newest_etcd(&all, Some((3, 8))).unwrap().0, e.canonicalize().unwrap());
        assert_eq!(etcd_line(&spec(3, Path::new("/x"))), Some((3, 7)), "the default Kubernetes (1.37) runs etcd 3.7");
    }

    #[test]
    fn a_local_cluster_is_a_lab_cluster_only_on_an_etcd_below_kubeadms_minimum() {
        let s = spec(3, std::path::Path::new("/tmp/x"));
        assert!(!s.kubernetes.allow_old_etcd);
        assert!(!needs_lab_allowance(&s, crate::spec::versions::Version(3, 5, 30)));
        assert!(needs_lab_allowance(&s, crate::spec::versions::Version(3, 5, 1)));
        assert!(needs_lab_allowance(&s, crate::spec::versions::Version(3, 4, 23)));
    }
}

//! What `up` writes for the control plane: kubeadm configs (validated against kubeadm's rules
//! before they are written), a folder per control-plane node with exactly the files it needs,
//! and HAProxy's config. The Kubernetes CA is made here once, so the join discovery hash is known
//! in advance; the join secrets are kept, so re-running changes no output.

use crate::error::{BootError, Result};
use crate::kube::kubeadm::{self, ApiVersion, JoinSecrets};
use crate::plan::Plan;
use pki::files::{self, Outcome, PlannedFile};
use pki::layout::{Layout, PkiDir};
use sha2::Digest;
use std::path::{Path, PathBuf};

/// Files written (or found identical).
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub outcome: Outcome,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(crate::error::io("read", path))
}

/// The Kubernetes CA in the operator's PKI dir (`kubernetes/ca.crt`, `ca.key`), created once.
fn kubernetes_ca(pki_dir: &Path, algorithm: pki::keys::KeyAlgorithm) -> Result<(Vec<u8>, Vec<u8>)> {
    let cert = pki_dir.join("kubernetes/ca.crt");
    let key = pki_dir.join("kubernetes/ca.key");
    if !cert.exists() && !key.exists() {
        // kubeadm cannot load Ed25519 keys
        let algorithm = if algorithm == pki::keys::KeyAlgorithm::Ed25519 { pki::keys::KeyAlgorithm::EcdsaP256 } else { algorithm };
        let ca = pki::ca::Ca::create(&pki::ca::CaOptions {
            subject: pki::ca::Subject::cn("kubernetes"),
            algorithm,
            validity: time::Duration::days(3650),
            path_len: None,
        })?;
        files::write_all(&[PlannedFile::public(&cert, ca.cert_pem()), PlannedFile::ca_key(&key, ca.key().to_pkcs8_pem())], false)?;
    }
    // load it to check it is a usable CA whose key matches
    pki::ca::Ca::load_files(&cert, &key)?;
    Ok((read(&cert)?, read(&key)?))
}

/// `sha256:<hex>` of the CA certificate's SubjectPublicKeyInfo, as kubeadm computes it.
pub fn ca_cert_hash(cert_pem: &[u8]) -> Result<String> {
    let der = pki::pemfile::first_certificate(cert_pem, "kubernetes CA")?;
    let (_, x) = x509_parser::parse_x509_certificate(&der).map_err(|e| BootError::Output { path: "kubernetes CA".into(), reason: e.to_string() })?;
    Ok(format!("sha256:{}", hex::encode(sha2::Sha256::digest(x.tbs_certificate.subject_pki.raw))))
}

/// The kept join secrets, or new ones when there are none or the Kubernetes CA changed. A file
/// that is there but malformed is an error, not silently replaced: the secrets in it may
/// already be in use on the control plane.
fn secrets(path: &Path, hash: &str) -> Result<JoinSecrets> {
    let bad = |reason: String| BootError::Output {
        path: path.display().to_string(),
        reason: format!("{reason}; fix it, or delete it to generate new join secrets (then re-copy every kubeadm config)"),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let s = serde_json::from_str::<JoinSecrets>(&text).map_err(|e| bad(format!("not the join secrets file: {e}")))?;
            s.check().map_err(bad)?;
            if s.ca_cert_hash == hash {
                return Ok(s);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(e.to_string())),
    }
    JoinSecrets::generate(hash.to_string()).map_err(|e| BootError::Output { path: path.display().to_string(), reason: e })
}

/// The kubeadm API version chosen before: remembered with the join secrets (or, for outputs
/// written before it was remembered, the one init.yaml uses); `None` when there are no outputs.
fn remembered_api(plan: &Plan) -> Option<ApiVersion> {
    let out = &plan.loaded.output_dir;
    let kept =
        std::fs::read_to_string(out.join("kubeadm/.secrets.json")).ok().and_then(|t| serde_json::from_str::<JoinSecrets>(&t).ok()).and_then(|s| s.kubeadm_api);
    kept.or_else(|| match std::fs::read_to_string(out.join("kubeadm/init.yaml")) {
        Ok(t) if t.contains("kubeadm.k8s.io/v1beta3") => Some(ApiVersion::V1Beta3),
        Ok(t) if t.contains("kubeadm.k8s.io/v1beta4") => Some(ApiVersion::V1Beta4),
        _ => None,
    })
}

/// The kubeadm config API to write: the one asked for, else the one chosen before, else the
/// newest the spec's Kubernetes version reads — refused if that kubeadm cannot read it.
pub fn choose_api(plan: &Plan, requested: Option<ApiVersion>) -> Result<ApiVersion> {
    let k8s = plan.loaded.typed.kubernetes;
    let bad = |reason: String| BootError::InvalidSpec { file: plan.loaded.file.clone(), problems: vec![reason] };
    let api = match requested.or_else(|| remembered_api(plan)) {
        Some(api) => api,
        None => crate::spec::versions::default_api(k8s).map_err(bad)?,
    };
    crate::spec::versions::check_api(k8s, api).map_err(|e| bad(format!("kubernetes.version: {e}")))?;
    Ok(api)
}

/// The kubeadm API version the existing outputs use (for rewriting them after a rotation).
pub fn existing_api(plan: &Plan) -> ApiVersion {
    choose_api(plan, None).unwrap_or(ApiVersion::V1Beta4)
}

/// Writes every output; returns what happened to each file.
pub fn write(plan: &Plan, api: ApiVersion) -> Result<Vec<Written>> {
    let spec = &plan.loaded.spec;
    let out = &plan.loaded.output_dir;
    let etcd_pki = PkiDir::new(&plan.issue.dir, Layout::Kubeadm);
    let (k8s_ca_cert, k8s_ca_key) = kubernetes_ca(&plan.issue.dir, plan.issue.algorithm)?;
    let hash = ca_cert_hash(&k8s_ca_cert)?;
    let secrets_path = out.join("kubeadm/.secrets.json");
    let mut secrets = secrets(&secrets_path, &hash)?;
    secrets.kubeadm_api = Some(api);
    let etcd_ca = read(&etcd_pki.ca_copy_in(&etcd_pki.control_plane_dir()))?;
    let client = etcd_pki.leaf(&pki::cluster::Role::ApiserverEtcdClient);
    let (client_cert, client_key) = (read(&client.cert)?, read(&client.key)?);

    let mut planned: Vec<PlannedFile> = Vec::new();
    let secrets_json = serde_json::to_string_pretty(&secrets).unwrap_or_default() + "\n";
    planned.push(PlannedFile::secret(&secrets_path, secrets_json));
    // control-plane folders, mirroring / on each node
    for (i, node) in spec.kubernetes.control_plane_nodes.iter().enumerate() {
        let root = out.join("control-plane").join(&node.name);
        let at = |p: &str| root.join(p.trim_start_matches('/'));
        planned.push(PlannedFile::public(at(kubeadm::CA_FILE), etcd_ca.clone()));
        planned.push(PlannedFile::public(at(kubeadm::CERT_FILE), client_cert.clone()));
        planned.push(PlannedFile::secret(at(kubeadm::KEY_FILE), client_key.clone()));
        if i == 0 {
            // kubeadm init uses an existing CA; --upload-certs shares it with the joining nodes
            planned.push(PlannedFile::public(at("/etc/kubernetes/pki/ca.crt"), k8s_ca_cert.clone()));
            planned.push(PlannedFile::secret(at("/etc/kubernetes/pki/ca.key"), k8s_ca_key.clone()));
        }
    }
    let mut docs = vec![(out.join("kubeadm/init.yaml"), kubeadm::init_document(spec, &secrets, api), 0)];
    for (i, node) in spec.kubernetes.control_plane_nodes.iter().enumerate().skip(1) {
        docs.push((out.join(format!("kubeadm/join-{}.yaml", node.name)), kubeadm::join_document(spec, i, &secrets, api), i));
    }
    for (path, yaml, node) in &docs {
        let root = out.join("control-plane").join(&spec.kubernetes.control_plane_nodes[*node].name);
        // the files the config names must exist in that node's folder: check against what is planned
        let problems: Vec<String> = kubeadm::validate(yaml, None)
            .into_iter()
            .chain(
                [kubeadm::CA_FILE, kubeadm::CERT_FILE, kubeadm::KEY_FILE]
                    .iter()
                    .filter(|f| !planned.iter().any(|p| p.path == root.join(f.trim_start_matches('/'))))
                    .map(|f| format!("{f} missing from {}", root.display())),
            )
            .collect();
        if !problems.is_empty() {
            return Err(BootError::Output { path: path.display().to_string(), reason: problems.join("; ") });
        }
        // init/join configs carry the bootstrap token and the certificate key: secrets
        planned.push(PlannedFile::secret(path, yaml.clone()));
    }
    planned.push(PlannedFile::public(out.join("RUNBOOK.md"), kubeadm::runbook(spec, &plan.loaded.file, out)));
    // no load balancer (one node serving its own endpoint): no HAProxy to configure
    if !spec.kubernetes.without_load_balancer() {
        planned.push(PlannedFile::public(out.join("haproxy/haproxy.cfg"), crate::kube::haproxy::config(spec)));
        planned.push(PlannedFile::public(out.join("haproxy/kubernetes-ca.crt"), k8s_ca_cert.clone()));
    }
    let outcomes = files::write_all(&planned, true)?;
    remove_old_commands_script(out);
    Ok(planned.into_iter().zip(outcomes).map(|(p, outcome)| Written { path: p.path, outcome }).collect())
}

/// Earlier versions wrote an executable `kubeadm/commands.sh` that, run on one node, did every
/// node's steps; RUNBOOK.md replaces it. Removed only when it is what we generated.
fn remove_old_commands_script(out: &Path) {
    let old = out.join("kubeadm/commands.sh");
    if std::fs::read_to_string(&old).is_ok_and(|t| t.starts_with("#!/bin/sh\n# Generated by etcd-bootstrap. Copy control-plane/NODE/")) {
        let _ = std::fs::remove_file(old);
    }
}

//! `rotate certs`: renew every leaf (same subject, SANs and usages; new keys with `--rekey`),
//! then member by member: deliver, confirm it serves the new certificate (etcd re-reads its
//! files on each handshake, no restart), and require HEALTHY before the next member.

use crate::context::Ctx;
use crate::error::{BootError, Result};
use crate::in_place;
use crate::live::own_files;
use std::time::{Duration, Instant};

pub fn rotate_certs(ctx: &Ctx, rekey: bool, wait: Duration) -> Result<()> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    // one writer of the operator's PKI directory (and outputs) for the whole operation
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    ctx.require_healthy("rotate")?;
    ctx.require_reachable(&plan.members.iter().collect::<Vec<_>>(), 0, "rotate")?;
    let pki = plan.pki();
    let pair = pki.ca();
    let ca = pki::ca::Ca::load_files(&pair.cert, &pair.key)?;
    ctx.changing("renew")?;
    let t = Instant::now();
    let renewed = pki::renew::renew(&plan.issue.dir, &ca, &pki::renew::all_targets(&pki), plan.issue.validity, rekey)?;
    progress.step("renew", &format!("{} certificates re-issued{}", renewed.len(), if rekey { " with new keys" } else { "" }), Some(t.elapsed()));
    for m in &plan.members {
        ctx.changing(&format!("rotate {}", m.spec.name))?;
        let t = Instant::now();
        ctx.deliver(m, &own_files(m, |_| true)?)?;
        ctx.wait_serves_own_certificate(m, wait)?;
        ctx.wait_healthy(wait, &format!("rotating {}", m.spec.name))?;
        progress.step(&format!("rotate {}", m.name()), "serves the new certificate; cluster HEALTHY", Some(t.elapsed()));
    }
    let t = Instant::now();
    let outputs = crate::outputs::write(plan, crate::outputs::existing_api(plan))?;
    let changed = outputs.iter().filter(|w| w.outcome != pki::files::Outcome::Unchanged).count();
    progress.step("outputs", &format!("{changed} control-plane files updated: copy out/control-plane/NODE/ to each node, then restart kube-apiserver node by node (it reads them at start)"), Some(t.elapsed()));
    Ok(())
}

/// `rotate certs` on an adopted cluster: every certificate re-issued at its own path and name
/// (same subject, SANs and usages; the key kept unless `rekey`; one per member with `split`),
/// delivered member by member with the files' owner and mode kept, each member gated on serving
/// the new certificate and the cluster HEALTHY. No restart: etcd reads its files per handshake.
pub fn rotate_in_place(ctx: &Ctx, rekey: bool, split: bool, wait: Duration) -> Result<usize> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    let refuse = |reason: String| BootError::Precondition { what: "rotate certs".into(), reason };
    let a = plan.loaded.spec.adopted.as_ref().ok_or_else(|| refuse("not an adopted cluster".into()))?;
    let ca_key = a.ca_key.as_ref().ok_or_else(|| refuse(format!("signing needs the CA key: add `ca_key: /path/to/ca-key.pem` under `adopted:` in {}", plan.loaded.file)))?;
    let ca = pki::ca::Ca::load_files(&a.cacert, ca_key)?;
    ctx.require_healthy("rotate")?;
    ctx.require_reachable(&plan.members.iter().collect::<Vec<_>>(), 0, "rotate")?;
    // every member read, and every certificate signed by this CA, before anything changes
    let mut held = Vec::new();
    let mut found = Vec::new();
    for m in &plan.members {
        let am = in_place::adopted(m)?;
        if matches!(am.supervisor, crate::adopt::probe::Supervisor::Container) {
            return Err(refuse(format!("{}: its files are inside a container; renew them there", m.spec.name)));
        }
        let files = ctx.read_in_place(m)?;
        for (c, k) in am.leaf_pairs() {
            let (cert, key) = (am.tls[c].clone(), am.tls[k].clone());
            let pem = files.file(&cert).and_then(|f| f.content.clone()).unwrap_or_default();
            let der = pki::pemfile::first_certificate(&pem, &cert.display().to_string())?;
            if !pki::verify::signed_by(&der, &ca) {
                return Err(refuse(format!("{}: {} is not signed by the CA {}; give the CA that signed it", m.spec.name, cert.display(), a.cacert.display())));
            }
            held.push(in_place::Held { member: m.spec.name.clone(), address: m.spec.address, cert, key, der });
        }
        found.push(files);
    }
    let leaves = in_place::plan_rotation(&held, plan.issue.validity, split, rekey).map_err(refuse)?;
    ctx.changing("renew")?;
    let t = Instant::now();
    // (member, path) -> (mode, bytes); the server certificate each member will serve
    let mut deliveries: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut serves: Vec<(String, Vec<u8>)> = Vec::new();
    for leaf in &leaves {
        let what = leaf.holders[0].1.display().to_string();
        let (issued, key_pem) = if leaf.new_key {
            let key = pki::keys::PrivateKey::generate(plan.issue.algorithm)?;
            (ca.sign(&leaf.template, key.key_pair())?, Some(key.to_pkcs8_pem()))
        } else {
            (pki::renew::reissue_for_same_key(&ca, &leaf.template, &leaf.old_der, &what)?, None)
        };
        for (member, cert, key) in &leaf.holders {
            deliveries.push((member.clone(), cert.display().to_string(), issued.pem.clone().into_bytes()));
            if let Some(k) = &key_pem {
                deliveries.push((member.clone(), key.display().to_string(), k.clone().into_bytes()));
            }
            let am = plan.members.iter().find(|m| &m.spec.name == member).and_then(|m| m.spec.adopted.as_ref());
            if am.and_then(|a| a.tls_file("cert-file")) == Some(cert) {
                serves.push((member.clone(), issued.der.clone()));
            }
        }
    }
    let rekeyed = leaves.iter().filter(|l| l.new_key).count();
    let keys = if rekeyed == 0 { "every key kept".to_string() } else { format!("{rekeyed} with a new key") };
    progress.step("renew", &format!("{} certificates re-issued ({keys})", leaves.len()), Some(t.elapsed()));
    for (m, files) in plan.members.iter().zip(&found) {
        ctx.changing(&format!("rotate {}", m.spec.name))?;
        let t = Instant::now();
        let mine: Vec<(String, u32, Vec<u8>)> = deliveries
            .iter()
            .filter(|(member, _, _)| *member == m.spec.name)
            // the file's own mode (and, by the script, its owner) is kept
            .map(|(_, path, data)| (path.clone(), files.file(std::path::Path::new(path)).and_then(|f| u32::from_str_radix(&f.mode, 8).ok()).unwrap_or(0o600), data.clone()))
            .collect();
        ctx.run_on(m, &crate::scripts::deliver(&mine))?;
        if let Some((_, der)) = serves.iter().find(|(n, _)| *n == m.spec.name) {
            ctx.wait_serves(m, der, wait)?;
        }
        ctx.wait_healthy(wait, &format!("rotating {}", m.spec.name))?;
        progress.step(&format!("rotate {}", m.name()), &format!("{} files renewed in place; serves the new certificate; cluster HEALTHY", mine.len()), Some(t.elapsed()));
    }
    Ok(leaves.len())
}

//! `rotate certs`: renew every leaf (same subject, SANs and usages; new keys with `--rekey`),
//! then member by member: deliver, confirm it serves the new certificate (etcd re-reads its
//! files on each handshake, no restart) and answers etcd's health check before the next member;
//! HEALTHY at the start and at the end. No member stops, so the change to one member is proved
//! on that member: a verdict over all after each would cost n × n probes.

use crate::error::{BootError, Result};
use crate::in_place;
use crate::run::context::Ctx;
use crate::run::live::own_files;
use std::time::{Duration, Instant};

pub fn rotate_certs(ctx: &Ctx, rekey: bool, wait: Duration) -> Result<()> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    // one writer of the operator's PKI directory (and outputs) for the whole operation
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    // a run killed while delivering renewed all before: deliver again (a member it stopped
    // between a certificate and its key is DEGRADED until then), renew nothing
    // no member stops: a verdict after each member reuses the last one's connections
    ctx.etcd.keep_connections();
    let delivering = ctx.resumed_step().is_some_and(|s| s.starts_with("rotate "));
    if delivering {
        ctx.require_quorum("rotate")?
    } else {
        ctx.require_healthy("rotate")?
    };
    ctx.require_reachable(&plan.members.iter().collect::<Vec<_>>(), 0, "rotate")?;
    let pki = plan.pki();
    if delivering {
        progress.step("renew", "done by the run that stopped; delivering again", None);
    } else {
        let pair = pki.ca();
        let ca = pki::ca::Ca::load_files(&pair.cert, &pair.key)?;
        ctx.changing("renew")?;
        let t = Instant::now();
        let renewed = pki::renew::renew(&plan.issue.dir, &ca, &pki::renew::all_targets(&pki), plan.issue.validity, rekey)?;
        progress.step("renew", &format!("{} certificates re-issued{}", renewed.len(), if rekey { " with new keys" } else { "" }), Some(t.elapsed()));
    }
    for i in ctx.stopped_at_first(&plan.members, "rotate") {
        let m = &plan.members[i];
        ctx.changing(&format!("rotate {}", m.spec.name))?;
        let t = Instant::now();
        ctx.deliver(m, &own_files(m, |_| true)?)?;
        ctx.wait_serves_own_certificate(m, wait)?;
        ctx.wait_member_healthy(m, wait, &format!("rotating {}", m.spec.name))?;
        progress.step(&format!("rotate {}", m.name()), "serves the new certificate; healthy", Some(t.elapsed()));
    }
    ctx.verify_healthy(wait, "rotating every member")?;
    let t = Instant::now();
    let outputs = crate::kube::outputs::write(plan, crate::kube::outputs::existing_api(plan))?;
    let changed = outputs.iter().filter(|w| w.outcome != pki::files::Outcome::Unchanged).count();
    progress.step("outputs", &format!("{changed} control-plane files updated: copy out/control-plane/NODE/ to each node, then restart kube-apiserver node by node (it reads them at start)"), Some(t.elapsed()));
    Ok(())
}

/// `rotate certs` on an adopted cluster: every certificate re-issued at its own path and name
/// (same subject, SANs and usages; the key kept unless `rekey`; one per member with `split`),
/// delivered member by member with the files' owner and mode kept, each member gated on serving
/// the new certificate and its health, the cluster HEALTHY at the end. No restart: etcd reads its files per handshake.
pub fn rotate_in_place(ctx: &Ctx, rekey: bool, split: bool, wait: Duration) -> Result<usize> {
    let plan = ctx.plan;
    let refuse = |reason: String| BootError::Precondition { what: "rotate certs".into(), reason };
    let a = plan.loaded.spec.adopted.as_ref().ok_or_else(|| refuse("not an adopted cluster".into()))?;
    let ca_key = a
        .ca_key
        .as_ref()
        .ok_or_else(|| refuse(format!("signing needs the CA key: add `ca_key: /path/to/ca-key.pem` under `adopted:` in {}", plan.loaded.file)))?;
    let ca = pki::ca::Ca::load_files(&a.cacert, ca_key)?;
    ctx.etcd.keep_connections();
    // resumed after a kill mid-delivery, one member may hold a new certificate beside its old
    // key: this run renews it again, as asked
    if ctx.resumed_step().is_some() {
        ctx.require_quorum("rotate")?
    } else {
        ctx.require_healthy("rotate")?
    };
    ctx.require_reachable(&plan.members.iter().collect::<Vec<_>>(), 0, "rotate")?;
    in_place::renew(ctx, &ca, &[ca.cert_der()], in_place::Renewal { rekey, split }, wait)
}

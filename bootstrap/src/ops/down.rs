//! `down`: stop every member, the leader last; data kept unless `--purge` (which needs the
//! member's ownership marker, and also withdraws the member's server and peer certificates from
//! the operator's PKI directory: a member whose data is gone has no identity to keep, and a spec
//! fixed afterwards, new addresses included, gets certificates that fit it).

use crate::error::{BootError, Result};
use crate::run::context::Ctx;

use crate::host::scripts;
use crate::plan::MemberPlan;
use std::time::Instant;

/// Stops every member (data kept unless `purge`); returns the members stopped.
pub fn down(ctx: &Ctx, purge: bool) -> Result<Vec<String>> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    let stop = |m: &MemberPlan| {
        let t = Instant::now();
        let marker = scripts::marker_text(&plan.token, &m.spec.name);
        ctx.stop_member(m, &scripts::stop(m, purge.then_some(marker.as_str()))).map(|o| (o, t.elapsed()))
    };
    ctx.changing(if purge { "stop and purge" } else { "stop" })?;
    // the leader last: see Ctx::leader_last
    let results = ctx.leader_last(stop);
    let mut stopped = Vec::new();
    let mut errors = Vec::new();
    for (m, r) in plan.members.iter().zip(results) {
        match r {
            Ok((out, took)) => {
                let what = match (out.value("stopped"), out.value("killed")) {
                    (Some(_), Some(_)) => "stopped (SIGKILL after 10 s)".to_string(),
                    (Some(_), None) => "stopped".to_string(),
                    _ => "was not running".to_string(),
                };
                let purge_note = out.value("purged").map(|d| format!("; data dir {d} removed")).unwrap_or_default();
                if let Some(why) = out.value("purge_refused") {
                    errors.push(format!("member {}: purge refused: {why}", m.spec.name));
                } else if purge {
                    withdraw_certificates(ctx, m)?;
                }
                progress.step(&format!("down {}", m.name()), &format!("{what}{purge_note}"), Some(took));
                stopped.push(m.spec.name.clone());
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() { Ok(stopped) } else { Err(BootError::Members { what: "stopping etcd".into(), failures: errors }) }
}

/// Removes the member's server and peer pairs from the operator's PKI directory (under its lock).
fn withdraw_certificates(ctx: &Ctx, m: &MemberPlan) -> Result<()> {
    let plan = ctx.plan;
    let _lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    let pki = plan.pki();
    let mut removed = 0;
    for role in [pki::cluster::Role::Server(m.spec.name.clone()), pki::cluster::Role::Peer(m.spec.name.clone())] {
        let pair = pki.leaf(&role);
        for path in [&pair.cert, &pair.key] {
            match std::fs::remove_file(path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::io("remove", &path)(e)),
            }
        }
    }
    if removed > 0 {
        ctx.progress.step(&format!("down {}", m.name()), &format!("its server and peer certificates withdrawn from {}", plan.issue.dir.display()), None);
    }
    Ok(())
}

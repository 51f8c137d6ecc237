//! `down`: stop every member, the leader last; data kept unless `--purge` (which needs the
//! member's ownership marker).

use crate::context::Ctx;
use crate::error::{BootError, Result};

use crate::plan::MemberPlan;
use crate::scripts;
use std::time::Instant;

/// Stops every member (data kept unless `purge`); returns the members stopped.
pub fn down(ctx: &Ctx, purge: bool) -> Result<Vec<String>> {
    let (plan, progress) = (ctx.plan, ctx.progress);
    let stop = |m: &MemberPlan| {
        let t = Instant::now();
        let marker = scripts::marker_text(&plan.token, &m.spec.name);
        ctx.run_on(m, &scripts::stop(m, purge.then_some(marker.as_str()))).map(|o| (o, t.elapsed()))
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
                }
                progress.step(&format!("down {}", m.name()), &format!("{what}{purge_note}"), Some(took));
                stopped.push(m.spec.name.clone());
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() { Ok(stopped) } else { Err(BootError::Members { what: "stopping etcd".into(), failures: errors }) }
}

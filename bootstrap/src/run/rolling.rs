//! The steps `upgrade` and `downgrade` share: moving a cluster to another etcd release member
//! by member (deliver the binaries, restart on them, wait for the member's new version), the
//! record that makes an interrupted run resume, and the checks before any change.

use crate::error::{BootError, Result};
use crate::host::delivery::{EtcdRelease, probe_script, to_send};
use crate::plan::{MemberPlan, Plan};
use crate::run::context::Ctx;
use crate::spec::versions::Version;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a rolling release change (`upgrade`, `downgrade`) has done, kept beside the PKI so that
/// an interrupted run resumes: the release it goes to, where it came from, the members done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollState {
    pub to: String,
    pub from: String,
    pub done: Vec<String>,
    /// The backup taken before the first change (a resumed run takes none).
    #[serde(default)]
    pub backup: Option<String>,
    /// `downgrade`: etcd's downgrade was enabled (the cluster version is already the target's).
    #[serde(default)]
    pub enabled: bool,
}

/// Which operation a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roll {
    Upgrade,
    Downgrade,
}

impl Roll {
    /// The command's name, for progress lines.
    pub fn command(self) -> &'static str {
        match self {
            Roll::Upgrade => "upgrade",
            Roll::Downgrade => "downgrade",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Roll::Upgrade => "upgrade.json",
            Roll::Downgrade => "downgrade.json",
        }
    }
}

pub fn state_path(plan: &Plan, roll: Roll) -> PathBuf {
    plan.issue.dir.join("etcd").join(roll.file())
}

pub fn save(plan: &Plan, roll: Roll, s: &RollState) -> Result<()> {
    crate::run::live::save_record(&state_path(plan, roll), s, 0o644)
}

pub fn load(plan: &Plan, roll: Roll) -> Result<Option<RollState>> {
    crate::run::live::load_record(&state_path(plan, roll), if roll == Roll::Upgrade { "an interrupted upgrade" } else { "an interrupted downgrade" })
}

/// The version each member reports (by name), through the Maintenance API.
pub fn member_versions(ctx: &Ctx) -> Vec<(String, Option<Version>)> {
    ctx.plan.members.iter().map(|m| (m.spec.name.clone(), ctx.etcd.version_of(&m.spec.client_url()))).collect()
}

/// Where `upgrade` and `downgrade` put the backup they take first: `backups/` beside the spec.
pub fn backup_dir(plan: &Plan) -> PathBuf {
    Path::new(&plan.loaded.file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("backups")
}

/// Where a member's etcd binaries go: the spec's `bin_dir`, or for an adopted member the folder
/// of the binary it runs (replaced there, by rename: its unit or command line names that path).
pub fn bin_dir_of(m: &MemberPlan) -> PathBuf {
    match &m.spec.adopted {
        Some(a) => a.binary.parent().map(Path::to_path_buf).unwrap_or_else(|| m.spec.bin_dir.clone()),
        None => m.spec.bin_dir.clone(),
    }
}

/// An adopted member's binary must be named `etcd` and belong to no package: a package's file is
/// upgraded with its package manager, never replaced behind it. Checked on every member first.
pub fn refuse_owned_binaries(ctx: &Ctx, pending: &[&MemberPlan]) -> Result<()> {
    let mut problems = Vec::new();
    for m in pending {
        let Some(a) = &m.spec.adopted else { continue };
        if a.binary.file_name().is_none_or(|n| n != "etcd") {
            problems.push(format!("member {}: it runs {}, not a file named etcd; upgrade it the way it was installed", m.spec.name, a.binary.display()));
            continue;
        }
        let out = ctx.run_on(m, &crate::host::scripts::package_owner(&a.binary.display().to_string()))?;
        if let Some(owner) = out.value("owner") {
            problems.push(format!("member {}: {} belongs to the package {owner}; upgrade that package on the host instead", m.spec.name, a.binary.display()));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(BootError::Preflight(problems)) }
}

/// One member: binaries it lacks, then a restart on the release's binary, then its version.
pub fn swap_binary(ctx: &Ctx, m: &MemberPlan, release: &EtcdRelease, wait: Duration) -> Result<()> {
    let dir = bin_dir_of(m);
    let probe = ctx.run_on(m, &probe_script(&dir))?;
    for (path, mode, data) in to_send(release, &dir, &probe.stdout) {
        ctx.put_file(m, &path, mode, &data)?;
    }
    let mut next = m.clone();
    next.binary = dir.join("etcd").display().to_string();
    let out = ctx.run_on(&next, &crate::host::scripts::etcd_version(&next.binary))?;
    if crate::spec::versions::etcd_version_output(&out.stdout) != Some(release.version) {
        return Err(BootError::Preflight(vec![format!("member {}: {} does not report etcd {}", m.spec.name, next.binary, release.version)]));
    }
    ctx.restart_member(&next, wait)?;
    let deadline = Instant::now() + wait;
    loop {
        if ctx.etcd.version_of(&m.spec.client_url()) == Some(release.version) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BootError::Verification(format!(
                "member {} does not report etcd {} after its restart; stopped here; run the same command again to go on",
                m.spec.name, release.version
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// After an interruption a member may be stopped mid-restart: start whatever is not running
/// (idempotent), with the new binary where it is already in place, until HEALTHY (bounded).
pub fn start_stopped(ctx: &Ctx, release: &EtcdRelease, wait: Duration) -> Result<()> {
    let plan = ctx.plan;
    for m in &plan.members {
        let mut next = m.clone();
        let new = bin_dir_of(m).join("etcd").display().to_string();
        let out = ctx.run_on(m, &crate::host::scripts::etcd_version(&new))?;
        if crate::spec::versions::etcd_version_output(&out.stdout) == Some(release.version) {
            next.binary = new;
        }
        let _ = ctx.start_member(&next);
    }
    ctx.wait_healthy(wait, "resuming").map(|_| ())
}

pub fn cluster_version(ctx: &Ctx) -> Option<String> {
    ctx.etcd.cluster_version()
}

/// The leader moves the cluster version once every member runs the new minor (it checks every
/// few seconds), or at once when a downgrade is enabled: wait for it, bounded.
pub fn wait_cluster_version(ctx: &Ctx, to: Version, wait: Duration) -> Result<String> {
    let want = format!("{}.{}.", to.0, to.1);
    let deadline = Instant::now() + wait;
    loop {
        let now = cluster_version(ctx).unwrap_or_default();
        if now.starts_with(&want) {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(BootError::NotHealthy(format!("every member runs {to}, but the cluster version is still {now:?} after {}s", wait.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The version the cluster moves from: every member on one version, or (resuming a change this
/// command recorded) on the old or the new one.
pub fn starting_version(versions: &[(String, Option<Version>)], release: &EtcdRelease, state: Option<&RollState>) -> Result<Version> {
    let unknown: Vec<&String> = versions.iter().filter(|(_, v)| v.is_none()).map(|(n, _)| n).collect();
    if !unknown.is_empty() {
        return Err(BootError::Preflight(unknown.iter().map(|n| format!("member {n}: its version could not be read")).collect()));
    }
    let mut seen: Vec<Version> = versions.iter().filter_map(|(_, v)| *v).collect();
    seen.sort();
    seen.dedup();
    match (seen.as_slice(), state) {
        ([one], _) => Ok(*one),
        ([a, b], Some(s)) if (*b == release.version && s.from == a.to_string()) || (*a == release.version && s.from == b.to_string()) => {
            Ok(if *a == release.version { *b } else { *a })
        }
        _ => Err(BootError::Preflight(vec![format!(
            "the members run different versions ({}), and no upgrade or downgrade of this command's left them so; bring them to one version first",
            versions.iter().map(|(n, v)| format!("{n} {}", v.map(|v| v.to_string()).unwrap_or_default())).collect::<Vec<_>>().join(", ")
        )])),
    }
}

/// What `upgrade` or `downgrade` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RollReport {
    pub from: String,
    pub to: String,
    /// The members this run moved to `to`.
    pub moved: Vec<String>,
    pub cluster_version: String,
    pub backup: Option<String>,
    pub steps: Vec<String>,
}

/// Where a rolling release change stands once it may go on: the PKI directory's lock (held until
/// dropped), the release it goes to, its record when it resumes one, each member's version and
/// the version it moves from.
pub struct Begun {
    pub _lock: pki::lock::DirLock,
    pub release: EtcdRelease,
    pub state: Option<RollState>,
    pub versions: Vec<(String, Option<Version>)>,
    pub from: Version,
}

/// The opening `upgrade` and `downgrade` share: the lock, the release prepared (checked against
/// `sha256`), the record of an interrupted run of the same release resumed (members it left
/// stopped started again), every member HEALTHY and reachable, and the version moved from.
pub fn begin(ctx: &Ctx, roll: Roll, to: &str, sha256: Option<&str>, wait: Duration) -> Result<Begun> {
    let (plan, progress, name) = (ctx.plan, ctx.progress, roll.command());
    let lock = pki::lock::lock_dir(&plan.issue.dir, pki::lock::DEFAULT_WAIT)?;
    let base = Path::new(&plan.loaded.file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let release = crate::host::delivery::prepare(to, sha256, base, &plan.loaded.output_dir)?;
    let checked = if sha256.is_some() { "checksum verified" } else { "no --sha256 given" };
    progress.step(name, &format!("etcd {} from {to}: {checked}", release.version), None);
    let state = load(plan, roll)?.filter(|s| s.to == release.version.to_string());
    if let Some(s) = &state {
        let done = if s.done.is_empty() { "none".to_string() } else { s.done.join(", ") };
        progress.step(name, &format!("resuming: {done} already on etcd {}", s.to), None);
        start_stopped(ctx, &release, wait)?;
    }
    ctx.require_healthy(name)?;
    ctx.require_reachable(&plan.members.iter().collect::<Vec<_>>(), 0, name)?;
    let versions = member_versions(ctx);
    let from = starting_version(&versions, &release, state.as_ref())?;
    Ok(Begun { _lock: lock, release, state, versions, from })
}

/// `upgrade|downgrade --to ARCHIVE [--sha256 HEX]` after checking both values: what the journal
/// shows and what resumes it.
pub fn command_args(kind: Roll, to: &str, sha256: Option<&str>) -> crate::error::Result<String> {
    use crate::error::BootError;
    crate::spec::rules::etcd_archive(to).map_err(|reason| BootError::BadArgument { flag: format!("--to {to:?}"), reason })?;
    if let Some(h) = sha256 {
        crate::spec::rules::sha256(h).map_err(|reason| BootError::BadArgument { flag: "--sha256".into(), reason })?;
    }
    Ok(format!("{} --to {}{}", kind.command(), crate::plan::sh_quote(to), sha256.map(|h| format!(" --sha256 {h}")).unwrap_or_default()))
}

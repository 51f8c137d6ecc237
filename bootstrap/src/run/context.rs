//! The one value every operation runs in: the plan, the progress printer, a transport per member
//! and a view of etcd ([`Seams`], built once; fakes in unit tests), and the operation's place in
//! the cluster's journal. [`run`] takes the cluster lock, reads what is under way,
//! admits or refuses the operation before its first effect ([`crate::journal::admit`]), records
//! it, and records how it ended: finished (entry removed), paused for the operator, or stopped
//! after its first change (entry kept, with the step and the error, so the next run of anything
//! says what to finish and how).
//!
//! Operations say where their checks end and their changes begin with [`Ctx::changing`]: an
//! operation that fails or is killed before it leaves nothing under way.

use crate::error::{BootError, Result};
use crate::host::transport::{ScriptOutput, Transport, TransportError};
use crate::journal::{Admission, Entry, OpKind, Request, Standing, UnderWay, admit};
use crate::plan::{MemberPlan, Plan};
use crate::progress::Progress;
use crate::run::etcd_view::{EtcdView, LiveEtcd};
use crate::run::journal_store::{Store, own_entry, process_alive};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The spec path the binary uses when `-f` is not given.
pub const DEFAULT_SPEC: &str = "etcd-cluster/cluster.yaml";

/// A transport per member, by name.
pub struct Hosts(HashMap<String, Box<dyn Transport>>);

impl Hosts {
    /// This machine or the system's OpenSSH client, as each member's `host` says.
    pub fn live(plan: &Plan) -> Hosts {
        Hosts(plan.members.iter().map(|m| (m.spec.name.clone(), crate::host::transport::for_member(&m.spec))).collect())
    }
    pub fn new(by_member: HashMap<String, Box<dyn Transport>>) -> Hosts {
        Hosts(by_member)
    }
}

/// Where an operation reaches hosts and etcd: the real ones, or fakes in unit tests.
pub struct Seams {
    pub hosts: Hosts,
    pub etcd: Box<dyn EtcdView>,
}

impl Seams {
    pub fn live(plan: &Plan) -> Result<Seams> {
        Ok(Seams { hosts: Hosts::live(plan), etcd: Box::new(LiveEtcd::new(plan)?) })
    }
}

/// Stands in for a member the plan does not know: every call fails, naming it.
struct NoTransport;

impl Transport for NoTransport {
    fn describe(&self) -> String {
        "no transport".into()
    }
    fn run(&self, _: &str, _: Duration) -> std::result::Result<ScriptOutput, TransportError> {
        Err(TransportError::Unknown)
    }
}

pub struct Ctx<'a> {
    pub plan: &'a Plan,
    pub progress: &'a Progress,
    /// etcd as the operation sees it (verdict, members, leadership).
    pub etcd: Box<dyn EtcdView>,
    hosts: Hosts,
    /// What else was under way when this operation was admitted (allowed beside it).
    pub under_way: Vec<UnderWay>,
    /// Whether this run goes on with the same operation, paused or stopped before.
    pub admission: Admission,
    store: Store,
    me: Mutex<Entry>,
    /// (member, binary) pairs whose etcd was found not older than the member runs, this run:
    /// checked once, before the first restart, not again at each (an `etcd --version` each).
    pub(crate) binaries_checked: Mutex<std::collections::HashSet<(String, String)>>,
}

impl Ctx<'_> {
    /// The member's transport (built once for the operation).
    pub(crate) fn transport(&self, m: &MemberPlan) -> &dyn Transport {
        self.hosts.0.get(&m.spec.name).map(|t| t.as_ref()).unwrap_or(&NoTransport)
    }

    /// Marks the first (and each further) change: from here, stopping leaves the operation
    /// unfinished, and the journal says at which step.
    pub fn changing(&self, step: &str) -> Result<()> {
        self.update(|e| {
            e.changed = true;
            e.step = Some(step.to_string());
        })
    }

    /// What this run changed left nothing lasting (members that never formed a cluster, stopped
    /// again): ending with an error now leaves nothing under way.
    pub fn nothing_lasting(&self) -> Result<()> {
        self.update(|e| {
            e.changed = false;
            e.step = None;
        })
    }

    /// Pauses the operation for the operator: `why` is what they must do, `finish` the command
    /// that goes on afterwards.
    pub fn pause(&self, why: &str, finish: &str) -> Result<()> {
        self.update(|e| {
            e.changed = true;
            e.paused = Some(why.to_string());
            e.finish = finish.to_string();
        })
    }

    /// The operation is done: its journal entry goes now, before the operation removes its own
    /// progress record (killed in between, the record still says what to resume).
    pub fn finished(&self) -> Result<()> {
        let me = self.me.lock().map(|e| e.clone()).map_err(|_| poisoned())?;
        self.store.edit(|j| j.operations.retain(|e| !same_entry(e, &me)))?;
        Ok(())
    }

    /// The step an earlier run of this operation stopped at, when this run resumes it.
    pub fn resumed_step(&self) -> Option<String> {
        if self.admission != Admission::Resume {
            return None;
        }
        self.me.lock().ok().and_then(|e| e.step.clone())
    }

    /// Indexes of `members` in order, but the one an earlier run stopped at (its step `STEP
    /// NAME`) first: that member may be the one it left half-done.
    pub fn stopped_at_first(&self, members: &[crate::plan::MemberPlan], step: &str) -> Vec<usize> {
        let at = self.resumed_step().and_then(|s| s.strip_prefix(step).and_then(|r| r.strip_prefix(' ')).map(String::from));
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|i| Some(&members[*i].spec.name) != at.as_ref());
        order
    }

    /// Whether a CA rotation is paused or unfinished (members hold its stage's files).
    pub fn ca_rotation_under_way(&self) -> bool {
        self.under_way.iter().any(|u| u.entry.kind == OpKind::RotateCa)
    }

    fn update(&self, f: impl FnOnce(&mut Entry)) -> Result<()> {
        let mut me = self.me.lock().map_err(|_| poisoned())?;
        let before = me.clone();
        f(&mut me);
        let after = me.clone();
        self.store.edit(|j| {
            if let Some(e) = j.operations.iter_mut().find(|e| same_entry(e, &before)) {
                *e = after;
            }
        })
    }
}

fn poisoned() -> BootError {
    BootError::Journal { path: "journal".into(), reason: "an earlier step panicked".into() }
}

fn same_entry(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind && a.target == b.target && a.pid == b.pid && a.started == b.started
}

/// The command line that runs `args` on the cluster of `plan`'s spec.
pub fn command_for(plan: &Plan, args: &str) -> String {
    let file = &plan.loaded.file;
    if file == DEFAULT_SPEC { format!("etcd-bootstrap {args}") } else { format!("etcd-bootstrap -f {} {args}", crate::plan::sh_quote(file)) }
}

/// A request for `kind` (with its target, if the job has one) whose finishing command is `args`.
pub fn request(plan: &Plan, kind: OpKind, target: Option<String>, args: &str) -> Request {
    Request { kind, target, finish: command_for(plan, args) }
}

/// The commands that work on an adopted cluster, as the refusal names them.
pub const SUPPORTED: &str = "status, certs check, backup, maintain, rotate certs, rotate ca, replace (a plain process or a systemd unit), restore, upgrade, downgrade, down, up and doctor";

/// Whether an operation runs on an adopted cluster: those that change no member's setup. (A
/// member is stopped and started through the supervisor it was found with; what would rewrite
/// its unit, flags or binary, or delete its data, is not.)
pub fn supports(kind: crate::journal::OpKind) -> bool {
    use crate::journal::OpKind::*;
    matches!(kind, Backup | Maintain | RotateCerts | RotateCa | Replace | Restore | Upgrade | Downgrade | Down | Up)
}

/// Refuses `command` on an adopted cluster's spec, before anything is read or changed, saying
/// why for that command.
pub fn refuse(spec: &crate::spec::Spec, command: &str) -> crate::error::Result<()> {
    if spec.adopted.is_none() {
        return Ok(());
    }
    let why = match command {
        "down --purge" => "its data is its operator's to delete",
        "plan" | "check lb" if spec.kubernetes.is_absent() => "the spec names no control plane (`kubernetes:`) to plan or check",
        _ => "its members run as their operator set them up, and this would rewrite them",
    };
    Err(crate::error::BootError::Precondition { what: command.to_string(), reason: format!("not on an adopted cluster yet: {why}; on one, use {SUPPORTED}") })
}

/// Runs `op` as `req` on the cluster: lock, admission, journal entry, outcome.
/// [`run`] for a command: the request made from its kind, target and arguments (what the
/// journal shows and what resumes it).
pub fn run_command<T>(
    plan: &Plan,
    progress: &Progress,
    lock_wait: Duration,
    (kind, target, args): (OpKind, Option<String>, &str),
    op: impl FnOnce(&Ctx) -> Result<T>,
) -> Result<T> {
    run(plan, progress, request(plan, kind, target, args), lock_wait, op)
}

pub fn run<T>(plan: &Plan, progress: &Progress, req: Request, lock_wait: Duration, op: impl FnOnce(&Ctx) -> Result<T>) -> Result<T> {
    run_with(plan, progress, req, lock_wait, Seams::live(plan)?, op)
}

/// [`run`] with the given seams (fakes in unit tests).
pub fn run_with<T>(plan: &Plan, progress: &Progress, req: Request, lock_wait: Duration, seams: Seams, op: impl FnOnce(&Ctx) -> Result<T>) -> Result<T> {
    if !supports(req.kind) {
        refuse(&plan.loaded.spec, req.kind.command())?;
    }
    let store = Store::for_spec(Path::new(&plan.loaded.file));
    let _lock = store.lock(req.kind.lock_mode(), lock_wait)?;
    let under_way = under_way(plan, &store)?;
    let admission = admit(&req, &under_way).map_err(BootError::Refused)?;
    let mut me = own_entry(&req, time::OffsetDateTime::now_utc());
    let resumed = under_way.iter().find(|u| u.entry.kind == req.kind && u.entry.target == req.target && u.standing != Standing::Running);
    if let Some(old) = resumed {
        // still half-done until this run gets past where the last one stopped
        me.changed = old.entry.changed;
        me.step = old.entry.step.clone();
        progress.step("journal", &format!("resuming: {}", old.brief()), None);
    }
    let others: Vec<UnderWay> = under_way.into_iter().filter(|u| !(u.entry.kind == req.kind && u.entry.target == req.target)).collect();
    for u in &others {
        progress.step("journal", &format!("note: {}", u.describe()), None);
    }
    store.edit(|j| {
        // the same job's earlier entry gives way to this run's (which inherited its state)
        j.operations.retain(|e| !(e.kind == req.kind && e.target == req.target && !e.running(process_alive)) && still_matters(e));
        j.operations.push(me.clone());
    })?;
    let ctx = Ctx {
        plan,
        progress,
        etcd: seams.etcd,
        hosts: seams.hosts,
        under_way: others,
        admission,
        store: store.clone(),
        me: Mutex::new(me),
        binaries_checked: Default::default(),
    };
    let result = op(&ctx);
    let me = ctx.me.lock().map(|e| e.clone()).map_err(|_| poisoned())?;
    if result.is_err() && !me.changed && !matches!(result, Err(BootError::NeverFormed { .. })) {
        progress.step("journal", "stopped before its first change: nothing was changed", None);
    }
    let outcome = store.edit(|j| record_outcome(j, &me, req.kind, result.as_ref().err()));
    match (result, outcome) {
        (Ok(v), Ok(())) => Ok(v),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
    }
}

/// An entry of a process that is gone and changed nothing need not be kept.
fn still_matters(e: &Entry) -> bool {
    e.paused.is_some() || e.changed || e.running(process_alive)
}

/// The journal after the operation ended: finished (removed; `up` also ends an unfinished
/// `down`), paused (kept), or stopped after a change (kept with the error).
fn record_outcome(j: &mut crate::journal::Journal, me: &Entry, kind: OpKind, err: Option<&BootError>) {
    // gone already: the operation took itself out (`Ctx::finished`)
    let Some(pos) = j.operations.iter().position(|e| same_entry(e, me)) else { return };
    match err {
        None if me.paused.is_some() => {}
        None => {
            j.operations.remove(pos);
            if kind == OpKind::Up {
                j.operations.retain(|e| e.kind != OpKind::Down || e.running(process_alive));
            }
        }
        Some(e) if me.changed => j.operations[pos].error = Some(e.to_string()),
        Some(_) => {
            j.operations.remove(pos);
        }
    }
}

/// Runs `op` without lock or journal entry: for what changes nothing (`upgrade --dry-run`). It
/// must not call [`Ctx::changing`].
pub fn read_only<T>(plan: &Plan, progress: &Progress, op: impl FnOnce(&Ctx) -> Result<T>) -> Result<T> {
    let store = Store::for_spec(Path::new(&plan.loaded.file));
    let under_way = under_way(plan, &store)?;
    let me = own_entry(&Request { kind: OpKind::Up, target: None, finish: String::new() }, time::OffsetDateTime::now_utc());
    let seams = Seams::live(plan)?;
    op(&Ctx {
        plan,
        progress,
        etcd: seams.etcd,
        hosts: seams.hosts,
        under_way,
        admission: Admission::Start,
        store,
        me: Mutex::new(me),
        binaries_checked: Default::default(),
    })
}

/// What is under way: the journal's entries, with the progress records the resumable operations
/// keep themselves (`ca-rotation.json`, `restore.json`, `upgrade.json`, `downgrade.json`): a record without an
/// entry (written by an older etcd-bootstrap, or killed between the two) is an unfinished
/// operation, and a CA rotation's record says whether it waits for the operator.
pub fn under_way(plan: &Plan, store: &Store) -> Result<Vec<UnderWay>> {
    let mut all = store.read()?.under_way(process_alive);
    let etcd = plan.issue.dir.join("etcd");
    let rotation = crate::run::records::current(plan)?;
    // the release a rolling change's record goes to, to name it in the command that finishes it
    let release = |file: &str| {
        let to = std::fs::read_to_string(etcd.join(file))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            // only a version is named: the record is a file, and the message is printed
            .and_then(|v| v["to"].as_str().and_then(crate::spec::versions::Version::parse));
        to.map(|v| format!("the etcd {v} release")).unwrap_or_else(|| "the one it was started with".into())
    };
    let records = [
        (OpKind::RotateCa, rotation.is_some(), "rotate ca".to_string()),
        (OpKind::Restore, etcd.join("restore.json").exists(), "restore SNAPSHOT (the one it was started with)".to_string()),
        (OpKind::Upgrade, etcd.join("upgrade.json").exists(), format!("upgrade --to RELEASE ({})", release("upgrade.json"))),
        (OpKind::Downgrade, etcd.join("downgrade.json").exists(), format!("downgrade --to RELEASE ({}), or downgrade --cancel", release("downgrade.json"))),
    ];
    for (kind, recorded, args) in records {
        if recorded && !all.iter().any(|u| u.entry.kind == kind) {
            let mut entry = own_entry(&Request { kind, target: None, finish: command_for(plan, &args) }, time::OffsetDateTime::now_utc());
            entry.pid = 0;
            entry.pid_start = None;
            entry.changed = true;
            entry.started = "an earlier run".into();
            all.push(UnderWay { entry, standing: Standing::Unfinished });
        }
    }
    if let Some(r) = rotation.filter(|r| r.waiting_for_operator) {
        for u in all.iter_mut().filter(|u| u.entry.kind == OpKind::RotateCa && u.standing == Standing::Unfinished) {
            u.standing = Standing::Paused;
            u.entry.finish = command_for(plan, "rotate ca --continue");
            u.entry.paused.get_or_insert_with(|| format!("waiting for kube-apiserver to be updated before step {:?}; `rotate ca --status` says how", r.phase));
        }
    }
    Ok(all)
}

/// For read-only commands: one line per operation under way (never blocks, takes no lock).
pub fn notes(plan: &Plan) -> Vec<String> {
    match under_way(plan, &Store::for_spec(Path::new(&plan.loaded.file))) {
        Ok(all) => all.iter().map(UnderWay::describe).collect(),
        Err(e) => vec![e.to_string()],
    }
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;

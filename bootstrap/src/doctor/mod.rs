//! `doctor`: every check of an external etcd and what is around it, in one run, each OK / WARN /
//! FAIL with its evidence and its fix, and outputs monitoring reads (Prometheus text, Nagios).
//! The quorum verdict, the members' status, raft lag and metrics, the certificates and the CRL,
//! each host's clock and free space, the newest backup, and around the cluster the load balancer,
//! kube-apiserver's files on the nodes and an adopted cluster's risks; gathered in parallel, each
//! bounded in time. Read-only: no lock, no journal; only its own samples file is written.

pub mod around;
pub mod judge;
pub mod metrics;
pub mod render;

#[cfg(test)]
mod tests;

use crate::run::context::Ctx;
use etcdctl_lite::quorum::ClusterState;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// A check's result, ordered by severity (Nagios' exit codes: 0, 1, 2, 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Ok,
    Warn,
    Fail,
    /// The check itself could not run.
    Unknown,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
            Level::Unknown => "UNKNOWN",
        }
    }
    /// The gauge value (`etcd_bootstrap_check`) and the exit code.
    pub fn code(self) -> u8 {
        match self {
            Level::Ok => 0,
            Level::Warn => 1,
            Level::Fail => 2,
            Level::Unknown => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub level: Level,
    pub evidence: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

/// A number monitoring graphs and alerts on (Prometheus gauge).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub gauges: Vec<Gauge>,
}

impl Report {
    /// The worst level; UNKNOWN only when nothing failed (a failure is the more useful news).
    pub fn level(&self) -> Level {
        let worst = self.checks.iter().map(|c| c.level).filter(|l| *l != Level::Unknown).max().unwrap_or(Level::Ok);
        if worst < Level::Fail && self.checks.iter().any(|c| c.level == Level::Unknown) { Level::Unknown } else { worst }
    }
}

/// What `doctor` is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where backups are (the newest one's age is checked).
    pub backup_dir: PathBuf,
    /// Also count the last backup `backup` recorded (wherever it went): the default; off when the
    /// operator names the folder to judge.
    pub use_record: bool,
    /// Backup age thresholds, seconds.
    pub backup_warn: i64,
    pub backup_fail: i64,
    /// Certificates expiring within this many days are a WARN.
    pub cert_warn_days: i64,
    pub now: i64,
}

impl Options {
    /// From `doctor`'s flags: the ages (`2h`, `26h`) parsed, the warning no later than the
    /// failure, the backups judged where `--backup-dir` says or beside the spec.
    pub fn from_flags(spec_file: &str, backup_dir: Option<PathBuf>, warn: &str, fail: &str, cert_warn_days: i64, now: i64) -> crate::error::Result<Options> {
        let secs = |flag: &str, v: &str| pki::validity::parse_duration(v, flag).map(|d| d.whole_seconds()).map_err(crate::error::BootError::from);
        let (backup_warn, backup_fail) = (secs("--backup-warn", warn)?, secs("--backup-fail", fail)?);
        if backup_warn > backup_fail {
            return Err(crate::error::BootError::BadArgument { flag: format!("--backup-warn {warn}"), reason: format!("longer than --backup-fail {fail}") });
        }
        let base = std::path::Path::new(spec_file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        Ok(Options {
            use_record: backup_dir.is_none(),
            backup_dir: backup_dir.unwrap_or_else(|| base.join("backups")),
            backup_warn,
            backup_fail,
            cert_warn_days,
            now,
        })
    }
}

use judge::check;

fn gauge(name: &'static str, help: &'static str, labels: Vec<(&'static str, String)>, value: f64) -> Gauge {
    Gauge { name, help, labels, value }
}

/// Every check; the etcd side, the hosts and the files in parallel.
pub fn run(ctx: &Ctx, opts: &Options) -> Report {
    let (mut checks, mut gauges) = (Vec::new(), Vec::new());
    std::thread::scope(|s| {
        let cluster = s.spawn(|| cluster_checks(ctx, opts.now));
        let hosts = s.spawn(|| host_checks(ctx));
        let files = s.spawn(|| file_checks(ctx, opts));
        let around = s.spawn(|| around::checks(ctx, opts));
        for h in [cluster, hosts, files, around] {
            match h.join() {
                Ok((c, g)) => {
                    checks.extend(c);
                    gauges.extend(g);
                }
                Err(_) => checks.push(check("doctor", None, Level::Unknown, "a check panicked".into(), "report this as a bug")),
            }
        }
    });
    Report { checks, gauges }
}

/// Checks and gauges, as each part of the run finds them.
pub type Found = (Vec<Check>, Vec<Gauge>);

/// The verdict, alarms, versions, and each member's database and latencies.
fn cluster_checks(ctx: &Ctx, now: i64) -> Found {
    let (mut c, mut g) = (Vec::new(), Vec::new());
    let v = match ctx.verdict() {
        Ok(v) => v,
        Err(e) => return (vec![check("quorum", None, Level::Unknown, e.to_string(), "check the healthcheck client's files and the members' addresses")], g),
    };
    let (vc, vg) = from_verdict(&v);
    c.extend(vc);
    g.extend(vg);
    let alarms = if v.alarms.is_empty() { Level::Ok } else { Level::Fail };
    c.push(check(
        "alarms",
        None,
        alarms,
        if v.alarms.is_empty() { "none".into() } else { v.alarms.join(", ") },
        "NOSPACE: etcd-bootstrap maintain; CORRUPT: replace the member",
    ));
    let quota = ctx.plan.loaded.spec.etcd.quota_backend_bytes.unwrap_or(judge::DEFAULT_QUOTA);
    let mut versions: Vec<String> = Vec::new();
    let mut downgrading: Option<String> = None;
    let mut member_versions = vec![None; ctx.plan.members.len()];
    let mut indexes = vec![None; ctx.plan.members.len()];
    if let Ok((opts, rt)) = ctx.etcd.client() {
        let statuses = rt.block_on(etcdctl_lite::ops::status(&opts));
        for (i, m) in ctx.plan.members.iter().enumerate() {
            let name = m.spec.name.as_str();
            match statuses.iter().find(|s| s.endpoint == m.spec.client_url()).map(|s| &s.result) {
                Some(Ok(st)) => {
                    versions.push(st.version.clone());
                    if let Some((target, true)) = st.since_36.as_ref().and_then(|s| s.downgrade.clone()) {
                        downgrading.get_or_insert(target);
                    }
                    member_versions[i] = crate::spec::versions::Version::parse(&st.version);
                    indexes[i] = Some(st.raft_index);
                    let (size, in_use) = (u64::try_from(st.db_size).unwrap_or(0), u64::try_from(st.db_size_in_use).unwrap_or(0));
                    c.push(judge::db_size(name, size, quota));
                    c.push(judge::fragmentation(name, size, in_use));
                    g.push(gauge("etcd_bootstrap_db_size_bytes", "The member's database file size.", vec![("member", name.into())], size as f64));
                    g.push(gauge("etcd_bootstrap_db_quota_bytes", "The member's --quota-backend-bytes.", vec![("member", name.into())], quota as f64));
                }
                Some(Err(e)) => c.push(check(
                    "member",
                    Some(name),
                    Level::Fail,
                    format!("no status: {}", e.message),
                    "start it, or replace it: etcd-bootstrap replace NAME",
                )),
                None => {}
            }
        }
    }
    if let Some(target) = downgrading {
        c.push(check(
            "downgrade",
            None,
            Level::Warn,
            format!(
                "etcd's downgrade to {target} is enabled: the cluster version is {target}, and each member on a newer release waits to be restarted on {target}"
            ),
            "finish it: etcd-bootstrap downgrade --to RELEASE, or stop it: etcd-bootstrap downgrade --cancel",
        ));
    }
    c.extend(version_matrix(
        ctx.plan,
        &ctx.plan.members.iter().map(|m| m.spec.name.clone()).zip(member_versions.iter().cloned()).filter_map(|(n, v)| Some((n, v?))).collect::<Vec<_>>(),
    ));
    let highest = indexes.iter().flatten().max().copied().unwrap_or(0);
    for (m, index) in ctx.plan.members.iter().zip(&indexes) {
        if let Some(i) = index {
            c.push(judge::raft_lag(&m.spec.name, *i, highest));
        }
    }
    versions.sort();
    versions.dedup();
    c.push(check(
        "versions",
        None,
        if versions.len() > 1 { Level::Warn } else { Level::Ok },
        if versions.is_empty() { "unknown".into() } else { versions.join(", ") },
        "finish the upgrade or downgrade: etcd-bootstrap upgrade --to ... or downgrade --to ...",
    ));
    let (mc, mg) = metrics::checks(ctx, now);
    c.extend(mc);
    g.extend(mg);
    (c, g)
}

/// The members' etcd against the minimum of the spec's Kubernetes (none for an adopted cluster
/// whose spec names no control plane).
fn version_matrix(plan: &crate::plan::Plan, versions: &[(String, crate::spec::versions::Version)]) -> Vec<Check> {
    let k = &plan.loaded.spec.kubernetes;
    if k.is_absent() {
        return vec![];
    }
    let k8s = plan.loaded.typed.kubernetes;
    match crate::spec::versions::release_for(k8s) {
        Ok(r) => vec![judge::etcd_for_kubernetes(k8s, r.min_etcd, versions, k.allow_old_etcd)],
        Err(e) => vec![check("version-matrix", None, Level::Unknown, e, "set kubernetes.version to a release kubeadm supports")],
    }
}

/// Each host's clock and the free space beside its data dir.
fn host_checks(ctx: &Ctx) -> Found {
    let (mut c, mut g) = (Vec::new(), Vec::new());
    let results = crate::run::live::per_member(ctx.plan, |m| {
        let before = now_f64();
        let out = ctx.run_on(m, &crate::host::scripts::clock_and_space(m))?;
        let after = now_f64();
        Ok::<_, crate::error::BootError>((out, (before + after) / 2.0))
    });
    for (m, r) in ctx.plan.members.iter().zip(results) {
        let name = m.spec.name.as_str();
        match r {
            Ok((out, here)) => {
                if let Some(there) = out.value("now").and_then(|t| t.trim().parse::<f64>().ok()) {
                    let skew = there - here;
                    c.push(judge::clock(name, skew));
                    g.push(gauge("etcd_bootstrap_clock_skew_seconds", "The host's clock minus this machine's.", vec![("member", name.into())], skew));
                }
                let free = out.value("free_kib").and_then(|k| k.trim().parse::<u64>().ok()).map(|k| k * 1024);
                let db = out.value("db_bytes").and_then(|b| b.trim().parse::<u64>().ok()).unwrap_or(0);
                if let Some(free) = free {
                    c.push(judge::free_space(name, free, db));
                    g.push(gauge(
                        "etcd_bootstrap_data_dir_free_bytes",
                        "Free bytes on the filesystem of the member's data dir.",
                        vec![("member", name.into())],
                        free as f64,
                    ));
                }
            }
            Err(e) => c.push(check("host", Some(name), Level::Unknown, e.to_string(), "check that the host answers (ssh)")),
        }
    }
    (c, g)
}

fn now_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Certificates, the CRL and the newest backup, from this machine's files.
fn file_checks(ctx: &Ctx, opts: &Options) -> Found {
    let (mut c, mut g) = (Vec::new(), Vec::new());
    let plan = ctx.plan;
    let threshold = pki::expiry::Threshold::Within(time::Duration::days(opts.cert_warn_days));
    let certs =
        if plan.loaded.spec.adopted.is_some() { crate::in_place::certs_report(ctx, threshold) } else { crate::ops::status::certs_check(plan, threshold) };
    match certs {
        Ok(report) => {
            let (cc, cg) = from_certs(&report, opts.now);
            c.extend(cc);
            g.extend(cg);
        }
        Err(e) => c.push(check("certificate", None, Level::Unknown, e.to_string(), "check the spec's pki.dir")),
    }
    // an adopted cluster's CRLs (if any) are its operator's
    let (_, crl) = pki::crl::paths(&plan.issue.dir);
    match crl_next_update(&crl) {
        _ if plan.loaded.spec.adopted.is_some() => {}
        Some(next) => c.push(judge::expiry("crl", "next update", next, opts.now, 7, "refresh it: pki revoke (or etcd-bootstrap rotate certs) re-signs it")),
        None => c.push(check("crl", None, Level::Warn, format!("{} missing or unreadable", crl.display()), "etcd-bootstrap up writes it")),
    }
    let mut newest = newest_backup(&opts.backup_dir, &plan.loaded.spec.name);
    if opts.use_record
        && let Some(rec) = crate::backup::last_recorded(std::path::Path::new(&plan.loaded.file))
        // on a tie (names have whole seconds) the record wins: it is the last one `backup` took
        && newest.as_ref().is_none_or(|(_, t)| rec.taken_at >= *t)
    {
        newest = Some((rec.path, rec.taken_at));
    }
    c.push(judge::backup_age(newest.as_ref().map(|(n, t)| (n.as_str(), *t)), opts.now, opts.backup_warn, opts.backup_fail));
    // once a backup went off-host, its age is judged too: a lost machine takes the local ones
    if let Some((url, at)) = crate::backup::last_remote(std::path::Path::new(&plan.loaded.file)) {
        let mut off = judge::backup_age(Some((url.as_str(), at)), opts.now, opts.backup_warn, opts.backup_fail);
        off.name = "backup-offsite".into();
        c.push(off);
        g.push(gauge(
            "etcd_bootstrap_last_offsite_backup_timestamp_seconds",
            "When the newest backup verified off-host was uploaded, seconds since the epoch.",
            vec![],
            at as f64,
        ));
    }
    if let Some((_, t)) = newest {
        g.push(gauge("etcd_bootstrap_last_backup_timestamp_seconds", "When the newest backup was taken, seconds since the epoch.", vec![], t as f64));
    }
    let (cc, cg) = continuous_checks(ctx, opts.now);
    c.extend(cc);
    g.extend(cg);
    (c, g)
}

/// The continuous backup's lag, when one ever ran for this spec.
fn continuous_checks(ctx: &Ctx, now: i64) -> Found {
    let Some(st) = crate::backup::continuous::read_status(std::path::Path::new(&ctx.plan.loaded.file)) else { return (vec![], vec![]) };
    let running = crate::run::journal_store::process_alive(st.pid, None);
    let top = ctx
        .etcd
        .client()
        .ok()
        .and_then(|(opts, rt)| rt.block_on(etcdctl_lite::ops::status(&opts)).iter().filter_map(|s| s.result.as_ref().ok().map(|x| x.revision)).max());
    let behind = top.map(|t| (t - st.sealed_to).max(0));
    let now_ms = now.saturating_mul(1000);
    let c = judge::continuous_lag(Some(&st), running, behind, now_ms).into_iter().collect();
    let g = vec![
        gauge(
            "etcd_bootstrap_continuous_backup_lag_seconds",
            "How long ago the continuous backup last had every change of the cluster.",
            vec![],
            ((now_ms - st.covered_at_ms).max(0) / 1000) as f64,
        ),
        gauge("etcd_bootstrap_continuous_backup_revision", "The last revision the continuous backup sealed.", vec![], st.sealed_to as f64),
    ];
    (c, g)
}

/// The quorum check and its gauges, from `status`'s verdict (also `status -w prometheus`).
pub fn from_verdict(v: &etcdctl_lite::quorum::Verdict) -> Found {
    let level = match v.state {
        ClusterState::Healthy => Level::Ok,
        ClusterState::Degraded => Level::Warn,
        _ => Level::Fail,
    };
    let c = vec![check(
        "quorum",
        None,
        level,
        format!("{}: {}", v.state.word(), v.summary),
        "see `etcd-bootstrap status`; replace a dead member with `etcd-bootstrap replace NAME`",
    )];
    let g = vec![
        gauge("etcd_bootstrap_quorum_healthy_voters", "Voting members that are fully healthy.", vec![], v.healthy_voters as f64),
        gauge("etcd_bootstrap_quorum_failures_tolerated", "How many more healthy voters may fail before quorum is lost.", vec![], v.failures_tolerated as f64),
    ];
    (c, g)
}

/// A check and an `x509_cert_not_after` gauge per certificate (also `certs check -w prometheus`).
pub fn from_certs(report: &pki::expiry::Report, now: i64) -> Found {
    let (mut c, mut g) = (Vec::new(), Vec::new());
    for cert in report.certificates.iter().chain(&report.authorities) {
        let level = match cert.status {
            pki::expiry::Status::Ok => Level::Ok,
            pki::expiry::Status::Expiring => Level::Warn,
            _ => Level::Fail,
        };
        let evidence = if cert.problems.is_empty() { format!("expires {} ({} left)", cert.expires, cert.residual) } else { cert.problems.join("; ") };
        c.push(check(&format!("certificate {}", cert.certificate), None, level, evidence, "etcd-bootstrap rotate certs (rotate ca for the CA)"));
        if cert.status != pki::expiry::Status::Invalid {
            g.push(gauge(
                "x509_cert_not_after",
                "The certificate's notAfter, seconds since the epoch (as x509-certificate-exporter).",
                vec![("path", cert.path.display().to_string()), ("cn", cert.certificate.clone())],
                (now + cert.residual_seconds) as f64,
            ));
        }
    }
    if let Some(ca) = report.authorities.iter().find(|a| a.status != pki::expiry::Status::Invalid) {
        let leaves: Vec<(&str, i64)> =
            report.certificates.iter().filter(|l| l.status != pki::expiry::Status::Invalid).map(|l| (l.certificate.as_str(), l.residual_seconds)).collect();
        c.push(judge::ca_outlives(&ca.certificate, ca.residual_seconds, &leaves));
    }
    (c, g)
}

/// The gauges of a backup just taken (`backup -w prometheus`).
pub fn from_backup(b: &crate::backup::Backup, now: i64) -> Found {
    let c = vec![check(
        "backup",
        None,
        if b.healthy { Level::Ok } else { Level::Warn },
        format!("{} at revision {}", b.path, b.revision),
        "the cluster was not healthy: see etcd-bootstrap status",
    )];
    let g = vec![
        gauge("etcd_bootstrap_last_backup_timestamp_seconds", "When the newest backup was taken, seconds since the epoch.", vec![], now as f64),
        gauge("etcd_bootstrap_last_backup_size_bytes", "The size of the newest backup's snapshot.", vec![], b.bytes as f64),
        gauge("etcd_bootstrap_last_backup_revision", "The revision the newest backup holds.", vec![], b.revision as f64),
    ];
    (c, g)
}

fn crl_next_update(path: &std::path::Path) -> Option<i64> {
    let pem = std::fs::read(path).ok()?;
    let (_, der) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let (_, crl) = x509_parser::parse_x509_crl(&der.contents).ok()?;
    crl.next_update().map(|t| t.timestamp())
}

/// This cluster's newest backup in `dir` (by the time in its name) and that time.
pub fn newest_backup(dir: &std::path::Path, cluster: &str) -> Option<(String, i64)> {
    let mut best: Option<(String, i64)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !crate::backup::is_backup_name(cluster, &name) {
            continue;
        }
        let stamp = name.strip_prefix(cluster).and_then(|r| r.get(1..17))?;
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let Ok(at) = time::PrimitiveDateTime::parse(stamp, fmt) else { continue };
        let at = at.assume_utc().unix_timestamp();
        if best.as_ref().is_none_or(|(_, t)| at > *t) {
            best = Some((name, at));
        }
    }
    best
}

/// Bounds for the parts that talk to members.
pub const METRICS_TIMEOUT: Duration = Duration::from_secs(3);

/// `doctor --print-timer`: the timer for `spec` writing into `textfile`, a folder root may write
/// into every minute (refused otherwise), both named by absolute paths.
pub fn print_timer(exe: &std::path::Path, spec: &std::path::Path, textfile: &std::path::Path, cluster: &str) -> crate::error::Result<String> {
    // the timer runs as root every minute: refuse a directory others could redirect
    crate::spec::rules::trusted_dir("--textfile", textfile, pki::safe_fs::Writes::ReplaceByRename)?;
    timer(exe, &crate::spec::rules::absolute(spec), &crate::spec::rules::absolute(textfile), cluster)
}

/// A systemd service and timer (and a cron line) that run `doctor` every minute into
/// node_exporter's textfile directory.
pub fn timer(exe: &std::path::Path, spec: &std::path::Path, textfile: &std::path::Path, cluster: &str) -> crate::error::Result<String> {
    use crate::host::scripts::systemd_quote;
    for p in [exe, spec, textfile] {
        crate::spec::rules::no_control(&p.display().to_string()).map_err(|e| crate::error::BootError::Output {
            path: p.display().to_string(),
            reason: format!("{e}: cannot be put in a unit file or a cron line"),
        })?;
    }
    let cmd = [
        exe.display().to_string(),
        "-f".into(),
        spec.display().to_string(),
        "doctor".into(),
        "-w".into(),
        "prometheus".into(),
        "--textfile".into(),
        textfile.display().to_string(),
    ];
    let unit_cmd: Vec<String> = cmd.iter().map(|a| systemd_quote(a)).collect();
    let shell_cmd: Vec<String> = cmd.iter().map(|a| crate::plan::sh_quote(a).replace('%', "\\%")).collect();
    Ok(format!(
        "# /etc/systemd/system/etcd-doctor-{cluster}.service\n[Unit]\nDescription=etcd doctor of cluster {cluster} for node_exporter (etcd-bootstrap)\n\n\
         [Service]\nType=oneshot\n# exit 1-3 are findings, not failures of the unit\nSuccessExitStatus=1 2 3\nExecStart={}\n\n\
         # /etc/systemd/system/etcd-doctor-{cluster}.timer\n[Unit]\nDescription=etcd doctor of cluster {cluster}, every minute\n\n\
         [Timer]\nOnCalendar=minutely\nAccuracySec=5s\n\n[Install]\nWantedBy=timers.target\n\n\
         # enable: systemctl daemon-reload && systemctl enable --now etcd-doctor-{cluster}.timer\n\
         # or cron (/etc/cron.d/etcd-doctor-{cluster}):\n# * * * * * root {} >/dev/null\n",
        unit_cmd.join(" "),
        shell_cmd.join(" ")
    ))
}

//! `etcd-bootstrap`: thin shell over the bootstrap library.

use bootstrap::exit;
use bootstrap::journal::OpKind;
use bootstrap::kube::kubeadm::ApiVersion;
use bootstrap::ops::{self, up::UpOptions};
use bootstrap::plan;
use bootstrap::progress::Progress;
use bootstrap::run::context::{self, Ctx};
use bootstrap::run::rolling::Roll;
use bootstrap::spec::Spec;
use bootstrap::spec::load::LoadedSpec;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "etcd-bootstrap", version = pki::cli_docs::VERSION, about = "From one cluster spec to a verified external etcd cluster and the kubeadm + HAProxy configs that use it")]
struct Cli {
    /// The cluster spec (YAML or JSON).
    #[arg(short = 'f', long = "spec", global = true, default_value = bootstrap::run::context::DEFAULT_SPEC)]
    spec: PathBuf,
    /// Bound on waiting for another operation that holds the cluster's lock.
    #[arg(long, global = true, default_value = "30", value_name = "SECONDS")]
    lock_wait: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the shell completion script (bash, zsh or fish), as `etcdctl completion` does.
    Completion { shell: pki::cli_docs::Shell },
    /// Print the man page (roff): `etcd-bootstrap man > etcd-bootstrap.1`.
    Man,
    /// Every check of the cluster and what is around it (quorum, alarms, versions, database size
    /// and fragmentation, fsync and commit latency, certificates, CRL, clocks, free space, the
    /// newest backup), each OK / WARN / FAIL with its fix. Exit 0 OK, 1 WARN, 2 FAIL, 3 UNKNOWN.
    Doctor {
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: DoctorFormat,
        /// Also write DIR/etcd_bootstrap.prom (atomically) for node_exporter's textfile collector.
        #[arg(long, value_name = "DIR")]
        textfile: Option<PathBuf>,
        /// Judge the backups in DIR only (default: the last one `backup` recorded, wherever it
        /// went, and backups/ beside the spec).
        #[arg(long, value_name = "DIR")]
        backup_dir: Option<PathBuf>,
        /// The newest backup older than this is a WARN.
        #[arg(long, default_value = "2h", value_name = "AGE")]
        backup_warn: String,
        /// The newest backup older than this is a FAIL.
        #[arg(long, default_value = "26h", value_name = "AGE")]
        backup_fail: String,
        /// Certificates expiring within this many days are a WARN.
        #[arg(long, default_value = "30", value_name = "DAYS")]
        cert_warn_days: i64,
        /// Print a systemd service + timer (and a cron line) running this every minute into
        /// --textfile DIR; check nothing.
        #[arg(long)]
        print_timer: bool,
    },
    /// Read-only inventory of a running etcd cluster this tool did not build: its members, the
    /// process behind each (found from its listening socket), its settings, files and supervisor,
    /// and every risk with its fix. Changes nothing anywhere and runs no binary it finds.
    Adopt {
        /// The members' client URLs (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', required = true)]
        endpoints: Vec<String>,
        #[arg(long)]
        cacert: PathBuf,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Read MEMBER's host over SSH (`MEMBER=DEST`); a member whose address is on this machine
        /// is read here without it.
        #[arg(long = "host", value_name = "MEMBER=DEST")]
        hosts: Vec<String>,
        /// Extra options for ssh (repeat: `--ssh-option=-p --ssh-option=2222`).
        #[arg(long = "ssh-option", value_name = "OPT", allow_hyphen_values = true)]
        ssh_options: Vec<String>,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: AdoptFormat,
        /// Also write the spec of what is there to SPEC (a new file; never replaced), so that
        /// status, certs check, backup, maintain, rotate certs and doctor work on it in place.
        #[arg(short = 'o', long = "output", value_name = "SPEC")]
        output: Option<PathBuf>,
        /// The CA's private key (cfssl's ca-key.pem, any format pki loads), recorded in SPEC
        /// for the operations that sign; checked against --cacert.
        #[arg(long, requires = "output")]
        ca_key: Option<PathBuf>,
        /// The cluster's name in SPEC (default: its initial-cluster-token, else `adopted`).
        #[arg(long, requires = "output")]
        name: Option<String>,
    },
    /// Print exactly what `up` would do, touching nothing.
    Plan {
        /// Check this kubeadm config API version against the spec's kubernetes.version.
        #[arg(long)]
        kubeadm_api: Option<ApiVersion>,
    },
    /// Issue certificates, deliver, preflight, start, wait for quorum, write kubeadm/HAProxy configs.
    Up {
        /// No spec file: an N-member TLS cluster on this machine's loopback, under --dir.
        #[arg(long, value_name = "N")]
        local: Option<usize>,
        /// With --local: the folder for everything (spec, PKI, members, outputs).
        #[arg(long, default_value = "etcd-cluster")]
        dir: PathBuf,
        /// Bound on waiting for a healthy quorum.
        #[arg(long, default_value = "60", value_name = "SECONDS")]
        wait: u64,
        /// kubeadm config API version (default: the one chosen before, else the newest the
        /// spec's kubernetes.version reads).
        #[arg(long)]
        kubeadm_api: Option<ApiVersion>,
        #[arg(short, long)]
        quiet: bool,
    },
    /// The quorum verdict of the spec's cluster (exit 0 healthy, 1 degraded, 2 no quorum, 3 unknown).
    Status {
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: ReportFormat,
    },
    /// Checks around the cluster.
    Check {
        #[command(subcommand)]
        command: CheckCommand,
    },
    /// Certificates of the spec's cluster.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Rotations on the live cluster.
    Rotate {
        #[command(subcommand)]
        command: RotateCommand,
    },
    /// Replace a dead member: remove it, add the new one as a learner, start it, promote it.
    Replace {
        member: String,
        /// Replace it even if it is healthy.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "90", value_name = "SECONDS")]
        wait: u64,
    },
    /// A verified snapshot, kept as CLUSTER-YYYYMMDDTHHMMSSZ-rREVISION.db (0600).
    Backup {
        /// Where backups go (default: backups/ beside the spec).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Keep only the newest N backups of this cluster in DIR (files of other names are never touched).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Print a systemd service + timer (and a cron line) running this backup hourly; take none.
        #[arg(long)]
        print_timer: bool,
        /// Encrypt the backup with age to RECIPIENT (`age1...`, or an SSH public key); repeat for
        /// several. Writes NAME.db.age; the snapshot is never written in the clear.
        #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
        encrypt_to: Vec<String>,
        /// Also upload it to S3-compatible storage (`s3://BUCKET/PREFIX`; endpoint, region and
        /// credentials from AWS_* or ~/.aws), read it back to verify, and apply --keep there too.
        #[arg(long = "to", value_name = "S3_URL")]
        to: Option<String>,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: ReportFormat,
    },
    /// Whole-cluster disaster recovery from a snapshot: stop all, move data aside, restore each
    /// member (the revision raised past the old history, marked compacted), start, verify
    /// (resumable). Stop kube-apiserver on every control-plane node before; start it after.
    Restore {
        snapshot: PathBuf,
        /// Restore even though the cluster is HEALTHY (everything written since the snapshot is lost).
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "90", value_name = "SECONDS")]
        wait: u64,
        /// For an age-encrypted snapshot (`.db.age`): the age identity file (`age-keygen`'s) or
        /// an unencrypted SSH private key. The snapshot is decrypted in memory.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Rolling etcd upgrade, one minor version at a time, the cluster serving writes throughout
    /// (backup first, member by member, resumable).
    Upgrade {
        /// The new etcd: a release archive (path or https URL) or a folder with etcd, etcdctl, etcdutl.
        #[arg(long, value_name = "ARCHIVE_OR_DIR")]
        to: String,
        /// The archive's sha256 (from etcd's release page), or the etcd binary's for a folder.
        #[arg(long)]
        sha256: Option<String>,
        /// Print the steps; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Bound per member.
        #[arg(long, default_value = "120", value_name = "SECONDS")]
        wait: u64,
    },
    /// One etcd minor back (3.7 -> 3.6, 3.6 -> 3.5) through etcd's downgrade API, the cluster
    /// serving writes throughout (backup first, storage migrated, member by member, the leader
    /// last, resumable).
    Downgrade {
        /// The older etcd: a release archive (path or https URL) or a folder with etcd, etcdctl, etcdutl.
        #[arg(long, value_name = "ARCHIVE_OR_DIR", required_unless_present = "cancel", conflicts_with = "cancel")]
        to: Option<String>,
        /// The archive's sha256 (from etcd's release page), or the etcd binary's for a folder.
        #[arg(long)]
        sha256: Option<String>,
        /// Print the steps; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stop a downgrade that cannot finish: etcd's `downgrade cancel`; members already moved
        /// are brought back by `upgrade --to` the release they came from.
        #[arg(long)]
        cancel: bool,
        /// Bound per member.
        #[arg(long, default_value = "120", value_name = "SECONDS")]
        wait: u64,
    },
    /// The NOSPACE runbook, or scheduled upkeep: compact to the current revision, defragment member
    /// by member (the leader last, quorum kept), disarm alarms, verify HEALTHY and writable.
    Maintain {
        /// Bound on each step (compaction, each member's defragmentation, HEALTHY).
        #[arg(long, default_value = "120", value_name = "SECONDS")]
        wait: u64,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: etcdctl_lite::render::Format,
    },
    /// Stop the members. Data dirs are kept unless --purge is given.
    Down {
        /// Also delete every member's data dir (irreversible).
        #[arg(long)]
        purge: bool,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Expiry, chain, key match and SAN coverage of every certificate (exit 0 ok, 1 expiring, 2 expired or invalid).
    Check {
        #[arg(long, default_value = "30d")]
        within: pki::expiry::Threshold,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: ReportFormat,
    },
}

#[derive(Subcommand)]
enum CheckCommand {
    /// The Kubernetes API load balancer (control_plane_endpoint), from this machine: READY (exit
    /// 0); NO-BACKEND, REFUSED, NOT-READY (1: expected before kubeadm init); TIMEOUT,
    /// UNREACHABLE, NO-TLS-ANSWER, UNTRUSTED (2: broken).
    Lb {
        /// Bound on each of connect, TLS handshake and /readyz.
        #[arg(long, default_value = "3", value_name = "SECONDS")]
        timeout: u64,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: etcdctl_lite::render::Format,
    },
}

#[derive(Subcommand)]
enum RotateCommand {
    /// Replace the etcd CA in three steps, stopping after the first two for kube-apiserver to be
    /// updated: trust both, re-issue, drop the old (resumable).
    Ca {
        /// Go on after updating kube-apiserver as the last stop said.
        #[arg(long = "continue", conflicts_with = "status")]
        continue_: bool,
        /// Say where the rotation stands; change nothing.
        #[arg(long)]
        status: bool,
        /// Bound per member.
        #[arg(long, default_value = "60", value_name = "SECONDS")]
        wait: u64,
    },
    /// Renew every leaf and roll it out member by member, each gated on a HEALTHY verdict. On an
    /// adopted cluster: at the files' own paths and names, owner and mode kept, no restart.
    Certs {
        /// New keys too.
        #[arg(long)]
        rekey: bool,
        /// (adopted cluster) A certificate every member shares becomes one per member, each
        /// with a new key.
        #[arg(long)]
        split: bool,
        /// Bound per member.
        #[arg(long, default_value = "60", value_name = "SECONDS")]
        wait: u64,
    },
}

fn load(path: &Path) -> Result<LoadedSpec, bootstrap::BootError> {
    Spec::load(path)
}

/// `status`, `certs check` and `backup`: etcdctl's formats, and Prometheus text.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    Simple,
    Table,
    Json,
    Prometheus,
}

impl ReportFormat {
    fn etcdctl(self) -> etcdctl_lite::render::Format {
        match self {
            ReportFormat::Table => etcdctl_lite::render::Format::Table,
            ReportFormat::Json => etcdctl_lite::render::Format::Json,
            _ => etcdctl_lite::render::Format::Simple,
        }
    }
}

/// Prometheus text of a command's findings.
fn prometheus((checks, gauges): bootstrap::doctor::Found) -> String {
    bootstrap::doctor::render::prometheus(&bootstrap::doctor::Report { checks, gauges })
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `doctor`'s output formats.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DoctorFormat {
    Table,
    Json,
    Prometheus,
    Nagios,
}

/// `adopt`'s output formats.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AdoptFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SSH master connections opened for this run are closed when it ends
    let _ssh = bootstrap::host::transport::SharedConnectionsGuard;
    match run_cli(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("etcd-bootstrap: error: {e}");
            let code = e.downcast_ref::<bootstrap::BootError>().map(|b| b.exit_code()).unwrap_or(exit::FAILED);
            ExitCode::from(code)
        }
    }
}

/// Runs an operation on the cluster through its journal and lock.
fn guarded<T>(
    plan: &plan::Plan,
    progress: &Progress,
    lock_wait: u64,
    kind: OpKind,
    target: Option<String>,
    args: &str,
    op: impl FnOnce(&Ctx) -> Result<T, bootstrap::BootError>,
) -> Result<T, bootstrap::BootError> {
    let req = context::request(plan, kind, target, args);
    context::run(plan, progress, req, Duration::from_secs(lock_wait), op)
}

/// Read-only commands never wait: they say what is under way, on stderr.
fn print_notes(plan: &plan::Plan) {
    for n in context::notes(plan) {
        eprintln!("etcd-bootstrap: note: {n}");
    }
}

/// `adopt`'s arguments, as parsed.
struct AdoptArgs {
    endpoints: Vec<String>,
    cacert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    hosts: Vec<String>,
    ssh_options: Vec<String>,
    write_out: AdoptFormat,
    output: Option<PathBuf>,
    ca_key: Option<PathBuf>,
    name: Option<String>,
}

fn adopt(a: AdoptArgs) -> Result<u8, Box<dyn std::error::Error>> {
    let AdoptArgs { endpoints, cacert, cert, key, hosts, ssh_options, write_out, output, ca_key, name } = a;
    let mut pairs = Vec::new();
    for h in &hosts {
        let (member, dest) = h.split_once('=').ok_or_else(|| format!("--host {h:?}: give MEMBER=DEST"))?;
        bootstrap::spec::rules::no_control(member).map_err(|e| format!("--host {h:?}: {e}"))?;
        if dest != "local" {
            bootstrap::spec::rules::ssh_destination(dest).map_err(|e| format!("--host {h:?}: {e}"))?;
        }
        pairs.push((member.to_string(), dest.to_string()));
    }
    bootstrap::spec::rules::ssh_options(&ssh_options).map_err(|e| format!("--ssh-option: {e}"))?;
    if let Some(k) = &ca_key {
        pki::ca::Ca::load_files(&cacert, k).map_err(|e| format!("--ca-key {}: {e}", k.display()))?;
    }
    if let Some(o) = output.as_ref().filter(|o| o.exists()) {
        return Err(format!("-o {}: exists; adopt never replaces a spec: give another path", o.display()).into());
    }
    if let Some(o) = &output {
        let dir = o.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        bootstrap::spec::rules::trusted_dir("-o", dir, pki::safe_fs::Writes::CreateExclusive)?;
    }
    let req = bootstrap::adopt::Request { endpoints, cacert, cert, key, hosts: pairs, ssh_options };
    let inv = bootstrap::adopt::adopt(&req, &Progress::new(false))?;
    match write_out {
        AdoptFormat::Json => println!("{}", serde_json::to_string_pretty(&inv)?),
        AdoptFormat::Table => print!("{}", bootstrap::adopt::report::table(&inv)),
    }
    if let Some(path) = &output {
        use bootstrap::adopt::spec_out;
        let spec = spec_out::spec_of(&inv, &req, ca_key.as_deref(), name.as_deref())
            .map_err(|problems| format!("-o {}: not written: {}", path.display(), problems.join("; ")))?;
        spec_out::write_new(&spec, path)?;
        eprintln!("etcd-bootstrap: spec of what is there written to {} (next: etcd-bootstrap -f {} status)", path.display(), path.display());
    }
    Ok(if inv.findings.is_empty() { exit::OK } else { exit::WARNING })
}

/// `upgrade` or `downgrade --to`: the arguments checked, the operation run (read-only with
/// `--dry-run`), its steps or its outcome printed, and what the spec should name afterwards.
fn roll(spec: &Path, lock_wait: u64, kind: Roll, to: &str, sha256: Option<&str>, dry_run: bool, wait: u64) -> Result<u8, Box<dyn std::error::Error>> {
    bootstrap::spec::rules::etcd_archive(to).map_err(|e| format!("--to {to:?}: {e}"))?;
    if let Some(h) = sha256 {
        bootstrap::spec::rules::sha256(h).map_err(|e| format!("--sha256: {e}"))?;
    }
    let plan = plan::build(&load(spec)?);
    let (verb, op) = (kind.command(), if kind == Roll::Upgrade { OpKind::Upgrade } else { OpKind::Downgrade });
    let args = format!("{verb} --to {}{}", plan::sh_quote(to), sha256.map(|h| format!(" --sha256 {h}")).unwrap_or_default());
    let progress = Progress::new(false);
    let wait = Duration::from_secs(wait);
    let run = |ctx: &Ctx| match kind {
        Roll::Upgrade => ops::upgrade::upgrade(ctx, to, sha256, dry_run, wait),
        Roll::Downgrade => ops::downgrade::downgrade(ctx, to, sha256, dry_run, wait),
    };
    let r = if dry_run {
        print_notes(&plan);
        context::read_only(&plan, &progress, run)?
    } else {
        guarded(&plan, &progress, lock_wait, op, None, &args, run)?
    };
    if dry_run {
        println!("{verb} {} -> {} would:", r.from, r.to);
        for (i, s) in r.steps.iter().enumerate() {
            println!("  {}. {s}", i + 1);
        }
        if r.steps.is_empty() {
            println!("  nothing: every member runs {} (cluster version {})", r.to, r.cluster_version);
        }
        return Ok(exit::OK);
    }
    if r.moved.is_empty() {
        println!("nothing to do: every member runs etcd {} (cluster version {})", r.to, r.cluster_version);
    } else {
        let backup = r.backup.unwrap_or_default();
        println!("{verb}d {} from etcd {} to {}; cluster version {}; backup {backup}", r.moved.join(", "), r.from, r.to, r.cluster_version);
    }
    if plan.loaded.spec.adopted.is_some() {
        println!("each member's binary was replaced where it runs from; its unit or command line is unchanged");
        return Ok(exit::OK);
    }
    let why = match kind {
        Roll::Upgrade => "a start with the older binary is refused",
        Roll::Downgrade => "a start with the newer binary would upgrade the member again",
    };
    let pinned = sha256.map(|h| format!(" and etcd_sha256: {h}")).unwrap_or_default();
    println!("spec: set etcd_archive: {to}{pinned} so that later starts use etcd {} ({why})", r.to);
    Ok(exit::OK)
}

fn run_cli(cli: Cli) -> Result<u8, Box<dyn std::error::Error>> {
    let lock_wait = cli.lock_wait;
    if lock_wait > 3600 {
        return Err("--lock-wait: give 0 to 3600 seconds".into());
    }
    match cli.command {
        Command::Completion { shell } => {
            pki::cli_docs::completion(shell, <Cli as clap::CommandFactory>::command(), &mut std::io::stdout())?;
            Ok(exit::OK)
        }
        Command::Man => {
            pki::cli_docs::man_page(<Cli as clap::CommandFactory>::command(), &mut std::io::stdout())?;
            Ok(exit::OK)
        }
        Command::Adopt { endpoints, cacert, cert, key, hosts, ssh_options, write_out, output, ca_key, name } => {
            // monitoring's convention, as `status`: 0 no risk, 1 risks found, 3 could not look
            // (or could not write the spec)
            let req = AdoptArgs { endpoints, cacert, cert, key, hosts, ssh_options, write_out, output, ca_key, name };
            Ok(adopt(req).unwrap_or_else(|e| {
                eprintln!("etcd-bootstrap: error: {e}");
                exit::UNKNOWN
            }))
        }
        Command::Doctor { write_out, textfile, backup_dir, backup_warn, backup_fail, cert_warn_days, print_timer } => {
            let secs = |flag: &str, v: &str| pki::validity::parse_duration(v, flag).map(|d| d.whole_seconds()).map_err(|e| e.to_string());
            let (warn, fail) = (secs("--backup-warn", &backup_warn)?, secs("--backup-fail", &backup_fail)?);
            if warn > fail {
                return Err(format!("--backup-warn {backup_warn} is longer than --backup-fail {backup_fail}").into());
            }
            let loaded = load(&cli.spec)?;
            let plan = plan::build(&loaded);
            if print_timer {
                let dir = textfile.ok_or("--print-timer needs --textfile DIR (node_exporter's --collector.textfile.directory)")?;
                // the timer runs as root every minute: refuse a directory others could redirect
                bootstrap::spec::rules::trusted_dir("--textfile", &dir, pki::safe_fs::Writes::ReplaceByRename)?;
                let abs =
                    |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()));
                print!("{}", bootstrap::doctor::timer(&std::env::current_exe()?, &abs(&cli.spec), &abs(&dir), &loaded.spec.name)?);
                return Ok(exit::OK);
            }
            let base = Path::new(&loaded.file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let opts = bootstrap::doctor::Options {
                use_record: backup_dir.is_none(),
                backup_dir: backup_dir.unwrap_or_else(|| base.join("backups")),
                backup_warn: warn,
                backup_fail: fail,
                cert_warn_days,
                now: time::OffsetDateTime::now_utc().unix_timestamp(),
            };
            print_notes(&plan);
            let report = context::read_only(&plan, &Progress::new(true), |ctx| Ok(bootstrap::doctor::run(ctx, &opts)))?;
            let prom = bootstrap::doctor::render::prometheus(&report);
            if let Some(dir) = &textfile {
                bootstrap::doctor::render::write_textfile(dir, &prom)?;
            }
            match write_out {
                DoctorFormat::Table => print!("{}", bootstrap::doctor::render::table(&report)),
                DoctorFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                DoctorFormat::Prometheus => print!("{prom}"),
                DoctorFormat::Nagios => print!("{}", bootstrap::doctor::render::nagios(&report)),
            }
            Ok(report.level().code())
        }
        Command::Plan { kubeadm_api } => {
            let loaded = load(&cli.spec)?;
            bootstrap::run::context::refuse(&loaded.spec, "plan")?;
            let plan = plan::build(&loaded);
            print_notes(&plan);
            let api = bootstrap::kube::outputs::choose_api(&plan, kubeadm_api)?;
            print!("{}", plan::render(&plan));
            println!("   kubeadm config API: {} (kubernetes {})", api.group(), loaded.spec.kubernetes.version);
            Ok(exit::OK)
        }
        Command::Up { local, dir, wait, kubeadm_api, quiet } => {
            let spec_path = match local {
                Some(n) => {
                    let (path, notes) = bootstrap::spec::local::ensure(n, &dir)?;
                    for n in notes {
                        eprintln!("etcd-bootstrap: {n}");
                    }
                    path
                }
                None => cli.spec,
            };
            let loaded = load(&spec_path)?;
            let plan = plan::build(&loaded);
            let progress = Progress::new(quiet);
            let report = guarded(&plan, &progress, lock_wait, OpKind::Up, None, "up", |ctx| {
                ops::up::up(ctx, &UpOptions { wait: Duration::from_secs(wait), api: kubeadm_api })
            })?;
            let pki = plan.pki();
            let hc = pki.leaf(&pki::cluster::Role::HealthcheckClient);
            let out = &loaded.output_dir;
            println!(
                "cluster {}: {} ({} members, {} started now) in {:.1}s",
                loaded.spec.name,
                report.verdict.state.word(),
                plan.members.len(),
                report.started.len(),
                progress.elapsed().as_secs_f64()
            );
            println!("spec:        {}", spec_path.display());
            if loaded.spec.adopted.is_some() {
                println!("endpoints:   {}", plan.endpoints().join(","));
                println!("adopted:     every member started as it was found; nothing issued, delivered or written");
                return Ok(exit::OK);
            }
            if loaded.spec.kubernetes.allow_old_etcd {
                println!(
                    "etcd:        kubernetes.allow_old_etcd is set (a lab cluster): an etcd below kubeadm's minimum is accepted, and the kubeadm configs ignore its ExternalEtcdVersion check"
                );
            }
            println!("endpoints:   {}", plan.endpoints().join(","));
            println!(
                "check with:  ETCDCTL_ENDPOINTS={} ETCDCTL_CACERT={} ETCDCTL_CERT={} ETCDCTL_KEY={} etcdctl-lite quorum",
                plan.endpoints().join(","),
                pki.ca().cert.display(),
                hc.cert.display(),
                hc.key.display()
            );
            println!("kubeadm:     {}", out.join("kubeadm").display());
            println!("nodes:       {}", out.join("control-plane").display());
            println!("haproxy:     {}", out.join("haproxy/haproxy.cfg").display());
            println!("next:        {}", out.join("RUNBOOK.md").display());
            Ok(exit::OK)
        }
        Command::Status { write_out } => {
            let loaded = match load(&cli.spec) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("etcd-bootstrap: error: {e}");
                    return Ok(exit::UNKNOWN);
                }
            };
            let plan = plan::build(&loaded);
            print_notes(&plan);
            let v = ops::status::status(&plan)?;
            if write_out == ReportFormat::Prometheus {
                print!("{}", prometheus(bootstrap::doctor::from_verdict(&v)));
                return Ok(v.state.exit_code());
            }
            let r = etcdctl_lite::render::quorum(&v, write_out.etcdctl());
            print!("{}", r.stdout);
            eprint!("{}", r.stderr);
            Ok(v.state.exit_code())
        }
        Command::Check { command: CheckCommand::Lb { timeout, write_out } } => {
            if timeout == 0 || timeout > 60 {
                return Err(format!("--timeout {timeout}: give 1 to 60 seconds").into());
            }
            let plan = plan::build(&load(&cli.spec)?);
            bootstrap::run::context::refuse(&plan.loaded.spec, "check lb")?;
            print_notes(&plan);
            let all = bootstrap::run::lb::check_lb(&plan, Duration::from_secs(timeout))?;
            if write_out == etcdctl_lite::render::Format::Json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for (i, v) in all.iter().enumerate() {
                    let from = if i == 0 { String::new() } else { format!("from {}: ", v.from) };
                    println!("{from}{}: {} ({} ms)", v.state, v.summary, v.took_ms);
                }
            }
            Ok(all.iter().map(|v| v.exit_code()).max().unwrap_or(exit::UNKNOWN))
        }
        Command::Certs { command: CertsCommand::Check { within, write_out } } => {
            let plan = plan::build(&load(&cli.spec)?);
            print_notes(&plan);
            let report = ops::status::certs_check(&plan, within)?;
            if write_out == ReportFormat::Prometheus {
                print!("{}", prometheus(bootstrap::doctor::from_certs(&report, now_unix())));
            } else if write_out == ReportFormat::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", pki::expiry::render_table(&report));
            }
            Ok(report.exit_code())
        }
        Command::Rotate { command: RotateCommand::Ca { continue_, status, wait } } => {
            use ops::rotate_ca::{Request, instructions, rotate_ca};
            let plan = plan::build(&load(&cli.spec)?);
            if status {
                print_notes(&plan);
                print!("{}", ops::rotate_ca::status(&plan)?);
                return Ok(exit::OK);
            }
            let request = if continue_ { Request::Continue } else { Request::StartOrResume };
            let args = if continue_ { "rotate ca --continue" } else { "rotate ca" };
            let outcome =
                guarded(&plan, &Progress::new(false), lock_wait, OpKind::RotateCa, None, args, |ctx| rotate_ca(ctx, request, Duration::from_secs(wait)))?;
            print!("{}", instructions(&plan, outcome));
            Ok(exit::OK)
        }
        Command::Rotate { command: RotateCommand::Certs { rekey, split, wait } } => {
            let plan = plan::build(&load(&cli.spec)?);
            let args = format!("rotate certs{}{}", if rekey { " --rekey" } else { "" }, if split { " --split" } else { "" });
            let wait = Duration::from_secs(wait);
            if plan.loaded.spec.adopted.is_some() {
                let n = guarded(&plan, &Progress::new(false), lock_wait, OpKind::RotateCerts, None, &args, |ctx| {
                    ops::rotate_certs::rotate_in_place(ctx, rekey, split, wait)
                })?;
                println!("{n} certificates renewed in place on {} members (no restart); the cluster stayed HEALTHY", plan.members.len());
                return Ok(exit::OK);
            }
            if split {
                return Err("--split: only for an adopted cluster (a cluster etcd-bootstrap built has a certificate per member already)".into());
            }
            guarded(&plan, &Progress::new(false), lock_wait, OpKind::RotateCerts, None, &args, |ctx| ops::rotate_certs::rotate_certs(ctx, rekey, wait))?;
            println!("certificates rotated on {} members; the cluster stayed HEALTHY", plan.members.len());
            Ok(exit::OK)
        }
        Command::Replace { member, force, wait } => {
            let plan = plan::build(&load(&cli.spec)?);
            // validated here, before it names anything in the journal or a message
            if !plan.members.iter().any(|m| m.spec.name == member) {
                let known = plan.members.iter().map(|m| m.spec.name.as_str()).collect::<Vec<_>>().join(", ");
                return Err(bootstrap::BootError::MemberNotFound { name: member, known }.into());
            }
            let args = format!("replace {}", plan::sh_quote(&member));
            guarded(&plan, &Progress::new(false), lock_wait, OpKind::Replace, Some(member.clone()), &args, |ctx| {
                ops::replace::replace(ctx, &member, force, Duration::from_secs(wait))
            })?;
            println!("member {member} replaced; the cluster is HEALTHY");
            Ok(exit::OK)
        }
        Command::Backup { dir, keep, print_timer, encrypt_to, to, write_out } => {
            let seal = if encrypt_to.is_empty() {
                None
            } else {
                Some(bootstrap::backup::sealed::Recipients::parse(&encrypt_to).map_err(|e| format!("--encrypt-to: {e}"))?)
            };
            // the off-host target and its credentials are checked before the snapshot is taken
            let offsite = match &to {
                Some(t) => {
                    let loc = bootstrap::backup::offsite::Location::parse(t).map_err(|e| format!("--to: {e}"))?;
                    let settings = bootstrap::backup::offsite::Settings::from_env(|k| std::env::var(k).ok()).map_err(|e| format!("--to {t}: {e}"))?;
                    Some((loc, settings))
                }
                None => None,
            };
            let loaded = load(&cli.spec)?;
            let plan = plan::build(&loaded);
            let base = Path::new(&loaded.file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let dir = dir.unwrap_or_else(|| base.join("backups"));
            // backups land under new names only (O_EXCL, then link(2)), so a sticky dir is fine
            bootstrap::spec::rules::trusted_dir("backup --dir", &dir, pki::safe_fs::Writes::CreateExclusive)?;
            if print_timer {
                let abs =
                    |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()));
                let exe = std::env::current_exe()?;
                print!("{}", ops::backup::timer(&exe, &abs(&cli.spec), &abs(&dir), keep.unwrap_or(48), &loaded.spec.name, &encrypt_to, to.as_deref())?);
                return Ok(exit::OK);
            }
            let to = offsite.as_ref().map(|(location, settings)| ops::backup::Offsite { location, settings });
            let (b, shipped) = guarded(&plan, &Progress::new(false), lock_wait, OpKind::Backup, None, "backup", |ctx| {
                ops::backup::backup_and_ship(ctx, &dir, keep, seal.as_ref(), to)
            })?;
            if let (Some(shipped), ReportFormat::Simple) = (&shipped, write_out) {
                println!("uploaded to {} (verified by reading it back)", shipped.url);
            }
            if write_out == ReportFormat::Prometheus {
                print!("{}", prometheus(bootstrap::doctor::from_backup(&b, now_unix())));
            } else if write_out == ReportFormat::Json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                println!(
                    "{} (revision {}, {} keys, {} bytes, sha256 {}) from {}{}",
                    b.path,
                    b.revision,
                    b.keys,
                    b.bytes,
                    b.sha256,
                    b.endpoint,
                    if b.healthy { "" } else { "; the cluster was not healthy" }
                );
            }
            Ok(exit::OK)
        }
        Command::Restore { snapshot, force, wait, identity } => {
            let plan = plan::build(&load(&cli.spec)?);
            bootstrap::spec::rules::no_control(&snapshot.display().to_string()).map_err(|e| format!("restore SNAPSHOT: {e}"))?;
            let mut args = format!("restore {}", plan::sh_quote(&snapshot.display().to_string()));
            let label = snapshot.display().to_string();
            // an off-host snapshot is fetched first into a private file beside the spec (removed
            // when this run ends), and checked like any other before anything stops
            let fetched = if label.starts_with("s3://") {
                let base = Path::new(&plan.loaded.file).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let settings = bootstrap::backup::offsite::Settings::from_env(|k| std::env::var(k).ok()).map_err(|e| format!("{label}: {e}"))?;
                Some(bootstrap::backup::offsite::fetch(&label, &settings, base, &Progress::new(false))?)
            } else {
                None
            };
            let snapshot = fetched.as_ref().map(|t| t.path().to_path_buf()).unwrap_or(snapshot);
            // an encrypted snapshot is decrypted into memory before anything else happens
            let decrypted = match (bootstrap::backup::sealed::is_encrypted(&snapshot), &identity) {
                (false, _) => None,
                (true, None) => {
                    return Err(format!(
                        "{}: the snapshot is age-encrypted; give --identity FILE (the age identity or SSH private key it was encrypted to)",
                        snapshot.display()
                    )
                    .into());
                }
                (true, Some(id)) => {
                    bootstrap::spec::rules::no_control(&id.display().to_string()).map_err(|e| format!("--identity: {e}"))?;
                    args.push_str(&format!(" --identity {}", plan::sh_quote(&id.display().to_string())));
                    let ids = bootstrap::backup::sealed::identities(id)?;
                    let t = std::time::Instant::now();
                    let plain = bootstrap::backup::sealed::decrypt(&snapshot, &ids)?;
                    Progress::new(false).step("snapshot", &format!("{}: decrypted into memory", snapshot.display()), Some(t.elapsed()));
                    Some(plain)
                }
            };
            let source = decrypted.as_ref().map(bootstrap::backup::sealed::fd_path).unwrap_or_else(|| snapshot.clone());
            let r = guarded(&plan, &Progress::new(false), lock_wait, OpKind::Restore, None, &args, |ctx| {
                ops::restore::restore(ctx, &source, &label, force, Duration::from_secs(wait))
            })?;
            println!(
                "restored revision {} ({} keys) on {} members; cluster {} (was {}), HEALTHY at revision {}",
                r.snapshot_revision,
                r.snapshot_keys,
                plan.members.len(),
                r.cluster_id,
                r.old_cluster_id.as_deref().unwrap_or("unreachable"),
                r.revision_now
            );
            let old = r.old_revision.map(|o| o.to_string()).unwrap_or_else(|| "unknown".into());
            if r.bumped_by > 0 {
                println!(
                    "revision raised by {} above the old cluster's ({old}); the history below is marked compacted, so a client watching from an old revision re-lists",
                    r.bumped_by
                );
            } else {
                println!(
                    "warning: the revision went back to the snapshot's (old cluster: {old}); the hosts' etcd tool cannot raise it (etcdutl 3.5.10+ can; etcd 3.4's etcdctl cannot)"
                );
            }
            for m in &r.moved {
                println!("old data dir of {m}");
            }
            print!("{}", ops::restore::kubernetes_steps(&plan, ops::restore::Around::After, r.bumped_by > 0));
            Ok(exit::OK)
        }
        Command::Upgrade { to, sha256, dry_run, wait } => roll(&cli.spec, lock_wait, Roll::Upgrade, &to, sha256.as_deref(), dry_run, wait),
        Command::Downgrade { to: None, .. } => {
            let plan = plan::build(&load(&cli.spec)?);
            let r = guarded(&plan, &Progress::new(false), lock_wait, OpKind::Downgrade, None, "downgrade --cancel", ops::downgrade::cancel)?;
            println!("downgrade cancelled; cluster version {}", r.cluster_version);
            if let Some(back) = r.back_to {
                println!(
                    "{} already on the older release: bring them back with: {}",
                    r.moved.join(", "),
                    context::command_for(&plan, &format!("upgrade --to RELEASE (the etcd {back} release)"))
                );
            }
            Ok(exit::OK)
        }
        Command::Downgrade { to: Some(to), sha256, dry_run, wait, .. } => roll(&cli.spec, lock_wait, Roll::Downgrade, &to, sha256.as_deref(), dry_run, wait),
        Command::Maintain { wait, write_out } => {
            let plan = plan::build(&load(&cli.spec)?);
            let report = guarded(&plan, &Progress::new(false), lock_wait, OpKind::Maintain, None, "maintain", |ctx| {
                ops::maintain::maintain(ctx, Duration::from_secs(wait))
            })?;
            if write_out == etcdctl_lite::render::Format::Json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "compacted to revision {}; alarms disarmed: {}",
                    report.compacted_revision,
                    if report.disarmed.is_empty() { "none".to_string() } else { report.disarmed.join(", ") }
                );
                for m in &report.members {
                    println!(
                        "{}: database {} -> {}",
                        m.endpoint,
                        etcdctl_lite::model::human_bytes(m.db_size_before),
                        etcdctl_lite::model::human_bytes(m.db_size_after)
                    );
                }
                println!("cluster HEALTHY and writable");
            }
            Ok(exit::OK)
        }
        Command::Down { purge } => {
            let loaded = load(&cli.spec)?;
            let plan = plan::build(&loaded);
            let kind = if purge { OpKind::Purge } else { OpKind::Down };
            guarded(&plan, &Progress::new(false), lock_wait, kind, None, if purge { "down --purge" } else { "down" }, |ctx| ops::down::down(ctx, purge))?;
            Ok(exit::OK)
        }
    }
}

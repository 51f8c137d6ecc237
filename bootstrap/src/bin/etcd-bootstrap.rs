//! `etcd-bootstrap`: thin shell over the bootstrap library.

use bootstrap::cli::{Format, summary, summary::Summary};
use bootstrap::exit;
use bootstrap::journal::OpKind;
use bootstrap::kube::kubeadm::ApiVersion;
use bootstrap::ops::{self, up::UpOptions};
use bootstrap::plan;
use bootstrap::progress::Progress;
use bootstrap::run::context::{self, Ctx};
use bootstrap::run::rolling::Roll;
use bootstrap::spec::Spec;
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
    /// No progress on stderr (the step lines, and on a terminal the live transfer line); the
    /// result on stdout and errors stay.
    #[arg(short, long, global = true)]
    quiet: bool,
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
        write_out: Format,
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
        /// `sudo`: the SSH users are not root; every probe runs through `sudo -n` (still read-only).
        #[arg(long = "become", value_enum, default_value = "none")]
        become_with: BecomeFlag,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
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
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
    },
    /// The quorum verdict of the spec's cluster (exit 0 healthy, 1 degraded, 2 no quorum, 3 unknown).
    Status {
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: Format,
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
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
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
        write_out: Format,
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
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
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
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
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
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
    },
    /// The NOSPACE runbook, or scheduled upkeep: compact to the current revision, defragment member
    /// by member (the leader last, quorum kept), disarm alarms, verify HEALTHY and writable.
    Maintain {
        /// Bound on each step (compaction, each member's defragmentation, HEALTHY).
        #[arg(long, default_value = "120", value_name = "SECONDS")]
        wait: u64,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: Format,
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
        write_out: Format,
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
        write_out: Format,
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
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
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
        /// Output format.
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
    },
}

/// `adopt --become`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BecomeFlag {
    None,
    Sudo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SSH master connections opened for this run are closed when it ends
    let _ssh = bootstrap::host::transport::SharedConnectionsGuard;
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("etcd-bootstrap: error: {e}");
            let code = e.downcast_ref::<bootstrap::BootError>().map(|b| b.exit_code()).unwrap_or(exit::FAILED);
            ExitCode::from(code)
        }
    }
}

type Outcome = Result<u8, Box<dyn std::error::Error>>;

/// Parse, one library call per command, one printer, one exit code.
fn run(cli: Cli) -> Outcome {
    let lock_wait = cli.lock_wait;
    if lock_wait > 3600 {
        return Err("--lock-wait: give 0 to 3600 seconds".into());
    }
    let lock_wait = Duration::from_secs(lock_wait);
    let (spec, quiet) = (cli.spec, cli.quiet);
    match cli.command {
        Command::Completion { shell } => {
            pki::cli_docs::completion(shell, <Cli as clap::CommandFactory>::command(), &mut std::io::stdout())?;
            Ok(exit::OK)
        }
        Command::Man => {
            pki::cli_docs::man_page(<Cli as clap::CommandFactory>::command(), &mut std::io::stdout())?;
            Ok(exit::OK)
        }
        Command::Adopt { endpoints, cacert, cert, key, hosts, ssh_options, become_with, write_out, output, ca_key, name } => {
            let become_with = if become_with == BecomeFlag::Sudo { bootstrap::spec::Become::Sudo } else { bootstrap::spec::Become::None };
            let flags = bootstrap::adopt::flags::Flags { endpoints, cacert, cert, key, hosts, ssh_options, output, ca_key, become_with };
            // monitoring's convention, as `status`: 0 no risk, 1 risks found, 3 could not look
            // (or could not write the spec)
            Ok(adopt(flags, write_out, name.as_deref(), quiet).unwrap_or_else(|e| {
                eprintln!("etcd-bootstrap: error: {e}");
                exit::UNKNOWN
            }))
        }
        Command::Doctor { write_out, textfile, backup_dir, backup_warn, backup_fail, cert_warn_days, print_timer } => {
            let format = write_out.for_command("doctor", &[Format::Table, Format::Json, Format::Prometheus, Format::Nagios])?;
            let opts = bootstrap::doctor::Options::from_flags(&spec.display().to_string(), backup_dir, &backup_warn, &backup_fail, cert_warn_days, now_unix())?;
            let plan = plan::build(&Spec::load(&spec)?);
            if print_timer {
                let dir = textfile.ok_or("--print-timer needs --textfile DIR (node_exporter's --collector.textfile.directory)")?;
                print!("{}", bootstrap::doctor::print_timer(&std::env::current_exe()?, &spec, &dir, &plan.loaded.spec.name)?);
                return Ok(exit::OK);
            }
            print_notes(&plan);
            let report = context::read_only(&plan, &Progress::new(true), |ctx| Ok(bootstrap::doctor::run(ctx, &opts)))?;
            if let Some(dir) = &textfile {
                bootstrap::doctor::render::write_textfile(dir, &bootstrap::doctor::render::prometheus(&report))?;
            }
            print!("{}", bootstrap::doctor::render::render(&report, format)?);
            Ok(report.level().code())
        }
        Command::Plan { kubeadm_api } => {
            let loaded = Spec::load(&spec)?;
            context::refuse(&loaded.spec, "plan")?;
            let plan = plan::build(&loaded);
            print_notes(&plan);
            let api = bootstrap::kube::outputs::choose_api(&plan, kubeadm_api)?;
            print!("{}", plan::render(&plan));
            println!("   kubeadm config API: {} (kubernetes {})", api.group(), loaded.spec.kubernetes.version);
            Ok(exit::OK)
        }
        Command::Up { local, dir, wait, kubeadm_api, write_out } => {
            let format = write_out.for_command("up", &[Format::Table, Format::Json])?;
            let spec = match local {
                Some(n) => {
                    let (path, notes) = bootstrap::spec::local::ensure(n, &dir)?;
                    notes.iter().filter(|_| !quiet).for_each(|n| eprintln!("etcd-bootstrap: {n}"));
                    path
                }
                None => spec,
            };
            let plan = plan::build(&Spec::load(&spec)?);
            let progress = Progress::new(quiet);
            let options = UpOptions { wait: Duration::from_secs(wait), api: kubeadm_api };
            let report = context::run_command(&plan, &progress, lock_wait, (OpKind::Up, None, "up"), |ctx| ops::up::up(ctx, &options))?;
            print!("{}", summary::UpSummary::new(&plan, &report, progress.elapsed(), &spec).render(format));
            Ok(exit::OK)
        }
        Command::Status { write_out } => {
            // monitoring's convention: a run that could not look is UNKNOWN (3), never a verdict
            let looked =
                write_out.for_command("status", &[Format::Simple, Format::Table, Format::Json, Format::Prometheus]).and_then(|f| Ok((f, Spec::load(&spec)?)));
            let (format, plan) = match looked {
                Ok((f, l)) => (f, plan::build(&l)),
                Err(e) => {
                    eprintln!("etcd-bootstrap: error: {e}");
                    return Ok(exit::UNKNOWN);
                }
            };
            print_notes(&plan);
            let v = ops::status::status(&plan)?;
            if format == Format::Prometheus {
                print!("{}", prometheus(bootstrap::doctor::from_verdict(&v)));
            } else {
                let r = etcdctl_lite::render::quorum(&v, format.etcdctl());
                print!("{}", r.stdout);
                eprint!("{}", r.stderr);
            }
            Ok(v.state.exit_code())
        }
        Command::Check { command: CheckCommand::Lb { timeout, write_out } } => {
            let format = write_out.for_command("check lb", &[Format::Simple, Format::Json])?;
            if timeout == 0 || timeout > 60 {
                return Err(format!("--timeout {timeout}: give 1 to 60 seconds").into());
            }
            let plan = plan::build(&Spec::load(&spec)?);
            context::refuse(&plan.loaded.spec, "check lb")?;
            print_notes(&plan);
            let all = bootstrap::run::lb::check_lb(&plan, Duration::from_secs(timeout))?;
            print!("{}", bootstrap::run::lb::render(&all, format == Format::Json)?);
            Ok(all.iter().map(|v| v.exit_code()).max().unwrap_or(exit::UNKNOWN))
        }
        Command::Certs { command: CertsCommand::Check { within, write_out } } => {
            let format = write_out.for_command("certs check", &[Format::Table, Format::Json, Format::Prometheus])?;
            let plan = plan::build(&Spec::load(&spec)?);
            print_notes(&plan);
            let report = ops::status::certs_check(&plan, within)?;
            match format {
                Format::Prometheus => print!("{}", prometheus(bootstrap::doctor::from_certs(&report, now_unix()))),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                _ => print!("{}", pki::expiry::render_table(&report)),
            }
            Ok(report.exit_code())
        }
        Command::Rotate { command: RotateCommand::Ca { continue_, status, wait, write_out } } => {
            use ops::rotate_ca::{Request, rotate_ca};
            let format = write_out.for_command("rotate ca", &[Format::Table, Format::Json])?;
            let plan = plan::build(&Spec::load(&spec)?);
            if status {
                print_notes(&plan);
                print!("{}", ops::rotate_ca::status(&plan)?);
                return Ok(exit::OK);
            }
            let (request, args) = if continue_ { (Request::Continue, "rotate ca --continue") } else { (Request::StartOrResume, "rotate ca") };
            let outcome = context::run_command(&plan, &Progress::new(quiet), lock_wait, (OpKind::RotateCa, None, args), |ctx| {
                rotate_ca(ctx, request, Duration::from_secs(wait))
            })?;
            print!("{}", summary::RotateCaSummary::new(&plan, outcome).render(format));
            Ok(exit::OK)
        }
        Command::Rotate { command: RotateCommand::Certs { rekey, split, wait, write_out } } => {
            let format = write_out.for_command("rotate certs", &[Format::Table, Format::Json])?;
            let plan = plan::build(&Spec::load(&spec)?);
            let args = format!("rotate certs{}{}", if rekey { " --rekey" } else { "" }, if split { " --split" } else { "" });
            let (wait, job) = (Duration::from_secs(wait), (OpKind::RotateCerts, None, args.as_str()));
            let in_place = if plan.loaded.spec.adopted.is_some() {
                Some(context::run_command(&plan, &Progress::new(quiet), lock_wait, job, |ctx| ops::rotate_certs::rotate_in_place(ctx, rekey, split, wait))?)
            } else if split {
                return Err("--split: only for an adopted cluster (a cluster etcd-bootstrap built has a certificate per member already)".into());
            } else {
                context::run_command(&plan, &Progress::new(quiet), lock_wait, job, |ctx| ops::rotate_certs::rotate_certs(ctx, rekey, wait))?;
                None
            };
            print!("{}", summary::RotateCertsSummary { members: plan.members.len(), in_place, state: "HEALTHY".into() }.render(format));
            Ok(exit::OK)
        }
        Command::Replace { member, force, wait, write_out } => {
            let format = write_out.for_command("replace", &[Format::Table, Format::Json])?;
            let plan = plan::build(&Spec::load(&spec)?);
            // validated here, before it names anything in the journal or a message
            let member = plan.member_named(&member)?.spec.name.clone();
            let args = format!("replace {}", plan::sh_quote(&member));
            context::run_command(&plan, &Progress::new(quiet), lock_wait, (OpKind::Replace, Some(member.clone()), &args), |ctx| {
                ops::replace::replace(ctx, &member, force, Duration::from_secs(wait))
            })?;
            print!("{}", summary::ReplaceSummary { member, state: "HEALTHY".into() }.render(format));
            Ok(exit::OK)
        }
        Command::Backup { dir, keep, print_timer, encrypt_to, to, write_out } => {
            let format = write_out.for_command("backup", &[Format::Simple, Format::Json, Format::Prometheus])?;
            let request = bootstrap::ops::backup::Request::from_flags(&spec, dir, keep, &encrypt_to, to.as_deref(), |k| std::env::var(k).ok())?;
            let plan = plan::build(&Spec::load(&spec)?);
            if print_timer {
                print!("{}", request.timer(&std::env::current_exe()?, &spec, &plan.loaded.spec.name)?);
                return Ok(exit::OK);
            }
            let (b, shipped) = context::run_command(&plan, &Progress::new(quiet), lock_wait, (OpKind::Backup, None, "backup"), |ctx| request.run(ctx))?;
            match format {
                Format::Prometheus => print!("{}", prometheus(bootstrap::doctor::from_backup(&b, now_unix()))),
                Format::Json => println!("{}", serde_json::to_string_pretty(&b)?),
                _ => print!("{}", ops::backup::text(&b, shipped.as_ref())),
            }
            Ok(exit::OK)
        }
        Command::Restore { snapshot, force, wait, identity, write_out } => {
            let format = write_out.for_command("restore", &[Format::Table, Format::Json])?;
            let plan = plan::build(&Spec::load(&spec)?);
            let source = bootstrap::backup::source::prepare(&plan, &snapshot, identity.as_deref(), &Progress::new(quiet))?;
            let r = context::run_command(&plan, &Progress::new(quiet), lock_wait, (OpKind::Restore, None, &source.args), |ctx| {
                ops::restore::restore(ctx, &source.path, &source.label, force, Duration::from_secs(wait))
            })?;
            print!("{}", summary::RestoreSummary::new(&plan, r).render(format));
            Ok(exit::OK)
        }
        Command::Upgrade { to, sha256, dry_run, wait, write_out } => {
            roll(&spec, lock_wait, Roll::Upgrade, RollFlags { to: &to, sha256: sha256.as_deref(), dry_run, wait, write_out, quiet })
        }
        Command::Downgrade { to: Some(to), sha256, dry_run, wait, write_out, .. } => {
            roll(&spec, lock_wait, Roll::Downgrade, RollFlags { to: &to, sha256: sha256.as_deref(), dry_run, wait, write_out, quiet })
        }
        Command::Downgrade { to: None, write_out, .. } => {
            let format = write_out.for_command("downgrade --cancel", &[Format::Table, Format::Json])?;
            let plan = plan::build(&Spec::load(&spec)?);
            let r = context::run_command(&plan, &Progress::new(quiet), lock_wait, (OpKind::Downgrade, None, "downgrade --cancel"), ops::downgrade::cancel)?;
            print!("{}", summary::CancelSummary::new(&plan, r).render(format));
            Ok(exit::OK)
        }
        Command::Maintain { wait, write_out } => {
            let format = write_out.for_command("maintain", &[Format::Simple, Format::Json])?;
            let plan = plan::build(&Spec::load(&spec)?);
            let report = context::run_command(&plan, &Progress::new(quiet), lock_wait, (OpKind::Maintain, None, "maintain"), |ctx| {
                ops::maintain::maintain(ctx, Duration::from_secs(wait))
            })?;
            print!("{}", report.render(format));
            Ok(exit::OK)
        }
        Command::Down { purge } => {
            let plan = plan::build(&Spec::load(&spec)?);
            let job = if purge { (OpKind::Purge, None, "down --purge") } else { (OpKind::Down, None, "down") };
            context::run_command(&plan, &Progress::new(quiet), lock_wait, job, |ctx| ops::down::down(ctx, purge))?;
            Ok(exit::OK)
        }
    }
}

/// `upgrade` or `downgrade --to`: run (read-only with `--dry-run`) and its summary printed.
/// `upgrade`'s and `downgrade --to`'s flags.
struct RollFlags<'a> {
    to: &'a str,
    sha256: Option<&'a str>,
    dry_run: bool,
    wait: u64,
    write_out: Format,
    quiet: bool,
}

fn roll(spec: &Path, lock_wait: Duration, kind: Roll, flags: RollFlags) -> Outcome {
    let RollFlags { to, sha256, dry_run, wait, write_out, quiet } = flags;
    let format = write_out.for_command(kind.command(), &[Format::Table, Format::Json])?;
    let args = bootstrap::run::rolling::command_args(kind, to, sha256)?;
    let plan = plan::build(&Spec::load(spec)?);
    let (progress, wait) = (Progress::new(quiet), Duration::from_secs(wait));
    let run = |ctx: &Ctx| match kind {
        Roll::Upgrade => ops::upgrade::upgrade(ctx, to, sha256, dry_run, wait),
        Roll::Downgrade => ops::downgrade::downgrade(ctx, to, sha256, dry_run, wait),
    };
    let op = if kind == Roll::Upgrade { OpKind::Upgrade } else { OpKind::Downgrade };
    let r = if dry_run {
        print_notes(&plan);
        context::read_only(&plan, &progress, run)?
    } else {
        context::run_command(&plan, &progress, lock_wait, (op, None, &args), run)?
    };
    print!("{}", summary::RollSummary::new(&plan, kind, to, sha256, dry_run, r).render(format));
    Ok(exit::OK)
}

/// `adopt`: the flags checked, the cluster read (nothing changed), the inventory printed, and
/// with `-o` the spec of what is there written.
fn adopt(flags: bootstrap::adopt::flags::Flags, write_out: Format, name: Option<&str>, quiet: bool) -> Outcome {
    let format = write_out.for_command("adopt", &[Format::Table, Format::Json])?;
    let req = flags.check()?;
    let inv = bootstrap::adopt::adopt(&req, &Progress::new(quiet))?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&inv)?),
        _ => print!("{}", bootstrap::adopt::report::table(&inv)),
    }
    if let Some(path) = &flags.output {
        bootstrap::adopt::flags::write_spec(&inv, &req, path, flags.ca_key.as_deref(), name)?;
        eprintln!("etcd-bootstrap: spec of what is there written to {} (next: etcd-bootstrap -f {} status)", path.display(), path.display());
    }
    Ok(if inv.findings.is_empty() { exit::OK } else { exit::WARNING })
}

fn print_notes(plan: &plan::Plan) {
    for n in context::notes(plan) {
        eprintln!("etcd-bootstrap: note: {n}");
    }
}

fn prometheus((checks, gauges): bootstrap::doctor::Found) -> String {
    bootstrap::doctor::render::prometheus(&bootstrap::doctor::Report { checks, gauges })
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

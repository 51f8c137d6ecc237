//! `etcd-bootstrap`: thin shell over the bootstrap library.

use bootstrap::cli::{Format, summary, summary::Summary};
use bootstrap::exit;
use bootstrap::journal::OpKind;
use bootstrap::ops::{self, maintain::Defrag, up::UpOptions};
use bootstrap::plan;
use bootstrap::progress::Progress;
use bootstrap::run::context::{self, Ctx};
use bootstrap::run::rolling::Roll;
use bootstrap::spec::Spec;
use clap::Parser;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

mod flags;
use flags::{BecomeFlag, CertsCommand, CheckCommand, Cli, Command, RotateCommand};

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
        Command::Backup { dir, keep, print_timer, encrypt_to, to, continuous, segment_seconds, full_every, write_out } => {
            let format = write_out.for_command("backup", &[Format::Simple, Format::Json, Format::Prometheus])?;
            let request = bootstrap::ops::backup::Request::from_flags(&spec, dir, keep, &encrypt_to, to.as_deref(), |k| std::env::var(k).ok())?;
            let plan = plan::build(&Spec::load(&spec)?);
            if print_timer && continuous {
                print!("{}", request.continuous_service(&std::env::current_exe()?, &spec, &plan.loaded.spec.name)?);
                return Ok(exit::OK);
            }
            if print_timer {
                print!("{}", request.timer(&std::env::current_exe()?, &spec, &plan.loaded.spec.name)?);
                return Ok(exit::OK);
            }
            if continuous {
                let format = write_out.for_command("backup --continuous", &[Format::Simple, Format::Json])?;
                if segment_seconds == 0 || full_every == 0 {
                    return Err(
                        bootstrap::error::BootError::BadArgument { flag: "--segment-seconds/--full-every".into(), reason: "give 1 or more".into() }.into()
                    );
                }
                let stop = stop_on_signal();
                let (every, full) = (Duration::from_secs(segment_seconds), Duration::from_secs(full_every.saturating_mul(60)));
                let st = request.follow(&plan, &Progress::new(quiet), lock_wait, every, full, stop)?;
                match format {
                    Format::Json => println!("{}", serde_json::to_string_pretty(&st)?),
                    _ => print!("{}", ops::backup::continuous_text(&st)),
                }
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
        Command::Restore { snapshot, to_revision, to_time, dir, from, force, wait, identity, write_out } => {
            let format = write_out.for_command("restore", &[Format::Table, Format::Json])?;
            let plan = plan::build(&Spec::load(&spec)?);
            let source = match (snapshot, to_revision, to_time) {
                (Some(snapshot), _, _) => bootstrap::backup::source::prepare(&plan, &snapshot, identity.as_deref(), &Progress::new(quiet))?,
                (None, revision, time) => {
                    use bootstrap::backup::replay::Target;
                    let bad = |reason: String| bootstrap::error::BootError::BadArgument { flag: "--to-time".into(), reason };
                    let target = match (revision, time) {
                        (Some(r), _) => Target::Revision(r),
                        (None, Some(t)) => Target::Time(bootstrap::backup::history::parse_time(&t).map_err(bad)?),
                        (None, None) => return Err(bad("give a snapshot, --to-revision or --to-time".into()).into()),
                    };
                    let history = bootstrap::backup::replay::History::from_flags(&spec, dir, from.as_deref())?;
                    bootstrap::backup::replay::prepare(&plan, &history, target, identity.as_deref(), &Progress::new(quiet))?
                }
            };
            let r = context::run_command(&plan, &Progress::new(quiet), lock_wait, (OpKind::Restore, None, &source.args), |ctx| {
                ops::restore::restore(ctx, &source.path, &source.label, force, Duration::from_secs(wait))
            })?;
            source.finished();
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
        Command::Maintain { wait, offline, write_out } => {
            let format = write_out.for_command("maintain", &[Format::Simple, Format::Json])?;
            let plan = plan::build(&Spec::load(&spec)?);
            let (how, args) = if offline { (Defrag::Offline, "maintain --offline") } else { (Defrag::Online, "maintain") };
            let report = context::run_command(&plan, &Progress::new(quiet), lock_wait, (OpKind::Maintain, None, args), |ctx| {
                ops::maintain::maintain(ctx, Duration::from_secs(wait), how)
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

/// A flag set by SIGTERM or SIGINT (a thread waits for them), for what runs until stopped.
fn stop_on_signal() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let set = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else { return };
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            set.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    });
    stop
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

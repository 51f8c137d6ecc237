//! `etcdctl-lite`: thin shell over the library: parses etcdctl's flags (and `ETCDCTL_*`), runs
//! the command, renders, and exits with etcdctl's status (or the monitoring convention for `quorum`).

use clap::{Args, Parser, Subcommand};
use etcdctl_lite::options::{ClientOptions, DEFAULT_COMMAND_TIMEOUT, DEFAULT_DIAL_TIMEOUT};
use etcdctl_lite::render::{self, Format, Rendered};
use etcdctl_lite::{CtlError, ops};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "etcdctl-lite", version = pki::cli_docs::VERSION, args_override_self = true, about = "etcdctl's daily checks, and a quorum verdict that tells the truth")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// gRPC endpoints, comma-separated.
    #[arg(long, global = true, env = "ETCDCTL_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// The CA certificate that signed the servers' certificates.
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    cacert: Option<String>,
    /// Client certificate.
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    cert: Option<String>,
    /// Client key.
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    key: Option<String>,
    /// Bound on connecting, TLS handshake included (a hung member costs at most this).
    #[arg(long, global = true, env = "ETCDCTL_DIAL_TIMEOUT", value_parser = etcdctl_lite::options::parse_timeout, default_value = "1s")]
    dial_timeout: Duration,
    /// Bound on each endpoint's whole check.
    #[arg(long, global = true, env = "ETCDCTL_COMMAND_TIMEOUT", value_parser = etcdctl_lite::options::parse_timeout, default_value = "2s")]
    command_timeout: Duration,
    /// Output format.
    #[arg(short = 'w', long = "write-out", global = true, env = "ETCDCTL_WRITE_OUT", value_enum, default_value = "simple")]
    write_out: Format,
}

#[derive(Subcommand)]
enum Command {
    /// Print the shell completion script (bash, zsh or fish), as `etcdctl completion` does.
    Completion { shell: pki::cli_docs::Shell },
    /// Print the man page (roff): `etcdctl-lite man > etcdctl-lite.1`.
    Man,
    /// Endpoint checks.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Membership.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// One verdict for the cluster: HEALTHY (exit 0), DEGRADED (1), NO-QUORUM (2), UNKNOWN (3).
    Quorum,
    /// Snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Alarms.
    Alarm {
        #[command(subcommand)]
        command: AlarmCommand,
    },
    /// Compacts the keyspace up to REVISION (history below it is discarded).
    Compaction {
        revision: i64,
        /// Wait until the compaction is physically applied to the backend.
        #[arg(long)]
        physical: bool,
    },
    /// Defragments each endpoint's backend, one member at a time, the leader last.
    Defrag {
        /// Every member's client URLs from the member list.
        #[arg(long)]
        cluster: bool,
    },
    /// Hands leadership to another voter (hex ID from `member list`); asks the leader itself.
    MoveLeader {
        /// The member to lead next (hex ID).
        target_id: String,
    },
}

#[derive(Subcommand)]
enum EndpointCommand {
    /// Linearizable read plus alarm list, per endpoint, all in parallel.
    Health {
        /// Check every member's client URLs from the member list.
        #[arg(long)]
        cluster: bool,
    },
    /// Version, DB size, leader, raft term/index, learner, errors, per endpoint.
    Status {
        #[arg(long)]
        cluster: bool,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    List,
    /// Add a member (as a learner with --learner); prints what to start it with.
    Add {
        name: String,
        #[arg(long, value_delimiter = ',', required = true)]
        peer_urls: Vec<String>,
        #[arg(long)]
        learner: bool,
    },
    /// Promote a learner (ID in hex, as `member list` prints it).
    Promote {
        id: String,
    },
    /// Remove a member (ID in hex).
    Remove {
        id: String,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Save a snapshot from one healthy member (any member that answers when none is), atomically.
    Save { file: std::path::PathBuf },
    /// Hash, revision, total keys and size of a snapshot file, from the file alone (etcdutl's).
    Status { file: std::path::PathBuf },
}

#[derive(Subcommand)]
enum AlarmCommand {
    /// Active alarms.
    List,
    /// Deactivate every active alarm (after the cause is fixed: for NOSPACE, compact and defrag).
    Disarm,
}

fn emit(r: Rendered) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(r.stdout.as_bytes());
    let _ = std::io::stderr().write_all(r.stderr.as_bytes());
}

fn main() -> ExitCode {
    let is_quorum = std::env::args().any(|a| a == "quorum");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            let code = if !e.use_stderr() {
                pki::exit::OK
            } else if is_quorum {
                pki::exit::UNKNOWN
            } else {
                pki::exit::USAGE
            };
            return ExitCode::from(code);
        }
    };
    // what needs no cluster: the shell completion and the man page
    match cli.command {
        Command::Completion { shell } => {
            return match pki::cli_docs::completion(shell, <Cli as clap::CommandFactory>::command(), &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Error: {e}");
                    ExitCode::from(pki::exit::FAILED)
                }
            };
        }
        Command::Man => {
            return match pki::cli_docs::man_page(<Cli as clap::CommandFactory>::command(), &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("Error: {e}");
                    ExitCode::from(pki::exit::FAILED)
                }
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::from(pki::exit::FAILED);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err((e, code)) => {
            eprintln!("Error: {e}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, (CtlError, u8)> {
    let g = &cli.global;
    let fail_code = if matches!(cli.command, Command::Quorum) { pki::exit::UNKNOWN } else { pki::exit::FAILED };
    let mut opts = ClientOptions::new(&g.endpoints, g.cacert.as_deref(), g.cert.as_deref(), g.key.as_deref(), g.dial_timeout, g.command_timeout)
        .map_err(|e| (e, fail_code))?;
    let _ = (DEFAULT_DIAL_TIMEOUT, DEFAULT_COMMAND_TIMEOUT);
    let fmt = g.write_out;
    match cli.command {
        Command::Endpoint { command } => {
            let cluster = matches!(command, EndpointCommand::Health { cluster: true } | EndpointCommand::Status { cluster: true });
            if cluster {
                opts = ops::cluster_endpoints(&opts).await.map_err(|e| (e, pki::exit::FAILED))?;
            }
            match command {
                EndpointCommand::Health { .. } => {
                    let results = ops::health(&opts).await;
                    let line = table_line(fmt, &opts).await;
                    emit(render::health(&results, fmt, line));
                    Ok(if results.iter().all(|h| h.healthy()) { pki::exit::OK } else { pki::exit::FAILED })
                }
                EndpointCommand::Status { .. } => {
                    let results = ops::status(&opts).await;
                    emit(render::status(&results, fmt));
                    Ok(if results.iter().all(|s| s.result.is_ok()) { 0 } else { 1 })
                }
            }
        }
        Command::Member { command } => match command {
            MemberCommand::List => {
                let list = ops::member_list(&opts).await.map_err(|e| (e, pki::exit::FAILED))?;
                let line = table_line(fmt, &opts).await;
                emit(render::member_list(&list, fmt, line));
                Ok(pki::exit::OK)
            }
            MemberCommand::Add { name, peer_urls, learner } => {
                let (added, members) = ops::member_add(&opts, &peer_urls, learner).await.map_err(|e| (e, pki::exit::FAILED))?;
                emit(render::member_added(&name, &added, &members, None));
                Ok(pki::exit::OK)
            }
            MemberCommand::Promote { id } => {
                let id = ops::parse_member_id(&id).map_err(|e| (e, pki::exit::FAILED))?;
                ops::member_promote(&opts, id).await.map_err(|e| (e, pki::exit::FAILED))?;
                println!("Member {id:x} promoted in cluster");
                Ok(pki::exit::OK)
            }
            MemberCommand::Remove { id } => {
                let id = ops::parse_member_id(&id).map_err(|e| (e, pki::exit::FAILED))?;
                ops::member_remove(&opts, id).await.map_err(|e| (e, pki::exit::FAILED))?;
                println!("Member {id:x} removed from cluster");
                Ok(pki::exit::OK)
            }
        },
        Command::Quorum => {
            let v = etcdctl_lite::observe::assess(&opts, etcdctl_lite::observe::DEFAULT_ELECTION_TIMEOUT).await;
            emit(render::quorum(&v, fmt));
            Ok(v.state.exit_code())
        }
        Command::Snapshot { command: SnapshotCommand::Status { file } } => {
            let (st, _) = etcdctl_lite::snapshot_status::status(&file).map_err(|e| (e, pki::exit::FAILED))?;
            emit(render::snapshot_status(&st, fmt));
            Ok(pki::exit::OK)
        }
        Command::Snapshot { command: SnapshotCommand::Save { file } } => {
            let saved = etcdctl_lite::snapshot::save(&opts, &file).await.map_err(|e| (e, pki::exit::FAILED))?;
            if let Some(w) = &saved.warning {
                eprintln!("warning: {w}");
            }
            if fmt == Format::Json {
                println!("{}", serde_json::to_string(&saved).unwrap_or_default());
            } else {
                println!(
                    "Snapshot saved at {} ({} bytes, sha256 {}, revision {}) from {}",
                    saved.path, saved.bytes, saved.sha256, saved.revision, saved.endpoint
                );
            }
            Ok(pki::exit::OK)
        }
        Command::MoveLeader { target_id } => {
            let target = ops::parse_member_id(&target_id).map_err(|e| (e, pki::exit::FAILED))?;
            let from = ops::move_leader(&opts, target).await.map_err(|e| (e, pki::exit::FAILED))?;
            // etcdctl's wording
            println!("Leadership transferred from {from:x} to {target:x}");
            Ok(pki::exit::OK)
        }
        Command::Compaction { revision, physical } => {
            let rev = etcdctl_lite::maintenance::compaction(&opts, revision, physical).await.map_err(|e| (e, pki::exit::FAILED))?;
            println!("compacted revision {rev}");
            Ok(pki::exit::OK)
        }
        Command::Defrag { cluster } => {
            if cluster {
                opts = ops::cluster_endpoints(&opts).await.map_err(|e| (e, pki::exit::FAILED))?;
            }
            let done = etcdctl_lite::maintenance::defrag(&opts).await;
            let mut failed = false;
            for d in &done {
                // etcdctl's wording
                match &d.result {
                    Ok(_) => println!("Finished defragmenting etcd member[{}]", d.endpoint),
                    Err(f) => {
                        failed = true;
                        eprintln!("Failed to defragment etcd member[{}] ({})", d.endpoint, f.message);
                    }
                }
            }
            Ok(u8::from(failed))
        }
        Command::Alarm { command: AlarmCommand::Disarm } => {
            let disarmed = etcdctl_lite::maintenance::alarm_disarm(&opts).await.map_err(|e| (e, pki::exit::FAILED))?;
            emit(render::alarms(&disarmed, fmt));
            Ok(pki::exit::OK)
        }
        Command::Alarm { command: AlarmCommand::List } => {
            let alarms = ops::alarm_list(&opts).await.map_err(|e| (e, pki::exit::FAILED))?;
            emit(render::alarms(&alarms, fmt));
            Ok(pki::exit::OK)
        }
        // answered in main, before any connection
        Command::Completion { .. } | Command::Man => Ok(pki::exit::OK),
    }
}

/// For `-w table` only: the minor the cluster runs (the first member that answers a status),
/// whose etcdctl's table style is printed (box drawing from 3.7).
async fn table_line(fmt: Format, opts: &ClientOptions) -> Option<u64> {
    if fmt != Format::Table {
        return None;
    }
    ops::status(opts).await.into_iter().find_map(|s| s.result.ok()).and_then(|s| etcdctl_lite::version::minor_of(&s.version))
}

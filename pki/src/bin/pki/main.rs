//! `pki`: thin command-line shell over the `pki` library. Invoked through a symlink named
//! `cfssl` or `cfssljson`, it behaves as those tools (see `pki::cfssl`).

mod render;

use clap::{Parser, Subcommand, ValueEnum};
use pki::bundle::{CaSource, IssueRequest};
use pki::ca::{CaOptions, Subject};
use pki::cluster::Member;
use pki::keys::KeyAlgorithm;
use pki::layout::Layout;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pki", version = pki::cli_docs::VERSION, about = "A strict CA for etcd clusters: kubeadm's etcd certificate set, and a cfssl/cfssljson drop-in",
          after_help = "Invoked as `cfssl` or `cfssljson` (symlinks to this binary), or as `pki cfssl ...`, it accepts their commands and flags.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Print the shell completion script (bash, zsh or fish), as `etcdctl completion` does.
    Completion { shell: pki::cli_docs::Shell },
    /// Print the man page (roff): `pki man > pki.1`.
    Man,
    /// Create a new etcd CA (never replaces an existing one).
    InitCa {
        /// The PKI directory.
        #[arg(long, default_value = "pki")]
        out: PathBuf,
        #[arg(long, default_value = "kubeadm", value_parser = parse_layout)]
        layout: Layout,
        /// Key algorithm: ecdsa-p256, ecdsa-p384, ed25519, rsa-2048, rsa-3072, rsa-4096.
        #[arg(long, default_value = "ecdsa-p256")]
        algo: KeyAlgorithm,
        #[arg(long, default_value = "etcd-ca")]
        cn: String,
        /// Lifetime: 10y, 3650d, 87600h.
        #[arg(long, default_value = "10y")]
        validity: String,
    },
    /// Issue the etcd certificate set for a cluster (creating the CA if the directory has none).
    Issue {
        /// The PKI directory.
        #[arg(long, default_value = "pki")]
        out: PathBuf,
        /// A member: NAME=IP[,IP|DNS...]; repeat for each member.
        #[arg(long = "member", value_name = "NAME=IP[,..]", value_parser = Member::parse_flag)]
        members: Vec<Member>,
        /// A YAML or JSON file with `members: [{name, ips, dns_names}]` (instead of --member).
        #[arg(long, conflicts_with = "members")]
        cluster: Option<PathBuf>,
        #[arg(long, default_value = "kubeadm", value_parser = parse_layout)]
        layout: Layout,
        /// Key algorithm of new keys (and of a new CA).
        #[arg(long, default_value = "ecdsa-p256")]
        algo: KeyAlgorithm,
        /// Lifetime of the leaf certificates.
        #[arg(long, default_value = "1y")]
        validity: String,
        /// Lifetime of a CA created now.
        #[arg(long, default_value = "10y")]
        ca_validity: String,
        /// Use this existing CA certificate (kubeadm's, cfssl's, openssl's) instead of the directory's.
        #[arg(long, requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        #[arg(long, requires = "ca_cert")]
        ca_key: Option<PathBuf>,
        /// Re-issue existing certificates that do not fit (new keys). The CA is never replaced.
        #[arg(long)]
        force: bool,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Output,
    },
    /// Every certificate's expiry, residual time and CA, plus chain, key match and SAN coverage.
    /// Exit 0 ok, 1 something expiring, 2 something expired or invalid.
    CheckExpiration {
        #[arg(long, default_value = "pki")]
        out: PathBuf,
        /// Warn when less than this is left (30d), or this share of the lifetime is used (66%).
        #[arg(long, default_value = "30d")]
        within: pki::expiry::Threshold,
        /// Members with their addresses, to check that SANs still cover them.
        #[arg(long = "member", value_name = "NAME=IP[,..]", value_parser = Member::parse_flag)]
        members: Vec<Member>,
        #[arg(long, conflicts_with = "members")]
        cluster: Option<PathBuf>,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Output,
    },
    /// Re-issue certificates with the same subject, SANs and usages (key kept unless --rekey);
    /// the previous files are kept as FILE.<time>.bak.
    Renew {
        #[arg(long, default_value = "pki")]
        out: PathBuf,
        /// MEMBER (server and peer), MEMBER/server, MEMBER/peer, apiserver-etcd-client, healthcheck-client.
        targets: Vec<String>,
        /// Every certificate in the directory.
        #[arg(long, conflicts_with = "targets")]
        all: bool,
        /// Generate new keys too.
        #[arg(long)]
        rekey: bool,
        #[arg(long, default_value = "1y")]
        validity: String,
        #[arg(long, requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        #[arg(long, requires = "ca_cert")]
        ca_key: Option<PathBuf>,
    },
    /// Revoke certificates (by file or serial) and rewrite the CRL (etcd/crl.pem or crl.pem).
    Revoke {
        #[arg(long, default_value = "pki")]
        out: PathBuf,
        /// Certificate files to revoke.
        files: Vec<PathBuf>,
        /// Serials to revoke (hex, as certinfo prints them).
        #[arg(long = "serial")]
        serials: Vec<String>,
        /// unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation, ...
        #[arg(long, default_value = "unspecified")]
        reason: String,
        #[arg(long, requires = "ca_key")]
        ca_cert: Option<PathBuf>,
        #[arg(long, requires = "ca_cert")]
        ca_key: Option<PathBuf>,
    },
    /// Show a certificate or CSR: subject, SANs, validity, serial, key usage, CA flag, issuer.
    Certinfo {
        files: Vec<PathBuf>,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Output,
    },
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    s.parse()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    members: Vec<Member>,
}

fn load_cluster(path: &std::path::Path) -> Result<Vec<Member>, Box<dyn std::error::Error>> {
    let text = pki::files::read_input(path)
        .and_then(|b| String::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: ClusterFile = serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(file.members)
}

/// The CA given by flags, or the one in the PKI directory.
fn load_ca_for(out: &std::path::Path, cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<pki::ca::Ca, Box<dyn std::error::Error>> {
    Ok(match (cert, key) {
        (Some(c), Some(k)) => pki::ca::Ca::load_files(&c, &k)?,
        _ => {
            let layout = pki::layout::PkiDir::detect(out).ok_or_else(|| format!("no CA in {} (pass --ca-cert/--ca-key)", out.display()))?;
            let pair = pki::layout::PkiDir::new(out, layout).ca();
            pki::ca::Ca::load_files(&pair.cert, &pair.key)?
        }
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args.first().and_then(|a| std::path::Path::new(a).file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let cfssl_mode = match invoked_as.as_str() {
        "cfssl" | "cfssljson" => Some((invoked_as.clone(), &args[1..])),
        _ => match args.get(1).map(String::as_str) {
            Some(m @ ("cfssl" | "cfssljson")) => Some((m.to_string(), &args[2..])),
            _ => None,
        },
    };
    if let Some((tool, rest)) = cfssl_mode {
        let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
        let (mut i, mut o, mut e) = (stdin.lock(), stdout.lock(), stderr.lock());
        let mut io = pki::cfssl::Io { stdin: &mut i, stdout: &mut o, stderr: &mut e };
        let code = if tool == "cfssl" { pki::cfssl::commands::run(rest, &mut io) } else { pki::cfssl::cfssljson::run(rest, &mut io) };
        return ExitCode::from(u8::try_from(code).unwrap_or(pki::exit::FAILED));
    }
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pki: error: {e}");
            ExitCode::from(pki::exit::FAILED)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Completion { shell } => {
            pki::cli_docs::completion(shell, <Cli as clap::CommandFactory>::command(), &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            pki::cli_docs::man_page(<Cli as clap::CommandFactory>::command(), &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::InitCa { out, layout, algo, cn, validity } => {
            let opts =
                CaOptions { subject: Subject::cn(cn), algorithm: algo, validity: pki::validity::parse_validity(&validity, "--validity")?, path_len: Some(0) };
            let report = pki::bundle::init_ca(&out, layout, &opts)?;
            render::files(&report, false)?;
            eprintln!("pki: created CA {:?} ({algo}) in {}", opts.subject.common_name, out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Issue { out, members, cluster, layout, algo, validity, ca_validity, ca_cert, ca_key, force, write_out } => {
            let members = match cluster {
                Some(path) => load_cluster(&path)?,
                None => members,
            };
            let ca = match (ca_cert, ca_key) {
                (Some(cert), Some(key)) => CaSource::Files { cert, key },
                _ => CaSource::InDirOrCreate(CaOptions {
                    algorithm: algo,
                    validity: pki::validity::parse_validity(&ca_validity, "--ca-validity")?,
                    ..CaOptions::default()
                }),
            };
            let req = IssueRequest {
                dir: out.clone(),
                layout,
                members,
                algorithm: algo,
                validity: pki::validity::parse_validity(&validity, "--validity")?,
                ca,
                force,
                min_remaining: time::Duration::days(30),
            };
            let started = std::time::Instant::now();
            let report = pki::bundle::issue_into(&req)?;
            render::issue_report(&report, matches!(write_out, Output::Json))?;
            eprintln!(
                "pki: {} issued, {} kept{} in {} ({} ms)",
                report.issued,
                report.kept,
                if report.ca_created { ", new CA created" } else { "" },
                out.display(),
                started.elapsed().as_millis()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckExpiration { out, within, members, cluster, write_out } => {
            let members = match cluster {
                Some(path) => Some(load_cluster(&path)?),
                None if members.is_empty() => None,
                None => Some(members),
            };
            let report = pki::expiry::check_dir(&out, members.as_deref(), within)?;
            if matches!(write_out, Output::Json) {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", pki::expiry::render_table(&report));
            }
            Ok(ExitCode::from(report.exit_code()))
        }
        Command::Renew { out, targets, all, rekey, validity, ca_cert, ca_key } => {
            let ca = load_ca_for(&out, ca_cert, ca_key)?;
            let layout = pki::layout::PkiDir::detect(&out).unwrap_or_default();
            let dir = pki::layout::PkiDir::new(&out, layout);
            let roles = if all {
                pki::renew::all_targets(&dir)
            } else {
                if targets.is_empty() {
                    return Err("name what to renew (e.g. etcd-1, etcd-1/peer, apiserver-etcd-client) or pass --all".into());
                }
                let mut r = Vec::new();
                for t in &targets {
                    r.extend(pki::renew::parse_target(t)?);
                }
                r
            };
            let validity = pki::validity::parse_validity(&validity, "--validity")?;
            let renewed = pki::renew::renew(&out, &ca, &roles, validity, rekey)?;
            for r in &renewed {
                println!("{}  serial {}  valid until {}  {}", r.cert.display(), r.serial, r.not_after, if r.rekeyed { "new key" } else { "same key" });
            }
            eprintln!("pki: renewed {} certificate(s); previous files kept as *.bak", renewed.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Revoke { out, files, serials, reason, ca_cert, ca_key } => {
            let ca = load_ca_for(&out, ca_cert, ca_key)?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let entries = pki::crl::entries_for(&files, &serials, &reason, &ca, now)?;
            let n = entries.len();
            let crl = pki::crl::revoke(&out, &ca, entries)?;
            println!("{}", crl.display());
            eprintln!("pki: revoked {n}; deliver {} to the members (etcd reads it on every new connection)", crl.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Certinfo { files, write_out } => {
            if files.is_empty() {
                return Err("certinfo needs at least one file".into());
            }
            let mut failed = false;
            for f in &files {
                match render::certinfo(f, matches!(write_out, Output::Json), files.len() > 1) {
                    Ok(()) => {}
                    Err(e) => {
                        eprintln!("pki: error: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { ExitCode::from(pki::exit::FAILED) } else { ExitCode::SUCCESS })
        }
    }
}

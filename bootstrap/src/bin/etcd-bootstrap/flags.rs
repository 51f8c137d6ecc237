//! The command line of `etcd-bootstrap`: every command and flag, with the help text people read
//! (and the man page and completions are made from). Only parsing lives here.

use bootstrap::cli::Format;
use bootstrap::kube::kubeadm::ApiVersion;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "etcd-bootstrap", version = pki::cli_docs::VERSION, about = "From one cluster spec to a verified external etcd cluster and the kubeadm + HAProxy configs that use it")]
pub struct Cli {
    /// The cluster spec (YAML or JSON).
    #[arg(short = 'f', long = "spec", global = true, default_value = bootstrap::run::context::DEFAULT_SPEC)]
    pub spec: PathBuf,
    /// Bound on waiting for another operation that holds the cluster's lock.
    #[arg(long, global = true, default_value = "30", value_name = "SECONDS")]
    pub lock_wait: u64,
    /// No progress on stderr (the step lines, and on a terminal the live transfer line); the
    /// result on stdout and errors stay.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// Keep following: a full snapshot, then every change in sealed segments beside it
        /// (for `restore --to-revision/--to-time`), until SIGTERM or SIGINT.
        #[arg(long)]
        continuous: bool,
        /// With --continuous: seal the changes received into a segment this often.
        #[arg(long, default_value = "5", value_name = "SECONDS")]
        segment_seconds: u64,
        /// With --continuous: take a new full snapshot this often (bounds a restore's replay).
        #[arg(long, default_value = "60", value_name = "MINUTES")]
        full_every: u64,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "simple")]
        write_out: Format,
    },
    /// Whole-cluster disaster recovery from a snapshot: stop all, move data aside, restore each
    /// member (the revision raised past the old history, marked compacted), start, verify
    /// (resumable). Stop kube-apiserver on every control-plane node before; start it after.
    Restore {
        /// The snapshot (a file or an s3:// URL); not with --to-revision/--to-time.
        #[arg(required_unless_present_any = ["to_revision", "to_time"], conflicts_with_all = ["to_revision", "to_time"])]
        snapshot: Option<PathBuf>,
        /// Point-in-time: the cluster as it was at revision R, from the full snapshots and
        /// changes `backup --continuous` kept in --dir.
        #[arg(long, value_name = "R", conflicts_with = "to_time")]
        to_revision: Option<i64>,
        /// Point-in-time: as it was at TIME (RFC 3339, e.g. 2026-12-06T10:15:00Z).
        #[arg(long, value_name = "TIME")]
        to_time: Option<String>,
        /// The backup folder with the history (default: backups/ beside the spec).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The history in a bucket instead of a folder (where `backup --continuous --to` puts
        /// it): only the snapshot and segments the restore needs are fetched.
        #[arg(long, value_name = "s3://BUCKET/PREFIX", conflicts_with_all = ["dir", "snapshot"])]
        from: Option<String>,
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
        /// Defragment each member while it is stopped (etcdutl defrag --data-dir on its host),
        /// leadership handed off first: clients use the other members meanwhile instead of waiting
        /// on it. Needs a HEALTHY cluster of three voters or more.
        #[arg(long)]
        offline: bool,
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
pub enum CertsCommand {
    /// Expiry, chain, key match and SAN coverage of every certificate (exit 0 ok, 1 expiring, 2 expired or invalid).
    Check {
        #[arg(long, default_value = "30d")]
        within: pki::expiry::Threshold,
        #[arg(short = 'w', long = "write-out", value_enum, default_value = "table")]
        write_out: Format,
    },
}

#[derive(Subcommand)]
pub enum CheckCommand {
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
pub enum RotateCommand {
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
pub enum BecomeFlag {
    None,
    Sudo,
}

//! Bootstrap errors: each names the spec field, member or host it is about.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// The spec file cannot be read or parsed.
    #[error("{file}: {reason}")]
    SpecFile { file: String, reason: String },
    /// The spec is invalid; every problem is listed.
    #[error("invalid cluster spec {file}:\n  - {}", .problems.join("\n  - "))]
    InvalidSpec { file: String, problems: Vec<String> },
    /// A preflight check failed; nothing was started.
    #[error("preflight failed; nothing was started:\n  - {}", .0.join("\n  - "))]
    Preflight(Vec<String>),
    /// A member's host is not as the step needs it (too little space, a check that failed).
    #[error("member {member} ({host}): {reason}")]
    Host { member: String, host: String, reason: String },
    /// A script or a file did not reach a member's host, or failed there.
    #[error("member {member} ({host}): {source}")]
    Transport {
        member: String,
        host: String,
        #[source]
        source: Box<TransportError>,
    },
    /// A local file could not be read or written.
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        path: std::path::PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A record this tool keeps beside the spec (a resumable step's progress) cannot be read or written.
    #[error("{}: the record of {what} is damaged: {source}", .path.display())]
    Record {
        path: std::path::PathBuf,
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// Certificates could not be issued.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The cluster (or a member) did not reach the state waited for within the bound.
    #[error("{0}")]
    NotHealthy(String),
    /// The same step failed on several members; each is listed.
    #[error("{what} failed:\n  - {}", .failures.join("\n  - "))]
    Members { what: String, failures: Vec<String> },
    /// What was done could not be confirmed (a restored revision, a version, a snapshot).
    #[error("{0}")]
    Verification(String),
    /// A command-line value is out of range.
    #[error("{flag}: {reason}")]
    BadArgument { flag: String, reason: String },
    /// A spec field that must be usable here is not.
    #[error("spec field {field}: {reason}")]
    SpecField { field: String, reason: String },
    /// The async runtime for the etcd client could not start.
    #[error("cannot start the runtime for the etcd client: {0}")]
    Runtime(#[source] std::io::Error),
    /// `up` started members that never formed a cluster; they were stopped again.
    #[error("the members never formed a cluster within {wait}s (no leader was ever elected); {} stopped, nothing lasting was made{}\nstart over: {start_over}", .members.join(", "), causes_text(.causes))]
    NeverFormed { wait: u64, members: Vec<String>, causes: Vec<String>, start_over: String },
    /// Writing an output file failed.
    #[error("{path}: {reason}")]
    Output { path: String, reason: String },
    /// A directory named on the command line is one root must not write into.
    #[error("{flag}: {source}")]
    UntrustedDir { flag: String, source: pki::safe_fs::Untrusted },
    /// Another operation holds the cluster lock and did not release it in time.
    #[error("the cluster is busy: {holder} (waited {:.1}s for {lock})", .waited.as_secs_f64())]
    Busy { holder: String, waited: std::time::Duration, lock: String },
    /// Another operation is paused or unfinished; nothing was changed.
    #[error("{0}")]
    Refused(crate::journal::Refusal),
    /// The cluster's journal cannot be read or written.
    #[error("{path}: {reason}")]
    Journal { path: String, reason: String },
    /// A member named on the command line is not in the spec.
    #[error("no member {name:?} in the spec (its members: {known})")]
    MemberNotFound { name: String, known: String },
    /// A check before the first change failed; nothing was changed.
    #[error("refusing to {what}: {reason}")]
    Precondition { what: String, reason: String },

    #[error("{url}: {reason}")]
    Offsite { url: String, reason: String },
    /// An etcd API call failed.
    #[error("{what}: {source}")]
    Etcd {
        what: String,
        #[source]
        source: etcdctl_lite::CtlError,
    },
}

impl BootError {
    /// `map_err(BootError::on_host(member, host))`: a transport failure on a member's host.
    pub fn on_host(member: &str, host: &str) -> impl FnOnce(TransportError) -> BootError {
        let (member, host) = (member.to_string(), host.to_string());
        move |source| BootError::Transport { member, host, source: Box::new(source) }
    }

    /// The exit code this error ends `etcd-bootstrap` with.
    pub fn exit_code(&self) -> u8 {
        match self {
            BootError::Busy { .. } => crate::exit::BUSY,
            BootError::Refused(_) => crate::exit::REFUSED,
            _ => crate::exit::FAILED,
        }
    }
}

/// Why a script or a file did not reach a host or did not finish there: a caller can tell
/// "ssh could not connect" from "the script failed" from a timeout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The local program (bash, ssh) could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// ssh could not reach or log in to the host (its exit code 255).
    #[error("ssh {destination} could not connect: {stderr} (check the host, the key in your agent or ~/.ssh/config, and that sshd runs)")]
    Connect { destination: String, stderr: String },
    /// sudo on the host refused (it ran nothing): it wants a password, or the user may not.
    #[error(
        "sudo on {destination} refused: {stderr} (give the SSH user passwordless sudo for root, e.g. in /etc/sudoers.d/etcd-bootstrap: `USER ALL=(root) NOPASSWD: ALL`; etcd-bootstrap never types a password)"
    )]
    Sudo { destination: String, stderr: String },
    /// The script ran past its bound and was stopped.
    #[error("no answer within {}s; stopped it", .limit.as_secs())]
    TimedOut { limit: std::time::Duration },
    /// The script ran and failed.
    #[error("{what} failed (exit {status}): {stderr}")]
    Failed { what: String, status: String, stderr: String },
    /// A local file to send could not be read, or a local write failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Files written here (a member on this machine) through pki's atomic writer.
    #[error(transparent)]
    Write(#[from] pki::PkiError),
    /// The host is not one the spec names.
    #[error("not a member of the spec")]
    Unknown,
}

pub type Result<T, E = BootError> = std::result::Result<T, E>;

/// `map_err(io("read", path))`: an I/O error on a local file, keeping its cause.
pub fn io<P: AsRef<std::path::Path>>(op: &'static str, path: P) -> impl FnOnce(std::io::Error) -> BootError {
    move |source| BootError::Io { path: path.as_ref().to_path_buf(), op, source }
}

fn causes_text(causes: &[String]) -> String {
    if causes.is_empty() {
        return "; their logs name no cause this tool recognises (see each member's log)".into();
    }
    causes.iter().map(|c| format!("\n  likely cause: {c}")).collect()
}

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
    /// A command on a member's host failed.
    #[error("member {member} ({host}): {reason}")]
    Host { member: String, host: String, reason: String },
    /// Certificates could not be issued.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The cluster did not become healthy in time.
    #[error("{0}")]
    NotHealthy(String),
    /// Writing an output file failed.
    #[error("{path}: {reason}")]
    Output { path: String, reason: String },
}

pub type Result<T, E = BootError> = std::result::Result<T, E>;

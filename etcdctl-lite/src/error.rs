//! Errors users can act on. Every variant names the endpoint or file it is about; TLS failures
//! are translated into what went wrong and what to check (see `diagnose`).

/// Everything an etcdctl-lite operation can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// A flag or environment value is wrong.
    #[error("{0}")]
    Usage(String),
    /// A file given on the command line cannot be used.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// An endpoint failed; `reason` is already translated for humans.
    #[error("{endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    /// Every endpoint failed.
    #[error("no endpoint answered:\n  {}", .0.join("\n  "))]
    NoEndpoint(Vec<String>),
    /// The cluster refused the request (etcd's own message, with context).
    #[error("{0}")]
    Refused(String),
}

pub type Result<T, E = CtlError> = std::result::Result<T, E>;

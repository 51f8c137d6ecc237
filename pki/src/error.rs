//! The one error type of the `pki` library. Every variant names the input it is about
//! (a file, a field, a member) and, where there is one, what the user can do about it.

use std::path::PathBuf;

/// Everything that can go wrong while creating, loading, issuing or writing certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    /// A file could not be written (nothing was left half-written).
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    /// Another process holds the directory's lock.
    #[error("{path} is busy: another pki or etcd-bootstrap run is writing it (waited {}s); try again when it has finished", .waited.as_secs())]
    Busy { path: PathBuf, waited: std::time::Duration },

    /// A file that must not be replaced silently already exists.
    #[error("{path} already exists; {hint}")]
    Exists { path: PathBuf, hint: String },

    /// PEM or DER input that is not what it should be.
    #[error("{what}: {reason}")]
    BadInput { what: String, reason: String },

    /// A JSON document (cfssl CSR or ca-config) is malformed or has unknown keys.
    #[error("{file}: {reason}")]
    Json { file: String, reason: String },

    /// The CA is unusable (not a CA, key mismatch, expired, cannot sign).
    #[error("CA {what}: {reason}")]
    BadCa { what: String, reason: String },

    /// A request that the CA refuses (leaf outliving the CA, bad host, unknown profile).
    #[error("{0}")]
    Refused(String),

    /// The cluster description is invalid; every problem is listed.
    #[error("invalid cluster description:\n  - {}", .0.join("\n  - "))]
    InvalidCluster(Vec<String>),

    /// Certificate generation failed inside the crypto library.
    #[error("{what}: {reason}")]
    Crypto { what: String, reason: String },
}

impl PkiError {
    pub(crate) fn bad_input(what: impl Into<String>, reason: impl ToString) -> Self {
        PkiError::BadInput { what: what.into(), reason: reason.to_string() }
    }
    pub(crate) fn crypto(what: impl Into<String>, reason: impl ToString) -> Self {
        PkiError::Crypto { what: what.into(), reason: reason.to_string() }
    }
    pub(crate) fn bad_ca(what: impl Into<String>, reason: impl ToString) -> Self {
        PkiError::BadCa { what: what.into(), reason: reason.to_string() }
    }
}

pub type Result<T, E = PkiError> = std::result::Result<T, E>;

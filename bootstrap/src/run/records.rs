//! The progress records the resumable operations keep beside the operator's PKI
//! (`pki/etcd/ca-rotation.json`, `restore.json`, `upgrade.json`): read by the runtime to say what
//! is under way, written by the operations. Below the runtime, so `context` needs no operation.

use crate::error::{BootError, Result};
use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// An operation's progress record (`pki/etcd/NAME.json`), if one is there. A damaged record is
/// an error that says what it was for: an operation never guesses where it stands.
pub(crate) fn load_record<T: serde::de::DeserializeOwned>(path: &std::path::Path, what: &str) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|source| BootError::Record { path: path.to_path_buf(), what: what.to_string(), source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::error::io("read", path)(e)),
    }
}

/// Writes an operation's progress record atomically.
pub(crate) fn save_record<T: serde::Serialize>(path: &std::path::Path, record: &T, mode: u32) -> Result<()> {
    let json =
        serde_json::to_string_pretty(record).map_err(|source| BootError::Record { path: path.to_path_buf(), what: "this operation".into(), source })? + "\n";
    pki::files::write_atomic(path, json.as_bytes(), mode)?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    TrustBoth,
    Reissue,
    DropOld,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotationState {
    pub phase: Phase,
    /// Members finished in the current phase.
    pub done: Vec<String>,
    /// Leaves re-issued by the new CA (phase 2, operator side).
    #[serde(default)]
    pub reissued: bool,
    /// The previous phase is finished and the operator has been told to update kube-apiserver;
    /// `--continue` goes on.
    #[serde(default)]
    pub waiting_for_operator: bool,
}

/// Where the CA rotation's record is.
pub(crate) fn state_path(plan: &Plan) -> PathBuf {
    plan.issue.dir.join("etcd").join("ca-rotation.json")
}

/// The recorded rotation, if one is under way.
pub fn current(plan: &Plan) -> Result<Option<RotationState>> {
    load_record(&state_path(plan), "the CA rotation (compare ca.crt and ca-new.crt by hand)")
}

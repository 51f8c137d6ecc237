//! `snapshot save FILE`: streams a snapshot from one healthy member into a temporary file beside
//! FILE, checks etcd's own SHA-256 trailer, flushes it, and renames it into place.

use crate::connect::client_for;
use crate::error::{CtlError, Result};
use crate::ops::{health, status};
use crate::options::ClientOptions;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What was saved.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SavedSnapshot {
    pub path: String,
    pub endpoint: String,
    pub bytes: u64,
    pub sha256: String,
    /// The source member's revision when the stream started.
    pub revision: i64,
    /// Whether the source passed a health check (quorum, leader, no alarm); a snapshot is still
    /// taken from a member that only answers the Maintenance API.
    pub healthy: bool,
    /// Why the cluster was not healthy, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

pub async fn save(opts: &ClientOptions, path: &Path) -> Result<SavedSnapshot> {
    if path.exists() {
        return Err(CtlError::File {
            path: path.display().to_string(),
            reason: "already exists; choose another name (snapshots are never overwritten)".into(),
        });
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(CtlError::File { path: dir.display().to_string(), reason: "directory does not exist".into() });
    }
    let tmp = dir.join(format!(".{}.part-{}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    let result = async {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600) // a snapshot holds every key in the cluster, secrets included
            .open(&tmp)
            .map_err(|e| CtlError::File { path: tmp.display().to_string(), reason: e.to_string() })?;
        let mut saved = save_into(opts, &mut file, &tmp.display().to_string()).await?;
        file.sync_all().map_err(|e| CtlError::File { path: tmp.display().to_string(), reason: e.to_string() })?;
        std::fs::rename(&tmp, path).map_err(|e| CtlError::File { path: path.display().to_string(), reason: e.to_string() })?;
        saved.path = path.display().to_string();
        Ok(saved)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Streams a snapshot from a healthy member (any member that answers when none is) into `out`,
/// checking etcd's SHA-256 trailer as it arrives; `label` names `out` in errors. The caller
/// makes `out` durable (or keeps it in memory: an encrypted backup never writes it in the clear).
pub async fn save_into(opts: &ClientOptions, out: &mut impl Write, label: &str) -> Result<SavedSnapshot> {
    // A healthy member first; without one (no quorum, NOSPACE), any member that answers the
    // Maintenance API: a backup is needed most exactly then.
    let (checks, statuses) = tokio::join!(health(opts), status(opts));
    let healthy = checks.iter().find(|h| h.healthy()).map(|h| h.endpoint.clone());
    let answering = statuses.iter().find(|s| s.result.is_ok()).map(|s| s.endpoint.clone());
    let Some(source) = healthy.clone().or(answering) else {
        // why no member can be the source: none answered the Maintenance API
        return Err(CtlError::NoEndpoint(
            statuses.iter().map(|s| format!("{}: {}", s.endpoint, s.result.as_ref().err().map(|f| f.message.as_str()).unwrap_or(""))).collect(),
        ));
    };
    let warning = healthy.is_none().then(|| {
        let why: Vec<String> =
            checks.iter().map(|h| format!("{}: {}", h.endpoint, h.result.as_ref().err().map(|f| f.message.as_str()).unwrap_or("healthy"))).collect();
        format!("the cluster is not healthy ({}); the snapshot holds what {source} had applied", why.join("; "))
    });
    let revision = statuses.iter().find(|s| s.endpoint == source).and_then(|s| s.result.as_ref().ok()).map(|s| s.revision).unwrap_or(0);
    let mut client = client_for(&source, opts).await?;
    let ep_err = |reason: String| CtlError::Endpoint { endpoint: source.clone(), reason };
    let mut stream = client.snapshot().await.map_err(|e| ep_err(e.to_string()))?;
    let mut data_hash = Sha256::new();
    // the file's own SHA-256 (what the output reports) on a second core, beside the trailer check
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
    let whole = std::thread::spawn(move || {
        let mut h = Sha256::new();
        for chunk in rx {
            h.update(&chunk);
        }
        h.finalize()
    });
    let mut tail: Vec<u8> = Vec::new(); // the last 32 bytes seen: etcd's SHA-256 of the rest
    let mut bytes = 0u64;
    while let Some(msg) = stream.message().await.map_err(|e| ep_err(format!("snapshot stream broke: {e}")))? {
        let blob = msg.blob();
        out.write_all(blob).map_err(|e| CtlError::File { path: label.to_string(), reason: e.to_string() })?;
        let _ = tx.send(blob.to_vec());
        bytes += blob.len() as u64;
        tail.extend_from_slice(blob);
        if tail.len() > 32 {
            let cut = tail.len() - 32;
            data_hash.update(&tail[..cut]);
            tail.drain(..cut);
        }
    }
    drop(tx);
    let whole = whole.join().map_err(|_| ep_err("hashing the snapshot failed".into()))?;
    if bytes < 32 || data_hash.finalize()[..] != tail[..] {
        return Err(ep_err("the snapshot's SHA-256 trailer does not match its data (corrupt or truncated stream)".into()));
    }
    Ok(SavedSnapshot {
        path: label.to_string(),
        endpoint: source.clone(),
        bytes,
        sha256: hex::encode(whole),
        revision,
        healthy: warning.is_none(),
        warning: warning.clone(),
    })
}

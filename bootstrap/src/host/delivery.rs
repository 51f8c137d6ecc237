//! etcd delivered to the members, as etcdadm and kubespray do: the spec names an official
//! `etcd-vX.Y.Z-linux-amd64.tar.gz` (a local path or an https URL) with its sha256, or a folder
//! holding the binaries. `up` verifies it once on the operator's machine — before any host is
//! contacted — and each member gets `etcd`, `etcdctl` (and `etcdutl` from 3.5) in its `bin_dir`,
//! mode 0755; binaries already there with the same contents are not sent again, and the version
//! each member then reports is checked.

use crate::error::{BootError, Result};
use crate::spec::versions::Version;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The binaries a member gets; `etcdutl` exists from 3.5 on.
pub const NAMES: [&str; 3] = ["etcd", "etcdctl", "etcdutl"];
/// The largest binary accepted from an archive (etcd 3.5's is 23 MB).
const MAX_BINARY: u64 = 256 << 20;

/// Verified binaries, ready to deliver.
#[derive(Clone)]
pub struct EtcdRelease {
    pub version: Version,
    /// (name, contents, sha256 hex)
    pub binaries: Vec<(String, Vec<u8>, String)>,
    /// Where they came from, for messages.
    pub source: String,
}

impl std::fmt::Debug for EtcdRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EtcdRelease({} from {})", self.version, self.source)
    }
}

fn err(source: &str, reason: impl std::fmt::Display) -> BootError {
    BootError::Output { path: format!("etcd_archive {source}"), reason: reason.to_string() }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads and verifies what the spec names. `base` resolves a relative path (the spec's folder);
/// `workdir` is where a download goes.
pub fn prepare(archive: &str, sha256: Option<&str>, base: &Path, workdir: &Path) -> Result<EtcdRelease> {
    let (path, downloaded) = if archive.starts_with("https://") {
        (download(archive, workdir)?, true)
    } else {
        let p = Path::new(archive);
        (if p.is_absolute() { p.to_path_buf() } else { base.join(p) }, false)
    };
    let result = if path.is_dir() { from_folder(&path, sha256, archive) } else { from_archive(&path, sha256, archive) };
    if downloaded {
        let _ = std::fs::remove_file(&path);
    }
    result
}

/// `curl` on the operator's machine (https only, no redirects to other schemes, bounded).
fn download(url: &str, workdir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(workdir).map_err(|e| err(url, e))?;
    let dest = workdir.join(format!(".etcd-download-{}", std::process::id()));
    let out = std::process::Command::new("curl")
        .args(["-fsSL", "--proto", "=https", "--proto-redir", "=https", "--max-time", "600", "-o"])
        .arg(&dest)
        .arg("--")
        .arg(url)
        .output()
        .map_err(|e| err(url, format!("cannot run curl: {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&dest);
        return Err(err(url, format!("download failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(dest)
}

fn check_sha(source: &str, bytes: &[u8], want: Option<&str>, required: bool) -> Result<()> {
    match want {
        Some(w) => {
            let got = sha256_hex(bytes);
            if !got.eq_ignore_ascii_case(w.trim()) {
                return Err(err(source, format!("sha256 is {got}, the spec says {w}; nothing was sent to any member")));
            }
            Ok(())
        }
        None if required => Err(err(source, "an archive needs etcd_sha256 (the checksum from etcd's release page)")),
        None => Ok(()),
    }
}

/// An official release archive: `etcd-vX.Y.Z-linux-amd64/{etcd,etcdctl,etcdutl}`.
fn from_archive(path: &Path, sha256: Option<&str>, source: &str) -> Result<EtcdRelease> {
    let bytes = std::fs::read(path).map_err(|e| err(source, format!("{}: {e}", path.display())))?;
    check_sha(source, &bytes, sha256, true)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut binaries = Vec::new();
    let mut version = None;
    for entry in tar.entries().map_err(|e| err(source, format!("not a .tar.gz: {e}")))? {
        let mut entry = entry.map_err(|e| err(source, format!("not a .tar.gz: {e}")))?;
        let name = entry.path().map_err(|e| err(source, e))?.to_path_buf();
        let (Some(dir), Some(file)) = (name.parent().and_then(|d| d.to_str()), name.file_name().and_then(|f| f.to_str())) else { continue };
        if !NAMES.contains(&file) || dir.contains('/') {
            continue;
        }
        if let Some(v) = dir.strip_prefix("etcd-").and_then(|d| d.strip_suffix("-linux-amd64")).and_then(Version::parse) {
            version = Some(v);
        }
        if entry.size() > MAX_BINARY {
            return Err(err(source, format!("{} is larger than {} MB", name.display(), MAX_BINARY >> 20)));
        }
        let mut data = Vec::new();
        entry.by_ref().take(MAX_BINARY).read_to_end(&mut data).map_err(|e| err(source, e))?;
        let sha = sha256_hex(&data);
        binaries.push((file.to_string(), data, sha));
    }
    let version = version.ok_or_else(|| err(source, "no etcd-vX.Y.Z-linux-amd64/ folder inside: not an official etcd release archive"))?;
    finish(source, version, binaries)
}

/// A folder with the binaries (its `etcd --version` names the version).
fn from_folder(dir: &Path, sha256: Option<&str>, source: &str) -> Result<EtcdRelease> {
    let mut binaries = Vec::new();
    for name in NAMES {
        let p = dir.join(name);
        match std::fs::read(&p) {
            Ok(data) => {
                let sha = sha256_hex(&data);
                binaries.push((name.to_string(), data, sha));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(source, format!("{}: {e}", p.display()))),
        }
    }
    if let Some((_, data, _)) = binaries.iter().find(|(n, _, _)| n == "etcd") {
        check_sha(source, data, sha256, false)?;
    }
    let out = std::process::Command::new(dir.join("etcd"))
        .arg("--version")
        .output()
        .map_err(|e| err(source, format!("cannot run {}/etcd --version: {e}", dir.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version =
        crate::spec::versions::etcd_version_output(&text).ok_or_else(|| err(source, format!("{}/etcd --version printed no version", dir.display())))?;
    finish(source, version, binaries)
}

fn finish(source: &str, version: Version, binaries: Vec<(String, Vec<u8>, String)>) -> Result<EtcdRelease> {
    for need in ["etcd", "etcdctl"] {
        if !binaries.iter().any(|(n, _, _)| n == need) {
            return Err(err(source, format!("{need} is missing")));
        }
    }
    if version >= Version(3, 5, 0) && !binaries.iter().any(|(n, _, _)| n == "etcdutl") {
        return Err(err(source, "etcdutl is missing (etcd 3.5 and later ship it)"));
    }
    Ok(EtcdRelease { version, binaries, source: source.to_string() })
}

/// Prints `have NAME SHA256` for each binary already in `bin_dir` (one round trip).
pub fn probe_script(bin_dir: &Path) -> String {
    use crate::host::script::{Script, body};
    Script::of(body::BINARIES_PRESENT).set("bin_dir", bin_dir.display().to_string()).set_words("names", NAMES).text()
}

/// The binaries a member lacks or holds other contents for, as deliveries (mode 0755).
pub fn to_send(release: &EtcdRelease, bin_dir: &Path, probe_stdout: &str) -> Vec<(String, u32, Vec<u8>)> {
    release
        .binaries
        .iter()
        .filter(|(name, _, sha)| !probe_stdout.lines().any(|l| l == format!("have {name} {sha}")))
        .map(|(name, data, _)| (bin_dir.join(name).display().to_string(), 0o755, data.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(dir: &Path, top: &str, files: &[(&str, &[u8])]) -> (PathBuf, String) {
        let path = dir.join("etcd.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            t.append_data(&mut h, format!("{top}/{name}"), *data).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap();
        let sha = sha256_hex(&std::fs::read(&path).unwrap());
        (path, sha)
    }

    #[test]
    fn an_official_archive_is_verified_and_unpacked() {
        let d = tempfile::tempdir().unwrap();
        let (p, sha) = archive(d.path(), "etcd-v3.5.1-linux-amd64", &[("etcd", b"E"), ("etcdctl", b"C"), ("etcdutl", b"U"), ("README.md", b"r")]);
        let r = prepare(p.to_str().unwrap(), Some(&sha), d.path(), d.path()).unwrap();
        assert_eq!(r.version, Version(3, 5, 1));
        assert_eq!(r.binaries.iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(), ["etcd", "etcdctl", "etcdutl"]);
        // unchanged binaries are not sent again
        let probe = format!("have etcd {}\nhave etcdctl 00\n", sha256_hex(b"E"));
        let send = to_send(&r, Path::new("/opt/etcd/bin"), &probe);
        assert_eq!(send.iter().map(|(p, m, _)| (p.as_str(), *m)).collect::<Vec<_>>(), [("/opt/etcd/bin/etcdctl", 0o755), ("/opt/etcd/bin/etcdutl", 0o755)]);
    }

    #[test]
    fn a_wrong_checksum_or_a_foreign_archive_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (p, _) = archive(d.path(), "etcd-v3.5.1-linux-amd64", &[("etcd", b"E"), ("etcdctl", b"C"), ("etcdutl", b"U")]);
        let e = prepare(p.to_str().unwrap(), Some(&"0".repeat(64)), d.path(), d.path()).unwrap_err().to_string();
        assert!(e.contains("sha256 is") && e.contains("nothing was sent"), "{e}");
        let e = prepare(p.to_str().unwrap(), None, d.path(), d.path()).unwrap_err().to_string();
        assert!(e.contains("needs etcd_sha256"), "{e}");
        let (p, sha) = archive(d.path(), "something-else", &[("etcd", b"E")]);
        let e = prepare(p.to_str().unwrap(), Some(&sha), d.path(), d.path()).unwrap_err().to_string();
        assert!(e.contains("not an official etcd release archive"), "{e}");
        let (p, sha) = archive(d.path(), "etcd-v3.5.1-linux-amd64", &[("etcd", b"E"), ("etcdctl", b"C")]);
        assert!(prepare(p.to_str().unwrap(), Some(&sha), d.path(), d.path()).unwrap_err().to_string().contains("etcdutl is missing"));
        std::fs::write(d.path().join("garbage.tar.gz"), b"not gzip").unwrap();
        let sha = sha256_hex(b"not gzip");
        assert!(prepare("garbage.tar.gz", Some(&sha), d.path(), d.path()).is_err());
    }

    #[test]
    fn the_probe_script_finds_binaries_in_a_folder_whose_name_is_a_payload() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("etcd bin $(touch CANARY)");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("etcdctl"), b"ctl").unwrap();
        let out = std::process::Command::new("bash").arg("-c").arg(probe_script(&bin)).current_dir(d.path()).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("have etcdctl {}\n", sha256_hex(b"ctl")));
        assert!(!d.path().join("CANARY").exists());
    }
}

//! Encrypted backups with age (age-encryption.org/v1, readable by the `age` and `rage` CLIs): the
//! recipients and identities people already have (`age1...` X25519 keys, SSH public and private
//! keys), and a snapshot that is never written in the clear on this machine. The plaintext lives
//! in an anonymous in-memory file (memfd) while it is verified and encrypted, and again while a
//! restore decrypts it and sends it to the members' hosts.

use crate::error::{BootError, Result};
use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// What every age file starts with (binary form), and its ASCII-armored form.
const AGE_HEADER: &[u8] = b"age-encryption.org/v1\n";
const AGE_ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// The recipients a backup is encrypted to, parsed at the boundary.
pub struct Recipients(Vec<Box<dyn age::Recipient + Send>>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({})", self.0.len())
    }
}

impl Recipients {
    /// `age1...` X25519 public keys and SSH public keys (`ssh-ed25519 AAAA...`, `ssh-rsa ...`);
    /// each value that is neither is named.
    pub fn parse(values: &[String]) -> std::result::Result<Recipients, String> {
        let mut out: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
        for v in values {
            let v = v.trim();
            if let Ok(r) = v.parse::<age::x25519::Recipient>() {
                out.push(Box::new(r));
            } else if let Ok(r) = v.parse::<age::ssh::Recipient>() {
                out.push(Box::new(r));
            } else {
                let shown: String = v.chars().take(40).collect();
                return Err(format!("{shown:?} is neither an age public key (age1...) nor an SSH public key (ssh-ed25519 AAAA... / ssh-rsa AAAA...)"));
            }
        }
        if out.is_empty() {
            return Err("give at least one recipient".into());
        }
        Ok(Recipients(out))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> BootError {
    BootError::Output { path: path.display().to_string(), reason: reason.to_string() }
}

/// An anonymous file in memory: never on a filesystem, gone when dropped.
pub fn in_memory(name: &str) -> Result<File> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| file_err(Path::new(name), format!("cannot make an in-memory file: {e}")))?;
    Ok(File::from(fd))
}

/// A path this process can open `file` by (`/proc/self/fd/N`).
pub fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Encrypts `plain` (from its start) into a new file at `dest` (0600, never replacing one).
pub fn encrypt(plain: &mut File, dest: &Path, to: &Recipients) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    plain.rewind().map_err(|e| file_err(dest, e))?;
    let out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(dest).map_err(|e| file_err(dest, e))?;
    let encryptor = age::Encryptor::with_recipients(to.0.iter().map(|r| r.as_ref() as &dyn age::Recipient)).map_err(|e| file_err(dest, e))?;
    let mut w = encryptor.wrap_output(std::io::BufWriter::with_capacity(1 << 20, out)).map_err(|e| file_err(dest, e))?;
    let n = std::io::copy(&mut BufReader::with_capacity(1 << 20, plain), &mut w).map_err(|e| file_err(dest, e))?;
    let buffered = w.finish().map_err(|e| file_err(dest, e))?;
    let file = buffered.into_inner().map_err(|e| file_err(dest, e.error()))?;
    file.sync_all().map_err(|e| file_err(dest, e))?;
    Ok(n)
}

/// Whether the file at `path` is age-encrypted (binary or armored), from its first bytes.
pub fn is_encrypted(path: &Path) -> bool {
    let mut head = [0u8; 34];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    head[..n].starts_with(AGE_HEADER) || head[..n].starts_with(AGE_ARMOR)
}

/// The identities in `path`: an age identity file (`AGE-SECRET-KEY-1...` lines, as `age-keygen`
/// writes) or an unencrypted SSH private key.
pub fn identities(path: &Path) -> Result<Vec<Box<dyn age::Identity>>> {
    let text = std::fs::read(path).map_err(|e| file_err(path, e))?;
    if let Ok(file) = age::IdentityFile::from_buffer(&text[..])
        && let Ok(ids) = file.into_identities()
        && !ids.is_empty()
    {
        return Ok(ids.into_iter().map(|i| i as Box<dyn age::Identity>).collect());
    }
    match age::ssh::Identity::from_buffer(&text[..], Some(path.display().to_string())) {
        Ok(age::ssh::Identity::Unencrypted(k)) => Ok(vec![Box::new(age::ssh::Identity::Unencrypted(k))]),
        Ok(age::ssh::Identity::Encrypted(_)) => {
            Err(file_err(path, "is a passphrase-protected SSH key: give an unencrypted copy (or an age identity file) for the restore"))
        }
        _ => Err(file_err(path, "holds no age identity (AGE-SECRET-KEY-1...) and no SSH private key")),
    }
}

/// Decrypts the age file `path` with `ids` into memory; the plaintext is never on a filesystem.
pub fn decrypt(path: &Path, ids: &[Box<dyn age::Identity>]) -> Result<File> {
    let input = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| file_err(path, e))?);
    let armored = age::armor::ArmoredReader::new(input);
    let decryptor = age::Decryptor::new_buffered(BufReader::new(armored)).map_err(|e| file_err(path, format!("not a readable age file: {e}")))?;
    let mut reader =
        decryptor.decrypt(ids.iter().map(|i| i.as_ref())).map_err(|e| file_err(path, format!("cannot decrypt it with the given identity: {e}")))?;
    let mut plain = in_memory("etcd-bootstrap-restore")?;
    std::io::copy(&mut reader, &mut plain).map_err(|e| file_err(path, format!("decryption failed (damaged or truncated file): {e}")))?;
    plain.flush().map_err(|e| file_err(path, e))?;
    plain.rewind().map_err(|e| file_err(path, e))?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_goes_through_memory_and_back_with_an_age_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = age::x25519::Identity::generate();
        let to = Recipients::parse(&[key.to_public().to_string()]).unwrap();
        let mut plain = in_memory("t").unwrap();
        plain.write_all(&[7u8; 100_000]).unwrap();
        let dest = dir.path().join("s.db.age");
        assert_eq!(encrypt(&mut plain, &dest, &to).unwrap(), 100_000);
        assert!(is_encrypted(&dest));
        // never replaces a file
        assert!(encrypt(&mut plain, &dest, &to).is_err());
        let idfile = dir.path().join("key.txt");
        std::fs::write(&idfile, format!("# created: now\n{}\n", age::secrecy::ExposeSecret::expose_secret(&key.to_string()))).unwrap();
        let mut back = decrypt(&dest, &identities(&idfile).unwrap()).unwrap();
        let mut bytes = Vec::new();
        back.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, vec![7u8; 100_000]);
        // another key cannot
        let other = dir.path().join("other.txt");
        std::fs::write(&other, age::secrecy::ExposeSecret::expose_secret(&age::x25519::Identity::generate().to_string())).unwrap();
        assert!(decrypt(&dest, &identities(&other).unwrap()).unwrap_err().to_string().contains("cannot decrypt it"));
    }

    #[test]
    fn recipients_that_are_not_keys_are_named() {
        let e = Recipients::parse(&["age1notakey".into()]).unwrap_err();
        assert!(e.contains("\"age1notakey\" is neither"), "{e}");
        assert!(Recipients::parse(&[]).is_err());
        let ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
        assert_eq!(Recipients::parse(&[ssh.into()]).unwrap().len(), 1);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, "hello").unwrap();
        assert!(!is_encrypted(&p));
        assert!(identities(&p).is_err());
    }
}

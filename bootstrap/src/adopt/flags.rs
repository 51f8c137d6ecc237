//! `adopt`'s command-line values, checked once before anything is read: each `--host
//! MEMBER=DEST`, the ssh options, the CA key against the CA, and the `-o` spec (a new file in a
//! folder root may write into).

use crate::error::{BootError, Result};
use std::path::{Path, PathBuf};

/// The flags as given.
pub struct Flags {
    pub endpoints: Vec<String>,
    pub cacert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hosts: Vec<String>,
    pub ssh_options: Vec<String>,
    pub output: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// `--become sudo`: the SSH users are not root.
    pub become_with: crate::spec::Become,
}

fn bad(flag: String) -> impl FnOnce(String) -> BootError {
    move |reason| BootError::BadArgument { flag, reason }
}

impl Flags {
    /// The read's request, or the first flag that is wrong.
    pub fn check(&self) -> Result<crate::adopt::Request> {
        let mut pairs = Vec::new();
        for h in &self.hosts {
            let flag = format!("--host {h:?}");
            let (member, dest) = h.split_once('=').ok_or_else(|| bad(flag.clone())("give MEMBER=DEST".into()))?;
            crate::spec::rules::no_control(member).map_err(bad(flag.clone()))?;
            if dest != "local" {
                crate::spec::rules::ssh_destination(dest).map_err(bad(flag))?;
            }
            pairs.push((member.to_string(), dest.to_string()));
        }
        crate::spec::rules::ssh_options(&self.ssh_options).map_err(bad("--ssh-option".into()))?;
        if let Some(k) = &self.ca_key {
            pki::ca::Ca::load_files(&self.cacert, k).map_err(|e| bad(format!("--ca-key {}", k.display()))(e.to_string()))?;
        }
        if let Some(o) = &self.output {
            if o.exists() {
                return Err(bad(format!("-o {}", o.display()))("exists; adopt never replaces a spec: give another path".into()));
            }
            let dir = o.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            crate::spec::rules::trusted_dir("-o", dir, pki::safe_fs::Writes::CreateExclusive)?;
        }
        Ok(crate::adopt::Request {
            endpoints: self.endpoints.clone(),
            cacert: self.cacert.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            hosts: pairs,
            ssh_options: self.ssh_options.clone(),
            become_with: self.become_with,
        })
    }
}

/// Writes the spec of what `adopt` found to `path` (a new file), for the operations that work in
/// place; refused, naming why, when the inventory cannot make one.
pub fn write_spec(inv: &crate::adopt::Inventory, req: &crate::adopt::Request, path: &Path, ca_key: Option<&Path>, name: Option<&str>) -> Result<()> {
    use crate::adopt::spec_out;
    let spec =
        spec_out::spec_of(inv, req, ca_key, name).map_err(|problems| bad(format!("-o {}", path.display()))(format!("not written: {}", problems.join("; "))))?;
    spec_out::write_new(&spec, path)
}

//! Loading a spec: read (bounded), parsed, checked once into types, operator paths resolved. Above
//! `spec` (what the operator wrote) and `spec_check` (its rules), so neither needs the other's
//! result type.

use crate::error::{BootError, Result};
use crate::spec::Spec;
use std::path::{Path, PathBuf};

/// A parsed and validated spec, with operator-side paths resolved against the spec file.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: Spec,
    pub file: String,
    pub pki_dir: PathBuf,
    pub output_dir: PathBuf,
    pub warnings: Vec<String>,
    /// The spec's string values as types, parsed once by [`Spec::check`].
    pub typed: crate::spec::check::Typed,
}

impl Spec {
    /// Reads, parses (YAML; JSON is YAML) and validates a spec file.
    pub fn load(path: &Path) -> Result<LoadedSpec> {
        let file = path.display().to_string();
        let bad = |reason: String| BootError::SpecFile { file: file.clone(), reason };
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::fs::File::open(path).map_err(|e| bad(e.to_string()))?, crate::spec::rules::MAX_SPEC_BYTES as u64 + 1),
            &mut text,
        )
        .map_err(|e| bad(e.to_string()))?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        match Spec::parse_all(&text) {
            (Some(spec), problems) if problems.is_empty() => spec.into_loaded(&file, base),
            // control characters: refused, and with them every other problem of the spec
            (Some(spec), mut problems) => {
                problems.extend(spec.check().err().unwrap_or_default());
                Err(BootError::InvalidSpec { file, problems })
            }
            (None, problems) => Err(bad(problems.join("; "))),
        }
    }

    /// Validates and resolves relative operator paths against `base`.
    pub fn into_loaded(mut self, file: &str, base: &Path) -> Result<LoadedSpec> {
        let (warnings, typed) = self.check().map_err(|problems| BootError::InvalidSpec { file: file.into(), problems })?;
        // the cluster-wide `become` where a member or node names none
        let default = self.become_with;
        self.members.iter_mut().for_each(|m| m.become_with = m.become_with.or(default));
        self.kubernetes.control_plane_nodes.iter_mut().for_each(|n| n.become_with = n.become_with.or(default));
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        Ok(LoadedSpec { pki_dir: resolve(&self.pki.dir), output_dir: resolve(&self.output_dir), spec: self, file: file.into(), warnings, typed })
    }
}

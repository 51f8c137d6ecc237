//! The operations on a live cluster, one module each, composed from the primitives of
//! [`crate::live`]. Each is idempotent or resumable: run again after an interruption, it
//! finishes the job; run on a cluster where the job is done, it changes nothing.
//!
//! Each runs in a [`crate::context::Ctx`] (the cluster's journal and lock) and says where its
//! checks end with `ctx.changing(..)`. None imports another: shared steps live below them
//! ([`crate::live`], [`crate::backups`], [`crate::lb`]); a test keeps it so.

pub mod backup;
pub mod down;
pub mod maintain;
pub mod replace;
pub mod restore;
pub mod rotate_ca;
pub mod rotate_certs;
pub mod status;
pub mod upgrade;
pub mod up;

#[cfg(test)]
#[path = "fake_tests.rs"]
mod fake_tests;

#[cfg(test)]
mod tests {
    /// ARCHITECTURE.md: `ops/*` never import each other (shared steps move below them).
    #[test]
    fn no_operation_imports_another() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
        let mut offenders = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name != "mod.rs" && text.contains("crate::ops::") {
                offenders.push(name);
            }
        }
        assert!(offenders.is_empty(), "ops that import another operation: {offenders:?}");
    }
}

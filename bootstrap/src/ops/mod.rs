//! The operations on a live cluster, one module each, composed from the primitives of
//! [`crate::run::live`]. Each is idempotent or resumable: run again after an interruption, it
//! finishes the job; run on a cluster where the job is done, it changes nothing.
//!
//! Each runs in a [`crate::run::context::Ctx`] (the cluster's journal and lock) and says where its
//! checks end with `ctx.changing(..)`. None imports another: shared steps live below them
//! ([`crate::run::live`], [`crate::backup`], [`crate::run::lb`]); a test keeps it so.

pub mod backup;
pub mod down;
pub mod downgrade;
pub mod maintain;
pub mod replace;
pub mod restore;
pub mod rotate_ca;
pub mod rotate_certs;
pub mod status;
pub mod up;
pub mod upgrade;

#[cfg(test)]
#[path = "fake_tests.rs"]
mod fake_tests;

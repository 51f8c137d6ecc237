//! `etcdctl-lite`: etcdctl's flags and `ETCDCTL_*` environment for the checks operators run every
//! day — endpoint health and status, members, alarms, snapshots — and a quorum verdict that tells
//! the truth when members are dead or hung, fast.
//!
//! etcd-client's responses become the plain structs of [`model`] at the boundary; the verdict
//! ([`quorum::verdict`]) is a pure function over them, and [`render`] prints them the way etcdctl
//! does (`-w simple|table|json`).
#![forbid(unsafe_code)]

pub mod bolt;
pub mod changes;
pub mod connect;
pub mod diagnose;
pub mod error;
pub mod maintenance;
pub mod model;
pub mod observe;
pub mod ops;
pub mod options;
pub mod quorum;
pub mod render;
pub mod snapshot;
pub mod snapshot_status;
pub mod version;

pub use error::{CtlError, Result};

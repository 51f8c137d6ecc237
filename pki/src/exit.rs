//! The exit codes of the toolkit's three binaries (`pki`, `etcdctl-lite`, `etcd-bootstrap`), by
//! name: one set, documented in the README's "Exit codes". It lives here because `pki` is the
//! crate the other two build on.
//!
//! Checks (`etcdctl-lite quorum`, `pki check-expiration`, `etcd-bootstrap status`, `certs
//! check`, `check lb`) follow the monitoring-plugin convention (Nagios): OK, WARNING, CRITICAL,
//! UNKNOWN. Every other command exits OK, FAILED or USAGE, and `etcd-bootstrap`'s operations
//! also REFUSED or BUSY.

/// Done; or a check found everything right.
pub const OK: u8 = 0;
/// A check found something to look at soon (DEGRADED, expiring, not ready yet).
pub const WARNING: u8 = 1;
/// A check found something broken now (NO-QUORUM, READ-ONLY, expired, unreachable).
pub const CRITICAL: u8 = 2;
/// A check could not be made.
pub const UNKNOWN: u8 = 3;
/// A command failed; its message says where it stopped and how to go on.
pub const FAILED: u8 = 1;
/// The command line cannot be parsed (clap's code).
pub const USAGE: u8 = 2;
/// Refused before any change: another operation is paused or unfinished.
pub const REFUSED: u8 = 4;
/// Another operation holds the cluster's lock: try again when it is done (sysexits' EX_TEMPFAIL).
pub const BUSY: u8 = 75;

//! `etcd-bootstrap`'s exit codes, by name (the README's "Exit codes" table).
//!
//! `status` keeps the monitoring-plugin verdict codes of `etcdctl-lite quorum` (0 HEALTHY,
//! 1 DEGRADED, 2 NO-QUORUM, 3 UNKNOWN); `certs check` and `check lb` keep theirs (0 ok, 1 warn,
//! 2 bad). Every other command exits with one of these.

/// Done.
pub const OK: u8 = 0;
/// The operation failed (the message says where it stopped and how to go on).
pub const FAILED: u8 = 1;
/// clap's exit code for a command line it cannot parse.
pub const USAGE: u8 = 2;
/// Refused before any change: another operation is paused or unfinished (the message names it
/// and the command that finishes it).
pub const REFUSED: u8 = 4;
/// Another operation holds the cluster lock; try again when it is done (sysexits' EX_TEMPFAIL).
pub const BUSY: u8 = 75;

//! The operations on a live cluster, one module each, composed from the primitives of
//! [`crate::live`]. Each is idempotent or resumable: run again after an interruption, it
//! finishes the job; run on a cluster where the job is done, it changes nothing.

pub mod backup;
pub mod check_lb;
pub mod down;
pub mod maintain;
pub mod replace;
pub mod restore;
pub mod rotate_ca;
pub mod rotate_certs;
pub mod status;
pub mod upgrade;
pub mod up;

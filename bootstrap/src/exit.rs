//! `etcd-bootstrap`'s exit codes: the toolkit's one set, [`pki::exit`] (the README's "Exit
//! codes").

pub use pki::exit::*;

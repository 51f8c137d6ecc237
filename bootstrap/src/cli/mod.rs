//! What the `etcd-bootstrap` binary prints and how it reads its own flags: one [`Format`] for
//! every `-w`, and a summary per operation ([`summary`]) that is either a table for people or
//! JSON for programs — pure functions from reports to text, pinned by golden files. The binary
//! parses, calls one library function per command, prints one of these and exits with its code.

pub mod summary;

pub use crate::format::Format;

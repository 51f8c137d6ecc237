//! The members' hosts: the bash scripts run there ([`scripts`], [`scripts_adopted`] for adopted
//! members, [`preflight`]), how they get there ([`transport`]: this machine or OpenSSH), and the
//! etcd release delivered to them ([`delivery`]). Tested without a host.

pub mod delivery;
pub mod preflight;
pub mod script;
pub mod scripts;
pub mod scripts_adopted;
pub mod transport;

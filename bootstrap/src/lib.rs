//! `etcd-bootstrap`: from one cluster spec to a verified external etcd cluster and the kubeadm
//! and HAProxy configs that point the Kubernetes control plane at it.
//!
//! spec ([`spec`]) → pure plan ([`plan`]) → effects: one module per operation in [`ops`], over the
//! live-cluster primitives of [`live`], through small seams: a
//! [`transport::Transport`] per member (this machine, or the system OpenSSH client) that runs the
//! bash scripts of [`scripts`] (delivery, preflight, start/stop under a background-process or
//! systemd supervisor). The plan and the scripts are tested without a host.
#![forbid(unsafe_code)]

pub mod adopt;
pub mod backups;
pub mod context;
pub mod doctor;
pub mod error;
pub mod etcd_delivery;
pub mod etcd_view;
pub mod exit;
#[cfg(test)]
pub mod fakes;
pub mod formation;
pub mod haproxy;
pub mod in_place;
pub mod journal;
pub mod journal_store;
pub mod kubeadm;
pub mod lb;
pub mod live;
pub mod local;
pub mod offsite;
pub mod ops;
pub mod outputs;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod records;
pub mod rejoin;
pub mod rolling;
pub mod rules;
pub mod scripts;
pub mod scripts_adopted;
pub mod sealed;
pub mod spec;
pub mod spec_adopted;
pub mod spec_check;
pub mod spec_load;
pub mod transport;
pub mod tuning;
pub mod versions;

pub use error::{BootError, Result};

#[cfg(test)]
#[path = "layering_tests.rs"]
mod layering_tests;

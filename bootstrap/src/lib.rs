//! `etcd-bootstrap`: from one cluster spec to a verified external etcd cluster and the kubeadm
//! and HAProxy configs that point the Kubernetes control plane at it.
//!
//! A one-way stack of folders, read upwards (`layering_tests.rs` keeps it so): the vocabulary at
//! the root → [`spec`] (what the operator wrote, loaded, checked once, typed) → [`plan`] (pure) →
//! [`host`] (the bash run on members' hosts and how it gets there) → [`kube`] and [`adopt`] →
//! [`run`] (what every operation runs in: the journal, the lock, the seams to hosts and etcd) →
//! [`backup`] and [`in_place`] → [`ops`] (one module per operation) → [`doctor`].
#![forbid(unsafe_code)]

// the vocabulary: no module of the crate below these
pub mod error;
pub mod exit;
pub mod format;
pub mod formation;
pub mod journal;
pub mod progress;

pub mod spec;

pub mod plan;

pub mod host;

pub mod adopt;
pub mod kube;

pub mod run;

pub mod backup;
pub mod in_place;

pub mod ops;

pub mod doctor;

pub mod cli;

pub use error::{BootError, Result};

#[cfg(test)]
#[path = "layering_tests.rs"]
mod layering_tests;

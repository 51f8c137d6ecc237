//! `pki`: a strict certificate authority for etcd clusters.
//!
//! It creates or loads an etcd CA, issues kubeadm's etcd certificate set (a server and a peer
//! certificate per member, the shared `kube-apiserver-etcd-client` certificate, the healthcheck
//! client), writes it in kubeadm's or cfssl's layout with each member's folder holding only its
//! own keys, and speaks cfssl's and cfssljson's command lines. It does no network I/O.
//!
//! ```
//! use pki::{ca::{Ca, CaOptions}, cluster::{self, Member}, keys::KeyAlgorithm};
//! let ca = Ca::create(&CaOptions::default()).unwrap();
//! let members = vec![Member { name: "etcd-1".into(), ips: vec!["10.0.0.11".parse().unwrap()], dns_names: vec![] }];
//! let set = cluster::issue(&ca, &members, &cluster::all_roles(&members), KeyAlgorithm::EcdsaP256,
//!                          time::Duration::days(365)).unwrap();
//! assert_eq!(set.len(), 4); // server, peer, apiserver client, healthcheck client
//! ```
#![forbid(unsafe_code)]

pub mod bundle;
pub mod ca;
pub mod cfssl;
pub mod cli_docs;
pub mod cluster;
pub mod crl;
pub mod error;
pub mod exit;
pub mod expiry;
pub mod files;
pub mod hosts;
pub mod inspect;
pub mod keys;
pub mod layout;
pub mod lock;
pub mod pemfile;
pub mod renew;
pub mod safe_fs;
pub mod suggest;
pub mod usage;
pub mod validity;
pub mod verify;

pub use error::{PkiError, Result};

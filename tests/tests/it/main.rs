#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! One integration-test binary (ripgrep style): a module per area. Every test drives the real
//! binaries and checks their output with independent verifiers (openssl, cfssl, rustls, etcd).

mod adopt;
mod adopt_crash;
mod adopt_lab;
mod adopt_systemd;
mod adopt_versions;
mod bootstrap_local;
mod bootstrap_ssh;
mod cfssl_dropin;
mod check_lb;
mod cli_docs;
mod crash_matrix;
mod debian_package;
mod disaster_recovery;
mod doctor;
mod encrypted_backup;
mod etcd_tls;
mod etcdctl_lite;
mod hostile_dirs;
mod interlocks;
mod kubeadm_lab;
mod kubeadm_matrix;
mod kubeadm_reads;
mod lifecycle;
mod maintenance;
mod many_members;
mod never_formed;
mod offsite;
mod pki_bad_input;
mod pki_concurrency;
mod pki_interop;
mod pki_issue;
mod point_in_time;
mod tls_handshake;

//! The control plane's side: kubeadm's documents ([`kubeadm`]), HAProxy's configuration
//! ([`haproxy`]) and what `up` writes for kube-apiserver's nodes ([`outputs`]).

pub mod haproxy;
pub mod kubeadm;
pub mod outputs;

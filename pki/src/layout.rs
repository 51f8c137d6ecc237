//! Where each file of the set lives, in kubeadm's layout or cfssl's. Either way the tree has one
//! folder per member holding only that member's keys and the CA certificate (never the CA key),
//! and a `control-plane/` folder holding only what kube-apiserver needs.
//!
//! kubeadm layout (each folder mirrors `/etc/kubernetes/pki` on its machine):
//! ```text
//! etcd/ca.crt etcd/ca.key                        operator only: the CA
//! etcd/healthcheck-client.crt .key               operator/monitoring client
//! members/NAME/etcd/ca.crt server.crt server.key peer.crt peer.key
//! control-plane/etcd/ca.crt  control-plane/apiserver-etcd-client.crt .key
//! ```
//! cfssl layout (cfssljson names):
//! ```text
//! ca.pem ca-key.pem healthcheck-client.pem healthcheck-client-key.pem
//! members/NAME/ca.pem NAME.pem NAME-key.pem NAME-peer.pem NAME-peer-key.pem
//! control-plane/ca.pem apiserver-etcd-client.pem apiserver-etcd-client-key.pem
//! ```

use crate::cluster::Role;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    #[default]
    Kubeadm,
    Cfssl,
}

impl FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kubeadm" => Ok(Layout::Kubeadm),
            "cfssl" => Ok(Layout::Cfssl),
            other => Err(format!("unknown layout {other:?}; use kubeadm or cfssl")),
        }
    }
}

/// A certificate and key location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The paths of a PKI directory.
#[derive(Debug, Clone)]
pub struct PkiDir {
    pub root: PathBuf,
    pub layout: Layout,
}

impl PkiDir {
    pub fn new(root: impl Into<PathBuf>, layout: Layout) -> Self {
        PkiDir { root: root.into(), layout }
    }

    /// Detects the layout of an existing directory (cfssl if `ca.pem` is at the top).
    pub fn detect(root: &Path) -> Option<Layout> {
        if root.join("etcd/ca.crt").exists() {
            Some(Layout::Kubeadm)
        } else if root.join("ca.pem").exists() {
            Some(Layout::Cfssl)
        } else {
            None
        }
    }

    pub fn ca(&self) -> Pair {
        match self.layout {
            Layout::Kubeadm => self.pair("etcd/ca.crt", "etcd/ca.key"),
            Layout::Cfssl => self.pair("ca.pem", "ca-key.pem"),
        }
    }

    pub fn member_dir(&self, member: &str) -> PathBuf {
        self.root.join("members").join(member)
    }

    pub fn control_plane_dir(&self) -> PathBuf {
        self.root.join("control-plane")
    }

    /// The CA certificate copy inside a member's or the control plane's folder.
    pub fn ca_copy_in(&self, folder: &Path) -> PathBuf {
        match self.layout {
            Layout::Kubeadm => folder.join("etcd/ca.crt"),
            Layout::Cfssl => folder.join("ca.pem"),
        }
    }

    /// Where the certificate of `role` lives.
    pub fn leaf(&self, role: &Role) -> Pair {
        let k = self.layout == Layout::Kubeadm;
        match role {
            Role::Server(m) => {
                let d = self.member_dir(m);
                if k {
                    Pair { cert: d.join("etcd/server.crt"), key: d.join("etcd/server.key") }
                } else {
                    Pair { cert: d.join(format!("{m}.pem")), key: d.join(format!("{m}-key.pem")) }
                }
            }
            Role::Peer(m) => {
                let d = self.member_dir(m);
                if k {
                    Pair { cert: d.join("etcd/peer.crt"), key: d.join("etcd/peer.key") }
                } else {
                    Pair { cert: d.join(format!("{m}-peer.pem")), key: d.join(format!("{m}-peer-key.pem")) }
                }
            }
            Role::ApiserverEtcdClient => {
                let d = self.control_plane_dir();
                if k {
                    Pair { cert: d.join("apiserver-etcd-client.crt"), key: d.join("apiserver-etcd-client.key") }
                } else {
                    Pair { cert: d.join("apiserver-etcd-client.pem"), key: d.join("apiserver-etcd-client-key.pem") }
                }
            }
            Role::HealthcheckClient => {
                if k {
                    self.pair("etcd/healthcheck-client.crt", "etcd/healthcheck-client.key")
                } else {
                    self.pair("healthcheck-client.pem", "healthcheck-client-key.pem")
                }
            }
        }
    }

    fn pair(&self, cert: &str, key: &str) -> Pair {
        Pair { cert: self.root.join(cert), key: self.root.join(key) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_folders_hold_only_member_files() {
        for layout in [Layout::Kubeadm, Layout::Cfssl] {
            let d = PkiDir::new("/p", layout);
            let m = d.member_dir("etcd-1");
            assert!(d.leaf(&Role::Server("etcd-1".into())).key.starts_with(&m));
            assert!(d.leaf(&Role::Peer("etcd-1".into())).key.starts_with(&m));
            assert!(!d.ca().key.starts_with(&m));
            assert!(!d.leaf(&Role::ApiserverEtcdClient).key.starts_with(d.root.join("members")));
            assert!(d.leaf(&Role::ApiserverEtcdClient).key.starts_with(d.control_plane_dir()));
        }
        let k = PkiDir::new("/p", Layout::Kubeadm);
        assert_eq!(k.leaf(&Role::ApiserverEtcdClient).cert, PathBuf::from("/p/control-plane/apiserver-etcd-client.crt"));
        assert_eq!(k.ca_copy_in(&k.control_plane_dir()), PathBuf::from("/p/control-plane/etcd/ca.crt"));
    }
}

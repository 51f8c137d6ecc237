//! The embedded default for `up --local N`: an N-member TLS cluster on this machine's loopback
//! (members on 127.0.0.11, .12, ... with etcd's standard ports), everything under one folder,
//! members as background processes with pid files and logs until `down`.

use crate::spec::{KubernetesSpec, MemberSpec, NodeSpec, PkiSpec, Spec, Supervisor};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

pub fn spec(n: usize, dir: &Path) -> Spec {
    let members = (1..=n)
        .map(|i| {
            let name = format!("etcd-{i}");
            let home = dir.join("members").join(&name);
            MemberSpec {
                name,
                address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i as u8)),
                dns_names: vec![],
                client_port: 2379,
                peer_port: 2380,
                data_dir: home.join("data"),
                pki_dir: home.join("pki"),
                run_dir: home.clone(),
                host: "local".into(),
                ssh_options: vec![],
                supervisor: Some(Supervisor::Process),
            }
        })
        .collect();
    Spec {
        name: "local".into(),
        token: None,
        etcd_binary: "etcd".into(),
        pki: PkiSpec { dir: "pki".into(), ..PkiSpec::default() },
        output_dir: "out".into(),
        members,
        kubernetes: KubernetesSpec {
            // a release in support today (kubeadm reads v1beta4)
            version: "v1.35.0".into(),
            control_plane_endpoint: "127.0.0.100:6443".into(),
            cert_sans: vec![],
            pod_subnet: Some("10.244.0.0/16".into()),
            service_subnet: "10.96.0.0/12".into(),
            dns_domain: "cluster.local".into(),
            control_plane_nodes: (1..=3)
                .map(|i| NodeSpec { name: format!("cp-{i}"), address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 100 + i)), bind_port: 6443 })
                .collect(),
            load_balancer_ca_file: dir.join("out/haproxy/kubernetes-ca.crt"),
            cri_socket: "unix:///var/run/containerd/containerd.sock".into(),
            // a lab cluster runs whatever etcd this machine has, usually below kubeadm's minimum
            allow_old_etcd: true,
        },
    }
}

//! A real rustls mutual-TLS handshake (in memory, no sockets) with what `pki` issues: the server
//! certificate plus the apiserver client certificate are accepted; a client-only certificate
//! serving, a client certificate from another CA, and a wrong server name are refused.

use pki::ca::{Ca, CaOptions};
use pki::cluster::{self, IssuedLeaf, Member, Role};
use pki::keys::KeyAlgorithm;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use std::sync::Arc;

struct Set {
    ca: Ca,
    leaves: Vec<IssuedLeaf>,
}

fn set(algo: KeyAlgorithm) -> Set {
    let ca = Ca::create(&CaOptions { algorithm: algo, ..CaOptions::default() }).unwrap();
    let members = vec![Member { name: "etcd-1".into(), ips: vec!["10.1.0.1".parse().unwrap()], dns_names: vec![] }];
    let leaves = cluster::issue(&ca, &members, &cluster::all_roles(&members), algo, time::Duration::days(30)).unwrap();
    Set { ca, leaves }
}

impl Set {
    fn leaf(&self, role: &Role) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let l = self.leaves.iter().find(|l| &l.role == role).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(x509_parser::pem::parse_x509_pem(l.key.to_pkcs8_pem().as_bytes()).unwrap().1.contents);
        (vec![CertificateDer::from(l.cert.der.clone())], PrivateKeyDer::Pkcs8(key))
    }
    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(self.ca.cert_der().to_vec())).unwrap();
        Arc::new(roots)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which side refused, and why.
#[derive(Debug)]
enum Refusal {
    Client(rustls::Error),
    Server(rustls::Error),
}

fn handshake(server_set: &Set, server_role: &Role, client_set: &Set, client_role: &Role, name: &str) -> Result<(), Refusal> {
    let (chain, key) = server_set.leaf(server_role);
    let verifier = WebPkiClientVerifier::builder_with_provider(server_set.roots(), provider()).build().unwrap();
    let server_cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let (cchain, ckey) = client_set.leaf(client_role);
    let client_cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(server_set.roots())
        .with_client_auth_cert(cchain, ckey)
        .unwrap();
    let mut client = ClientConnection::new(Arc::new(client_cfg), ServerName::try_from(name.to_string()).unwrap()).unwrap();
    let mut server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().map_err(Refusal::Server)?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().map_err(Refusal::Client)?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            // the server saw and accepted the client's certificate
            assert!(server.peer_certificates().is_some_and(|c| !c.is_empty()));
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn server_and_apiserver_client_are_accepted_for_every_algorithm() {
    for algo in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa(2048)] {
        let s = set(algo);
        for name in ["10.1.0.1", "127.0.0.1", "::1", "localhost", "etcd-1"] {
            handshake(&s, &Role::Server("etcd-1".into()), &s, &Role::ApiserverEtcdClient, name).unwrap_or_else(|e| panic!("{algo} {name}: {e:?}"));
        }
        // peer certificates serve and dial
        handshake(&s, &Role::Peer("etcd-1".into()), &s, &Role::Peer("etcd-1".into()), "10.1.0.1").unwrap();
        handshake(&s, &Role::Server("etcd-1".into()), &s, &Role::HealthcheckClient, "10.1.0.1").unwrap();
    }
}

#[test]
fn client_only_certificate_is_refused_as_a_server() {
    let s = set(KeyAlgorithm::EcdsaP256);
    let e = handshake(&s, &Role::ApiserverEtcdClient, &s, &Role::HealthcheckClient, "kube-apiserver-etcd-client").unwrap_err();
    let text = format!("{e:?}");
    assert!(matches!(e, Refusal::Client(_)), "{text}");
    assert!(text.contains("ExtendedKeyUsage") || text.contains("Purpose") || text.contains("NotValidForName"), "{text}");
}

#[test]
fn client_certificate_from_another_ca_is_refused() {
    let ours = set(KeyAlgorithm::EcdsaP256);
    let theirs = set(KeyAlgorithm::EcdsaP256);
    let e = handshake(&ours, &Role::Server("etcd-1".into()), &theirs, &Role::ApiserverEtcdClient, "10.1.0.1").unwrap_err();
    // Both CAs are called CN=etcd-ca, as they would be: the signature, not the name, decides.
    assert!(matches!(&e, Refusal::Server(rustls::Error::InvalidCertificate(_))), "{e:?}");
}

#[test]
fn wrong_server_name_is_refused() {
    let s = set(KeyAlgorithm::EcdsaP256);
    let e = handshake(&s, &Role::Server("etcd-1".into()), &s, &Role::ApiserverEtcdClient, "10.9.9.9").unwrap_err();
    assert!(matches!(&e, Refusal::Client(rustls::Error::InvalidCertificate(_))), "{e:?}");
}

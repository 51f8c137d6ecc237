//! Private keys: generation for every algorithm etcd and kubeadm accept, loading of every format
//! that openssl, cfssl and kubeadm write, and writing in PKCS#8 or in cfssl's own formats.
//!
//! ring (rcgen's backend) signs with PKCS#8 keys only and cannot generate RSA keys, so RSA keys
//! are generated with aws-lc-rs (about 4x faster than Go's or the `rsa` crate's keygen here) and
//! everything is normalised to PKCS#8 on load.

use crate::error::{PkiError, Result};
use crate::pemfile;
use pkcs8::der::{Decode, Encode};
use rcgen::{KeyPair, SignatureAlgorithm};
use std::fmt;
use std::str::FromStr;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_ED25519: &str = "1.3.101.112";

/// A key algorithm with its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyAlgorithm {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    /// RSA with this many bits (2048, 3072 or 4096).
    Rsa(u32),
}

impl KeyAlgorithm {
    /// The names accepted on the command line and in spec files.
    pub const NAMES: &'static str = "ecdsa-p256 (default), ecdsa-p384, ed25519, rsa-2048, rsa-3072, rsa-4096";

    /// The signature algorithm a CA with this key signs with (cfssl's rule: the hash grows with
    /// the RSA key; ECDSA uses its curve's hash).
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::Rsa(bits) if bits >= 4096 => &rcgen::PKCS_RSA_SHA512,
            KeyAlgorithm::Rsa(bits) if bits >= 3072 => &rcgen::PKCS_RSA_SHA384,
            KeyAlgorithm::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// From cfssl's CSR JSON `"key": {"algo": ..., "size": ...}` (size 0 = cfssl's default).
    pub fn from_cfssl(algo: &str, size: u32) -> std::result::Result<Self, String> {
        match (algo, size) {
            ("ecdsa", 0 | 256) => Ok(KeyAlgorithm::EcdsaP256),
            ("ecdsa", 384) => Ok(KeyAlgorithm::EcdsaP384),
            ("ecdsa", 521) => Err("ECDSA P-521 is not supported (etcd's Go TLS stack and kubeadm do not use it); use 256 or 384".into()),
            ("ecdsa", s) => Err(format!("invalid ECDSA key size {s}; use 256 or 384")),
            ("rsa", 0) => Ok(KeyAlgorithm::Rsa(2048)),
            ("rsa", s @ (2048 | 3072 | 4096)) => Ok(KeyAlgorithm::Rsa(s)),
            ("rsa", s) if s < 2048 => Err(format!("RSA key size {s} is too small; use at least 2048")),
            ("rsa", s) => Err(format!("RSA key size {s} is not supported; use 2048, 3072 or 4096")),
            ("ed25519", 0 | 256) => Ok(KeyAlgorithm::Ed25519),
            ("ed25519", s) => Err(format!("ed25519 keys have no size choice (got {s})")),
            (other, _) => Err(format!("unknown key algo {other:?}; use \"ecdsa\", \"rsa\" or \"ed25519\"")),
        }
    }

    /// cfssl's `algo` word and size, for `print-defaults` and CSR JSON.
    pub fn cfssl_words(self) -> (&'static str, u32) {
        match self {
            KeyAlgorithm::EcdsaP256 => ("ecdsa", 256),
            KeyAlgorithm::EcdsaP384 => ("ecdsa", 384),
            KeyAlgorithm::Ed25519 => ("ed25519", 256),
            KeyAlgorithm::Rsa(b) => ("rsa", b),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::EcdsaP256 => f.write_str("ecdsa-p256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ecdsa-p384"),
            KeyAlgorithm::Ed25519 => f.write_str("ed25519"),
            KeyAlgorithm::Rsa(b) => write!(f, "rsa-{b}"),
        }
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        Ok(match norm.as_str() {
            "ecdsa" | "ecdsa-p256" | "p256" | "p-256" | "ecdsa-p-256" | "ecdsa-256" => KeyAlgorithm::EcdsaP256,
            "ecdsa-p384" | "p384" | "p-384" | "ecdsa-p-384" | "ecdsa-384" => KeyAlgorithm::EcdsaP384,
            "ed25519" => KeyAlgorithm::Ed25519,
            "rsa" | "rsa-2048" | "rsa2048" => KeyAlgorithm::Rsa(2048),
            "rsa-3072" | "rsa3072" => KeyAlgorithm::Rsa(3072),
            "rsa-4096" | "rsa4096" => KeyAlgorithm::Rsa(4096),
            _ => return Err(format!("unknown key algorithm {s:?}; use one of: {}", KeyAlgorithm::NAMES)),
        })
    }
}

impl TryFrom<String> for KeyAlgorithm {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<KeyAlgorithm> for String {
    fn from(a: KeyAlgorithm) -> String {
        a.to_string()
    }
}

/// A private key, held as PKCS#8 plus the ring key pair that signs with it.
pub struct PrivateKey {
    algorithm: KeyAlgorithm,
    pkcs8: Vec<u8>,
    key_pair: KeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.algorithm)
    }
}

impl PrivateKey {
    /// Generates a fresh key.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self> {
        let what = format!("generating a {algorithm} key");
        let pkcs8 = match algorithm {
            KeyAlgorithm::Rsa(bits) => {
                use aws_lc_rs::encoding::AsDer;
                let size = match bits {
                    2048 => aws_lc_rs::rsa::KeySize::Rsa2048,
                    3072 => aws_lc_rs::rsa::KeySize::Rsa3072,
                    4096 => aws_lc_rs::rsa::KeySize::Rsa4096,
                    other => return Err(PkiError::crypto(&what, format!("RSA keys of {other} bits are not generated; use 2048, 3072 or 4096"))),
                };
                let key = aws_lc_rs::rsa::KeyPair::generate(size).map_err(|e| PkiError::crypto(&what, e))?;
                key.as_der().map_err(|e| PkiError::crypto(&what, e))?.as_ref().to_vec()
            }
            _ => KeyPair::generate_for(algorithm.signature_algorithm()).map_err(|e| PkiError::crypto(&what, e))?.serialize_der(),
        };
        Self::from_pkcs8(pkcs8, algorithm, &what)
    }

    fn from_pkcs8(pkcs8: Vec<u8>, algorithm: KeyAlgorithm, what: &str) -> Result<Self> {
        let key_pair = KeyPair::from_pkcs8_der_and_sign_algo(&rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_slice()), algorithm.signature_algorithm())
            .map_err(|e| PkiError::bad_input(what, format!("key rejected by the signer: {e}")))?;
        Ok(PrivateKey { algorithm, pkcs8, key_pair })
    }

    /// Loads a key from PEM: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`), SEC1
    /// (`EC PRIVATE KEY`, also after an `EC PARAMETERS` block) or cfssl's `Ed25519 PRIVATE KEY`.
    /// `what` names the file in errors.
    pub fn from_pem(text: &[u8], what: &str) -> Result<Self> {
        let blocks = pemfile::blocks(text, what)?;
        if blocks.iter().any(|b| b.tag() == "ENCRYPTED PRIVATE KEY" || b.tag().contains("ENCRYPTED"))
            || String::from_utf8_lossy(text).contains("Proc-Type: 4,ENCRYPTED")
        {
            return Err(PkiError::bad_input(what, "the key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN.key)"));
        }
        let key = blocks.iter().find(|b| matches!(b.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "Ed25519 PRIVATE KEY"));
        let Some(block) = key else {
            return Err(PkiError::bad_input(what, format!("no private key found (found: {}); is this a certificate instead of a key?", pemfile::labels(text))));
        };
        let der = block.contents();
        match block.tag() {
            "PRIVATE KEY" | "Ed25519 PRIVATE KEY" => {
                let algorithm = pkcs8_algorithm(der, what)?;
                Self::from_pkcs8(der.to_vec(), algorithm, what)
            }
            "RSA PRIVATE KEY" => {
                let algorithm = rsa_algorithm(rsa_bits(der, what)?, what)?;
                let pkcs8 = wrap_pkcs8(OID_RSA, None, der, what)?;
                Self::from_pkcs8(pkcs8, algorithm, what)
            }
            _ => {
                let ec = sec1::EcPrivateKey::from_der(der).map_err(|e| PkiError::bad_input(what, format!("bad EC (SEC1) key: {e}")))?;
                let curve = match ec.parameters {
                    Some(sec1::EcParameters::NamedCurve(oid)) => oid.to_string(),
                    None => {
                        return Err(PkiError::bad_input(what, "EC key without curve parameters; convert it with `openssl pkey -in KEY -out KEY.pk8`"));
                    }
                };
                let algorithm = curve_algorithm(&curve, what)?;
                let pkcs8 = wrap_pkcs8(OID_EC_PUBLIC_KEY, Some(&curve), der, what)?;
                Self::from_pkcs8(pkcs8, algorithm, what)
            }
        }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The key pair rcgen signs with.
    pub fn key_pair(&self) -> &KeyPair {
        &self.key_pair
    }

    /// The raw public key, as it appears in a certificate's subjectPublicKey BIT STRING.
    pub fn public_key_raw(&self) -> &[u8] {
        self.key_pair.public_key_raw()
    }

    /// PKCS#8 `PRIVATE KEY` PEM: what this toolkit writes; openssl, Go (etcd) and kubeadm read it.
    pub fn to_pkcs8_pem(&self) -> String {
        pemfile::encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The format cfssl writes: PKCS#1 for RSA, SEC1 with curve parameters for ECDSA,
    /// PKCS#8 under cfssl's `Ed25519 PRIVATE KEY` label for Ed25519.
    pub fn to_cfssl_pem(&self) -> Result<String> {
        let what = "encoding the key in cfssl's format";
        let info = pkcs8::PrivateKeyInfo::from_der(&self.pkcs8).map_err(|e| PkiError::crypto(what, e))?;
        Ok(match self.algorithm {
            KeyAlgorithm::Rsa(_) => pemfile::encode("RSA PRIVATE KEY", info.private_key),
            KeyAlgorithm::Ed25519 => pemfile::encode("Ed25519 PRIVATE KEY", &self.pkcs8),
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let mut ec = sec1::EcPrivateKey::from_der(info.private_key).map_err(|e| PkiError::crypto(what, e))?;
                let curve = if self.algorithm == KeyAlgorithm::EcdsaP256 { OID_P256 } else { OID_P384 };
                let oid = pkcs8::ObjectIdentifier::new(curve).map_err(|e| PkiError::crypto(what, e))?;
                ec.parameters = Some(sec1::EcParameters::NamedCurve(oid));
                let der = ec.to_der().map_err(|e| PkiError::crypto(what, e))?;
                pemfile::encode("EC PRIVATE KEY", &der)
            }
        })
    }
}

fn rsa_algorithm(bits: u32, what: &str) -> Result<KeyAlgorithm> {
    match bits {
        2048 | 3072 | 4096 => Ok(KeyAlgorithm::Rsa(bits)),
        b if b < 2048 => Err(PkiError::bad_input(what, format!("RSA key of {b} bits is too weak; use at least 2048"))),
        b => Ok(KeyAlgorithm::Rsa(b)),
    }
}

/// The modulus size of a PKCS#1 RSA private key.
fn rsa_bits(pkcs1_der: &[u8], what: &str) -> Result<u32> {
    let key = pkcs1::RsaPrivateKey::from_der(pkcs1_der).map_err(|e| PkiError::bad_input(what, format!("bad RSA (PKCS#1) key: {e}")))?;
    let modulus = key.modulus.as_bytes();
    let leading_zero_bits = modulus.first().map(|b| b.leading_zeros()).unwrap_or(0);
    Ok((modulus.len() as u32 * 8).saturating_sub(leading_zero_bits))
}

fn curve_algorithm(curve_oid: &str, what: &str) -> Result<KeyAlgorithm> {
    match curve_oid {
        OID_P256 => Ok(KeyAlgorithm::EcdsaP256),
        OID_P384 => Ok(KeyAlgorithm::EcdsaP384),
        OID_P521 => Err(PkiError::bad_input(what, "ECDSA P-521 keys are not supported; use P-256 or P-384")),
        other => Err(PkiError::bad_input(what, format!("unsupported elliptic curve {other}; use P-256 or P-384"))),
    }
}

/// Reads the algorithm (and size) of a PKCS#8 key.
fn pkcs8_algorithm(der: &[u8], what: &str) -> Result<KeyAlgorithm> {
    let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(|e| PkiError::bad_input(what, format!("bad PKCS#8 key: {e}")))?;
    match info.algorithm.oid.to_string().as_str() {
        OID_RSA => rsa_algorithm(rsa_bits(info.private_key, what)?, what),
        OID_EC_PUBLIC_KEY => {
            let curve = info.algorithm.parameters_oid().map_err(|_| PkiError::bad_input(what, "EC key without a named curve"))?;
            curve_algorithm(&curve.to_string(), what)
        }
        OID_ED25519 => Ok(KeyAlgorithm::Ed25519),
        other => Err(PkiError::bad_input(what, format!("unsupported key algorithm OID {other}"))),
    }
}

fn wrap_pkcs8(algorithm_oid: &str, curve_oid: Option<&str>, key: &[u8], what: &str) -> Result<Vec<u8>> {
    let fail = |e: &dyn fmt::Display| PkiError::bad_input(what, format!("cannot convert the key to PKCS#8: {e}"));
    let oid = pkcs8::ObjectIdentifier::new(algorithm_oid).map_err(|e| fail(&e))?;
    let curve = curve_oid.map(pkcs8::ObjectIdentifier::new).transpose().map_err(|e| fail(&e))?;
    // RSA's AlgorithmIdentifier carries an explicit NULL parameter; EC carries the curve.
    let parameters = match &curve {
        Some(c) => Some(pkcs8::der::asn1::AnyRef::from(c)),
        None => Some(pkcs8::der::asn1::AnyRef::NULL),
    };
    let info = pkcs8::PrivateKeyInfo { algorithm: pkcs8::AlgorithmIdentifierRef { oid, parameters }, private_key: key, public_key: None };
    info.to_der().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_both_formats() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa(2048)] {
            let key = PrivateKey::generate(alg).unwrap();
            let again = PrivateKey::from_pem(key.to_pkcs8_pem().as_bytes(), "pkcs8").unwrap();
            assert_eq!(again.algorithm(), alg);
            assert_eq!(again.public_key_raw(), key.public_key_raw());
            let cfssl = key.to_cfssl_pem().unwrap();
            let again = PrivateKey::from_pem(cfssl.as_bytes(), "cfssl").unwrap();
            assert_eq!(again.algorithm(), alg, "{cfssl}");
            assert_eq!(again.public_key_raw(), key.public_key_raw());
        }
    }

    #[test]
    fn cfssl_labels() {
        let ec = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap().to_cfssl_pem().unwrap();
        assert!(ec.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        let ed = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap().to_cfssl_pem().unwrap();
        assert!(ed.starts_with("-----BEGIN Ed25519 PRIVATE KEY-----\n"));
    }

    #[test]
    fn a_certificate_is_not_a_key() {
        let e = PrivateKey::from_pem(b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n", "ca.crt").unwrap_err().to_string();
        assert!(e.contains("ca.crt") && e.contains("CERTIFICATE"), "{e}");
    }

    #[test]
    fn algorithm_names() {
        assert_eq!("rsa-4096".parse::<KeyAlgorithm>().unwrap(), KeyAlgorithm::Rsa(4096));
        assert_eq!("ECDSA-P384".parse::<KeyAlgorithm>().unwrap(), KeyAlgorithm::EcdsaP384);
        assert!("dsa".parse::<KeyAlgorithm>().unwrap_err().contains("ecdsa-p256"));
        assert_eq!(KeyAlgorithm::from_cfssl("rsa", 0).unwrap(), KeyAlgorithm::Rsa(2048));
        assert!(KeyAlgorithm::from_cfssl("rsa", 1024).is_err());
    }
}

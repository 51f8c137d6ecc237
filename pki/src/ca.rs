//! The certificate authority: create one, load one made by openssl/cfssl/kubeadm (and check it
//! really is a usable CA), and sign leaves under rules the CA — not the request — controls.

use crate::error::{PkiError, Result};
use crate::keys::{KeyAlgorithm, PrivateKey};
use crate::pemfile;
use crate::usage::UsageSet;
use crate::validity::human;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber};
use ring::rand::SecureRandom;
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// How far notBefore is set in the past, so members with slightly slow clocks accept new certs.
pub const BACKDATE: Duration = Duration::minutes(5);

/// Subject fields as cfssl's `names` carries them, plus the CN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    pub country: Vec<String>,
    pub state: Vec<String>,
    pub locality: Vec<String>,
    pub organization: Vec<String>,
    pub organizational_unit: Vec<String>,
}

impl Subject {
    pub fn cn(cn: impl Into<String>) -> Self {
        Subject { common_name: cn.into(), ..Default::default() }
    }

    /// The distinguished name in cfssl's order: C, ST, L, O, OU, CN.
    pub fn to_dn(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        for (ty, values) in [
            (DnType::CountryName, &self.country),
            (DnType::StateOrProvinceName, &self.state),
            (DnType::LocalityName, &self.locality),
            (DnType::OrganizationName, &self.organization),
            (DnType::OrganizationalUnitName, &self.organizational_unit),
        ] {
            for v in values {
                dn.push(ty.clone(), v.as_str());
            }
        }
        if !self.common_name.is_empty() {
            dn.push(DnType::CommonName, self.common_name.as_str());
        }
        dn
    }
}

/// What a new CA should be.
#[derive(Debug, Clone)]
pub struct CaOptions {
    pub subject: Subject,
    pub algorithm: KeyAlgorithm,
    pub validity: Duration,
    /// `Some(0)` = may sign only leaves (the default for an etcd CA); `None` = unconstrained.
    pub path_len: Option<u8>,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions { subject: Subject::cn("etcd-ca"), algorithm: KeyAlgorithm::EcdsaP256, validity: Duration::days(3650), path_len: Some(0) }
    }
}

/// What the CA puts into a leaf. Built by the CA's callers from a role or a cfssl profile;
/// never from the extensions a CSR asks for.
#[derive(Debug, Clone)]
pub struct LeafTemplate {
    pub subject: Subject,
    pub sans: Vec<SanType>,
    pub usages: UsageSet,
    pub validity: Duration,
    /// `Some` only for intermediate CAs signed through a cfssl profile with `ca_constraint`.
    pub ca_constraint: Option<BasicConstraints>,
}

/// A signed certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    pub der: Vec<u8>,
    pub pem: String,
}

/// A loaded or created CA, checked to be usable.
pub struct Ca {
    cert_der: Vec<u8>,
    cert_pem: String,
    key: PrivateKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    can_sign_crl: bool,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ca(not_after {}, key {})", self.not_after, self.key.algorithm())
    }
}

impl Ca {
    /// Creates a self-signed CA with a new key.
    pub fn create(opts: &CaOptions) -> Result<Ca> {
        let key = PrivateKey::generate(opts.algorithm)?;
        Self::create_with_key(opts, key)
    }

    /// Creates a self-signed CA with a given key (cfssl `gencert -initca` with `-ca-key`, renewal).
    pub fn create_with_key(opts: &CaOptions, key: PrivateKey) -> Result<Ca> {
        if opts.subject.common_name.trim().is_empty() {
            return Err(PkiError::Refused("a CA needs a common name (CN)".into()));
        }
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = opts.subject.to_dn();
        params.not_before = now - BACKDATE;
        params.not_after = now
            .checked_add(opts.validity)
            .filter(|t| t.year() <= 9999)
            .ok_or_else(|| PkiError::Refused(format!("CA validity {} reaches past the year 9999", human(opts.validity))))?;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::Ca(match opts.path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(key.key_pair()).map_err(|e| PkiError::crypto(format!("signing CA {:?}", opts.subject.common_name), e))?;
        Self::from_parts(cert.der().to_vec(), key, "the new CA")
    }

    /// Loads a CA from PEM files (certificate, key) and checks it.
    pub fn load_files(cert_path: &Path, key_path: &Path) -> Result<Ca> {
        let cert = crate::files::read_input(cert_path).map_err(|source| PkiError::Read { path: cert_path.into(), source })?;
        let key = crate::files::read_input(key_path).map_err(|source| PkiError::Read { path: key_path.into(), source })?;
        Self::load(&cert, &cert_path.display().to_string(), &key, &key_path.display().to_string())
    }

    /// Loads a CA from PEM text; `cert_what`/`key_what` name the inputs in errors.
    pub fn load(cert_pem: &[u8], cert_what: &str, key_pem: &[u8], key_what: &str) -> Result<Ca> {
        let der = pemfile::first_certificate(cert_pem, cert_what)?;
        let key = PrivateKey::from_pem(key_pem, key_what)?;
        Self::from_parts(der, key, cert_what)
    }

    fn from_parts(cert_der: Vec<u8>, key: PrivateKey, what: &str) -> Result<Ca> {
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| PkiError::bad_input(what, format!("not a valid X.509 certificate: {e}")))?;
        let subject = x509.subject().to_string();
        let is_ca = x509.basic_constraints().ok().flatten().map(|bc| bc.value.ca).unwrap_or(false);
        if !is_ca {
            return Err(PkiError::bad_ca(
                what,
                format!("{subject} is not a CA certificate (basicConstraints CA:TRUE is missing); pass the CA's certificate, not a leaf"),
            ));
        }
        let key_usage = x509.key_usage().ok().flatten().map(|ku| ku.value);
        if let Some(ku) = key_usage
            && !ku.key_cert_sign()
        {
            return Err(PkiError::bad_ca(what, format!("{subject} may not sign certificates (keyUsage lacks keyCertSign)")));
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::bad_ca(
                what,
                "the private key does not belong to this certificate (public keys differ); check that -ca-key/--ca-key is the key of this CA",
            ));
        }
        let not_before = x509.validity().not_before.to_datetime();
        let not_after = x509.validity().not_after.to_datetime();
        let now = OffsetDateTime::now_utc();
        if now > not_after {
            return Err(PkiError::bad_ca(
                what,
                format!("{subject} expired on {} ({} ago); create a new CA or renew it", fmt_time(not_after), human(now - not_after)),
            ));
        }
        if now < not_before {
            return Err(PkiError::bad_ca(what, format!("{subject} is not valid before {}; check this machine's clock", fmt_time(not_before))));
        }
        let can_sign_crl = key_usage.map(|ku| ku.crl_sign()).unwrap_or(true);
        let cert_pem = pemfile::encode("CERTIFICATE", &cert_der);
        Ok(Ca { cert_der, cert_pem, key, not_before, not_after, can_sign_crl })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
    pub fn can_sign_crl(&self) -> bool {
        self.can_sign_crl
    }

    /// The rcgen issuer over this CA (AKI = the CA certificate's own SKI).
    pub fn issuer(&self) -> Result<Issuer<'static, &KeyPairRef>> {
        Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), self.key.key_pair()).map_err(|e| PkiError::bad_ca("certificate", e))
    }

    /// Signs `template` for `public_key`. The leaf never outlives the CA: that is refused.
    pub fn sign(&self, template: &LeafTemplate, public_key: &impl PublicKeyData) -> Result<Issued> {
        let issuer = self.issuer()?;
        self.sign_with(&issuer, template, public_key)
    }

    /// As [`Ca::sign`], reusing an issuer across many certificates.
    pub fn sign_with(&self, issuer: &Issuer<'_, &KeyPairRef>, template: &LeafTemplate, public_key: &impl PublicKeyData) -> Result<Issued> {
        let now = OffsetDateTime::now_utc();
        let name = &template.subject.common_name;
        let not_after = now
            .checked_add(template.validity)
            .filter(|t| t.year() <= 9999)
            .ok_or_else(|| PkiError::Refused(format!("certificate {name:?}: validity {} reaches past the year 9999", human(template.validity))))?;
        if template.validity <= Duration::ZERO {
            return Err(PkiError::Refused(format!("certificate {name:?}: validity must be positive")));
        }
        if not_after > self.not_after {
            let room = self.not_after - now;
            return Err(PkiError::Refused(format!(
                "certificate {name:?} would expire on {}, after its CA (which expires on {}); \
                 ask for at most {} (for example {}h) or renew the CA first",
                fmt_time(not_after),
                fmt_time(self.not_after),
                human(room),
                room.whole_hours().max(0)
            )));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = template.subject.to_dn();
        params.subject_alt_names = template.sans.clone();
        params.not_before = std::cmp::max(now - BACKDATE, self.not_before);
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        params.key_usages = template.usages.key.clone();
        params.extended_key_usages = template.usages.extended.clone();
        params.use_authority_key_identifier_extension = true;
        params.is_ca = match &template.ca_constraint {
            Some(bc) => IsCa::Ca(*bc),
            None => IsCa::ExplicitNoCa,
        };
        let cert = params.signed_by(public_key, issuer).map_err(|e| PkiError::crypto(format!("signing certificate {name:?}"), e))?;
        Ok(Issued { der: cert.der().to_vec(), pem: pemfile::encode("CERTIFICATE", cert.der()) })
    }
}

/// rcgen's key pair type, named once so signatures stay short.
pub type KeyPairRef = rcgen::KeyPair;

/// A random 20-byte serial with the top bit clear (positive) and a non-zero first byte (so the
/// DER INTEGER keeps all 20 bytes). Random serials never repeat on re-issue, which CRLs need.
pub fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 20];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| PkiError::crypto("serial number", "the system random generator failed"))?;
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 1;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

/// `2027-11-21 19:46:00 UTC`
pub fn fmt_time(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_else(|_| t.to_string())
}

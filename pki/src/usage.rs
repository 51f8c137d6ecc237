//! Key usages and extended key usages, by the words cfssl's ca-config.json uses.
//! Unknown words are an error with a suggestion, never silently dropped (cfssl drops them).

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};

/// One usage word: either a KeyUsage bit or an ExtendedKeyUsage purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Key(KeyBit),
    Extended(ExtendedPurpose),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBit {
    DigitalSignature,
    ContentCommitment,
    KeyEncipherment,
    DataEncipherment,
    KeyAgreement,
    CertSign,
    CrlSign,
    EncipherOnly,
    DecipherOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendedPurpose {
    Any,
    ServerAuth,
    ClientAuth,
    CodeSigning,
    EmailProtection,
    TimeStamping,
    OcspSigning,
    IpsecEndSystem,
    IpsecTunnel,
    IpsecUser,
}

/// cfssl's usage words (config/config.go KeyUsage / ExtKeyUsage), in cfssl's spelling.
const WORDS: &[(&str, Usage)] = &[
    ("signing", Usage::Key(KeyBit::DigitalSignature)),
    ("digital signature", Usage::Key(KeyBit::DigitalSignature)),
    ("content commitment", Usage::Key(KeyBit::ContentCommitment)),
    ("key encipherment", Usage::Key(KeyBit::KeyEncipherment)),
    ("key agreement", Usage::Key(KeyBit::KeyAgreement)),
    ("data encipherment", Usage::Key(KeyBit::DataEncipherment)),
    ("cert sign", Usage::Key(KeyBit::CertSign)),
    ("crl sign", Usage::Key(KeyBit::CrlSign)),
    ("encipher only", Usage::Key(KeyBit::EncipherOnly)),
    ("decipher only", Usage::Key(KeyBit::DecipherOnly)),
    ("any", Usage::Extended(ExtendedPurpose::Any)),
    ("server auth", Usage::Extended(ExtendedPurpose::ServerAuth)),
    ("client auth", Usage::Extended(ExtendedPurpose::ClientAuth)),
    ("code signing", Usage::Extended(ExtendedPurpose::CodeSigning)),
    ("email protection", Usage::Extended(ExtendedPurpose::EmailProtection)),
    ("s/mime", Usage::Extended(ExtendedPurpose::EmailProtection)),
    ("ipsec end system", Usage::Extended(ExtendedPurpose::IpsecEndSystem)),
    ("ipsec tunnel", Usage::Extended(ExtendedPurpose::IpsecTunnel)),
    ("ipsec user", Usage::Extended(ExtendedPurpose::IpsecUser)),
    ("timestamping", Usage::Extended(ExtendedPurpose::TimeStamping)),
    ("ocsp signing", Usage::Extended(ExtendedPurpose::OcspSigning)),
];

impl Usage {
    /// Parses a cfssl usage word; the error suggests the nearest known word.
    pub fn from_word(word: &str) -> Result<Usage, String> {
        let norm = word.trim().to_ascii_lowercase();
        if let Some((_, u)) = WORDS.iter().find(|(w, _)| *w == norm) {
            return Ok(*u);
        }
        let nearest = crate::suggest::nearest(&norm, WORDS.iter().map(|(w, _)| *w), |_| 4).map(|w| format!("; did you mean {w:?}?")).unwrap_or_default();
        Err(format!("unknown usage {word:?}{nearest} (known: {})", WORDS.iter().map(|(w, _)| *w).collect::<Vec<_>>().join(", ")))
    }

    /// The canonical word for this usage (the first of its spellings).
    pub fn word(self) -> &'static str {
        WORDS.iter().find(|(_, u)| *u == self).map(|(w, _)| *w).unwrap_or("?")
    }
}

/// A set of usages split into what rcgen takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSet {
    pub key: Vec<KeyUsagePurpose>,
    pub extended: Vec<ExtendedKeyUsagePurpose>,
}

impl UsageSet {
    pub fn from_usages(usages: &[Usage]) -> UsageSet {
        let mut set = UsageSet::default();
        for u in usages {
            match u {
                Usage::Key(k) => {
                    let p = key_purpose(*k);
                    if !set.key.contains(&p) {
                        set.key.push(p);
                    }
                }
                Usage::Extended(e) => {
                    let p = extended_purpose(*e);
                    if !set.extended.contains(&p) {
                        set.extended.push(p);
                    }
                }
            }
        }
        set
    }

    /// Parses a list of cfssl words; every unknown word is reported.
    pub fn from_words<S: AsRef<str>>(words: &[S]) -> Result<UsageSet, Vec<String>> {
        let (ok, bad): (Vec<_>, Vec<_>) = words.iter().map(|w| Usage::from_word(w.as_ref())).partition(|r| r.is_ok());
        if !bad.is_empty() {
            return Err(bad.into_iter().filter_map(|r| r.err()).collect());
        }
        Ok(UsageSet::from_usages(&ok.into_iter().filter_map(|r| r.ok()).collect::<Vec<_>>()))
    }
}

fn key_purpose(k: KeyBit) -> KeyUsagePurpose {
    match k {
        KeyBit::DigitalSignature => KeyUsagePurpose::DigitalSignature,
        KeyBit::ContentCommitment => KeyUsagePurpose::ContentCommitment,
        KeyBit::KeyEncipherment => KeyUsagePurpose::KeyEncipherment,
        KeyBit::DataEncipherment => KeyUsagePurpose::DataEncipherment,
        KeyBit::KeyAgreement => KeyUsagePurpose::KeyAgreement,
        KeyBit::CertSign => KeyUsagePurpose::KeyCertSign,
        KeyBit::CrlSign => KeyUsagePurpose::CrlSign,
        KeyBit::EncipherOnly => KeyUsagePurpose::EncipherOnly,
        KeyBit::DecipherOnly => KeyUsagePurpose::DecipherOnly,
    }
}

fn extended_purpose(e: ExtendedPurpose) -> ExtendedKeyUsagePurpose {
    match e {
        ExtendedPurpose::Any => ExtendedKeyUsagePurpose::Any,
        ExtendedPurpose::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedPurpose::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedPurpose::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
        ExtendedPurpose::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        ExtendedPurpose::TimeStamping => ExtendedKeyUsagePurpose::TimeStamping,
        ExtendedPurpose::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
        ExtendedPurpose::IpsecEndSystem => ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 5]),
        ExtendedPurpose::IpsecTunnel => ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 6]),
        ExtendedPurpose::IpsecUser => ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 5, 5, 7, 3, 7]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typo_gets_a_suggestion() {
        let e = Usage::from_word("server-auth").unwrap_err();
        assert!(e.contains("did you mean \"server auth\""), "{e}");
        let e = UsageSet::from_words(&["signing", "clinet auth", "bogus thing"]).unwrap_err();
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn words_map_to_rcgen() {
        let s = UsageSet::from_words(&["signing", "key encipherment", "server auth", "client auth"]).unwrap();
        assert_eq!(s.key, vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment]);
        assert_eq!(s.extended, vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]);
    }
}

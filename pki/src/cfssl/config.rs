//! cfssl's `ca-config.json`: signing profiles with usages, expiry and CA constraints.

use super::Strictness;
use super::json_keys::{self, check};
use crate::error::{PkiError, Result};
use crate::usage::UsageSet;
use crate::validity::parse_validity;
use rcgen::BasicConstraints;
use serde_json::Value;
use std::collections::BTreeMap;
use time::Duration;

/// cfssl's default leaf lifetime.
pub const DEFAULT_EXPIRY: Duration = Duration::hours(8760);

/// One signing profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub usage_words: Vec<String>,
    pub usages: UsageSet,
    pub expiry: Duration,
    /// `Some` when the profile issues CA certificates (`ca_constraint.is_ca`).
    pub ca_constraint: Option<BasicConstraints>,
}

/// The `signing` section.
#[derive(Debug, Clone)]
pub struct SigningConfig {
    pub default: Profile,
    pub profiles: BTreeMap<String, Profile>,
}

const PROFILE_KEYS: &[&str] = &[
    "usages",
    "expiry",
    "ca_constraint",
    "name_whitelist",
    "backdate",
    "not_before",
    "not_after",
    "crl_url",
    "ocsp_url",
    "issuer_urls",
    "auth_key",
    "remote",
    "copy_extensions",
    "policies",
    "auth_remote",
    "lint_errlevel",
];
/// Keys cfssl knows but this drop-in does not implement: an error, never silently ignored.
const UNSUPPORTED: &[&str] = &[
    "name_whitelist",
    "not_before",
    "not_after",
    "crl_url",
    "ocsp_url",
    "issuer_urls",
    "auth_key",
    "remote",
    "copy_extensions",
    "policies",
    "auth_remote",
    "lint_errlevel",
];

impl SigningConfig {
    /// cfssl's built-in configuration, used when no `-config` is given.
    pub fn cfssl_default() -> SigningConfig {
        let words = ["signing", "key encipherment", "server auth", "client auth"];
        let usages = UsageSet::from_words(&words).unwrap_or_default();
        SigningConfig {
            default: Profile { usage_words: words.iter().map(|s| s.to_string()).collect(), usages, expiry: DEFAULT_EXPIRY, ca_constraint: None },
            profiles: BTreeMap::new(),
        }
    }

    /// The profile to sign with. An unknown name is an error (cfssl silently uses the default).
    pub fn profile(&self, name: Option<&str>, file: &str, strictness: Strictness, warnings: &mut Vec<String>) -> Result<&Profile> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return self.checked(&self.default, "default", file);
        };
        if let Some(p) = self.profiles.get(name) {
            return self.checked(p, name, file);
        }
        if name == "default" {
            return self.checked(&self.default, "default", file);
        }
        let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
        let nearest = crate::suggest::nearest(name, known.iter().copied(), |_| 3).map(|k| format!("; did you mean {k:?}?")).unwrap_or_default();
        let msg =
            format!("{file}: no signing profile named {name:?}{nearest} (profiles: {})", if known.is_empty() { "none".to_string() } else { known.join(", ") });
        if strictness == Strictness::Lenient {
            warnings.push(format!("{msg}; using the default profile, as cfssl does"));
            return self.checked(&self.default, "default", file);
        }
        Err(PkiError::Refused(msg))
    }

    fn checked<'a>(&self, p: &'a Profile, name: &str, file: &str) -> Result<&'a Profile> {
        if p.usages.key.is_empty() && p.usages.extended.is_empty() {
            return Err(PkiError::Refused(format!(
                "{file}: profile {name:?} has no usages; add e.g. \"usages\": [\"signing\", \"key encipherment\", \"server auth\", \"client auth\"]"
            )));
        }
        Ok(p)
    }
}

/// Parses `ca-config.json`; every problem in the file is reported at once.
pub fn parse(bytes: &[u8], file: &str, strictness: Strictness, warnings: &mut Vec<String>) -> Result<SigningConfig> {
    let v = json_keys::parse(bytes, file)?;
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    check(&v, "", &["signing", "auth_keys", "remotes"], &mut unknown);
    let Some(signing) = json_keys::get(&v, "signing").filter(|s| s.is_object()) else {
        return Err(PkiError::Json {
            file: file.into(),
            reason: "no \"signing\" object (expected {\"signing\": {\"default\": ..., \"profiles\": ...}})".into(),
        });
    };
    check(signing, "signing", &["default", "profiles"], &mut unknown);
    let default = match json_keys::get(signing, "default") {
        Some(d) if !d.is_null() => profile(d, "signing.default", file, DEFAULT_EXPIRY, &mut problems, &mut unknown),
        _ => SigningConfig::cfssl_default().default,
    };
    let mut profiles = BTreeMap::new();
    match json_keys::get(signing, "profiles") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, p) in map {
                let path = format!("signing.profiles.{name}");
                profiles.insert(name.clone(), profile(p, &path, file, default.expiry, &mut problems, &mut unknown));
            }
        }
        Some(other) => problems.push(format!("signing.profiles: expected an object, got {other}")),
    }
    if strictness == Strictness::Lenient {
        warnings.extend(unknown.into_iter().map(|u| format!("{file}: {u} (ignored)")));
    } else {
        problems.extend(unknown);
    }
    if !problems.is_empty() {
        return Err(PkiError::Json { file: file.into(), reason: problems.join("; ") });
    }
    Ok(SigningConfig { default, profiles })
}

fn profile(v: &Value, path: &str, file: &str, default_expiry: Duration, problems: &mut Vec<String>, unknown: &mut Vec<String>) -> Profile {
    check(v, path, PROFILE_KEYS, unknown);
    for key in UNSUPPORTED {
        if json_keys::get(v, key).is_some_and(|x| !x.is_null()) {
            problems.push(format!("{path}.{key}: not supported by pki's cfssl mode; remove it"));
        }
    }
    let usage_words = json_keys::strings(v, path, "usages", problems);
    let usages = match UsageSet::from_words(&usage_words) {
        Ok(u) => u,
        Err(errs) => {
            problems.extend(errs.into_iter().map(|e| format!("{path}.usages: {e}")));
            UsageSet::default()
        }
    };
    let expiry = match json_keys::string(v, path, "expiry", problems) {
        Some(e) => parse_validity(&e, &format!("{file}: {path}.expiry")).unwrap_or_else(|err| {
            problems.push(err.to_string());
            default_expiry
        }),
        None => default_expiry,
    };
    let mut ca_constraint = None;
    if let Some(c) = json_keys::get(v, "ca_constraint").filter(|c| !c.is_null()) {
        let cpath = format!("{path}.ca_constraint");
        check(c, &cpath, &["is_ca", "max_path_len", "max_path_len_zero"], unknown);
        if matches!(json_keys::get(c, "is_ca"), Some(Value::Bool(true))) {
            let zero = matches!(json_keys::get(c, "max_path_len_zero"), Some(Value::Bool(true)));
            let len = json_keys::get(c, "max_path_len").and_then(Value::as_u64).and_then(|n| u8::try_from(n).ok());
            ca_constraint = Some(match (len, zero) {
                (_, true) => BasicConstraints::Constrained(0),
                (Some(n), false) if n > 0 => BasicConstraints::Constrained(n),
                _ => BasicConstraints::Unconstrained,
            });
        }
    }
    Profile { usage_words, usages, expiry, ca_constraint }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] = br#"{"signing":{"default":{"expiry":"8760h"},"profiles":{
        "peer":{"expiry":"8760h","usages":["signing","key encipherment","server auth","client auth"]},
        "client":{"usages":["signing","client auth"]}}}}"#;

    #[test]
    fn profiles_and_default_expiry() {
        let c = parse(CONFIG, "ca-config.json", Strictness::Strict, &mut vec![]).unwrap();
        let p = c.profile(Some("client"), "ca-config.json", Strictness::Strict, &mut vec![]).unwrap();
        assert_eq!(p.expiry, Duration::hours(8760));
        assert_eq!(p.usages.extended, vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth]);
    }

    #[test]
    fn mistyped_profile_is_an_error() {
        let c = parse(CONFIG, "ca-config.json", Strictness::Strict, &mut vec![]).unwrap();
        let e = c.profile(Some("peeer"), "ca-config.json", Strictness::Strict, &mut vec![]).unwrap_err().to_string();
        assert!(e.contains("did you mean \"peer\""), "{e}");
        let mut w = vec![];
        assert!(c.profile(Some("peeer"), "ca-config.json", Strictness::Lenient, &mut w).is_err(), "default has no usages");
    }

    #[test]
    fn unknown_usage_and_key_are_errors() {
        let j = br#"{"signing":{"profiles":{"x":{"usages":["server auth","clientauth"],"expire":"1h"}}}}"#;
        let e = parse(j, "cfg.json", Strictness::Strict, &mut vec![]).unwrap_err().to_string();
        assert!(e.contains("\"clientauth\"") && e.contains("did you mean \"client auth\""), "{e}");
        assert!(e.contains("signing.profiles.x.expire"), "{e}");
    }

    #[test]
    fn go_duration_and_days() {
        let j = br#"{"signing":{"default":{"expiry":"90d","usages":["signing"]}}}"#;
        let c = parse(j, "c", Strictness::Strict, &mut vec![]).unwrap();
        assert_eq!(c.default.expiry, Duration::days(90));
    }
}

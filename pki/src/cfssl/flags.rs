//! Go `flag` package semantics, which cfssl uses: `-name=value`, `-name value`, `--name=value`,
//! boolean flags without a value (`-initca`) or with `=true/false`; parsing stops at the first
//! argument that is not a flag (or after `--`), and `-` alone is a positional (stdin).

use std::collections::BTreeMap;

/// Parsed flags and positionals.
#[derive(Debug, Default)]
pub struct Parsed {
    values: BTreeMap<String, String>,
    pub positional: Vec<String>,
}

impl Parsed {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.values.get(name).map(String::as_str), Some("true" | "1" | "t" | "T" | "TRUE" | "True"))
    }
}

/// Parses `args` against the flags a command knows: `bools` take no value, `strings` take one.
pub fn parse(args: &[String], bools: &[&str], strings: &[&str]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            parsed.positional.extend(args[i + 1..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            parsed.positional.extend(args[i..].iter().cloned());
            break;
        }
        let body = arg.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if bools.contains(&name) {
            let v = inline.unwrap_or_else(|| "true".into());
            if !matches!(v.as_str(), "true" | "false" | "1" | "0" | "t" | "f" | "T" | "F" | "TRUE" | "FALSE" | "True" | "False") {
                return Err(format!("invalid boolean value {v:?} for flag -{name}"));
            }
            parsed.values.insert(name.into(), v);
        } else if strings.contains(&name) {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i).cloned().ok_or_else(|| format!("flag needs an argument: -{name}"))?
                }
            };
            parsed.values.insert(name.into(), v);
        } else {
            let mut known: Vec<&str> = bools.iter().chain(strings).copied().collect();
            known.sort_unstable();
            let hint = crate::suggest::nearest(name, known.iter().copied(), |_| 2).map(|k| format!("; did you mean -{k}?")).unwrap_or_default();
            return Err(format!(
                "flag provided but not defined: -{name}{hint} (this command takes: {})",
                known.iter().map(|k| format!("-{k}")).collect::<Vec<_>>().join(" ")
            ));
        }
        i += 1;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn go_style() {
        let p =
            parse(&s(&["-ca=ca.pem", "-ca-key", "k.pem", "--profile=peer", "-initca", "csr.json", "-x"]), &["initca"], &["ca", "ca-key", "profile"]).unwrap();
        assert_eq!(p.get("ca"), Some("ca.pem"));
        assert_eq!(p.get("ca-key"), Some("k.pem"));
        assert_eq!(p.get("profile"), Some("peer"));
        assert!(p.flag("initca"));
        assert_eq!(p.positional, vec!["csr.json", "-x"]);
        let p = parse(&s(&["-initca=false", "-"]), &["initca"], &[]).unwrap();
        assert!(!p.flag("initca"));
        assert_eq!(p.positional, vec!["-"]);
    }

    #[test]
    fn unknown_flag_suggests() {
        let e = parse(&s(&["-profle=peer"]), &[], &["profile"]).unwrap_err();
        assert!(e.contains("did you mean -profile?"), "{e}");
        assert!(parse(&s(&["-ca"]), &[], &["ca"]).unwrap_err().contains("needs an argument"));
    }
}

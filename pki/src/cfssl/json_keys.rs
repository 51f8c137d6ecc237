//! Strict JSON key checking with suggestions: cfssl ignores unknown keys, so `"expire"` instead of
//! `"expiry"` silently yields a default. Here it is an error that names the key and the fix.

use serde_json::Value;

/// Checks that `value` (an object at `path`) has only `allowed` keys. Each problem is pushed to
/// `problems` as `path.key: unknown key; did you mean "x"?`.
pub fn check(value: &Value, path: &str, allowed: &[&str], problems: &mut Vec<String>) {
    let Some(obj) = value.as_object() else {
        if !value.is_null() {
            problems.push(format!("{path}: expected an object"));
        }
        return;
    };
    for key in obj.keys() {
        if allowed.iter().any(|a| a.eq_ignore_ascii_case(key)) {
            continue;
        }
        let nearest = crate::suggest::nearest(key, allowed.iter().copied(), |a| 3.max(a.len() / 3))
            .map(|a| format!("; did you mean {a:?}?"))
            .unwrap_or_else(|| format!(" (known keys: {})", allowed.join(", ")));
        let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        problems.push(format!("{at}: unknown key{nearest}"));
    }
}

/// Go's encoding/json matches keys case-insensitively (`"cn"` fills `CN`); so do we.
pub fn get<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    let obj = value.as_object()?;
    obj.get(key).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// A string field; `problems` gets an entry if it is present but not a string.
pub fn string(value: &Value, path: &str, key: &str, problems: &mut Vec<String>) -> Option<String> {
    match get(value, key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(format!("{}: expected a string, got {other}", join(path, key)));
            None
        }
    }
}

/// A list of strings.
pub fn strings(value: &Value, path: &str, key: &str, problems: &mut Vec<String>) -> Vec<String> {
    match get(value, key) {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| match v {
                Value::String(s) => Some(s.clone()),
                other => {
                    problems.push(format!("{}[{i}]: expected a string, got {other}", join(path, key)));
                    None
                }
            })
            .collect(),
        Some(other) => {
            problems.push(format!("{}: expected a list of strings, got {other}", join(path, key)));
            vec![]
        }
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Parses JSON text, naming the file and the line/column on failure.
pub fn parse(bytes: &[u8], file: &str) -> Result<Value, crate::PkiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| crate::PkiError::Json { file: file.to_string(), reason: format!("malformed JSON at line {}, column {}: {e}", e.line(), e.column()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        let v: Value = serde_json::json!({"expire": "8760h", "usages": []});
        let mut p = vec![];
        check(&v, "signing.default", &["expiry", "usages", "ca_constraint"], &mut p);
        assert_eq!(p, vec!["signing.default.expire: unknown key; did you mean \"expiry\"?"]);
    }
}

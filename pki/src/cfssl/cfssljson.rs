//! `cfssljson [-f FILE] [-stdout] [-bare] NAME`: splits cfssl's JSON into files, with cfssljson's
//! names and modes: `NAME.pem` (0664), `NAME-key.pem` (0600), `NAME.csr` (0644). All files are
//! written atomically and together. An existing file with other contents is not overwritten
//! unless `-overwrite` is given or `PKI_CFSSLJSON_OVERWRITE=1` is set (cfssljson overwrites
//! silently; a lost CA key cannot be recovered).

use super::{Io, flags};
use crate::error::{PkiError, Result};
use crate::files::{self, PlannedFile};
use serde_json::Value;

/// Runs `cfssljson ARGS`; returns the exit code.
pub fn run(args: &[String], io: &mut Io<'_>) -> i32 {
    match run_inner(args, io) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io.stderr, "cfssljson: {e}");
            1
        }
    }
}

fn run_inner(args: &[String], io: &mut Io<'_>) -> Result<()> {
    let p = flags::parse(args, &["bare", "stdout", "overwrite", "version"], &["f"]).map_err(PkiError::Refused)?;
    if p.flag("version") {
        let _ = writeln!(io.stdout, "Version: 1.6.5 (pki {} acting as cfssljson)", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let input_name = p.get("f").unwrap_or("<stdin>").to_string();
    let bytes = match p.get("f") {
        Some(f) if f != "-" => crate::files::read_input(f).map_err(|source| PkiError::Read { path: f.into(), source })?,
        _ => crate::files::read_bounded(&mut io.stdin).map_err(|source| PkiError::Read { path: "<stdin>".into(), source })?,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(PkiError::Json { file: input_name, reason: "no input; pipe cfssl's output into cfssljson (did the cfssl command fail?)".into() });
    }
    let value: Value = super::json_keys::parse(&bytes, &input_name)?;
    let result = if p.flag("bare") {
        value
    } else {
        // The API envelope: {"success": true, "result": {...}, "errors": [...], "messages": [...]}
        match (value.get("success"), value.get("result")) {
            (Some(Value::Bool(true)), Some(r)) => r.clone(),
            (Some(Value::Bool(false)), _) => {
                return Err(PkiError::Json {
                    file: input_name,
                    reason: format!("the response reports failure: {}", value.get("errors").cloned().unwrap_or(Value::Null)),
                });
            }
            _ => {
                return Err(PkiError::Json {
                    file: input_name,
                    reason: "expected cfssl's API envelope {\"success\", \"result\", ...}; for cfssl's command-line output use -bare".into(),
                });
            }
        }
    };
    let field = |names: &[&str]| names.iter().find_map(|n| result.get(*n).and_then(Value::as_str)).map(str::to_string);
    let cert = field(&["cert", "certificate"]);
    let key = field(&["key", "private_key"]);
    let csr = field(&["csr", "certificate_request"]);
    let bundle = result.get("bundle").and_then(|b| b.get("bundle").or(Some(b))).and_then(Value::as_str).map(str::to_string);
    if cert.is_none() && key.is_none() && csr.is_none() && bundle.is_none() {
        return Err(PkiError::Json { file: input_name, reason: "no cert, key or csr in the input".into() });
    }
    if p.flag("stdout") {
        for text in [&cert, &key, &csr, &bundle].into_iter().flatten() {
            let _ = io.stdout.write_all(text.as_bytes());
            if !text.ends_with('\n') {
                let _ = io.stdout.write_all(b"\n");
            }
        }
        return Ok(());
    }
    let base = match p.positional.as_slice() {
        [b] => b.clone(),
        [] => return Err(PkiError::Refused("missing output name: cfssljson -bare NAME (or -stdout)".into())),
        more => return Err(PkiError::Refused(format!("expected one output name, got: {}", more.join(" ")))),
    };
    let mut planned = Vec::new();
    let mode = |m: u32| move |path: String, text: String| PlannedFile::new(path, text.into_bytes(), m);
    if let Some(c) = cert {
        planned.push(mode(0o664)(format!("{base}.pem"), c));
    }
    if let Some(k) = key {
        planned.push(mode(files::KEY_MODE)(format!("{base}-key.pem"), k));
    }
    if let Some(c) = csr {
        planned.push(mode(0o644)(format!("{base}.csr"), c));
    }
    if let Some(b) = bundle {
        planned.push(mode(0o644)(format!("{base}-bundle.pem"), b));
    }
    let overwrite = p.flag("overwrite") || matches!(std::env::var("PKI_CFSSLJSON_OVERWRITE").as_deref(), Ok("1" | "true"));
    files::write_all(&planned, overwrite).map_err(|e| match e {
        PkiError::Exists { path, .. } => PkiError::Exists {
            path,
            hint: "refusing to overwrite it (cfssljson would); remove it first, or pass -overwrite / set PKI_CFSSLJSON_OVERWRITE=1".into(),
        },
        other => other,
    })?;
    Ok(())
}

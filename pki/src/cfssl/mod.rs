//! cfssl and cfssljson compatibility: `pki` invoked as `cfssl` or `cfssljson` (a symlink) accepts
//! their commands, Go-style single-dash flags, CSR JSON, ca-config.json and output contract, so
//! existing scripts and Makefiles keep working.
//!
//! Where cfssl is silently wrong, this is strict: an unknown `-profile`, an unknown usage word, an
//! unknown JSON key (with a suggestion) and a leaf that would outlive its CA are errors. Setting
//! `PKI_CFSSL_LENIENT=1` turns these into warnings and cfssl's old behaviour (an explicit choice).

pub mod cfssljson;
pub mod commands;
pub mod config;
pub mod csr;
pub mod flags;
pub mod json_keys;

use std::io::{Read, Write};

/// The process's streams, injected so the commands run in unit tests.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// Strict (default) or cfssl's lenient behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    Strict,
    Lenient,
}

impl Strictness {
    pub fn from_env() -> Self {
        match std::env::var("PKI_CFSSL_LENIENT") {
            Ok(v) if !v.is_empty() && v != "0" && v != "false" => Strictness::Lenient,
            _ => Strictness::Strict,
        }
    }
}

/// A log line in cfssl's format, on stderr.
pub(crate) fn log(io: &mut Io<'_>, level: &str, msg: &str) {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");
    let ts = now.format(&fmt).unwrap_or_default();
    let _ = writeln!(io.stderr, "{ts} [{level}] {msg}");
}

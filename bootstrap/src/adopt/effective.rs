//! etcd's own configuration rules, applied to what a running etcd was given: its command line,
//! its environment and, if it names one, its config file. Pure: the inputs were read on the host
//! (`/proc/PID/{cmdline,environ,cwd}` and the file), nothing here touches one.
//!
//! The rules (etcd's `etcdmain/config.go`, `pkg/flags/flag.go`, `embed/config.go`, 3.4–3.6):
//! a config file (`--config-file`, else `ETCD_CONFIG_FILE`) replaces every flag and variable;
//! otherwise a flag wins, then `ETCD_<FLAG>` (a flag and its variable together is fatal, so a
//! running etcd never has both), then etcd's default. Relative paths are relative to the
//! process's working directory, and so is the default data dir `<name>.etcd`.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// etcd's boolean flags (3.4–3.6): bare, or `--flag=true|false`, never `--flag value`.
pub const BOOL_FLAGS: &[&str] = &[
    "auto-tls",
    "client-cert-auth",
    "debug",
    "enable-grpc-gateway",
    "enable-log-rotation",
    "enable-pprof",
    "enable-v2",
    "experimental-compact-hash-check-enabled",
    "experimental-enable-distributed-tracing",
    "experimental-enable-lease-checkpoint",
    "experimental-enable-lease-checkpoint-persist",
    "experimental-initial-corrupt-check",
    "experimental-memory-mlock",
    "experimental-peer-skip-client-san-verification",
    "experimental-stop-grpc-service-on-defrag",
    "experimental-txn-mode-write-with-shared-buffer",
    "force-new-cluster",
    "initial-election-tick-advance",
    "peer-auto-tls",
    "peer-client-cert-auth",
    "pre-vote",
    "socket-reuse-address",
    "socket-reuse-port",
    "strict-reconfig-check",
    "unsafe-no-fsync",
];

/// Where a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Flag,
    Env,
    ConfigFile,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub value: String,
    pub origin: Origin,
}

/// What a running etcd uses, setting by setting (keys are flag names: `data-dir`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Effective {
    pub settings: BTreeMap<String, Setting>,
    /// The config file it read, absolute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
    /// The process's working directory: relative paths and the default data dir start here.
    pub cwd: PathBuf,
    /// Command-line words etcd does not read as flags (after the first non-flag).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_args: Vec<String>,
}

/// Go `flag` parsing of etcd's argv (argv[0] skipped): `-x`/`--x`, `--x=v`, `--x v` (not for
/// booleans); parsing stops at `--` or at the first word that is not a flag.
pub fn parse_flags(argv: &[String]) -> (Vec<(String, String)>, Vec<String>) {
    let mut flags = Vec::new();
    let mut i = 1;
    while i < argv.len() {
        let arg = &argv[i];
        if arg == "--" {
            i += 1;
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|b| !b.is_empty() && !b.starts_with('-')) else { break };
        match body.split_once('=') {
            Some((name, value)) => flags.push((name.to_string(), value.to_string())),
            None if BOOL_FLAGS.contains(&body) => flags.push((body.to_string(), "true".to_string())),
            None => {
                let value = argv.get(i + 1).cloned().unwrap_or_default();
                flags.push((body.to_string(), value));
                i += 1;
            }
        }
        i += 1;
    }
    (flags, argv.get(i..).map(<[String]>::to_vec).unwrap_or_default())
}

/// `ETCD_INITIAL_CLUSTER` -> `initial-cluster`; `None` for other variables and empty values
/// (etcd treats an empty variable as unset).
pub fn env_flag(name: &str, value: &str) -> Option<String> {
    let rest = name.strip_prefix("ETCD_")?;
    if value.is_empty() || rest.is_empty() {
        return None;
    }
    Some(rest.to_ascii_lowercase().replace('_', "-"))
}

/// The settings of an etcd config file (YAML), as flag names: scalars as they are, lists joined
/// with commas, the two `*-transport-security` sections mapped to their flags.
pub fn config_file_settings(text: &str) -> Result<BTreeMap<String, String>, String> {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    let Some(map) = doc.as_mapping() else { return if doc.is_null() { Ok(out) } else { Err("not a YAML mapping".into()) } };
    for (k, v) in map {
        let Some(key) = k.as_str() else { continue };
        match key {
            "client-transport-security" | "peer-transport-security" => {
                let peer = key.starts_with("peer");
                for (tk, tv) in v.as_mapping().into_iter().flatten() {
                    let Some(tkey) = tk.as_str() else { continue };
                    let flag = match (peer, tkey) {
                        (true, "allowed-cn") => "peer-cert-allowed-cn".to_string(),
                        (true, "allowed-hostname") => "peer-cert-allowed-hostname".to_string(),
                        (true, t) => format!("peer-{t}"),
                        (false, t) => t.to_string(),
                    };
                    if let Some(s) = scalar(tv) {
                        out.insert(flag, s);
                    }
                }
            }
            _ => {
                if let Some(s) = scalar(v) {
                    out.insert(key.to_string(), s);
                }
            }
        }
    }
    Ok(out)
}

fn scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Sequence(items) => Some(items.iter().filter_map(scalar).collect::<Vec<_>>().join(",")),
        _ => None,
    }
}

/// The config file a running etcd names (flag first, then `ETCD_CONFIG_FILE`), absolute.
pub fn config_file_of(argv: &[String], environ: &[(String, String)], cwd: &Path) -> Option<PathBuf> {
    let (flags, _) = parse_flags(argv);
    let named = flags.iter().rev().find(|(k, _)| k == "config-file").map(|(_, v)| v.clone());
    let named = named.or_else(|| environ.iter().find(|(k, v)| k == "ETCD_CONFIG_FILE" && !v.is_empty()).map(|(_, v)| v.clone()))?;
    Some(cwd.join(named))
}

/// What the running etcd uses. `config_text`: the content of [`config_file_of`]'s file, when
/// it names one (`None` when it could not be read: then only that is known).
pub fn from_running(argv: &[String], environ: &[(String, String)], cwd: &Path, config_text: Option<&str>) -> Result<Effective, String> {
    let (flags, ignored_args) = parse_flags(argv);
    let mut e = Effective { cwd: cwd.to_path_buf(), ignored_args, ..Effective::default() };
    if let Some(file) = config_file_of(argv, environ, cwd) {
        let text = config_text.ok_or_else(|| format!("{}: named by --config-file but not read", file.display()))?;
        for (k, v) in config_file_settings(text).map_err(|err| format!("{}: {err}", file.display()))? {
            e.settings.insert(k, Setting { value: v, origin: Origin::ConfigFile });
        }
        e.config_file = Some(file);
        return Ok(e);
    }
    for (k, v) in environ {
        if let Some(flag) = env_flag(k, v) {
            e.settings.insert(flag, Setting { value: v.clone(), origin: Origin::Env });
        }
    }
    for (k, v) in flags {
        e.settings.insert(k, Setting { value: v, origin: Origin::Flag });
    }
    Ok(e)
}

impl Effective {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(|s| s.value.as_str())
    }

    /// A boolean setting (etcd's default when absent: `default`).
    pub fn is_on(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            Some(v) => matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "t"),
            None => default,
        }
    }

    /// A path setting, resolved against the working directory.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.get(key).filter(|v| !v.is_empty()).map(|v| self.cwd.join(v))
    }

    /// A comma-separated URL list.
    pub fn urls(&self, key: &str) -> Vec<String> {
        self.get(key).map(|v| v.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect()).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.get("name").unwrap_or("default")
    }

    /// `--data-dir`, else etcd's default `<name>.etcd` in the working directory.
    pub fn data_dir(&self) -> PathBuf {
        self.path("data-dir").unwrap_or_else(|| self.cwd.join(format!("{}.etcd", self.name())))
    }

    /// How the settings are given, as an operator would say it.
    pub fn given_by(&self) -> &'static str {
        if self.config_file.is_some() {
            return "config file";
        }
        let flags = self.settings.values().any(|s| s.origin == Origin::Flag);
        let env = self.settings.values().any(|s| s.origin == Origin::Env);
        match (flags, env) {
            (true, true) => "flags and environment",
            (false, true) => "environment",
            _ => "flags",
        }
    }

    /// Every TLS file it uses: (setting, absolute path).
    pub fn tls_files(&self) -> Vec<(String, PathBuf)> {
        TLS_FILE_SETTINGS.iter().filter_map(|k| self.path(k).map(|p| (k.to_string(), p))).collect()
    }
}

pub use crate::spec::adopted::TLS_FILE_SETTINGS;

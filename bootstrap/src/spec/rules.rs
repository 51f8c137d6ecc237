//! The input rules at the boundary: what a string from the spec may hold before anything uses
//! it. [`crate::spec::Spec::validate`] applies them once; every emitter (shell, systemd unit,
//! haproxy.cfg, YAML) still escapes for its own format, so a value that slipped past a rule
//! could still not change the shape of what is written.

use std::path::Path;

/// The largest spec file read (a real spec is a few kB).
pub const MAX_SPEC_BYTES: usize = 1 << 20;
/// The deepest nesting of YAML collections accepted (a real spec nests 4 deep).
pub const MAX_SPEC_DEPTH: usize = 32;

/// Directories no member path may be: deleting, chowning or filling one breaks the host.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/share",
    "/var/lib",
    "/var/log",
    "/var/run",
    "/var/tmp",
    "/var/cache",
    "/var/spool",
    "/var/backups",
    "/etc/kubernetes",
    "/etc/systemd",
    "/etc/systemd/system",
    "/etc/ssh",
];

/// Appends `c` as `\xNN` escapes of its UTF-8 bytes: the form systemd.syntax and haproxy.cfg
/// both read back as the character, for an emitter that meets a control character.
pub fn push_hex_escaped(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("\\x{b:02x}"));
    }
}

/// No control characters (newline, carriage return, ESC, NUL, DEL, ...) anywhere.
pub fn no_control(value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("{value:?} contains the control character {:?}; no field may hold one", c)),
        None => Ok(()),
    }
}

/// A path on a member: absolute, normalized (no `.`/`..`/`//`/trailing `/`), of the portable
/// file-name characters (letters, digits, `.`, `_`, `-`, `+`, `@`, `:`; no component starting
/// with `-`), and not `/` or a system directory. Such a path is one word in every format it is
/// written in; emitters quote it all the same.
pub fn member_path(path: &Path) -> Result<(), String> {
    member_path_format(path)?;
    let text = path.to_string_lossy();
    if SYSTEM_DIRS.contains(&text.as_ref()) {
        return Err(format!("{text} is a system directory; give a directory of its own (e.g. /var/lib/etcd)"));
    }
    Ok(())
}

/// [`member_path`]'s format rules alone, for a directory that may be a system one because
/// nothing there is ever deleted (`bin_dir`, e.g. /usr/local/bin).
pub fn member_path_format(path: &Path) -> Result<(), String> {
    let text = path.to_str().ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    no_control(text)?;
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || "/._-+@:".contains(*c))) {
        return Err(format!("{text:?} contains {c:?}; member paths use letters, digits and . _ - + @ : only"));
    }
    if text.split('/').any(|part| part.starts_with('-')) {
        return Err(format!("{text}: a path component starting with '-' could be read as an option"));
    }
    if !path.is_absolute() {
        return Err(format!("{text} is relative; member paths must be absolute"));
    }
    let normalized: std::path::PathBuf = path.components().collect();
    if normalized.as_os_str() != path.as_os_str() || path.components().any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir)) {
        return Err(format!("{text} is not normalized (no '.', '..', '//' or trailing '/'); write it as {}", normalized.display()));
    }
    Ok(())
}

/// `etcd_archive`: an https URL of printable, unquoted characters, or a path (any text but
/// control characters: it is only opened on the operator's machine).
pub fn etcd_archive(value: &str) -> Result<(), String> {
    no_control(value)?;
    if value.is_empty() {
        return Err("empty; give the path or https URL of an etcd-vX.Y.Z-linux-amd64.tar.gz, or a folder".into());
    }
    if value.contains("://") {
        let ok = value.starts_with("https://") && value.chars().all(|c| c.is_ascii_graphic() && !"\"'`\\<>{}|^".contains(c));
        if !ok {
            return Err(format!("{value:?}: only plain https:// URLs"));
        }
    }
    Ok(())
}

/// A sha256: 64 hex characters.
pub fn sha256(value: &str) -> Result<(), String> {
    if value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) { Ok(()) } else { Err(format!("{value:?} is not 64 hex characters")) }
}

/// A path that HAProxy reads: a member path, and none of the characters haproxy.cfg gives a
/// meaning (blanks, quotes, `#`, `\`, `$`), so it is one word as written.
pub fn haproxy_path(path: &Path) -> Result<(), String> {
    member_path(path)?;
    let text = path.to_string_lossy();
    match text.chars().find(|c| c.is_whitespace() || "\"'#\\$".contains(*c)) {
        Some(c) => Err(format!("{text} contains {c:?}, which haproxy.cfg would read as syntax; use a plain path")),
        None => Ok(()),
    }
}

/// `local`, or an SSH destination: `[user@]host` with a host name, an IPv4 address or a
/// bracketed IPv6 address — never anything ssh could read as an option.
pub fn ssh_destination(dest: &str) -> Result<(), String> {
    no_control(dest)?;
    if dest == "local" {
        return Ok(());
    }
    if dest.starts_with('-') {
        return Err(format!("{dest:?} starts with '-', which ssh would read as an option"));
    }
    let (user, host) = match dest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, dest),
    };
    if let Some(u) = user {
        let ok = !u.is_empty()
            && u.len() <= 32
            && u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && u.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(format!("{dest:?}: the user {u:?} is not a user name"));
        }
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::IpAddr>().is_ok() || (pki::hosts::validate_host_name(host).is_ok() && !host.starts_with('-')),
    };
    if !host_ok {
        return Err(format!("{dest:?} is neither `local` nor [USER@]HOST (a host name, an alias from ~/.ssh/config, or an address)"));
    }
    Ok(())
}

/// ssh options a spec may set, as `-o Key=Value` keys; every other key is refused, and so are
/// the ones that run commands on the operator's machine (ProxyCommand, LocalCommand,
/// KnownHostsCommand, Match exec), which belong in ~/.ssh/config where the operator sees them.
const SSH_OPTION_KEYS: &[&str] = &[
    "port",
    "user",
    "identityfile",
    "identitiesonly",
    "proxyjump",
    "stricthostkeychecking",
    "userknownhostsfile",
    "connecttimeout",
    "serveraliveinterval",
    "serveralivecountmax",
    "hostkeyalias",
    "loglevel",
    "compression",
    "certificatefile",
    "addressfamily",
];

/// The `ssh_options` list: `-p PORT`, `-i FILE`, `-J DEST`, `-l USER`, `-4`, `-6`, `-C`,
/// `-o Key=Value` (or `-oKey=Value`) with a key from a fixed list.
pub fn ssh_options(options: &[String]) -> Result<(), String> {
    let mut i = 0;
    while i < options.len() {
        let o = options[i].as_str();
        no_control(o)?;
        let value = |i: usize| options.get(i + 1).map(String::as_str).ok_or_else(|| format!("{o} needs a value"));
        match o {
            "-4" | "-6" | "-C" => i += 1,
            "-p" => {
                let v = value(i)?;
                v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("-p {v:?}: not a port"))?;
                i += 2;
            }
            "-i" | "-J" | "-l" => {
                let v = value(i)?;
                no_control(v)?;
                if v.starts_with('-') {
                    return Err(format!("{o} {v:?}: a value may not start with '-'"));
                }
                if o == "-J" {
                    v.split(',')
                        .try_for_each(|hop| ssh_destination(hop.rsplit_once(':').map_or(hop, |(h, p)| if p.parse::<u16>().is_ok() { h } else { hop })))?;
                }
                i += 2;
            }
            "-o" => {
                ssh_config_option(value(i)?)?;
                i += 2;
            }
            "-F" => {
                ssh_config_file(value(i)?)?;
                i += 2;
            }
            _ if o.starts_with("-o") && o.len() > 2 => {
                ssh_config_option(&o[2..])?;
                i += 1;
            }
            _ => {
                return Err(format!(
                    "ssh option {o:?} is not allowed here; allowed: -p, -i, -J, -l, -F, -4, -6, -C, -o KEY=VALUE (put anything else in ~/.ssh/config)"
                ));
            }
        }
    }
    Ok(())
}

/// `-F FILE`: `/dev/null` (no config), or an absolute path to a regular file that only its
/// owner (this user or root) can write — it can hold ProxyCommand, so it must be the
/// operator's own, as ssh demands of ~/.ssh/config.
fn ssh_config_file(path: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    no_control(path)?;
    if path == "/dev/null" {
        return Ok(());
    }
    if !path.starts_with('/') {
        return Err(format!("-F {path:?}: give an absolute path"));
    }
    let meta = std::fs::metadata(path).map_err(|e| format!("-F {path}: {e}"))?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file() || (meta.uid() != me && meta.uid() != 0) || meta.mode() & 0o022 != 0 {
        return Err(format!("-F {path}: must be a regular file owned by you or root and writable by no one else"));
    }
    Ok(())
}

fn ssh_config_option(kv: &str) -> Result<(), String> {
    no_control(kv)?;
    let (key, value) = kv.split_once(['=', ' ']).ok_or_else(|| format!("-o {kv:?}: expected KEY=VALUE"))?;
    if !SSH_OPTION_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "-o {key}: not allowed in a spec (commands such as ProxyCommand belong in ~/.ssh/config); allowed keys: {}",
            SSH_OPTION_KEYS.join(", ")
        ));
    }
    if value.is_empty() || value.starts_with('-') {
        return Err(format!("-o {kv:?}: the value is empty or starts with '-'"));
    }
    Ok(())
}

/// etcd's `--initial-cluster-token`: 1–128 of `[A-Za-z0-9._-]`.
pub fn cluster_token(token: &str) -> Result<(), String> {
    let ok = !token.is_empty() && token.len() <= 128 && token.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok { Ok(()) } else { Err(format!("{token:?}: use 1 to 128 letters, digits, '.', '_' or '-'")) }
}

/// The etcd binary: an absolute member path, or a command name looked up on PATH.
pub fn binary(value: &str) -> Result<(), String> {
    if value.starts_with('/') {
        return member_path(Path::new(value));
    }
    let ok = !value.is_empty() && !value.starts_with('-') && value.len() <= 64 && value.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c));
    if ok { Ok(()) } else { Err(format!("{value:?} is neither an absolute path nor a command name (letters, digits, '.', '_', '+', '-')")) }
}

/// `vMAJOR.MINOR.PATCH` with an optional `-pre.release` of `[0-9A-Za-z.-]`.
pub fn kubernetes_version(v: &str) -> Result<(u64, u64, u64), String> {
    let bad = || format!("{v:?} is not vMAJOR.MINOR.PATCH (e.g. v1.34.2)");
    let rest = v.strip_prefix('v').ok_or_else(bad)?;
    let (core, pre) = match rest.split_once(['-', '+']) {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    if pre.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c))) {
        return Err(bad());
    }
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|x| x.is_empty() || x.len() > 6 || !x.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad());
    }
    let n = |i: usize| parts[i].parse::<u64>().map_err(|_| bad());
    Ok((n(0)?, n(1)?, n(2)?))
}

/// Rejects a spec text that is too large or nested too deeply before any parser sees it:
/// a YAML parser takes time that grows with depth, and a spec has no reason to nest.
pub fn spec_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(format!("{} bytes; a spec is at most {} bytes", text.len(), MAX_SPEC_BYTES));
    }
    // Flow collections: count brackets outside quotes and comments.
    let mut depth = 0usize;
    for line in text.lines() {
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    depth += 1;
                    if depth > MAX_SPEC_DEPTH {
                        return Err(format!("nested more than {MAX_SPEC_DEPTH} levels deep"));
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    // Block collections: indentation is bounded by the line length, and so their depth.
    if let Some(line) = text.lines().find(|l| l.len() - l.trim_start().len() > 4 * MAX_SPEC_DEPTH) {
        return Err(format!("indented more than {} columns ({:.40}...)", 4 * MAX_SPEC_DEPTH, line.trim_start()));
    }
    Ok(())
}

/// Every string in a parsed YAML tree, with where it is (`members[0].data_dir`), for
/// [`no_control`]; keys included.
pub fn strings_with_control(v: &serde_yaml_ng::Value, at: &str, found: &mut Vec<String>) {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) => {
            if let Err(e) = no_control(s) {
                found.push(format!("{at}: {e}"));
            }
        }
        Value::Sequence(items) => items.iter().enumerate().for_each(|(i, x)| strings_with_control(x, &format!("{at}[{i}]"), found)),
        Value::Mapping(m) => {
            for (k, x) in m {
                let key = k.as_str().map(str::to_string).unwrap_or_else(|| format!("{k:?}"));
                if let Err(e) = no_control(&key) {
                    found.push(format!("{at}: key {e}"));
                }
                let here = if at.is_empty() { key } else { format!("{at}.{key}") };
                strings_with_control(x, &here, found);
            }
        }
        Value::Tagged(t) => strings_with_control(&t.value, at, found),
        _ => {}
    }
}

/// Refuses an operator-named directory that another user could redirect root's writes out of
/// (it, or a directory above it, is not owned by root or the caller, or is writable by others);
/// `flag` names where it came from.
/// `p` as an absolute path (resolved when it exists): what a unit file or a cron line names.
pub fn absolute(p: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()))
}

pub fn trusted_dir(flag: &str, dir: &Path, writes: pki::safe_fs::Writes) -> crate::error::Result<()> {
    pki::safe_fs::check_dir(dir, writes).map_err(|source| crate::error::BootError::UntrustedDir { flag: flag.to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths() {
        for ok in ["/var/lib/etcd", "/srv/etcd/data", "/tmp/x/etcd-1", "/tmp/.tmpAb_c/etcd-1.data"] {
            assert!(member_path(Path::new(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "/",
            "/etc",
            "/var/lib",
            "/usr/local",
            "var/lib/etcd",
            "/var/lib/../etc",
            "/var//lib/etcd",
            "/var/lib/etcd/",
            "/var/./lib",
            "/x\nUNIT\ntouch /tmp/owned",
            "/x\u{1b}[2J",
            "/data dir/etcd",
            "/x$(id)",
            "/x/-rf",
        ] {
            assert!(member_path(Path::new(bad)).is_err(), "{bad:?}");
        }
        assert!(haproxy_path(Path::new("/etc/haproxy/k8s ca.crt")).is_err());
        assert!(haproxy_path(Path::new("/etc/haproxy/kubernetes-ca.crt")).is_ok());
    }

    #[test]
    fn ssh_destinations_and_options() {
        for ok in ["local", "root@10.0.0.11", "etcd-1", "admin@etcd-1.example.com", "[fd00::1]", "fd00::1", "ubuntu@[fd00::1]"] {
            assert!(ssh_destination(ok).is_ok(), "{ok}");
        }
        for bad in ["-oProxyCommand=touch /tmp/owned", "root@-oProxyCommand=x", "a b", "root@", "@host", "ro ot@h", "h\nx", "$(id)@h", "h;id"] {
            assert!(ssh_destination(bad).is_err(), "{bad:?}");
        }
        let o = |v: &[&str]| ssh_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(
            o(&[
                "-p",
                "2222",
                "-o",
                "StrictHostKeyChecking=no",
                "-oUserKnownHostsFile=/dev/null",
                "-i",
                "/root/.ssh/id",
                "-J",
                "bastion:22",
                "-F",
                "/dev/null"
            ])
            .is_ok()
        );
        for bad in [
            &["-o", "ProxyCommand=touch /tmp/owned"][..],
            &["-oLocalCommand=id"],
            &["-oPermitLocalCommand=yes"],
            &["-F", "relative/cfg"],
            &["-F", "/nonexistent/cfg"],
            &["-p", "x"],
            &["-J", "-oProxyCommand=x"],
            &["-o"],
        ] {
            assert!(o(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_binaries_versions() {
        assert!(cluster_token("prod-etcd").is_ok());
        assert!(cluster_token("a\nb").is_err() && cluster_token("").is_err() && cluster_token("a b").is_err());
        assert!(binary("etcd").is_ok() && binary("/opt/etcd/bin/etcd").is_ok());
        assert!(binary("etcd; id").is_err() && binary("-x").is_err() && binary("../etcd").is_err());
        assert_eq!(kubernetes_version("v1.34.2").unwrap(), (1, 34, 2));
        assert!(kubernetes_version("v1.34.0-rc.1").is_ok());
        for bad in ["1.34.2", "v1.34", "v1.34.2-\nx", "v1.34.2-", "v1.34.2 ", "v99999999999999999999.1.1"] {
            assert!(kubernetes_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deep_or_huge_specs_are_refused_at_once() {
        let deep = "[".repeat(100_000);
        let t = std::time::Instant::now();
        assert!(spec_text(&deep).unwrap_err().contains("nested"));
        assert!(spec_text(&"a: 1\n".repeat(300_000)).unwrap_err().contains("bytes"));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(spec_text("name: 'a[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[b' # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n").is_ok());
    }

    proptest::proptest! {
        #[test]
        fn rules_never_panic(s in "\\PC{0,60}") {
            let _ = member_path(Path::new(&s));
            let _ = haproxy_path(Path::new(&s));
            let _ = ssh_destination(&s);
            let _ = ssh_options(&[s.clone(), s.clone()]);
            let _ = cluster_token(&s);
            let _ = binary(&s);
            let _ = kubernetes_version(&s);
            let _ = spec_text(&s);
        }
    }
}

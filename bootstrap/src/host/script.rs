//! A host script is a static body from `host/scripts/*.sh` under a header of quoted assignments,
//! the one place values enter it: the bodies read only shell variables, so they are reviewed and
//! checked (shellcheck) as the shell files they are, and no value is ever spliced into their code.

/// The static bodies, one file each (`lib_*`: functions other bodies call).
pub mod body {
    pub const IS_ETCD: &str = include_str!("scripts/lib_is_etcd.sh");
    pub const STOP_ETCD: &str = include_str!("scripts/lib_stop_etcd.sh");
    pub const RESTORE_TOOL: &str = include_str!("scripts/lib_restore_tool.sh");
    pub const ADOPTED_FIND_PID: &str = include_str!("scripts/lib_adopted_find_pid.sh");
    pub const DELIVER: &str = include_str!("scripts/deliver.sh");
    pub const PUT_FILE: &str = include_str!("scripts/put_file.sh");
    pub const STATUS: &str = include_str!("scripts/status.sh");
    pub const PREFLIGHT: &str = include_str!("scripts/preflight.sh");
    pub const FORMATION: &str = include_str!("scripts/formation.sh");
    pub const START: &str = include_str!("scripts/start.sh");
    pub const STOP: &str = include_str!("scripts/stop.sh");
    pub const PURGE: &str = include_str!("scripts/purge.sh");
    pub const RETIRE: &str = include_str!("scripts/retire.sh");
    pub const V2_PROBE: &str = include_str!("scripts/v2_probe.sh");
    pub const V2STORE_PROBE: &str = include_str!("scripts/v2store_probe.sh");
    pub const FREE_SPACE: &str = include_str!("scripts/free_space.sh");
    pub const CLOCK_AND_SPACE: &str = include_str!("scripts/clock_and_space.sh");
    pub const RESTORE_TOOL_PROBE: &str = include_str!("scripts/restore_tool_probe.sh");
    pub const RESTORE_SNAPSHOT: &str = include_str!("scripts/restore_snapshot.sh");
    pub const DEFRAG_TOOL_PROBE: &str = include_str!("scripts/defrag_tool_probe.sh");
    pub const DEFRAG_OFFLINE: &str = include_str!("scripts/defrag_offline.sh");
    pub const PACKAGE_OWNER: &str = include_str!("scripts/package_owner.sh");
    pub const LB_PROBE: &str = include_str!("scripts/lb_probe.sh");
    pub const LOG_TAIL: &str = include_str!("scripts/log_tail.sh");
    pub const ETCD_VERSION: &str = include_str!("scripts/etcd_version.sh");
    pub const REMOVE_FILE: &str = include_str!("scripts/remove_file.sh");
    pub const FILE_CONTENT: &str = include_str!("scripts/file_content.sh");
    pub const DAEMON_RELOAD: &str = include_str!("scripts/daemon_reload.sh");
    pub const ADOPTED_STATUS: &str = include_str!("scripts/adopted_status.sh");
    pub const ADOPTED_START: &str = include_str!("scripts/adopted_start.sh");
    pub const ADOPTED_STOP: &str = include_str!("scripts/adopted_stop.sh");
    pub const UNIT_ENVIRONMENT: &str = include_str!("scripts/unit_environment.sh");
    pub const REJOIN_CHECK: &str = include_str!("scripts/rejoin_check.sh");
    pub const REMOVE_DROP_IN: &str = include_str!("scripts/remove_drop_in.sh");
    pub const PUBLIC_FILES: &str = include_str!("scripts/public_files.sh");
    pub const PROBE_PROCESS: &str = include_str!("scripts/probe_process.sh");
    pub const PROBE_FILES: &str = include_str!("scripts/probe_files.sh");
    pub const BINARIES_PRESENT: &str = include_str!("scripts/binaries_present.sh");

    /// Every body with its file name, for the checks over all of them.
    pub const ALL: &[(&str, &str)] = &[
        ("lib_is_etcd.sh", IS_ETCD),
        ("lib_stop_etcd.sh", STOP_ETCD),
        ("lib_restore_tool.sh", RESTORE_TOOL),
        ("lib_adopted_find_pid.sh", ADOPTED_FIND_PID),
        ("deliver.sh", DELIVER),
        ("put_file.sh", PUT_FILE),
        ("status.sh", STATUS),
        ("preflight.sh", PREFLIGHT),
        ("formation.sh", FORMATION),
        ("start.sh", START),
        ("stop.sh", STOP),
        ("purge.sh", PURGE),
        ("retire.sh", RETIRE),
        ("v2_probe.sh", V2_PROBE),
        ("v2store_probe.sh", V2STORE_PROBE),
        ("free_space.sh", FREE_SPACE),
        ("clock_and_space.sh", CLOCK_AND_SPACE),
        ("restore_tool_probe.sh", RESTORE_TOOL_PROBE),
        ("restore_snapshot.sh", RESTORE_SNAPSHOT),
        ("defrag_tool_probe.sh", DEFRAG_TOOL_PROBE),
        ("defrag_offline.sh", DEFRAG_OFFLINE),
        ("package_owner.sh", PACKAGE_OWNER),
        ("lb_probe.sh", LB_PROBE),
        ("log_tail.sh", LOG_TAIL),
        ("etcd_version.sh", ETCD_VERSION),
        ("remove_file.sh", REMOVE_FILE),
        ("file_content.sh", FILE_CONTENT),
        ("daemon_reload.sh", DAEMON_RELOAD),
        ("adopted_status.sh", ADOPTED_STATUS),
        ("adopted_start.sh", ADOPTED_START),
        ("adopted_stop.sh", ADOPTED_STOP),
        ("binaries_present.sh", BINARIES_PRESENT),
        ("unit_environment.sh", UNIT_ENVIRONMENT),
        ("rejoin_check.sh", REJOIN_CHECK),
        ("remove_drop_in.sh", REMOVE_DROP_IN),
        ("public_files.sh", PUBLIC_FILES),
        ("probe_process.sh", PROBE_PROCESS),
        ("probe_files.sh", PROBE_FILES),
    ];
}

/// Assignments, then bodies; [`Script::text`] is what a transport runs.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// (name, the quoted value or array)
    values: Vec<(&'static str, String)>,
    bodies: Vec<&'static str>,
}

impl Script {
    /// A script of `body` alone (values are added with [`Script::set`]).
    pub fn of(body: &'static str) -> Script {
        Script { values: Vec::new(), bodies: vec![body] }
    }

    /// `name='value'`: the value is one shell word whatever it holds.
    pub fn set(self, name: &'static str, value: impl AsRef<str>) -> Script {
        self.assign(name, sh_quote(value.as_ref()))
    }

    /// `name=('a' 'b' ...)`: a bash array, each value one word.
    pub fn set_words<S: AsRef<str>>(self, name: &'static str, values: impl IntoIterator<Item = S>) -> Script {
        let words: Vec<String> = values.into_iter().map(|v| sh_quote(v.as_ref())).collect();
        self.assign(name, format!("({})", words.join(" ")))
    }

    /// Every body sees every value: a name set twice must mean the same value (two parts that
    /// disagree would silently read the other's).
    fn assign(mut self, name: &'static str, quoted: String) -> Script {
        debug_assert!(is_name(name), "{name:?} is not a shell variable name");
        match self.values.iter().find(|(n, _)| *n == name) {
            Some((_, earlier)) => debug_assert_eq!(*earlier, quoted, "${name} set twice to different values"),
            None => self.values.push((name, quoted)),
        }
        self
    }

    /// `body` runs after the ones already there.
    pub fn then(mut self, body: &'static str) -> Script {
        self.bodies.push(body);
        self
    }

    /// `other`'s values join these and its bodies run after these.
    pub fn and(mut self, other: Script) -> Script {
        for (name, quoted) in other.values {
            self = self.assign(name, quoted);
        }
        self.bodies.extend(other.bodies);
        self
    }

    /// The header, then each body.
    pub fn text(&self) -> String {
        let mut s = String::from("# values (quoted once, here)\n");
        for (name, quoted) in &self.values {
            s.push_str(&format!("{name}={quoted}\n"));
        }
        for b in &self.bodies {
            s.push_str(b);
        }
        s
    }

    /// The name in the last body's `# host script: NAME` line (fakes answer by it).
    pub fn name_of(text: &str) -> &str {
        text.lines().filter_map(|l| l.strip_prefix("# host script: ")).next_back().unwrap_or("other")
    }
}

/// `'value'`, always quoted (a bare word such as `file` reads like a command to reviewers and to
/// shellcheck); a `'` inside becomes `'\''`.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_') && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `shellcheck` (Debian's package) over a script given on stdin; its findings, if any.
#[cfg(test)]
pub(crate) fn shellcheck(text: &str, exclude: &[&str]) -> Result<(), String> {
    use std::io::Write;
    let mut cmd = std::process::Command::new("shellcheck");
    cmd.args(["--shell=bash", "--severity=style", "--format=gcc"]);
    if !exclude.is_empty() {
        cmd.arg(format!("--exclude={}", exclude.join(",")));
    }
    let mut child = cmd
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run shellcheck ({e}): install Debian's package `shellcheck` (./test.sh installs it)"));
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to shellcheck");
    let out = child.wait_with_output().expect("shellcheck");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stdout).into_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_passes_shellcheck_on_its_own() {
        // SC2154 (read, never assigned): the values come from the header Rust writes
        let findings: Vec<String> = body::ALL.iter().filter_map(|(name, text)| shellcheck(text, &["SC2154"]).err().map(|f| format!("{name}:\n{f}"))).collect();
        assert!(findings.is_empty(), "{}", findings.join("\n"));
    }

    #[test]
    fn every_body_is_listed_and_named() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/host/scripts");
        let mut files: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.sort();
        let mut listed: Vec<String> = body::ALL.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(files, listed, "every file in host/scripts is in body::ALL");
        for (name, text) in body::ALL {
            let first = text.lines().next().unwrap_or("");
            assert!(first.starts_with("# host script: ") || first.starts_with("# host library: "), "{name} starts with its name line");
        }
    }

    #[test]
    fn values_become_single_words_and_a_name_set_twice_must_agree() {
        let s = Script::of("echo \"$a\" \"${b[@]}\"\n").set("a", "x'; touch CANARY; '").set_words("b", ["1 2", "$(id)"]).text();
        let out = std::process::Command::new("bash").arg("-c").arg(&s).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'; touch CANARY; ' 1 2 $(id)\n");
        let agree = Script::of("").set("a", "1").and(Script::of("").set("a", "1")).text();
        assert_eq!(agree.matches("a=").count(), 1);
        let disagree = std::panic::catch_unwind(|| Script::of("").set("a", "1").and(Script::of("").set("a", "2")));
        assert!(disagree.is_err(), "two parts that disagree on a value are a bug");
    }
}

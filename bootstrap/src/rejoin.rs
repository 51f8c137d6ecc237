//! `replace` on an adopted member: its one start as a joiner, with nothing of its operator's
//! setup edited. A member configured by flags or `ETCD_*` gets one flag more, given last (a later
//! flag wins over an earlier one and over the environment). A member configured by a config file
//! (which makes etcd ignore every flag) gets `--config-file=` a copy of that file in its run dir
//! with `initial-cluster-state: existing`, given last too. etcd reads the state only on a first
//! start: later starts use the command line as adopted.

use crate::adopt::probe;
use crate::context::Ctx;
use crate::error::{BootError, Result};
use crate::in_place::adopted;
use crate::plan::{sh_quote as q, MemberPlan};
use std::path::PathBuf;

/// What a member configured by flags or environment is started with once, last.
pub const JOIN_FLAG: &str = "--initial-cluster-state=existing";

/// The copy of a config-file member's file that `replace` starts it with once.
fn joiner_config(m: &MemberPlan) -> PathBuf {
    m.spec.run_dir.join(format!("{}.joiner.conf.yml", m.spec.name))
}

/// The one argument `replace` appends to the member's command line for its start as a joiner
/// (and that a running member may still carry until its next restart).
pub(crate) fn joiner_tail(m: &MemberPlan) -> Result<String> {
    Ok(match adopted(m)?.config_file {
        Some(_) => format!("--config-file={}", joiner_config(m).display()),
        None => JOIN_FLAG.to_string(),
    })
}

/// `text` (an etcd config file) with `initial-cluster-state: existing`, every other line as it
/// was: the top-level key is replaced where it is, or added at the end. Checked by parsing both
/// as etcd would read them: only that setting may differ.
pub fn joiner_config_text(text: &str) -> std::result::Result<String, String> {
    use crate::adopt::effective::config_file_settings;
    let key = |l: &str| l.strip_prefix("initial-cluster-state").is_some_and(|rest| rest.trim_start().starts_with(':'));
    let mut lines: Vec<String> = text.lines().map(|l| if key(l) { "initial-cluster-state: existing".to_string() } else { l.to_string() }).collect();
    if !text.lines().any(key) {
        lines.push("initial-cluster-state: existing".into());
    }
    let out = lines.join("\n") + "\n";
    let mut before = config_file_settings(text)?;
    let after = config_file_settings(&out).map_err(|e| format!("with initial-cluster-state: existing it does not parse: {e}"))?;
    before.insert("initial-cluster-state".into(), "existing".into());
    if after != before {
        return Err("its layout keeps initial-cluster-state from being set on a line of its own".into());
    }
    Ok(out)
}

/// Reads the member's config file on its host and makes its joiner copy's text.
fn joiner_copy(ctx: &Ctx, m: &MemberPlan) -> Result<Option<String>> {
    let Some(file) = adopted(m)?.config_file.clone() else { return Ok(None) };
    let refuse = |reason: String| BootError::Precondition { what: format!("replace {}", m.spec.name), reason: format!("{}: {reason}", file.display()) };
    let out = ctx.run_on(m, &format!("f={}\nif [ -f \"$f\" ]; then echo \"content=$(base64 -w0 < \"$f\")\"; fi\n", q(&file.display().to_string())))?;
    let text = out.value("content").ok_or_else(|| refuse("not on its host".into()))?;
    let text = String::from_utf8(probe::unbase64(&text)).map_err(|_| refuse("not UTF-8 text".into()))?;
    joiner_config_text(&text).map(Some).map_err(refuse)
}

/// Whether an adopted member can be started again as a joiner without changing its operator's
/// setup: a plain process (a unit or a pod would have to be edited) whose TLS files are in
/// place and whose config file, if any, can be copied with the joiner's state.
pub(crate) fn can_rejoin(ctx: &Ctx, m: &MemberPlan) -> Result<()> {
    let a = adopted(m)?;
    let refuse = |reason: String| BootError::Precondition { what: format!("replace {}", m.spec.name), reason };
    if !matches!(a.supervisor, probe::Supervisor::Process) {
        return Err(refuse(format!(
            "it runs as {}: starting it once with --initial-cluster-state=existing would mean editing that; README \"Adopting an existing cluster\" gives the steps by hand",
            crate::adopt::supervisor_word(&a.supervisor),
        )));
    }
    let mut script = String::from("set -u\n");
    for p in a.tls.values() {
        script.push_str(&format!("[ -f {p} ] || echo \"missing=$(printf %s {p} | base64 -w0)\"\n", p = q(&p.display().to_string())));
    }
    let out = ctx.run_on(m, &script)?;
    let missing: Vec<String> = out.stdout.lines().filter_map(|l| l.strip_prefix("missing=")).map(|b| String::from_utf8_lossy(&probe::unbase64(b)).into_owned()).collect();
    if !missing.is_empty() {
        return Err(refuse(format!("its TLS files are not on its host: {}", missing.join(", "))));
    }
    joiner_copy(ctx, m).map(|_| ())
}

/// The member as `replace` starts it once: its own command line, then [`joiner_tail`]; a
/// config-file member's joiner copy is written (0600, in its run dir) first.
pub(crate) fn joiner(ctx: &Ctx, m: &MemberPlan) -> Result<MemberPlan> {
    if let Some(text) = joiner_copy(ctx, m)? {
        ctx.deliver(m, &[(joiner_config(m).display().to_string(), 0o600, text.into_bytes())])?;
    }
    let tail = joiner_tail(m)?;
    let mut j = m.clone();
    if let Some(a) = j.spec.adopted.as_mut() {
        a.command_line.push(tail);
    }
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::joiner_config_text;
    use crate::adopt::effective::config_file_settings;

    #[test]
    fn the_joiner_copy_changes_one_setting_and_nothing_else() {
        let text = "name: etcd-3\n# the lab\ninitial-cluster-state: new\nclient-transport-security:\n  cert-file: /etc/etcd/pki/etcd.pem\n  client-cert-auth: true\n";
        let out = joiner_config_text(text).unwrap();
        assert_eq!(out, text.replace("initial-cluster-state: new", "initial-cluster-state: existing"));
        let added = joiner_config_text("name: etcd-3\ndata-dir: /var/lib/etcd").unwrap();
        assert_eq!(added, "name: etcd-3\ndata-dir: /var/lib/etcd\ninitial-cluster-state: existing\n");
        assert_eq!(config_file_settings(&added).unwrap()["initial-cluster-state"], "existing");
    }

    #[test]
    fn a_layout_the_line_edit_cannot_handle_is_refused() {
        // flow style, a quoted key, a nested look-alike: the check by parsing refuses each
        for text in ["{name: etcd-3, initial-cluster-state: new}", "\"initial-cluster-state\": new\n", "- a list\n", "name: [unclosed\n"] {
            assert!(joiner_config_text(text).is_err(), "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_config_text_makes_the_copy_panic(text in ".{0,300}") {
            if let Ok(out) = joiner_config_text(&text) {
                let settings = config_file_settings(&out).unwrap();
                proptest::prop_assert_eq!(settings["initial-cluster-state"].as_str(), "existing");
            }
        }
    }
}

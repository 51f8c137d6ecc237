//! `replace` on an adopted member: its one start as a joiner, with nothing of its operator's
//! setup edited. A member configured by flags or `ETCD_*` gets one flag more, given last (a later
//! flag wins over an earlier one and over the environment). A member configured by a config file
//! (which makes etcd ignore every flag) gets `--config-file=` a copy of that file in its run dir
//! with `initial-cluster-state: existing`, given last too. A plain process is started so
//! directly; a systemd unit through a runtime drop-in (`/run/systemd/system/UNIT.d/`, gone at
//! reboot, removed once the member runs) whose `ExecStart=` is the command line as adopted plus
//! that argument: the unit file and its own drop-ins are never touched. etcd reads the state only
//! on a first start: later starts use the command line as adopted.

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

/// A unit name systemd accepts, which is also safe as a path component.
fn unit_name_ok(unit: &str) -> bool {
    !unit.starts_with('.') && unit.ends_with(".service") && unit.chars().all(|c| c.is_ascii_alphanumeric() || ":_.@-".contains(c))
}

/// The runtime drop-in that starts a unit's member once as a joiner.
fn joiner_drop_in(unit: &str) -> String {
    format!("/run/systemd/system/{unit}.d/50-etcd-bootstrap-joiner.conf")
}

/// Whether an adopted member can be started again as a joiner without changing its operator's
/// setup: a plain process or a systemd unit (a static pod would need its manifest edited) whose
/// TLS files are in place, whose config file, if any, can be copied with the joiner's state,
/// and, for a unit, whose file systemd has loaded as it is (a reload must not bring in an
/// operator's pending edit).
pub(crate) fn can_rejoin(ctx: &Ctx, m: &MemberPlan) -> Result<()> {
    let a = adopted(m)?;
    let refuse = |reason: String| BootError::Precondition { what: format!("replace {}", m.spec.name), reason };
    let mut script = String::from("set -u\n");
    match &a.supervisor {
        probe::Supervisor::Process => {}
        probe::Supervisor::Systemd { unit, .. } if unit_name_ok(unit) => {
            script.push_str(&format!("echo \"reload=$(systemctl show -p NeedDaemonReload --value -- {})\"\n", q(unit)));
        }
        probe::Supervisor::StaticPod { manifest } => {
            // kubeadm's stacked etcd: its membership is kubeadm's, and so is its replacement
            return Err(refuse(format!(
                "it runs as a kubelet static pod ({manifest}), whose member kubeadm adds and removes with its control-plane node: on that node run `kubeadm reset`, then `etcdctl member remove ID` if it is still listed, then `kubeadm join --control-plane` (README \"Adopting an existing cluster\")"
            )));
        }
        other => {
            return Err(refuse(format!(
                "it runs as {}: starting it once with --initial-cluster-state=existing would mean editing that; README \"Adopting an existing cluster\" gives the steps by hand",
                crate::adopt::supervisor_word(other),
            )));
        }
    }
    for p in a.tls.values() {
        script.push_str(&format!("[ -f {p} ] || echo \"missing=$(printf %s {p} | base64 -w0)\"\n", p = q(&p.display().to_string())));
    }
    let out = ctx.run_on(m, &script)?;
    let missing: Vec<String> = out.stdout.lines().filter_map(|l| l.strip_prefix("missing=")).map(|b| String::from_utf8_lossy(&probe::unbase64(b)).into_owned()).collect();
    if !missing.is_empty() {
        return Err(refuse(format!("its TLS files are not on its host: {}", missing.join(", "))));
    }
    if out.value("reload").as_deref() == Some("yes") {
        return Err(refuse("its unit file changed since systemd loaded it: check the change, run `systemctl daemon-reload`, then replace again".into()));
    }
    joiner_copy(ctx, m).map(|_| ())
}

/// Readies the member's one start as a joiner and returns it as `replace` starts it: a plain
/// process with [`joiner_tail`] after its own command line; a unit with the drop-in that gives
/// its `ExecStart=` so. A config-file member's joiner copy is written (0600, in its run dir) first.
pub(crate) fn joiner(ctx: &Ctx, m: &MemberPlan) -> Result<MemberPlan> {
    if let Some(text) = joiner_copy(ctx, m)? {
        ctx.deliver(m, &[(joiner_config(m).display().to_string(), 0o600, text.into_bytes())])?;
    }
    let tail = joiner_tail(m)?;
    let mut j = m.clone();
    let Some(a) = j.spec.adopted.as_mut() else { return Ok(j) };
    if let probe::Supervisor::Systemd { unit, .. } = &a.supervisor {
        ctx.deliver(m, &[(joiner_drop_in(unit), 0o644, drop_in_text(a, &tail).into_bytes())])?;
        let out = ctx.run_on(m, "systemctl daemon-reload\n")?;
        if !out.ok() {
            return Err(BootError::Precondition { what: format!("replace {}", m.spec.name), reason: format!("systemctl daemon-reload: {}", out.stderr.trim()) });
        }
    } else {
        a.command_line.push(tail);
    }
    Ok(j)
}

/// The drop-in's text: `ExecStart=` reset, then the member's binary and command line as adopted
/// plus `tail`, each word quoted for systemd (specifiers and variables doubled).
fn drop_in_text(a: &crate::spec_adopted::AdoptedMember, tail: &str) -> String {
    let words: Vec<String> = std::iter::once(a.binary.display().to_string()).chain(a.command_line.iter().cloned()).chain([tail.to_string()]).map(|w| crate::scripts::systemd_quote(&w)).collect();
    format!("# etcd-bootstrap replace: this member's one start as a joiner; removed once it runs\n[Service]\nExecStart=\nExecStart={}\n", words.join(" "))
}

/// After the joiner started (and again when `replace` finishes, for a run killed in between):
/// a unit's drop-in removed and systemd reloaded, so its next start is the operator's own.
pub(crate) fn forget_joiner(ctx: &Ctx, m: &MemberPlan) -> Result<()> {
    let Some(probe::Supervisor::Systemd { unit, .. }) = m.spec.adopted.as_ref().map(|a| &a.supervisor) else { return Ok(()) };
    if !unit_name_ok(unit) {
        return Ok(());
    }
    let f = joiner_drop_in(unit);
    let script = format!("set -eu\nf={f}\nif [ -e \"$f\" ]; then rm -f -- \"$f\"; rmdir -- \"$(dirname -- \"$f\")\" 2>/dev/null || true; systemctl daemon-reload; fi\n", f = q(&f));
    let out = ctx.run_on(m, &script)?;
    if out.ok() { Ok(()) } else { Err(BootError::Precondition { what: format!("replace {}", m.spec.name), reason: format!("removing {f}: {}", out.stderr.trim()) }) }
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

    #[test]
    fn the_drop_in_keeps_every_recorded_word_one_word() {
        let a = crate::spec_adopted::AdoptedMember {
            supervisor: crate::adopt::probe::Supervisor::Systemd { unit: "etcd.service".into(), fragment: "/etc/systemd/system/etcd.service".into() },
            settings_from: "flags".into(),
            config_file: None,
            binary: "/usr/local/bin/etcd".into(),
            version: "3.5.30".into(),
            tls: Default::default(),
            command_line: vec!["--name".into(), "a b\nExecStartPre=/bin/touch /CANARY".into(), "--x=%h$HOME\"q\\".into()],
            working_dir: "/".into(),
            environment: Default::default(),
        };
        let text = super::drop_in_text(&a, super::JOIN_FLAG);
        assert_eq!(text.lines().filter(|l| l.starts_with("ExecStart")).count(), 2, "one reset, one command: {text}");
        assert!(!text.contains("\nExecStartPre"), "{text}");
        assert!(text.contains(r#" "--x=%%h$$HOME\"q\\" "#), "{text}");
        assert!(text.trim_end().ends_with(" --initial-cluster-state=existing"), "{text}");
        for bad in ["../etc.service", "a/b.service", "etcd", ".service", "e tcd.service"] {
            assert!(!super::unit_name_ok(bad), "{bad}");
        }
        assert!(super::unit_name_ok("etcd@member-1.service"));
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

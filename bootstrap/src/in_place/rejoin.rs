//! `replace` on an adopted member: its one start as a joiner, with nothing of its operator's
//! setup edited, told the cluster exists the way its configuration source allows (etcd's rules:
//! a config file makes etcd ignore every flag and variable; otherwise a flag and its `ETCD_*`
//! variable together are fatal — "conflicting environment variable is shadowed by corresponding
//! command-line flag" —, so a state the environment sets must be changed in the environment):
//! - a config file: `--config-file=` a copy of it in its run dir with
//!   `initial-cluster-state: existing`, given last;
//! - `ETCD_INITIAL_CLUSTER_STATE` in its environment (kubespray's `/etc/etcd.env`, etcdadm's
//!   `etcd.env`): that variable set to `existing` for this one start, and no flag;
//! - otherwise one flag more, given last (a later flag wins over an earlier one).
//!
//! A plain process is started so directly; a systemd unit through a runtime drop-in
//! (`/run/systemd/system/UNIT.d/`, gone at reboot, removed once the member runs) whose
//! `ExecStart=` is the command line as adopted plus that argument, or run through `env
//! ETCD_INITIAL_CLUSTER_STATE=existing` (an `Environment=` line would lose to the unit's
//! `EnvironmentFile=`): the unit file and its own drop-ins are never touched. etcd reads the
//! state only on a first start: later starts use the command line as adopted.

use crate::adopt::probe;
use crate::error::{BootError, Result};
use crate::host::script::{Script, body};
use crate::plan::MemberPlan;
use crate::run::context::Ctx;
use crate::spec::adopted::AdoptedMember;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a member configured by flags is started with once, last.
pub const JOIN_FLAG: &str = "--initial-cluster-state=existing";
/// The variable an environment-configured member's state is given by.
pub const JOIN_VAR: &str = "ETCD_INITIAL_CLUSTER_STATE";

/// How an adopted member is told, for one start, that it joins an existing cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinBy {
    /// `--config-file=` the joiner copy of its config file.
    ConfigCopy(PathBuf),
    /// `ETCD_INITIAL_CLUSTER_STATE=existing` in place of the recorded value.
    Environment,
    /// [`JOIN_FLAG`] after its command line.
    Flag,
}

/// The copy of a config-file member's file that `replace` starts it with once.
fn joiner_config(m: &MemberPlan) -> PathBuf {
    m.spec.run_dir.join(format!("{}.joiner.conf.yml", m.spec.name))
}

/// How `a` is started as a joiner, by its configuration source.
pub fn join_by(a: &AdoptedMember, config_copy: PathBuf) -> JoinBy {
    if a.config_file.is_some() {
        JoinBy::ConfigCopy(config_copy)
    } else if a.environment.contains_key(JOIN_VAR) {
        JoinBy::Environment
    } else {
        JoinBy::Flag
    }
}

/// The joiner's command line and environment: the member's own, told it joins.
pub fn joiner_start(a: &AdoptedMember, by: &JoinBy) -> (Vec<String>, BTreeMap<String, String>) {
    let (mut argv, mut env) = (a.command_line.clone(), a.environment.clone());
    match by {
        JoinBy::ConfigCopy(copy) => argv.push(format!("--config-file={}", copy.display())),
        JoinBy::Environment => {
            env.insert(JOIN_VAR.into(), "existing".into());
        }
        JoinBy::Flag => argv.push(JOIN_FLAG.into()),
    }
    (argv, env)
}

/// What etcd would refuse to start with (its flag/variable conflict rule; a config file makes
/// it read neither): each flag whose `ETCD_*` variable is set too. Empty for a start etcd accepts.
pub fn start_conflicts(argv: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut full = vec!["etcd".to_string()];
    full.extend(argv.iter().cloned());
    let (flags, _) = crate::adopt::effective::parse_flags(&full);
    if flags.iter().any(|(k, _)| k == "config-file") {
        return vec![];
    }
    let mut out: Vec<String> = flags
        .iter()
        .filter_map(|(k, _)| {
            let var = format!("ETCD_{}", k.to_uppercase().replace('-', "_"));
            env.contains_key(&var).then(|| format!("--{k} shadows {var}"))
        })
        .collect();
    out.dedup();
    out
}

/// The one argument `replace` appends to the member's command line for its start as a joiner
/// (and that a running member may still carry until its next restart); none when the
/// environment says it.
pub(crate) fn joiner_tail(m: &MemberPlan) -> Result<Option<String>> {
    let a = m.adopted()?;
    let (argv, _) = joiner_start(a, &join_by(a, joiner_config(m)));
    Ok((argv.len() > a.command_line.len()).then(|| argv.last().cloned()).flatten())
}

/// The member as etcd will see it at its start: for a systemd unit, the environment is the unit's
/// own (`Environment=`, then its `EnvironmentFile=`s, which win), read on its host now; the spec
/// keeps a plain process's only.
pub(crate) fn as_started(ctx: &Ctx, m: &MemberPlan) -> Result<AdoptedMember> {
    let mut a = m.adopted()?.clone();
    if let crate::spec::adopted::AdoptedSupervisor::Systemd { unit, .. } = &a.supervisor {
        let out = ctx.run_on(m, &Script::of(body::UNIT_ENVIRONMENT).set("adopted_unit", unit).text())?;
        let mut env = BTreeMap::new();
        let inline = String::from_utf8_lossy(&probe::unbase64(&out.value("environment").unwrap_or_default())).into_owned();
        env.extend(inline.split_whitespace().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())));
        for f in out.values("envfile") {
            env.extend(crate::adopt::risks::env_file(&String::from_utf8_lossy(&probe::unbase64(&f))));
        }
        env.retain(|k, _| k.starts_with("ETCD_"));
        a.environment = env;
    }
    Ok(a)
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

/// The member's config file as it is on its host now (`None` when it has none).
pub(crate) fn config_text(ctx: &Ctx, m: &MemberPlan, what: &str) -> Result<Option<String>> {
    let Some(file) = m.adopted()?.config_file.clone() else { return Ok(None) };
    let refuse = |reason: String| BootError::Precondition { what: format!("{what} {}", m.spec.name), reason: format!("{}: {reason}", file.display()) };
    let out = ctx.run_on(m, &crate::host::scripts::file_content(&file.display().to_string()))?;
    let text = out.value("content").ok_or_else(|| refuse("not on its host".into()))?;
    String::from_utf8(probe::unbase64(&text)).map(Some).map_err(|_| refuse("not UTF-8 text".into()))
}

/// Reads the member's config file on its host and makes its joiner copy's text.
fn joiner_copy(ctx: &Ctx, m: &MemberPlan) -> Result<Option<String>> {
    let Some(text) = config_text(ctx, m, "replace")? else { return Ok(None) };
    let file = m.adopted()?.config_file.clone().unwrap_or_default();
    joiner_config_text(&text)
        .map(Some)
        .map_err(|reason| BootError::Precondition { what: format!("replace {}", m.spec.name), reason: format!("{}: {reason}", file.display()) })
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
    let a = m.adopted()?;
    let refuse = |reason: String| BootError::Precondition { what: format!("replace {}", m.spec.name), reason };
    let adopted_unit = match &a.supervisor {
        crate::spec::adopted::AdoptedSupervisor::Process => "",
        crate::spec::adopted::AdoptedSupervisor::Systemd { unit, .. } if unit_name_ok(unit) => unit.as_str(),
        crate::spec::adopted::AdoptedSupervisor::StaticPod { manifest } => {
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
    };
    let started = as_started(ctx, m)?;
    let (argv, env) = joiner_start(&started, &join_by(&started, joiner_config(m)));
    let conflicts = start_conflicts(&argv, &env);
    if !conflicts.is_empty() {
        return Err(refuse(format!(
            "etcd would refuse its start as a joiner ({}): a flag and its ETCD_* variable together are fatal; remove one of each pair from its setup, then replace again",
            conflicts.join(", ")
        )));
    }
    let script = Script::of(body::REJOIN_CHECK).set("adopted_unit", adopted_unit).set_words("tls_files", a.tls.values().map(|p| p.display().to_string()));
    let out = ctx.run_on(m, &script.text())?;
    let missing: Vec<String> =
        out.stdout.lines().filter_map(|l| l.strip_prefix("missing=")).map(|b| String::from_utf8_lossy(&probe::unbase64(b)).into_owned()).collect();
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
    let started = as_started(ctx, m)?;
    let by = join_by(&started, joiner_config(m));
    let mut j = m.clone();
    let Some(a) = j.spec.adopted.as_mut() else { return Ok(j) };
    let (argv, env) = joiner_start(a, &by);
    if let crate::spec::adopted::AdoptedSupervisor::Systemd { unit, .. } = &a.supervisor {
        ctx.deliver(m, &[(joiner_drop_in(unit), 0o644, drop_in_text(a, &by).into_bytes())])?;
        let out = ctx.run_on(m, &crate::host::scripts::daemon_reload())?;
        if !out.ok() {
            return Err(BootError::Precondition {
                what: format!("replace {}", m.spec.name),
                reason: format!("systemctl daemon-reload: {}", out.stderr.trim()),
            });
        }
    } else {
        a.command_line = argv;
        a.environment = env;
    }
    Ok(j)
}

/// The drop-in's text: `ExecStart=` reset, then the member's binary and command line as adopted
/// with the joiner's argument, or run through `env` with the joiner's variable, each word quoted
/// for systemd (specifiers and variables doubled).
fn drop_in_text(a: &AdoptedMember, by: &JoinBy) -> String {
    let (argv, _) = joiner_start(a, by);
    let through_env = match by {
        JoinBy::Environment => vec!["/usr/bin/env".to_string(), format!("{JOIN_VAR}=existing")],
        _ => vec![],
    };
    let words: Vec<String> =
        through_env.into_iter().chain(std::iter::once(a.binary.display().to_string())).chain(argv).map(|w| crate::host::scripts::systemd_quote(&w)).collect();
    format!("# etcd-bootstrap replace: this member's one start as a joiner; removed once it runs\n[Service]\nExecStart=\nExecStart={}\n", words.join(" "))
}

/// After the joiner started (and again when `replace` finishes, for a run killed in between):
/// a unit's drop-in removed and systemd reloaded, so its next start is the operator's own.
pub(crate) fn forget_joiner(ctx: &Ctx, m: &MemberPlan) -> Result<()> {
    let Some(crate::spec::adopted::AdoptedSupervisor::Systemd { unit, .. }) = m.spec.adopted.as_ref().map(|a| &a.supervisor) else { return Ok(()) };
    if !unit_name_ok(unit) {
        return Ok(());
    }
    let f = joiner_drop_in(unit);
    let out = ctx.run_on(m, &Script::of(body::REMOVE_DROP_IN).set("file", &f).text())?;
    if out.ok() { Ok(()) } else { Err(crate::run::live::host_err(m, &format!("removing {f}"), &out)) }
}

#[cfg(test)]
mod tests {
    use super::joiner_config_text;
    use crate::adopt::effective::config_file_settings;

    #[test]
    fn the_joiner_copy_changes_one_setting_and_nothing_else() {
        let text =
            "name: etcd-3\n# the lab\ninitial-cluster-state: new\nclient-transport-security:\n  cert-file: /etc/etcd/pki/etcd.pem\n  client-cert-auth: true\n";
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
        let a = crate::spec::adopted::AdoptedMember {
            supervisor: crate::spec::adopted::AdoptedSupervisor::Systemd { unit: "etcd.service".into(), fragment: "/etc/systemd/system/etcd.service".into() },
            settings_from: "flags".into(),
            config_file: None,
            binary: "/usr/local/bin/etcd".into(),
            version: "3.5.30".into(),
            tls: Default::default(),
            command_line: vec!["--name".into(), "a b\nExecStartPre=/bin/touch /CANARY".into(), "--x=%h$HOME\"q\\".into()],
            working_dir: "/".into(),
            environment: Default::default(),
        };
        let text = super::drop_in_text(&a, &super::JoinBy::Flag);
        assert_eq!(text.lines().filter(|l| l.starts_with("ExecStart")).count(), 2, "one reset, one command: {text}");
        assert!(!text.contains("\nExecStartPre"), "{text}");
        assert!(text.contains(r#" "--x=%%h$$HOME\"q\\" "#), "{text}");
        assert!(text.trim_end().ends_with(" --initial-cluster-state=existing"), "{text}");
        for bad in ["../etc.service", "a/b.service", "etcd", ".service", "e tcd.service"] {
            assert!(!super::unit_name_ok(bad), "{bad}");
        }
        assert!(super::unit_name_ok("etcd@member-1.service"));
    }

    fn member(command_line: &[&str], env: &[(&str, &str)], config_file: Option<&str>) -> crate::spec::adopted::AdoptedMember {
        crate::spec::adopted::AdoptedMember {
            supervisor: crate::spec::adopted::AdoptedSupervisor::Process,
            settings_from: "flags".into(),
            config_file: config_file.map(Into::into),
            binary: "/usr/local/bin/etcd".into(),
            version: "3.5.30".into(),
            tls: Default::default(),
            command_line: command_line.iter().map(|s| s.to_string()).collect(),
            working_dir: "/".into(),
            environment: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// The state etcd would start with, by its own precedence (a config file aside).
    fn effective_state(argv: &[String], env: &std::collections::BTreeMap<String, String>) -> Option<String> {
        let mut full = vec!["etcd".to_string()];
        full.extend(argv.iter().cloned());
        let (flags, _) = crate::adopt::effective::parse_flags(&full);
        flags.iter().rev().find(|(k, _)| k == "initial-cluster-state").map(|(_, v)| v.clone()).or_else(|| env.get(super::JOIN_VAR).cloned())
    }

    #[test]
    fn each_configuration_source_is_told_it_joins_its_own_way() {
        use super::{JoinBy, join_by, joiner_start, start_conflicts};
        let copy = std::path::PathBuf::from("/run/etcd/etcd-3.joiner.conf.yml");
        // kubespray's /etc/etcd.env: the state is an ETCD_* variable; a flag beside it is fatal
        let kubespray = member(&[], &[("ETCD_NAME", "etcd-2"), ("ETCD_INITIAL_CLUSTER_STATE", "new"), ("ETCD_DATA_DIR", "/var/lib/etcd")], None);
        assert_eq!(join_by(&kubespray, copy.clone()), JoinBy::Environment);
        let (argv, env) = joiner_start(&kubespray, &JoinBy::Environment);
        assert!(argv.is_empty() && env["ETCD_INITIAL_CLUSTER_STATE"] == "existing" && env["ETCD_NAME"] == "etcd-2", "{argv:?} {env:?}");
        assert!(start_conflicts(&argv, &env).is_empty());
        // what replace did before: the flag on top of the variable, which etcd refuses
        assert_eq!(
            start_conflicts(&["--initial-cluster-state=existing".into()], &kubespray.environment),
            vec!["--initial-cluster-state shadows ETCD_INITIAL_CLUSTER_STATE"]
        );
        // an environment that leaves the state to etcd's default: the flag
        let env_only = member(&[], &[("ETCD_NAME", "etcd-2")], None);
        assert_eq!(join_by(&env_only, copy.clone()), JoinBy::Flag);
        let (argv, env) = joiner_start(&env_only, &JoinBy::Flag);
        assert_eq!((effective_state(&argv, &env).as_deref(), start_conflicts(&argv, &env).len()), (Some("existing"), 0));
        // flags, the state among them: a later flag wins
        let flags = member(&["--name", "etcd-1", "--initial-cluster-state", "new"], &[], None);
        let (argv, env) = joiner_start(&flags, &join_by(&flags, copy.clone()));
        assert_eq!(effective_state(&argv, &env).as_deref(), Some("existing"));
        // a config file: the copy, whatever the environment holds (etcd then reads neither)
        let file = member(&["--config-file", "/etc/etcd/etcd.conf.yml"], &[("ETCD_INITIAL_CLUSTER_STATE", "new")], Some("/etc/etcd/etcd.conf.yml"));
        let by = join_by(&file, copy.clone());
        assert_eq!(by, JoinBy::ConfigCopy(copy.clone()));
        let (argv, env) = joiner_start(&file, &by);
        assert_eq!(argv.last().map(String::as_str), Some("--config-file=/run/etcd/etcd-3.joiner.conf.yml"));
        assert!(start_conflicts(&argv, &env).is_empty());
        // a unit's drop-in sets the variable through env(1): EnvironmentFile= would beat Environment=
        let text = super::drop_in_text(&kubespray, &JoinBy::Environment);
        assert!(text.contains("ExecStart=/usr/bin/env ETCD_INITIAL_CLUSTER_STATE=existing /usr/local/bin/etcd\n"), "{text}");
    }

    proptest::proptest! {
        /// Whatever a running member was given (it ran, so nothing conflicted), its joiner start
        /// never conflicts and always has the state `existing`.
        #[test]
        fn the_joiners_start_never_conflicts_and_always_joins(
            flags in proptest::collection::vec(("(name|data-dir|initial-cluster-state|listen-peer-urls|cert-file)", "[a-z0-9/.:-]{1,12}"), 0..5),
            vars in proptest::collection::vec(("(NAME|DATA_DIR|INITIAL_CLUSTER_STATE|LISTEN_PEER_URLS|CERT_FILE|INITIAL_CLUSTER)", "[a-z0-9/.:-]{1,12}"), 0..5),
        ) {
            let argv: Vec<String> = flags.iter().flat_map(|(k, v)| [format!("--{k}"), v.clone()]).collect();
            let env: std::collections::BTreeMap<String, String> = vars.iter().map(|(k, v)| (format!("ETCD_{k}"), v.clone())).collect();
            let a = member(&argv.iter().map(String::as_str).collect::<Vec<_>>(), &[], None);
            let a = crate::spec::adopted::AdoptedMember { environment: env.clone(), ..a };
            proptest::prop_assume!(super::start_conflicts(&argv, &env).is_empty());
            let by = super::join_by(&a, "/run/x.yml".into());
            let (jargv, jenv) = super::joiner_start(&a, &by);
            proptest::prop_assert!(super::start_conflicts(&jargv, &jenv).is_empty(), "{:?} {:?}", jargv, jenv);
            let state = effective_state(&jargv, &jenv);
            proptest::prop_assert_eq!(state.as_deref(), Some("existing"));
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

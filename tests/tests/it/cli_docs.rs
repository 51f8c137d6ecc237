//! Shell completions and man pages as users install them (issue 29): each command's
//! `completion bash` is sourced in a real bash, which then completes a subcommand and a flag;
//! `completion zsh|fish` name the command; each `man` page renders with `man -l`; `--version`
//! names the etcd and Kubernetes versions supported.

use integration_tests::{Ran, bin, run_bounded};
use std::process::Command;
use std::time::Duration;

fn run(name: &str, args: &[&str]) -> Ran {
    run_bounded(Command::new(bin(name)).args(args), Duration::from_secs(30)).assert_ok()
}

/// What bash's completion function of `name` offers for the words typed so far.
fn complete(name: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("completion.bash");
    let text = run(name, &["completion", "bash"]).stdout;
    // the function bash calls, as the script registers it (`complete -F FUNC ... NAME`)
    let func = text
        .lines()
        .find_map(|l| l.split("complete -F ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `complete -F` in {name}'s script"))
        .to_string();
    std::fs::write(&script, &text).unwrap();
    let words = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
    let body = format!(
        "source '{}'\nCOMP_WORDS=({words})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n{func} \"{name}\" \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
    );
    let out = run_bounded(Command::new("bash").args(["--norc", "--noprofile", "-c", &body]), Duration::from_secs(30)).assert_ok();
    out.stdout.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn bash_completes_subcommands_and_flags_of_each_command() {
    for (name, sub_typed, sub, flag_words, flag) in [
        ("etcd-bootstrap", "rot", "rotate", &["etcd-bootstrap", "up", "--wa"][..], "--wait"),
        ("etcdctl-lite", "quo", "quorum", &["etcdctl-lite", "endpoint", "health", "--clu"][..], "--cluster"),
        ("pki", "init", "init-ca", &["pki", "issue", "--ou"][..], "--out"),
    ] {
        let subs = complete(name, &[name, sub_typed]);
        assert!(subs.iter().any(|s| s == sub), "{name} {sub_typed}<TAB>: {subs:?}");
        let flags = complete(name, flag_words);
        assert!(flags.iter().any(|s| s == flag), "{flag_words:?}<TAB>: {flags:?}");
        for shell in ["zsh", "fish"] {
            let script = run(name, &["completion", shell]).stdout;
            assert!(script.contains(name) && script.lines().count() > 10, "{name} completion {shell}: {script}");
        }
    }
}

#[test]
fn each_man_page_renders_with_man() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["etcd-bootstrap", "etcdctl-lite", "pki"] {
        let page = dir.path().join(format!("{name}.1"));
        std::fs::write(&page, run(name, &["man"]).stdout).unwrap();
        let shown = run_bounded(Command::new("man").arg("-l").arg(&page).env("MANPAGER", "cat").env("MANWIDTH", "100"), Duration::from_secs(30)).assert_ok();
        for section in ["NAME", "SYNOPSIS", "SUBCOMMANDS", name] {
            assert!(shown.stdout.contains(section), "man -l {name}.1 lacks {section}:\n{}", shown.stdout);
        }
        let version = run(name, &["--version"]).stdout;
        assert!(version.contains("etcd 3.4 to 3.7") && version.contains("Kubernetes 1.34 to 1.37"), "{version}");
    }
}

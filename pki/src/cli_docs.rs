//! Shell completions and man pages for the toolkit's three commands, generated from their clap
//! definitions (clap_complete, clap_mangen): what each one's `completion bash|zsh|fish` (as
//! etcdctl's) and `man` print, so a package installs them and they never drift from the flags.

use std::io::Write;

/// The shells `completion` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script of `cmd` for `shell`.
pub fn completion(shell: Shell, mut cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut cmd, name.clone(), &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == Shell::Bash {
        script = fix_hyphenated_bash(&script, &name);
    }
    out.write_all(script.as_bytes())
}

/// clap_complete's bash script spells a hyphenated command's state two ways (clap-rs/clap#6421,
/// open): the loop builds `etcd__bootstrap__subcmd__up`, the case arms test
/// `etcd__subcmd__bootstrap__subcmd__up`, so no subcommand's flags ever complete. The arms are
/// respelled the loop's way.
fn fix_hyphenated_bash(script: &str, name: &str) -> String {
    if !name.contains('-') {
        return script.to_string();
    }
    let (wrong, right) = (name.replace('-', "__subcmd__"), name.replace('-', "__"));
    script
        .replace(&format!("        {wrong}__subcmd__"), &format!("        {right}__subcmd__"))
        .replace(&format!("        {wrong})"), &format!("        {right})"))
}

/// The man page of `cmd` (roff, section 1).
pub fn man_page(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    clap_mangen::Man::new(cmd).render(out)
}

/// What `--version` says: the toolkit's version and the etcd and Kubernetes versions it supports.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (etcd-toolkit; supports etcd 3.4 to 3.7 — tested on 3.7.4, 3.6.17, 3.5.36, 3.5.1 and 3.4.23 — and Kubernetes 1.34 to 1.37, kubeadm config v1beta4)"
);

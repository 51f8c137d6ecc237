//! What `adopt` reads on a member's host, and nothing else: two read-only scripts and the
//! parsing of what they print. No script writes a file, changes a setting, or runs a binary it
//! found (a discovered "etcd" may be a wrapper that starts a container); every value a host
//! returns is base64 (NUL-separated /proc files, file contents) and parsed here, never by a
//! shell.

use crate::host::script::{Script, body};
use crate::host::transport::ScriptOutput;
use base64::Engine;
use std::path::PathBuf;

/// The running etcd that listens on `address:port`, found from the listening socket (not by
/// name): its pid, start time, identity, argv, environment, working directory and cgroup, and
/// the systemd unit or static-pod manifest that runs it.
pub fn process_script(address: &str, port: u16) -> String {
    Script::of(body::PROBE_PROCESS).set("client_address", address).set("client_port", port.to_string()).text()
}

/// Facts about files, read through the process's root (`/proc/PID/root`, so container paths
/// resolve): for each path owner, group, mode, size and SHA-256; the content of `public` ones
/// (certificates, CRLs, config and environment files, never keys); and, for every directory
/// that holds one of the files, the names of the files there that hold a private key.
pub fn files_script(pid: u32, paths: &[(PathBuf, bool)]) -> String {
    let mut folders: Vec<String> = Vec::new();
    for d in paths.iter().filter_map(|(p, _)| p.parent()).map(|d| d.display().to_string()) {
        if !folders.contains(&d) {
            folders.push(d);
        }
    }
    Script::of(body::PROBE_FILES)
        .set("pid", pid.to_string())
        .set_words("paths", paths.iter().map(|(p, _)| p.display().to_string()))
        .set_words("kinds", paths.iter().map(|(_, public)| if *public { "public" } else { "secret" }))
        .set_words("folders", folders)
        .text()
}

pub fn unbase64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).unwrap_or_default()
}

fn text(s: &str) -> String {
    String::from_utf8_lossy(&unbase64(s)).into_owned()
}

/// NUL-separated words (`/proc/PID/cmdline`).
pub fn nul_words(bytes: &[u8]) -> Vec<String> {
    bytes.split(|b| *b == 0).filter(|w| !w.is_empty()).map(|w| String::from_utf8_lossy(w).into_owned()).collect()
}

use crate::spec::adopted::AdoptedSupervisor as Supervisor;

/// One running etcd as its host shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessFacts {
    pub pid: u32,
    /// Start time (clock ticks since boot): with the pid, tells a restarted process apart.
    pub start: u64,
    pub comm: String,
    pub exe: String,
    pub cwd: PathBuf,
    pub argv: Vec<String>,
    #[serde(skip)]
    pub environ: Vec<(String, String)>,
    pub supervisor: Supervisor,
    /// `systemctl show` of the unit, `Key=value` lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unit_properties: Vec<(String, String)>,
    /// The static-pod manifest's text, when the supervisor is kubelet.
    #[serde(skip)]
    pub manifest_text: Option<String>,
}

/// Parses [`process_script`]'s output; `Err` says why no process was found.
pub fn parse_process(out: &ScriptOutput) -> Result<ProcessFacts, String> {
    if let Some(why) = out.value("listener") {
        return Err(match why.as_str() {
            "none" => "nothing listens on its client URL's port on that host".into(),
            _ => "the process that listens on its client URL cannot be read (run as root)".into(),
        });
    }
    let pid = out.value("pid").and_then(|p| p.trim().parse().ok()).ok_or("no pid in the probe's output")?;
    let environ = nul_words(&unbase64(&out.value("environ").unwrap_or_default()))
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let cgroup = text(&out.value("cgroup").unwrap_or_default());
    let unit_properties: Vec<(String, String)> =
        text(&out.value("unit_show").unwrap_or_default()).lines().filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    let manifest = out.value("manifest").and_then(|m| m.split_once(' ').map(|(p, c)| (text(p), text(c))));
    let supervisor = if let Some(unit) = out.value("unit") {
        let fragment = unit_properties.iter().find(|(k, _)| k == "FragmentPath").map(|(_, v)| v.clone()).unwrap_or_default();
        Supervisor::Systemd { unit, fragment }
    } else if cgroup.contains("kubepods") {
        Supervisor::StaticPod { manifest: manifest.as_ref().map(|(p, _)| p.clone()).unwrap_or_default() }
    } else if cgroup.contains("docker") || cgroup.contains("containerd") || cgroup.contains("crio") {
        Supervisor::Container
    } else {
        Supervisor::Process
    };
    Ok(ProcessFacts {
        pid,
        start: out.value("start").and_then(|s| s.trim().parse().ok()).unwrap_or(0),
        comm: out.value("comm").unwrap_or_default(),
        exe: text(&out.value("exe").unwrap_or_default()),
        cwd: PathBuf::from(text(&out.value("cwd").unwrap_or_default())),
        argv: nul_words(&unbase64(&out.value("cmdline").unwrap_or_default())),
        environ,
        supervisor,
        unit_properties,
        manifest_text: manifest.map(|(_, c)| c),
    })
}

/// A file as its host shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileFacts {
    pub path: PathBuf,
    pub owner: String,
    pub mode: String,
    pub size: u64,
    pub sha256: String,
    #[serde(skip)]
    pub content: Option<Vec<u8>>,
}

/// Parses [`files_script`]'s output: the files found, the paths missing, and the files holding
/// a private key in those directories.
pub fn parse_files(out: &ScriptOutput) -> (Vec<FileFacts>, Vec<PathBuf>, Vec<PathBuf>) {
    let contents: Vec<(String, Vec<u8>)> = out.values("content").iter().filter_map(|l| l.split_once(' ').map(|(p, c)| (text(p), unbase64(c)))).collect();
    let files = out
        .values("file")
        .iter()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let path = text(parts.next()?);
            let stat: Vec<&str> = parts.next()?.split(':').collect();
            let sha256 = parts.next()?.to_string();
            let content = contents.iter().find(|(p, _)| *p == path).map(|(_, c)| c.clone());
            Some(FileFacts {
                path: PathBuf::from(path),
                owner: format!("{}:{}", stat.first()?, stat.get(1)?),
                mode: stat.get(2)?.to_string(),
                size: stat.get(3)?.parse().ok()?,
                sha256,
                content,
            })
        })
        .collect();
    let missing = out.values("missing").iter().map(|p| PathBuf::from(text(p))).collect();
    let keys = out.values("private_key").iter().map(|p| PathBuf::from(text(p))).collect();
    (files, missing, keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::transport::Transport;
    use proptest::prelude::*;

    fn out(stdout: &str) -> ScriptOutput {
        ScriptOutput { code: Some(0), stdout: stdout.into(), stderr: String::new() }
    }

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn a_process_is_read_from_base64_and_nul_separated_values() {
        let text = format!(
            "pid=4242\nstart=99\ncomm=etcd\nexe={}\ncwd={}\ncmdline={}\nenviron={}\ncgroup={}\nunit=etcd.service\nunit_show={}\n",
            b64(b"/usr/local/bin/etcd"),
            b64(b"/"),
            b64(b"/usr/local/bin/etcd\0--name\0etcd 1\0"),
            b64(b"ETCD_DATA_DIR=/var/lib/etcd\0PATH=/bin\0"),
            b64(b"0::/system.slice/etcd.service\n"),
            b64(b"FragmentPath=/etc/systemd/system/etcd.service\nEnvironmentFiles=/etc/etcd.env (ignore_errors=no)\n"),
        );
        let p = parse_process(&out(&text)).unwrap();
        assert_eq!((p.pid, p.start), (4242, 99));
        assert_eq!(p.argv, ["/usr/local/bin/etcd", "--name", "etcd 1"]);
        assert_eq!(p.environ[0], ("ETCD_DATA_DIR".to_string(), "/var/lib/etcd".to_string()));
        assert_eq!(p.supervisor, Supervisor::Systemd { unit: "etcd.service".into(), fragment: "/etc/systemd/system/etcd.service".into() });
        assert_eq!(crate::adopt::environment_files(&p), [PathBuf::from("/etc/etcd.env")]);
        assert!(parse_process(&out("listener=none\n")).unwrap_err().contains("nothing listens"));
    }

    /// What a hostile member can put in front of these scripts: its advertised client URL (the
    /// address) and its own command line (the paths). Run for real: the canary never appears.
    #[test]
    fn hostile_addresses_and_paths_stay_words() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("CANARY");
        let c = canary.display().to_string();
        let payloads = [format!("'; touch {c}; '"), format!("$(touch {c})"), format!("`touch {c}`"), format!("x\ntouch {c}"), format!("\"; touch {c}; \"")];
        for p in &payloads {
            let out = crate::host::transport::Local.run(&process_script(p, 2379), std::time::Duration::from_secs(20)).unwrap();
            assert!(out.ok(), "{}", out.stderr);
            let files = files_script(std::process::id(), &[(PathBuf::from(format!("/tmp/{p}/etcd.pem")), true), (PathBuf::from(p), false)]);
            crate::host::transport::Local.run(&files, std::time::Duration::from_secs(20)).unwrap();
            assert!(!canary.exists(), "{p:?} ran as a command");
        }
    }

    proptest! {
        #[test]
        fn no_probe_output_makes_the_parsers_panic(text in "(.{0,40}\n){0,12}") {
            let _ = parse_process(&out(&text));
            let _ = parse_files(&out(&text));
        }
    }
}

//! A host run by a real systemd: `/lib/systemd/systemd --system` as PID 1 of its own PID, mount
//! and UTS namespaces (this machine's network, so its units listen on loopback). Its unit path is
//! only `/etc/systemd/system` and `/run/systemd/system` (`SYSTEMD_UNIT_PATH`), both folders in
//! the test's directory bound in its private mount namespace, holding the test's units and empty
//! `sysinit`, `basic` and `shutdown` targets: none of this machine's units can start (no
//! tmpfiles, which would clean this machine's /tmp; no sysctl, no journald), so it touches no
//! file outside what the test gives it. Commands run inside it through `nsenter`; on drop,
//! systemd is killed by its PID, which ends every process of the namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SystemdHost {
    /// `unshare`, whose child is the namespace's systemd.
    child: Child,
    /// systemd's PID as this machine sees it.
    pub pid: u32,
    /// Where the host's `/etc/systemd/system` is (write units here).
    pub units: PathBuf,
    /// Where the host's `/run` is (runtime drop-ins land under `systemd/system`).
    pub run: PathBuf,
}

impl SystemdHost {
    /// Boots systemd in `dir` and waits (bounded) until `systemctl` answers inside.
    pub fn boot(dir: &Path) -> SystemdHost {
        let systemd = Path::new("/lib/systemd/systemd");
        assert!(systemd.is_file(), "this test needs systemd ({}): run scripts/install-deps.sh", systemd.display());
        let (units, run) = (dir.join("etc-systemd-system"), dir.join("run"));
        std::fs::create_dir_all(&units).unwrap();
        std::fs::create_dir_all(run.join("systemd/system")).unwrap();
        // what a service's default dependencies name, empty
        for target in ["lab", "sysinit", "basic", "shutdown"] {
            std::fs::write(units.join(format!("{target}.target")), "[Unit]\nDefaultDependencies=no\n").unwrap();
        }
        std::fs::write(units.join("system.slice"), "[Slice]\n").unwrap();
        let inner = format!(
            "set -e\nmount --bind {run} /run\nmount --bind {units} /etc/systemd/system\nexport SYSTEMD_UNIT_PATH=/etc/systemd/system:/run/systemd/system\nexec {systemd} --system --unit=lab.target --log-target=kmsg --log-level=warning\n",
            run = run.display(),
            units = units.display(),
            systemd = systemd.display(),
        );
        let child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--uts", "--mount-proc", "--propagation", "private", "bash", "-c", &inner])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare");
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next().and_then(|p| p.parse::<u32>().ok())
                && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "systemd")
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "systemd did not start in its namespace");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut host = SystemdHost { child, pid, units, run };
        loop {
            let out = host.command("systemctl").args(["is-system-running"]).output().expect("nsenter");
            // any answer (starting, running, degraded) means the manager is up
            if !out.stdout.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                host.stop();
                panic!("systemctl never answered inside the test's systemd: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        host
    }

    /// `program` run inside the host (its mount and PID namespaces).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(self.pid.to_string()).args(["-m", "-p", "--"]).arg(program);
        c
    }

    /// `systemctl ARGS` inside the host, bounded; panics on failure.
    pub fn systemctl(&self, args: &[&str]) -> crate::Ran {
        crate::run_bounded(self.command("systemctl").args(args), Duration::from_secs(60)).assert_ok()
    }

    /// The main PID of `unit` inside the host (0 when it is not running).
    pub fn main_pid(&self, unit: &str) -> u32 {
        self.systemctl(&["show", "-p", "MainPID", "--value", unit]).stdout.trim().parse().unwrap_or(0)
    }

    /// `active`, `inactive`, `failed`, ... for `unit`.
    pub fn state(&self, unit: &str) -> String {
        let out = self.command("systemctl").args(["is-active", unit]).output().expect("nsenter");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn stop(&mut self) {
        crate::signal(self.pid, crate::Signal::Kill);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        self.stop();
        // the cgroups it made under this machine's hierarchies, once the kernel has emptied them
        // (bounded; a cgroup still in use, another host's, stays)
        let mut dirs: Vec<PathBuf> = Vec::new();
        for root in ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"] {
            let slice = Path::new(root).join("system.slice");
            for e in std::fs::read_dir(&slice).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().ends_with(".service") {
                    dirs.push(e.path());
                }
            }
            dirs.extend([slice, Path::new(root).join("init.scope")]);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while dirs.iter().any(|d| d.exists()) && Instant::now() < deadline {
            for d in &dirs {
                let _ = std::fs::remove_dir(d);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

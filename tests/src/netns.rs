//! Test hosts made of network namespaces: each has its own address on a bridge that only this
//! test creates, and its own sshd, so `etcd-bootstrap` reaches them through the real OpenSSH
//! client. Everything is torn down on drop: sshd stopped by PID, namespaces and bridge deleted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Host {
    pub name: String,
    pub namespace: String,
    pub address: String,
    /// The root-namespace end of this host's link: set it down to cut the host off.
    pub link: String,
    /// With a private /etc (see `create_with_private_etc`): where what the host wrote under /etc lands.
    pub etc_upper: Option<PathBuf>,
    sshd: Option<Child>,
}

pub struct Hosts {
    pub hosts: Vec<Host>,
    pub bridge: String,
    pub key: PathBuf,
    pub dir: PathBuf,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Hosts {
    /// `n` hosts on 10.213.X.2.. (X chosen per run), with sshd accepting `self.key` for root.
    pub fn create(n: usize, dir: &Path) -> Hosts {
        Hosts::create_inner(n, dir, false, None)
    }

    /// As `create`, but each host's sshd (and so every session) sees /etc through an overlay in a
    /// private mount namespace: what it writes under /etc lands in `etc_upper` in the test's
    /// folder, and this machine's /etc is never touched.
    pub fn create_with_private_etc(n: usize, dir: &Path) -> Hosts {
        Hosts::create_inner(n, dir, true, None)
    }

    /// As `create_with_private_etc`, but root cannot log in (`PermitRootLogin no`): `user` (uid
    /// 4242, in each host's own /etc only) logs in with the key and gets root through sudo as
    /// people set it up, one sudoers file for that user: without a password when `nopasswd`,
    /// else asking for one (which `sudo -n` refuses).
    pub fn create_for_user(n: usize, dir: &Path, user: &str, nopasswd: bool) -> Hosts {
        Hosts::create_inner(n, dir, true, Some((user, nopasswd)))
    }

    fn create_inner(n: usize, dir: &Path, private_etc: bool, user: Option<(&str, bool)>) -> Hosts {
        // unique per call: tests in one process create hosts at the same time (the pid alone
        // would give them one bridge name), and across processes (the pid and the clock)
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let tag = format!("{:04x}", (std::process::id().wrapping_mul(31) ^ nanos ^ call.wrapping_mul(0x9e37)) & 0xffff);
        let bridge = format!("ebr{tag}");
        let _ = std::fs::create_dir_all("/run/sshd");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let mut hosts = Hosts { hosts: vec![], bridge: bridge.clone(), key: dir.join("id_ed25519"), dir: dir.to_path_buf() };
        // the subnet 10.213.X.0/24: distinct for every call of this process (its counter), and
        // not on any interface of the machine already (a bridge another run left behind made
        // the hosts unreachable); chosen and taken under one lock
        static CHOOSING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let choosing = CHOOSING.lock().unwrap_or_else(|e| e.into_inner());
        let taken = Command::new("ip").args(["-o", "-4", "addr"]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let mut x = 1 + (std::process::id().wrapping_mul(7).wrapping_add(call) % 250);
        for _ in 0..250 {
            if !taken.contains(&format!(" 10.213.{x}.")) {
                break;
            }
            x = 1 + (x % 250);
        }
        ip(&["addr", "add", &format!("10.213.{x}.1/24"), "dev", &bridge]);
        drop(choosing);
        ip(&["link", "set", &bridge, "up"]);
        let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&hosts.key).output().expect("ssh-keygen");
        assert!(keygen.status.success());
        let host_key = dir.join("host_ed25519");
        let _ = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host_key).output();
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).expect("authorized_keys");
        for i in 0..n {
            let ns = format!("ebn{tag}{i}");
            let (outside, inside) = (format!("ebo{tag}{i}"), format!("ebi{tag}{i}"));
            let address = format!("10.213.{x}.{}", i + 2);
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &outside, "master", &bridge]);
            ip(&["link", "set", &outside, "up"]);
            ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{address}/24"), "dev", &inside]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            let config = dir.join(format!("sshd-{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "ListenAddress {address}\nPort 22\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPermitRootLogin {root}\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\n",
                    hk = host_key.display(),
                    ak = dir.join("authorized_keys").display(),
                    root = if user.is_some() { "no" } else { "prohibit-password" },
                ),
            )
            .expect("sshd config");
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &ns]);
            let etc_upper = private_etc.then(|| {
                let (upper, work) = (dir.join(format!("host-{}-etc/upper", i + 1)), dir.join(format!("host-{}-etc/work", i + 1)));
                std::fs::create_dir_all(&upper).expect("overlay upper");
                std::fs::create_dir_all(&work).expect("overlay work");
                if let Some((name, nopasswd)) = user {
                    add_sudo_user(&upper, &dir.join(format!("home-{name}")), name, nopasswd);
                }
                cmd.args(["unshare", "-m", "--propagation", "private", "sh", "-c"]).arg(format!(
                    "mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc && exec \"$0\" \"$@\"",
                    upper.display(),
                    work.display()
                ));
                upper
            });
            let sshd = cmd
                .args(["/usr/sbin/sshd", "-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("sshd-{i}.log"))).expect("sshd log"))
                .spawn()
                .expect("start sshd");
            hosts.hosts.push(Host { name: format!("host-{}", i + 1), namespace: ns, address, link: outside, sshd: Some(sshd), etc_upper });
        }
        let login = user.map(|(name, _)| name).unwrap_or("root");
        for h in &hosts.hosts {
            hosts.wait_ssh(h, login);
        }
        hosts
    }

    /// ssh options for the spec: our key, no known_hosts, no user config.
    pub fn ssh_options(&self) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-i",
            &self.key.display().to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn wait_ssh(&self, h: &Host, login: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("ssh")
                .args(self.ssh_options())
                .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=2"])
                .arg(format!("{login}@{}", h.address))
                .arg("true")
                .output()
                .expect("ssh");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd on {} not reachable: {}\n{}",
                h.address,
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.join(format!("sshd-{}.log", h.name.trim_start_matches("host-").parse::<usize>().unwrap_or(1) - 1)))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Cuts host `i` off the network (its link goes down).
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].link, "down"]);
    }

    /// Brings host `i` back (its link goes up again).
    pub fn restore(&self, i: usize) {
        ip(&["link", "set", &self.hosts[i].link, "up"]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            if let Some(mut c) = h.sshd.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = Command::new("ip").args(["netns", "del", &h.namespace]).output();
            let _ = Command::new("ip").args(["link", "del", &h.link]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

impl Hosts {
    /// The spec's `members:` entries for these hosts: etcd-N reached as root over SSH, every
    /// path under `dir/host-N/` (data, pki, run, bin), supervised as background processes.
    pub fn member_entries(&self, dir: &Path) -> String {
        self.member_entries_of(dir, self.hosts.len())
    }

    /// [`Hosts::member_entries`] for the first `n` hosts only (the others play other roles).
    pub fn member_entries_of(&self, dir: &Path, n: usize) -> String {
        let opts = self.ssh_options().iter().map(|o| format!("'{o}'")).collect::<Vec<_>>().join(", ");
        let mut members = String::new();
        for (i, h) in self.hosts.iter().take(n).enumerate() {
            let home = dir.join(&h.name);
            members.push_str(&format!(
                "  - {{name: etcd-{n}, address: {a}, host: 'root@{a}', ssh_options: [{opts}], supervisor: process, data_dir: {d}, pki_dir: {p}, run_dir: {r}, bin_dir: {b}}}\n",
                n = i + 1,
                a = h.address,
                d = home.join("var/lib/etcd").display(),
                p = home.join("etc/kubernetes/pki").display(),
                r = home.join("var/lib/etcd-bootstrap").display(),
                b = home.join("usr/local/bin").display(),
            ));
        }
        members
    }
}

/// `name` in a host's own /etc (the overlay's upper layer, written before its sshd starts):
/// passwd, group and shadow lines (uid 4242, no password: key only) and /etc/sudoers.d/NAME.
fn add_sudo_user(etc: &Path, home: &Path, name: &str, nopasswd: bool) {
    use std::os::unix::fs::PermissionsExt;
    let append = |file: &str, line: String| {
        let mut text = std::fs::read_to_string(Path::new("/etc").join(file)).unwrap_or_default();
        text.push_str(&line);
        std::fs::write(etc.join(file), text).unwrap_or_else(|e| panic!("{file}: {e}"));
    };
    append("passwd", format!("{name}:x:4242:4242:etcd operator:{}:/bin/bash\n", home.display()));
    append("group", format!("{name}:x:4242:\n"));
    append("shadow", format!("{name}:*:19000:0:99999:7:::\n"));
    std::fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o640)).expect("shadow mode");
    std::fs::create_dir_all(home).expect("home");
    std::os::unix::fs::chown(home, Some(4242), Some(4242)).expect("chown home");
    let sudoers = etc.join("sudoers.d");
    std::fs::create_dir_all(&sudoers).expect("sudoers.d");
    let rule = if nopasswd { format!("{name} ALL=(root) NOPASSWD: ALL\n") } else { format!("{name} ALL=(root) ALL\n") };
    std::fs::write(sudoers.join(name), rule).expect("sudoers file");
    std::fs::set_permissions(sudoers.join(name), std::fs::Permissions::from_mode(0o440)).expect("sudoers mode");
}

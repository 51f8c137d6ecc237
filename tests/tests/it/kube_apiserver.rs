//! Every day-2 command with a real Kubernetes API server in the loop (k8s.io/apiextensions-apiserver:
//! kube-apiserver's etcd3 storage, watch cache and `--etcd-*` flags), started only from what
//! `etcd-bootstrap` emits (`init.yaml`'s etcd.external + `out/control-plane/NODE/`), a writer,
//! and a watcher that behaves like a controller. The operator's part is done exactly as the
//! printed instructions say, and nothing more.

use integration_tests::bootstrap::{boot, spec_endpoints, up_cluster_on};
use integration_tests::kube::{ApiServer, EtcdFlags, Failure, Identity, Watcher, Writer};
use integration_tests::{Signal, signal, workspace_root};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A control-plane node: its filesystem (a copy of `out/control-plane/NODE/`), its address, and
/// the API server running there.
struct Node {
    root: PathBuf,
    init_yaml: PathBuf,
    server: ApiServer,
    /// When the operator restarted it: [stopped, ready again].
    restarts: Vec<(Instant, Instant)>,
}

impl Node {
    fn start(dir: &Path, name: &str, addr: &str, id: &Identity) -> Node {
        let root = dir.join("nodes").join(name);
        copy_tree(&dir.join("out/control-plane").join(name), &root);
        let init_yaml = dir.join("out/kubeadm/init.yaml");
        let server = ApiServer::start(id, addr, &EtcdFlags::from_kubeadm(&init_yaml, &root));
        Node { root, init_yaml, server, restarts: vec![] }
    }

    /// What a restart instruction asks: restart kube-apiserver with the node's files.
    fn restart(&mut self, id: &Identity) {
        let t = Instant::now();
        self.server.restart(id, &EtcdFlags::from_kubeadm(&self.init_yaml, &self.root));
        self.restarts.push((t, Instant::now()));
    }

    /// Copies the files a stop names for this node ("  cp-1: copy SRC to /etc/...") into its
    /// filesystem, each atomically; how many.
    fn follow_copies(&self, name: &str, stdout: &str) -> usize {
        let mut copied = 0;
        for line in stdout.lines() {
            let Some(rest) = line.trim().strip_prefix(&format!("{name}: copy ")) else {
                continue;
            };
            let (src, dest) = rest.split_once(" to ").unwrap();
            let to = self.root.join(dest.trim_start_matches('/'));
            let tmp = to.with_extension("copying");
            std::fs::copy(src, &tmp).unwrap();
            std::fs::rename(&tmp, &to).unwrap();
            copied += 1;
        }
        copied
    }

    fn writes(&self) -> bool {
        let body = serde_json::json!({"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"generateName": "probe-"}});
        self.server.request("POST", integration_tests::kube::WIDGETS, Some(&body.to_string())).is_ok_and(|(c, _)| c == 201)
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())).flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Times during which etcd members stopped: the test's kill, and each command that restarts
/// members one by one (`rotate ca`'s steps, `replace`, `upgrade`; `rotate certs` restarts none).
/// Under TLS etcd ends its gRPC server at once when it stops (`grpc.Server.Stop`, not
/// `GracefulStop`: etcd-io/etcd#8916), so the one request the writer may have in flight on that
/// member fails: `Unavailable` when the connection is cut, or an empty HTTP 200 when the handler
/// is ended before it answered; kube-apiserver answers 500, and clients retry.
#[derive(Default)]
struct MemberStops(Vec<(Instant, Instant, String, usize)>);

impl MemberStops {
    /// Runs a command that stops `members` members one by one, remembering when.
    fn run(&mut self, spec: &Path, args: &[&str], members: usize) -> integration_tests::Ran {
        let t = Instant::now();
        let r = run_ok(spec, args);
        self.0.push((t, Instant::now(), args.join(" "), members));
        r
    }

    /// The command during which a request failed as a stopping member ended it.
    fn explaining(&self, f: &Failure) -> Option<&str> {
        let cut = f.what.contains("rpc error: code = Unavailable")
            && ["error reading from server", "transport is closing", "connection reset", "EOF"].iter().any(|t| f.what.contains(t));
        let ended = f.what.contains("rpc error: code = Unknown desc = unexpected HTTP status code received from server: 200 (OK)");
        if !(cut || ended) {
            return None;
        }
        self.0.iter().find(|(a, b, _, n)| *n > 0 && f.within(*a, *b)).map(|(_, _, what, _)| what.as_str())
    }

    fn explains(&self, f: &Failure) -> bool {
        self.explaining(f).is_some()
    }

    /// Commands during which more failed than one request per member stop (the writer has one
    /// request in flight at a time).
    fn overrun(&self, failures: &[&Failure]) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|(a, b, what, members)| {
                let n = failures.iter().filter(|f| f.within(*a, *b)).count();
                (n > *members).then(|| format!("{what}: {n} failed, {members} members stopped"))
            })
            .collect()
    }
}

/// The writer's failures that neither an instructed restart nor a member stop explains.
fn unexplained(failures: &[Failure], restarts: &[(Instant, Instant)], stops: &MemberStops) -> Vec<String> {
    let outside: Vec<&Failure> = failures.iter().filter(|f| !restarts.iter().any(|(a, b)| f.within(*a, *b))).collect();
    let mut bad: Vec<String> = outside.iter().filter(|f| !stops.explains(f)).map(|f| f.what.clone()).collect();
    bad.extend(stops.overrun(&outside));
    bad
}

/// Names that count: not touched by an unanswered request, not a probe's.
fn certain(names: &BTreeSet<String>, uncertain: &BTreeSet<String>) -> BTreeSet<String> {
    names.iter().filter(|n| !uncertain.contains(*n) && !n.starts_with("probe-")).cloned().collect()
}

/// The API's list equals what the writer knows.
fn assert_list_matches(node: &Node, want: &BTreeSet<String>, uncertain: &BTreeSet<String>, when: &str) {
    let list = node.server.widgets().unwrap_or_else(|e| panic!("{when}: kubectl list failed: {e}"));
    assert_eq!(certain(&list, uncertain), certain(want, uncertain), "{when}: the API's list differs from the acknowledged writes");
}

fn run_ok(spec: &Path, args: &[&str]) -> integration_tests::Ran {
    let r = boot(spec, args);
    assert!(r.ok(), "etcd-bootstrap {}: {}{}", args.join(" "), r.stdout, r.stderr);
    r
}

/// Sets `etcd_archive: DIR` in place of the spec's `etcd_binary`, as `upgrade` tells the operator.
fn spec_names_etcd(spec: &Path, dir: &str) {
    let text = std::fs::read_to_string(spec).unwrap();
    let text: String = text.lines().map(|l| if l.starts_with("etcd_binary: ") { format!("etcd_archive: {dir}\n") } else { format!("{l}\n") }).collect();
    std::fs::write(spec, text).unwrap();
}

#[test]
fn kube_apiserver_and_its_clients_survive_every_day2_command() {
    let v351 = workspace_root().join(".etcd/v3.5.1/etcd").display().to_string();
    let newest = workspace_root().join(".etcd/go-3.5").display().to_string();
    let (tmp, spec, _down) = up_cluster_on(&v351, 2);
    let dir = tmp.path().to_path_buf();
    let eps = spec_endpoints(&spec);
    let base = eps.split(',').next().unwrap().trim_start_matches("https://").rsplit_once('.').unwrap().0.to_string();
    let (a1, a2) = (format!("{base}.101"), format!("{base}.102"));
    let id = Identity::new(&dir.join("kubernetes"), &[&a1, &a2]);
    // cp-1 follows every instruction; cp-2's API server is never updated nor restarted
    let mut cp1 = Node::start(&dir, "cp-1", &a1, &id);
    let cp2 = Node::start(&dir, "cp-2", &a2, &id);
    cp1.server.create_widget_crd(&dir);
    let writer = Writer::start(&cp1.server, "w");
    let watcher = Watcher::start(&cp1.server);
    let mut stops = MemberStops::default();

    // rotate certs --rekey: copy out/control-plane/cp-1/ to the node, restart kube-apiserver
    let r = run_ok(&spec, &["rotate", "certs", "--rekey"]);
    assert!(r.stderr.contains("copy out/control-plane/NODE/ to each node") && r.stderr.contains("then restart kube-apiserver node by node"), "{}", r.stderr);
    copy_tree(&dir.join("out/control-plane/cp-1"), &cp1.root);
    cp1.restart(&id);
    assert!(cp2.writes(), "a server on the previous client certificate keeps working until it expires");

    // the staged CA rotation, each stop's files copied and kube-apiserver restarted there
    let first = stops.run(&spec, &["rotate", "ca"], 3);
    assert!(first.stdout.contains("stopped after step 1 of 3") && first.stdout.contains("cp-1: restart kube-apiserver"), "{}", first.stdout);
    assert_eq!(cp1.follow_copies("cp-1", &first.stdout), 1, "{}", first.stdout);
    cp1.restart(&id);
    assert!(cp2.writes(), "before step 2, a server on the old files still works");
    let second = stops.run(&spec, &["rotate", "ca", "--continue"], 0);
    assert!(second.stdout.contains("stopped after step 2 of 3"), "{}", second.stdout);
    // members now serve certificates from the new CA: a server on the old CA file keeps the
    // connections it has, and cannot make a new one
    let stale_after_step2 = cp2.writes();
    assert_eq!(cp1.follow_copies("cp-1", &second.stdout), 2, "{}", second.stdout);
    cp1.restart(&id);
    let third = stops.run(&spec, &["rotate", "ca", "--continue"], 3);
    assert!(third.stdout.contains("CA rotation done"), "{}", third.stdout);
    assert_eq!(cp1.follow_copies("cp-1", &third.stdout), 1, "{}", third.stdout);
    if third.stdout.contains("cp-1: restart kube-apiserver") {
        cp1.restart(&id);
    }
    // step 3 restarted every member: no connection from before is left, and the server that
    // ignored the first stop fails from here on (it never failed before it: probed above)
    let deadline = Instant::now() + Duration::from_secs(30);
    while cp2.writes() {
        assert!(Instant::now() < deadline, "a server left on the old CA file still writes 30 s after the rotation");
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("the server on the old files: writes after step 2 (old connections) {stale_after_step2}, after step 3 none");
    drop(cp2);

    // replace a dead follower; maintain; the rolling upgrade 3.5.1 -> the newest 3.5 -> 3.6, and
    // the downgrade back to 3.5
    let st = run_ok(&spec, &["status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    let victim = v["members"].as_array().unwrap().iter().find(|m| m["role"] == "follower").unwrap()["name"].as_str().unwrap().to_string();
    let pid = std::fs::read_to_string(dir.join(format!("members/{victim}/{victim}.pid"))).unwrap();
    let killed = Instant::now();
    signal(pid.trim().parse().unwrap(), Signal::Kill);
    stops.run(&spec, &["replace", &victim], 1);
    stops.0.last_mut().unwrap().0 = killed;
    run_ok(&spec, &["maintain"]);
    let up = stops.run(&spec, &["upgrade", "--to", &newest], 3);
    assert!(up.stdout.contains(&format!("spec: set etcd_archive: {newest}")), "{}", up.stdout);
    // to 3.6 and back with the API server serving: the rolling upgrade, then etcd's downgrade
    let v36 = workspace_root().join(".etcd/go-3.6").display().to_string();
    let to36 = stops.run(&spec, &["upgrade", "--to", &v36], 3);
    assert!(to36.stdout.contains("cluster version 3.6.0"), "{}", to36.stdout);
    let back = stops.run(&spec, &["downgrade", "--to", &newest], 3);
    assert!(back.stdout.contains("cluster version 3.5.0"), "{}", back.stdout);
    // compared with the writer paused: a write between its count and the list would differ
    let now = writer.pause();
    assert_list_matches(&cp1, &now.present, &now.uncertain, "after rotations, replace, maintain, upgrades and the downgrade");
    writer.resume();
    let bad = unexplained(&now.failures, &cp1.restarts, &stops);
    assert!(bad.is_empty(), "API requests failed outside the instructed restarts and the members' stops: {bad:?}");

    // a second API server on cp-2's current files, which the operator will not stop for the
    // restore: it keeps watching etcd while the members stop
    let cp2 = Node::start(&dir, "cp-2", &a2, &id);

    // backup, with the writer paused so that what the snapshot holds is known exactly
    let at_backup = writer.pause();
    let b = run_ok(&spec, &["backup", "-w", "json"]);
    let snapshot = serde_json::from_str::<serde_json::Value>(&b.stdout).unwrap()["path"].as_str().unwrap().to_string();
    writer.resume();
    // the spec still names 3.5.1: a restore would take the cluster back to it, and is refused
    // before anything changes (the writer goes on without a failure)
    let refused = boot(&spec, &["restore", &snapshot, "--force"]).assert_fails();
    assert!(refused.stderr.contains("restarting would downgrade it"), "{}", refused.stderr);
    spec_names_etcd(&spec, &newest);
    // changes the restore takes back: creations and deletions after the backup
    let target = at_backup.requests + 20;
    let deadline = Instant::now() + Duration::from_secs(60);
    while writer.now().requests < target {
        assert!(Instant::now() < deadline, "the writer did not make 20 more requests in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before_restore = writer.stop();
    assert_ne!(before_restore.present, at_backup.present, "the restore must take something back");
    let bad = unexplained(&before_restore.failures, &cp1.restarts, &stops);
    assert!(bad.is_empty(), "API requests failed around the refused restore: {bad:?}");
    let gone_before = watcher.seen().gone;

    // restore as instructed on cp-1: kube-apiserver stopped before, started after; the watcher
    // keeps running throughout and is never restarted
    let healthy = boot(&spec, &["restore", &snapshot]).assert_fails();
    assert!(healthy.stderr.contains("stop kube-apiserver on every control-plane node first (cp-1, cp-2"), "{}", healthy.stderr);
    cp1.server.stop();
    let r = run_ok(&spec, &["restore", &snapshot, "--force"]);
    assert!(
        r.stdout.contains("revision raised by") && r.stdout.contains("  cp-1: start kube-apiserver\n") && r.stdout.contains("need no restart"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("kubernetes: stop kube-apiserver on every control-plane node first (cp-1, cp-2"), "said before the members stop: {}", r.stderr);
    let stopped = r.stderr.lines().find(|l| l.contains("members stopped, the leader last")).unwrap_or_default().to_string();
    cp1.restart(&id);
    assert_list_matches(&cp1, &at_backup.present, &at_backup.uncertain, "after the restore");
    let list = cp1.server.widgets().unwrap();
    let converged = watcher.converges_to(&list, Duration::from_secs(30));
    let seen = watcher.stop();
    assert!(
        converged.is_ok(),
        "the watcher's view differs from the API's list 30 s after the restore: missing {:?}, extra {:?}",
        list.difference(&seen.objects).collect::<Vec<_>>(),
        seen.objects.difference(&list).collect::<Vec<_>>()
    );
    assert!(seen.gone > gone_before, "the watcher re-listed because its resourceVersion was gone ({seen:?})");
    // the API server left running re-lists too (its watch cache is told "compacted"): it does
    // not go on serving the old cluster's objects
    let want = certain(&at_backup.present, &at_backup.uncertain);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cp2.server.widgets() {
            Ok(l) if certain(&l, &at_backup.uncertain) == want => break,
            other => assert!(Instant::now() < deadline, "the API server left running serves another list 30 s after the restore: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for f in before_restore.failures.iter() {
        if let Some(during) = stops.explaining(f) {
            eprintln!("during `{during}`, a member stopped under a request: {}", f.what);
        }
    }
    let took: Vec<String> = cp1.restarts.iter().map(|(a, b)| format!("{:.1}s", (*b - *a).as_secs_f64())).collect();
    eprintln!(
        "kube-apiserver: {} requests, {} failed ({} as an etcd member stopped under them, the rest during the {} instructed restarts, which took {}); watcher converged in {:?} after the restore with {} lists; restore {}",
        before_restore.requests,
        before_restore.failures.len(),
        before_restore.failures.iter().filter(|f| stops.explains(f) && !cp1.restarts.iter().any(|(a, b)| f.within(*a, *b))).count(),
        cp1.restarts.len(),
        took.join(" "),
        converged.unwrap_or_default(),
        seen.lists,
        stopped.trim()
    );
}

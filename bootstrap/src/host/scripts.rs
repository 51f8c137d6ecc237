//! The bash scripts run on members' hosts: delivering files, preflight, starting, stopping and
//! checking a member under a background-process or systemd supervisor. Pure functions from the
//! plan to text, so they are tested without a host.

use crate::plan::{MemberPlan, sh_quote as q};
use crate::spec::Supervisor;
use base64::Engine;

/// Delivers files atomically (temp + rename), with their modes, leaving identical files alone.
/// Every file is staged before the first rename, the renames follow one another, and the
/// report (`written PATH` or `unchanged PATH` for each) comes last: a caller that dies midway
/// (SIGPIPE and SIGHUP are ignored) never leaves a certificate renewed beside its old key.
pub fn deliver(files: &[(String, u32, Vec<u8>)]) -> String {
    // mktemp: an unpredictable name created with O_EXCL (never through a planted symlink);
    // the temporary carries pki's leftover mark, so an interrupted delivery is recognisable.
    let mut s = String::from(
        "set -eu\numask 077\ntrap '' PIPE HUP\nsrc=(); dst=(); report=()\nstage() {\n  d=$(dirname -- \"$1\")\n  mkdir -p -- \"$d\"\n  tmp=$(mktemp -- \"$d/.$(basename -- \"$1\").pki-tmp-XXXXXXXXXXXXXXXX\")\n  printf '%s' \"$3\" | base64 -d > \"$tmp\"\n  chmod \"$2\" \"$tmp\"\n  # a file replaced in place keeps its owner (a key etcd reads as its own user)\n  if [ -e \"$1\" ]; then chown --reference=\"$1\" -- \"$tmp\" 2>/dev/null || true; fi\n  if [ -f \"$1\" ] && cmp -s \"$tmp\" \"$1\"; then rm -f -- \"$tmp\"; report+=(\"unchanged $1\"); else src+=(\"$tmp\"); dst+=(\"$1\"); report+=(\"written $1\"); fi\n}\n",
    );
    for (path, mode, data) in files {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        s.push_str(&format!("stage {} {:o} '{}'\n", q(path), mode, b64));
    }
    s.push_str("for i in \"${!src[@]}\"; do mv -f -- \"${src[$i]}\" \"${dst[$i]}\"; done\n[ ${#report[@]} -eq 0 ] || printf '%s\\n' \"${report[@]}\"\n");
    s
}

/// Facts about a member's host as `key=value` lines; judged by [`crate::host::preflight`].
pub fn preflight(m: &MemberPlan, others: &[String]) -> String {
    let sp = &m.spec;
    let mut s = String::from("set -u\n");
    s.push_str(&format!("bin={}\n", q(&m.binary)));
    s.push_str("if command -v \"$bin\" >/dev/null 2>&1; then echo \"etcd_version=$(\"$bin\" --version 2>/dev/null | head -n1 | sed 's/.*: *//')\"; else echo etcd_missing=1; fi\n");
    for port in [sp.client_port, sp.peer_port] {
        s.push_str(&format!("ss -Hltn 'sport = :{port}' 2>/dev/null | awk '{{print \"listener={port} \" $4}}'\n"));
    }
    if sp.supervisor() == Supervisor::Systemd {
        // systemd must be this host's init and answer; otherwise units would be written and
        // never run (containers, minimal hosts)
        s.push_str("st=$(systemctl is-system-running 2>/dev/null); case \"$st\" in running|degraded|starting|initializing|maintenance) ;; *) echo \"systemd_unusable=${st:-no systemctl}\" ;; esac\n");
    }
    s.push_str(&status_lines(m));
    s.push_str(&format!("if [ -d {d} ] && [ -n \"$(ls -A {d} 2>/dev/null)\" ]; then echo data_nonempty=1; fi\n", d = q(&sp.data_dir.display().to_string())));
    s.push_str(&format!("if [ -f {f} ]; then echo \"marker=$(cat {f})\"; fi\n", f = q(&m.marker_file().display().to_string())));
    for o in others {
        s.push_str(&format!("ip route get {o} >/dev/null 2>&1 || echo unroutable={o}\n", o = q(o)));
    }
    s
}

/// True for a live (not zombie) process named etcd: `kill -0` alone also succeeds on a zombie
/// and on an unrelated process that reused the PID.
const IS_ETCD: &str =
    "is_etcd() { [ -r /proc/$1/stat ] && [ \"$(cat /proc/$1/comm 2>/dev/null)\" = etcd ] && [ \"$(awk '{print $3}' /proc/$1/stat 2>/dev/null)\" != Z ]; }\n";

/// `running=1` if the member is up (process alive with etcd's name, or the unit active).
pub fn status_lines(m: &MemberPlan) -> String {
    if let Some(a) = &m.spec.adopted {
        return crate::host::scripts_adopted::status_lines(m, a, IS_ETCD);
    }
    match m.spec.supervisor() {
        Supervisor::Process => format!(
            "{IS_ETCD}pidf={}\nif [ -f \"$pidf\" ]; then p=$(cat \"$pidf\"); if is_etcd \"$p\"; then echo running=1; echo pid=$p; fi; fi\n",
            q(&m.pid_file().display().to_string())
        ),
        Supervisor::Systemd => format!("if systemctl is-active --quiet {u}; then echo running=1; fi\n", u = q(&m.unit_name())),
    }
}

/// The marker that proves the data dir is this cluster's own: `TOKEN NAME`.
pub fn marker_text(token: &str, name: &str) -> String {
    format!("{token} {name}")
}

/// What says whether the cluster this member's data dir belongs to ever formed: `running=1`
/// when its etcd runs, and `elected=N`, the leader elections its log shows since that data dir was
/// made (empty when the log cannot be read).
pub fn formation(m: &MemberPlan) -> String {
    let mut s = status_lines(m);
    match m.spec.supervisor() {
        Supervisor::Process => s.push_str(&format!("echo elected=$(grep -c 'elected leader' {} 2>/dev/null || true)\n", q(&m.log_file().display().to_string()))),
        Supervisor::Systemd => s.push_str(&format!(
            "since=$(stat -c %Y {marker} 2>/dev/null || echo 0)\necho elected=$(journalctl -u {u} --since \"@$since\" --no-pager -o cat 2>/dev/null | grep -c 'elected leader' || true)\n",
            marker = q(&m.marker_file().display().to_string()),
            u = q(&m.unit_name()),
        )),
    }
    s
}

/// Starts the member (if it is not running), writing the marker first.
pub fn start(m: &MemberPlan, token: &str) -> String {
    // an adopted member's data dir is its operator's: no marker, started as it was found
    if let Some(a) = &m.spec.adopted {
        return crate::host::scripts_adopted::start(m, a, IS_ETCD);
    }
    let sp = &m.spec;
    let mut s = String::from("set -eu\n");
    // a new data dir starts a new log (the last one kept as .1): the log then speaks of this
    // data dir's cluster only, which is what `formation` reads
    let new_log = match sp.supervisor() {
        Supervisor::Process => format!(" [ ! -f {log} ] || mv -f {log} {log}.1;", log = q(&m.log_file().display().to_string())),
        Supervisor::Systemd => String::new(),
    };
    s.push_str(&format!(
        "mkdir -p {run} {data}\nchmod 700 {data}\n[ -f {marker} ] || {{ printf '%s\\n' {text} > {marker};{new_log} }}\n",
        run = q(&sp.run_dir.display().to_string()),
        data = q(&sp.data_dir.display().to_string()),
        marker = q(&m.marker_file().display().to_string()),
        text = q(&marker_text(token, &sp.name)),
    ));
    let cmd: Vec<String> = std::iter::once(m.binary.clone()).chain(m.args.iter().cloned()).map(|a| q(&a)).collect();
    match sp.supervisor() {
        Supervisor::Process => {
            s.push_str(&status_lines(m));
            s.push_str(&format!(
                "if [ -z \"$(cat {pid} 2>/dev/null)\" ] || ! is_etcd \"$(cat {pid})\"; then\n  cd {run}\n  setsid {cmd} </dev/null >>{log} 2>&1 &\n  echo $! > {pid}\n  echo started=$!\nfi\n",
                pid = q(&m.pid_file().display().to_string()),
                run = q(&sp.run_dir.display().to_string()),
                log = q(&m.log_file().display().to_string()),
                cmd = cmd.join(" "),
            ));
        }
        Supervisor::Systemd => {
            // the unit file itself was delivered as a file (see `unit_delivery`): no user data
            // passes through this script's text except as one quoted word
            s.push_str(&format!(
                "systemctl daemon-reload\nif ! systemctl is-active --quiet {unit}; then systemctl enable --now {unit}; echo started=unit; fi\n",
                unit = q(&m.unit_name()),
            ));
        }
    }
    s
}

/// Where a member's systemd unit goes, with its contents, for a transport's file delivery
/// (`None` for the process supervisor).
pub fn unit_delivery(m: &MemberPlan) -> Option<(String, u32, Vec<u8>)> {
    (m.spec.adopted.is_none() && m.spec.supervisor() == Supervisor::Systemd)
        .then(|| (format!("/etc/systemd/system/{}", m.unit_name()), 0o644, unit_file(m).into_bytes()))
}

/// The systemd unit for a member. Every value is escaped for systemd's own syntax.
pub fn unit_file(m: &MemberPlan) -> String {
    let cmd: Vec<String> = std::iter::once(m.binary.clone()).chain(m.args.iter().cloned()).map(|a| systemd_quote(&a)).collect();
    format!(
        "[Unit]\nDescription=etcd member {name} (managed by etcd-bootstrap)\nAfter=network-online.target\nWants=network-online.target\n\n\
         [Service]\nType=notify\nExecStart={cmd}\nRestart=on-failure\nRestartSec=5s\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n",
        name = systemd_text(&m.spec.name),
        cmd = cmd.join(" "),
    )
}

/// One word of an `ExecStart=` line (systemd.syntax, systemd.service "Command lines"): plain
/// when it is only safe characters, otherwise double-quoted with `\\`, `\"` and C escapes for
/// control characters; `%` (specifiers) and `$` (variables) doubled in both cases.
pub fn systemd_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c));
    if plain {
        return word.to_string();
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if c.is_control() => crate::spec::rules::push_hex_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Free text in a unit (a `Description=`): one line, specifiers doubled.
fn systemd_text(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect::<String>().replace('%', "%%")
}

/// Stops the member (SIGTERM, bounded wait, SIGKILL) — only a process that is etcd.
/// With `purge` (this cluster's marker text), also removes its data dir and marker — the only
/// place anything is deleted, and only with proof of ownership: the marker in the run dir says
/// this cluster and this member, and the data dir holds nothing but etcd's own `member`
/// directory. Otherwise it prints `purge_refused=REASON` and deletes nothing.
pub fn stop(m: &MemberPlan, purge: Option<&str>) -> String {
    stop_within(m, purge, Grace::Graceful)
}

/// How long a stopping etcd may take before SIGKILL.
#[derive(Debug, Clone, Copy)]
enum Grace {
    /// 10 s: a leadership hand-off and open watches drained (etcd's own shutdown).
    Graceful,
    /// 0.2 s: for data about to be replaced.
    Short,
}

impl Grace {
    fn tenths(self) -> u32 {
        match self {
            Grace::Graceful => 100,
            Grace::Short => 2,
        }
    }
}

fn stop_within(m: &MemberPlan, purge: Option<&str>, grace: Grace) -> String {
    if let Some(a) = &m.spec.adopted {
        // never purged: `down --purge` is refused on an adopted cluster
        return crate::host::scripts_adopted::stop(m, a, IS_ETCD, grace.tenths());
    }
    let sp = &m.spec;
    let mut s = String::from("set -u\n");
    match sp.supervisor() {
        Supervisor::Process => s.push_str(&format!(
            "{IS_ETCD}pidf={pid}\nif [ -f \"$pidf\" ]; then p=$(cat \"$pidf\")\n  if is_etcd \"$p\"; then\n    kill -CONT \"$p\" 2>/dev/null; kill -TERM \"$p\"; i=0\n    while is_etcd \"$p\" && [ $i -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done\n    is_etcd \"$p\" && kill -KILL \"$p\" && echo killed=$p\n    echo stopped=$p\n  fi\n  # only our pid file: a start that raced this stop may have written a new one\n  [ \"$(cat \"$pidf\" 2>/dev/null)\" = \"$p\" ] && rm -f \"$pidf\"\nfi\n",
            pid = q(&m.pid_file().display().to_string()),
            tenths = grace.tenths(),
        )),
        // gracefully, the unit's own TimeoutStopSec; shortly, past the grace the unit's processes
        // are killed and the stop job then finishes at once
        Supervisor::Systemd => s.push_str(&format!(
            "if systemctl is-active --quiet {u}; then\n  {stop}\n  echo stopped=unit\nfi\nsystemctl disable {u} >/dev/null 2>&1 || true\n",
            u = q(&m.unit_name()),
            stop = match grace {
                Grace::Graceful => format!("systemctl stop {}", q(&m.unit_name())),
                Grace::Short => format!("timeout {s} systemctl stop {u} || {{ systemctl kill --signal=SIGKILL {u}; systemctl stop {u}; echo killed=unit; }}", s = f64::from(grace.tenths()) / 10.0, u = q(&m.unit_name())),
            },
        )),
    }
    if let Some(marker_text) = purge {
        s.push_str(&format!(
            "d={data}\nmk={marker}\nif [ -e \"$d\" ] || [ -L \"$d\" ]; then\n\
             \x20 other=$(ls -A -- \"$d\" 2>/dev/null | grep -vx member | head -n 3 | tr '\\n' ' ')\n\
             \x20 if [ -L \"$d\" ] || [ ! -d \"$d\" ]; then echo \"purge_refused=$d is not a directory (a symlink or a file); nothing deleted\"\n\
             \x20 elif [ \"$(cat -- \"$mk\" 2>/dev/null)\" != {want} ]; then echo \"purge_refused=$d carries no marker of this cluster ($mk missing or another cluster's); nothing deleted\"\n\
             \x20 elif [ -n \"$other\" ]; then echo \"purge_refused=$d holds files etcd did not make ($other); nothing deleted\"\n\
             \x20 else rm -rf -- \"$d\" && rm -f -- \"$mk\" && echo \"purged=$d\"; fi\nfi\n",
            data = q(&sp.data_dir.display().to_string()),
            marker = q(&m.marker_file().display().to_string()),
            want = q(marker_text),
        ));
    }
    s
}

/// Whether the member's running etcd serves the v2 API (gone in 3.6): `--enable-v2` on its
/// command line or `ETCD_ENABLE_V2` in its environment, read from /proc of the process its pid
/// file (or its systemd unit) names. Prints `v2=flag` / `v2=env`.
pub fn v2_probe(m: &MemberPlan) -> String {
    format!(
        "pid=$(cat {pidf} 2>/dev/null || systemctl show -p MainPID --value {unit} 2>/dev/null || true)\n\
         if [ -n \"$pid\" ] && [ \"$pid\" != 0 ] && [ -r \"/proc/$pid/cmdline\" ]; then\n\
         \x20 tr '\\0' '\\n' < \"/proc/$pid/cmdline\" | grep -Eqx -- '--enable-v2(=(true|1))?' && echo v2=flag\n\
         \x20 tr '\\0' '\\n' < \"/proc/$pid/environ\" 2>/dev/null | grep -Eqx 'ETCD_ENABLE_V2=(true|1)' && echo v2=env\n\
         fi\n\
         true\n",
        pidf = q(&m.pid_file().display().to_string()),
        unit = q(&format!("etcd-{}.service", m.spec.name)),
    )
}

/// Whether the member's data holds v2 store content (etcd 3.6 refuses to start on it): `etcdutl
/// check v2store`, which needs a data dir not in use, run on a private copy of the member's snap
/// files and WAL (not the database: the check does not read it) with the etcdutl beside the
/// member's etcd. Prints `v2store=clean`, `v2store=custom` (the store holds v2 data),
/// `v2store=wal` (only WAL records after the last v2 snapshot are v2 requests: writes, or the
/// quorum reads a v2-serving 3.5 makes for each `/health`), `v2store=no-tool` (that etcdutl lacks
/// the check) or `v2store=error` (its message on stderr). The copy is removed in every case.
pub fn v2store_probe(m: &MemberPlan) -> String {
    format!(
        "set -u\n\
         bin=$(command -v -- {etcd}) || {{ echo v2store=no-tool; exit 0; }}\n\
         tool=\"$(dirname -- \"$bin\")/etcdutl\"\n\
         if [ ! -x \"$tool\" ] || ! \"$tool\" check v2store --help >/dev/null 2>&1; then echo v2store=no-tool; exit 0; fi\n\
         d={data}/member\n\
         [ -d \"$d/wal\" ] || {{ echo v2store=clean; exit 0; }}\n\
         t=$(mktemp -d \"${{TMPDIR:-/tmp}}/etcd-v2store.XXXXXX\") || {{ echo v2store=error; exit 0; }}\n\
         trap 'rm -rf -- \"$t\"' EXIT\n\
         # a running member may be mid-write: a copy whose last WAL record is torn is read again\n\
         for try in 1 2 3; do\n\
         \x20 rm -rf -- \"$t/member\"; mkdir -p \"$t/member/snap\"\n\
         \x20 for f in \"$d\"/snap/*.snap; do [ -e \"$f\" ] && cp -p -- \"$f\" \"$t/member/snap/\"; done\n\
         \x20 cp -pR -- \"$d/wal\" \"$t/member/wal\"\n\
         \x20 if out=$(\"$tool\" check v2store --data-dir \"$t\" 2>&1); then echo v2store=clean; exit 0\n\
         \x20 elif printf '%s' \"$out\" | grep -qi 'custom v2 content in WAL records$'; then echo v2store=wal; exit 0\n\
         \x20 elif printf '%s' \"$out\" | grep -qi 'custom.*content'; then echo v2store=custom; exit 0; fi\n\
         \x20 sleep 0.3\n\
         done\n\
         echo v2store=error; printf '%s\\n' \"$out\" >&2\n",
        etcd = q(&m.binary),
        data = q(&m.spec.data_dir.display().to_string()),
    )
}

/// For `doctor`: the host's clock (`now=` seconds since the epoch), the free space beside the
/// member's data dir (`free_kib=`) and its database's size (`db_bytes=`).
pub fn clock_and_space(m: &MemberPlan) -> String {
    format!(
        "{space}echo db_bytes=$(stat -c %s -- {db} 2>/dev/null || echo 0)\necho now=$(date +%s.%N)\n",
        space = free_space(m),
        db = q(&m.spec.data_dir.join("member/snap/db").display().to_string()),
    )
}

/// The free space (KiB) on the filesystem that holds (or will hold) the member's data dir: the
/// nearest existing ancestor is asked. Also proves the host answers.
pub fn free_space(m: &MemberPlan) -> String {
    format!(
        "d={data}\nwhile [ ! -e \"$d\" ] && [ \"$d\" != / ]; do d=$(dirname -- \"$d\"); done\necho free_kib=$(df -Pk -- \"$d\" | awk 'NR==2 {{print $4}}')\n",
        data = q(&m.spec.data_dir.display().to_string()),
    )
}

/// For a replacement: stops an old process if one still runs, moves a non-empty data dir aside
/// (`DATA.replaced-TIME`: kept, never deleted) and drops the old marker.
pub fn retire(m: &MemberPlan) -> String {
    retire_within(m, Grace::Graceful)
}

/// `retire` for a whole-cluster restore: the data is replaced anyway (the old kept aside, as a
/// crash leaves it), so a member still draining watches or handing off leadership after 0.2 s is
/// killed instead of waited for.
pub fn retire_now(m: &MemberPlan) -> String {
    retire_within(m, Grace::Short)
}

fn retire_within(m: &MemberPlan, grace: Grace) -> String {
    let sp = &m.spec;
    format!(
        "{stop}d={data}
if [ -d \"$d\" ] && [ -n \"$(ls -A \"$d\" 2>/dev/null)\" ]; then to=\"$d.replaced-$(date -u +%Y%m%dT%H%M%S)\"; mv \"$d\" \"$to\"; echo moved=$to; fi\nrm -f {marker}\n",
        stop = stop_within(m, None, grace),
        data = q(&sp.data_dir.display().to_string()),
        marker = q(&m.marker_file().display().to_string()),
    )
}

/// Restores `snapshot` (already on the host) into the member's data dir with etcd's own tool: the
/// `etcdutl` beside the member's etcd (3.5+), else the `etcdctl` beside it (3.4, `ETCDCTL_API=3`),
/// else whichever of the two is on PATH. The data dir must be absent or empty (`retire` moved the
/// old one aside; an empty one is removed, as the tool refuses an existing dir).
fn restore_tool_lines(m: &MemberPlan) -> Vec<String> {
    vec![
        "set -eu".to_string(),
        format!("bin=$(command -v -- {etcd}) || {{ echo no etcd at: {etcd} >&2; exit 1; }}", etcd = q(&m.binary)),
        r#"dir=$(dirname -- "$bin")"#.into(),
        r#"if [ -x "$dir/etcdutl" ]; then tool="$dir/etcdutl""#.into(),
        r#"elif [ -x "$dir/etcdctl" ]; then tool="$dir/etcdctl"; export ETCDCTL_API=3"#.into(),
        "elif command -v etcdutl >/dev/null 2>&1; then tool=etcdutl".into(),
        "elif command -v etcdctl >/dev/null 2>&1; then tool=etcdctl; export ETCDCTL_API=3".into(),
        r#"else echo "neither etcdutl nor etcdctl beside $bin or on PATH" >&2; exit 1; fi"#.into(),
    ]
}

/// Whether the member's restore tool can bump the revision (etcdutl 3.5.10 and later):
/// prints `tool=PATH` and `bump=yes` or `bump=no`.
pub fn restore_tool_probe(m: &MemberPlan) -> String {
    let mut lines = restore_tool_lines(m);
    lines.push(r#"echo "tool=$tool""#.into());
    lines.push(r#"if "$tool" snapshot restore --help 2>&1 | grep -q -- --bump-revision; then echo bump=yes; else echo bump=no; fi"#.into());
    lines.join("\n") + "\n"
}

/// Restores `snapshot` into the member's data dir. With `bump` > 0 the revision is raised by that
/// much and the history below it marked compacted (etcd-io/etcd#16028): a watcher that resumes
/// from a revision of the old history gets "compacted" and re-lists instead of missing changes.
pub fn restore_snapshot(m: &MemberPlan, snapshot: &str, initial_cluster: &str, token: &str, bump: u64) -> String {
    let sp = &m.spec;
    let bump_flags = if bump > 0 { format!(" --bump-revision {bump} --mark-compacted") } else { String::new() };
    let mut lines = restore_tool_lines(m);
    lines.extend([
        format!("d={}", q(&sp.data_dir.display().to_string())),
        r#"if [ -d "$d" ] && [ -z "$(ls -A -- "$d")" ]; then rmdir -- "$d"; fi"#.into(),
        r#"if [ -e "$d" ]; then echo "$d exists and is not empty: not restoring over it" >&2; exit 1; fi"#.into(),
        r#"mkdir -p -- "$(dirname -- "$d")""#.into(),
        format!(
            r#""$tool" snapshot restore {snap} --name {name} --initial-cluster {ic} --initial-cluster-token {token} --initial-advertise-peer-urls {peer} --data-dir "$d"{bump_flags} >&2"#,
            snap = q(snapshot),
            name = q(&sp.name),
            ic = q(initial_cluster),
            token = q(token),
            peer = q(&sp.peer_url()),
        ),
        r#"chmod 700 "$d""#.into(),
        // owned as the data it replaces (etcd may run as its own user)
        r#"old=$(ls -d -- "$d".replaced-* 2>/dev/null | tail -n 1); if [ -n "$old" ]; then chown -R --reference="$old" -- "$d"; fi"#.into(),
        r#"echo "restored=$tool""#.into(),
    ]);
    lines.join("\n") + "\n"
}

/// Prints `owner=PACKAGE` when a package (dpkg, else rpm) owns the file at `path`.
pub fn package_owner(path: &str) -> String {
    format!(
        r#"f={}
if command -v dpkg >/dev/null 2>&1 && o=$(dpkg -S -- "$f" 2>/dev/null); then echo "owner=${{o%%:*}}"
elif command -v rpm >/dev/null 2>&1 && o=$(rpm -qf -- "$f" 2>/dev/null); then echo "owner=$o"; fi
true
"#,
        q(path)
    )
}

/// `check lb` from a control-plane node: a TCP connect to the load balancer (bash's /dev/tcp,
/// bounded by timeout(1)), whether the LB closes at once, and, when curl is there, `GET /readyz`
/// verified against `ca_pem` (written to a private temporary). Prints one `seen=...` line.
pub fn lb_probe(host: &str, port: u16, ca_pem: &str, timeout_secs: u64) -> String {
    let lines = [
        "set -u".to_string(),
        format!("h={}; p={port}; t={timeout_secs}", q(host)),
        r#"command -v timeout >/dev/null 2>&1 || { echo "seen=unreachable:no timeout(1) on the node"; exit 0; }"#.into(),
        r#"err=$(timeout "$t" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$h" "$p" 2>&1 >/dev/null); rc=$?"#.into(),
        r#"if [ "$rc" = 124 ]; then echo seen=timeout; exit 0; fi"#.into(),
        r#"case "$err" in *refused*) echo seen=refused; exit 0;; esac"#.into(),
        r#"if [ "$rc" != 0 ]; then echo "seen=unreachable:$(printf '%s' "$err" | tr -d '
' | cut -c1-200)"; exit 0; fi"#.into(),
        // the LB with no healthy backend closes right after accepting; a TLS server waits
        r#"if timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"; cat <&3 >/dev/null' "$h" "$p" 2>/dev/null; then echo seen=closed; exit 0; fi"#.into(),
        r#"command -v curl >/dev/null 2>&1 || { echo seen=open; exit 0; }"#.into(),
        r#"ca=$(mktemp); errf=$(mktemp); trap 'rm -f "$ca" "$errf"' EXIT"#.into(),
        format!(r#"printf '%s' {} > "$ca""#, q(ca_pem)),
        r#"case "$h" in *:*) url="https://[$h]:$p/readyz";; *) url="https://$h:$p/readyz";; esac"#.into(),
        r#"code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time "$t" --cacert "$ca" "$url" 2>"$errf"); rc=$?"#.into(),
        r#"why=$(head -c 300 "$errf" | tr -d '\n')"#.into(),
        r#"case "$rc" in 0) echo "seen=readyz:$code";; 35|51|58|60|77|83|90|91) echo "seen=untrusted:curl: $why";; 28) echo seen=no-tls-answer;; 52|56) echo seen=closed;; *) echo "seen=unreachable:curl: $why";; esac"#.into(),
    ];
    lines.join("\n") + "\n"
}

/// The last lines of the member's log, for error messages.
pub fn log_tail(m: &MemberPlan, lines: usize) -> String {
    if let Some(crate::spec::adopted::AdoptedSupervisor::Systemd { unit, .. }) = m.spec.adopted.as_ref().map(|a| &a.supervisor) {
        return format!("journalctl -u {} -n {lines} --no-pager 2>/dev/null\n", q(unit));
    }
    if m.spec.adopted.is_some() {
        // a plain process logs here once started by us; before, wherever its operator sent it
        return format!("tail -n {lines} {} 2>/dev/null\n", q(&m.log_file().display().to_string()));
    }
    match m.spec.supervisor() {
        Supervisor::Process => format!("tail -n {lines} {} 2>/dev/null\n", q(&m.log_file().display().to_string())),
        Supervisor::Systemd => format!("journalctl -u {} -n {lines} --no-pager 2>/dev/null\n", q(&m.unit_name())),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_a_package_installed_is_named_with_its_package() {
        let run =
            |p: &str| crate::host::transport::Transport::run(&crate::host::transport::Local, &package_owner(p), std::time::Duration::from_secs(20)).unwrap();
        // this machine is Debian: dpkg's own binary belongs to the package dpkg
        assert_eq!(run("/usr/bin/dpkg").value("owner").as_deref(), Some("dpkg"));
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("etcd");
        std::fs::write(&mine, "").unwrap();
        assert_eq!(run(&mine.display().to_string()).value("owner"), None, "a file no package owns");
    }

    use super::*;
    use std::process::Command;

    fn member(supervisor: Supervisor) -> MemberPlan {
        let spec: crate::spec::MemberSpec = serde_yaml_ng::from_str("{name: etcd-1, address: 10.0.0.11, run_dir: /run/x, data_dir: /data/etcd-1}").unwrap();
        let spec = crate::spec::MemberSpec { supervisor: Some(supervisor), ..spec };
        MemberPlan { args: vec!["--name".into(), "etcd-1".into()], binary: "etcd".into(), files: vec![], spec }
    }

    #[test]
    fn delivery_is_atomic_and_idempotent_in_real_bash() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a/b/server.key").display().to_string();
        let script = deliver(&[(path.clone(), 0o600, b"secret\n".to_vec())]);
        let run = |s: &str| Command::new("bash").arg("-c").arg(s).output().unwrap();
        let out = run(&script);
        assert!(String::from_utf8_lossy(&out.stdout).contains("written"), "{out:?}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = run(&script);
        assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged"));
        assert_eq!(std::fs::read(&path).unwrap(), b"secret\n");
    }

    #[test]
    fn scripts_parse_as_bash() {
        for sup in [Supervisor::Process, Supervisor::Systemd] {
            let m = member(sup);
            for script in [start(&m, "tok"), stop(&m, Some("tok etcd-1")), stop(&m, None), preflight(&m, &["10.0.0.12".into()]), log_tail(&m, 5)] {
                let out = Command::new("bash").arg("-n").arg("-c").arg(&script).output().unwrap();
                assert!(out.status.success(), "{script}\n{}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }

    #[test]
    fn only_purge_deletes_and_only_the_data_dir() {
        let m = member(Supervisor::Process);
        assert!(!stop(&m, None).contains("rm -rf"));
        let purge = stop(&m, Some("tok etcd-1"));
        assert_eq!(purge.matches("rm -rf").count(), 1);
        assert!(purge.contains("d=/data/etcd-1") && purge.contains("rm -rf -- \"$d\""));
    }

    /// A member whose paths live under `root` (a temp dir), process-supervised.
    fn member_in(root: &std::path::Path) -> MemberPlan {
        let mut m = member(Supervisor::Process);
        m.spec.data_dir = root.join("data");
        m.spec.run_dir = root.join("run");
        m
    }

    fn bash(script: &str) -> std::process::Output {
        Command::new("bash").arg("-c").arg(script).output().unwrap()
    }

    #[test]
    fn purge_deletes_only_with_proof_of_ownership() {
        let d = tempfile::tempdir().unwrap();
        let m = member_in(d.path());
        let data = d.path().join("data");
        std::fs::create_dir_all(data.join("member/wal")).unwrap();
        std::fs::create_dir_all(d.path().join("run")).unwrap();
        let purge = stop(&m, Some("tok etcd-1"));
        // 1. no marker: refused
        let out = String::from_utf8_lossy(&bash(&purge).stdout).into_owned();
        assert!(out.contains("purge_refused=") && out.contains("no marker"), "{out}");
        assert!(data.join("member/wal").exists());
        // 2. another cluster's marker: refused
        std::fs::write(m.marker_file(), "other etcd-1\n").unwrap();
        assert!(String::from_utf8_lossy(&bash(&purge).stdout).contains("purge_refused="));
        // 3. our marker, but someone's files too: refused
        std::fs::write(m.marker_file(), "tok etcd-1\n").unwrap();
        std::fs::write(data.join("precious.txt"), "not etcd's").unwrap();
        let out = String::from_utf8_lossy(&bash(&purge).stdout).into_owned();
        assert!(out.contains("holds files etcd did not make (precious.txt"), "{out}");
        assert!(data.join("precious.txt").exists());
        // 4. a symlink to someone's directory: refused
        std::fs::remove_file(data.join("precious.txt")).unwrap();
        let elsewhere = d.path().join("elsewhere");
        std::fs::rename(&data, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &data).unwrap();
        assert!(String::from_utf8_lossy(&bash(&purge).stdout).contains("not a directory"));
        assert!(elsewhere.join("member/wal").exists());
        // 5. ours: purged
        std::fs::remove_file(&data).unwrap();
        std::fs::rename(&elsewhere, &data).unwrap();
        let out = String::from_utf8_lossy(&bash(&purge).stdout).into_owned();
        assert!(out.contains("purged="), "{out}");
        assert!(!data.exists() && !m.marker_file().exists());
    }

    const CANARY_PAYLOADS: &[&str] = &[
        "/x\nUNIT\ntouch CANARY\ncat >/dev/null <<'UNIT'",
        "/x\nExecStartPre=/bin/touch CANARY",
        "/x'; touch CANARY; echo '",
        "/x$(touch CANARY)",
        "/x`touch CANARY`",
        "/x\\\"; touch CANARY; #",
        "/x%n$HOME\\x41\u{1b}[2J",
    ];

    #[test]
    fn hostile_values_stay_one_word_in_the_unit_file() {
        for payload in CANARY_PAYLOADS {
            let mut m = member(Supervisor::Systemd);
            m.spec.name = format!("etcd-1\nExecStartPre=/bin/touch {payload}");
            m.args = vec!["--data-dir".into(), payload.to_string(), "--name".into(), m.spec.name.clone()];
            m.binary = payload.to_string();
            let unit = unit_file(&m);
            let keys: Vec<&str> = unit.lines().filter(|l| !l.is_empty()).map(|l| l.split('=').next().unwrap_or(l)).collect();
            let want =
                ["[Unit]", "Description", "After", "Wants", "[Service]", "Type", "ExecStart", "Restart", "RestartSec", "LimitNOFILE", "[Install]", "WantedBy"];
            assert_eq!(keys, want, "payload {payload:?} changed the unit's shape:\n{unit}");
            // the start script carries no unit text at all
            assert!(!start(&m, "tok").contains("[Service]"), "the unit is delivered as a file");
        }
    }

    #[test]
    fn systemd_quoting_follows_systemd_syntax() {
        assert_eq!(systemd_quote("--name"), "--name");
        assert_eq!(systemd_quote("a b"), "\"a b\"");
        assert_eq!(systemd_quote("100%"), "\"100%%\"");
        assert_eq!(systemd_quote("$HOME"), "\"$$HOME\"");
        assert_eq!(systemd_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(systemd_quote("a\nb"), "\"a\\x0ab\"");
        assert_eq!(systemd_quote(""), "\"\"");
    }

    #[test]
    fn hostile_values_never_run_in_the_process_start_and_delivery_scripts() {
        for payload in CANARY_PAYLOADS {
            let d = tempfile::tempdir().unwrap();
            let canary = d.path().join("CANARY");
            let payload = payload.replace("CANARY", &canary.display().to_string());
            let mut m = member_in(d.path());
            // a stub etcd that records its arguments, one per line
            let stub = d.path().join("etcd");
            std::fs::write(&stub, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$(dirname \"$0\")/args\"\nexec sleep 30\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
            m.binary = stub.display().to_string();
            m.args = vec!["--data-dir".into(), payload.clone()];
            let out = bash(&start(&m, &payload));
            assert!(out.status.success(), "{out:?}");
            std::thread::sleep(std::time::Duration::from_millis(200));
            let args = std::fs::read_to_string(d.path().join("args")).unwrap_or_default();
            assert!(args.contains(&payload), "the payload arrives as one argument: {args:?}");
            let _ = bash(&stop(&m, None));
            // delivery to a hostile path
            let target = d.path().join(format!("pki{}", payload.replace('/', "_")));
            let out = bash(&deliver(&[(target.display().to_string(), 0o600, b"k".to_vec())]));
            assert!(out.status.success(), "{out:?}");
            assert_eq!(std::fs::read(&target).unwrap(), b"k");
            assert!(!canary.exists(), "payload {payload:?} ran");
        }
    }

    #[test]
    fn a_delivery_whose_reader_is_gone_still_renames_every_file() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("etcd.pem"), d.path().join("etcd-key.pem"));
        std::fs::write(&cert, "old cert").unwrap();
        std::fs::write(&key, "old key").unwrap();
        let script = deliver(&[(cert.display().to_string(), 0o644, b"new cert".to_vec()), (key.display().to_string(), 0o600, b"new key".to_vec())]);
        // stdout is a pipe whose reader is already closed, as when etcd-bootstrap is killed
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let status = Command::new("bash").arg("-c").arg(&script).stdout(writer).status().unwrap();
        assert_eq!((std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap()), ("new cert".into(), "new key".into()), "{status:?}");
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains("pki-tmp")).collect();
        assert!(left.is_empty(), "no temporary left: {left:?}");
    }

    #[test]
    fn systemd_unit() {
        let u = unit_file(&member(Supervisor::Systemd));
        assert!(u.contains("Type=notify") && u.contains("ExecStart=etcd --name etcd-1") && u.contains("Restart=on-failure"));
    }
}

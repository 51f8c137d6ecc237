//! What each operation prints when it is done: a summary built from its report and the plan,
//! written as lines for people (`-w table`) or one JSON document (`-w json`). Built here, not in
//! the binary, so a library caller gets the same and golden files pin the text.

use crate::ops::restore::{Around, RestoreReport};
use crate::plan::Plan;
use crate::run::rolling::{Roll, RollReport};
use serde::Serialize;
use std::fmt::Write;

/// A summary written as text or JSON.
pub trait Summary: Serialize {
    /// The lines for people.
    fn text(&self) -> String;

    /// `text()`, or pretty JSON with a final newline.
    fn render(&self, format: crate::format::Format) -> String {
        match format {
            crate::format::Format::Json => serde_json::to_string_pretty(self).map(|j| j + "\n").unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}\n")),
            _ => self.text(),
        }
    }
}

/// The files a healthcheck (`etcdctl-lite quorum`) needs.
#[derive(Debug, Clone, Serialize)]
pub struct ClientFiles {
    pub cacert: String,
    pub cert: String,
    pub key: String,
}

/// Where `up` left what kubeadm and the nodes need (not for an adopted cluster).
#[derive(Debug, Clone, Serialize)]
pub struct UpOutputs {
    pub healthcheck: ClientFiles,
    pub kubeadm: String,
    pub nodes: String,
    pub haproxy: String,
    pub runbook: String,
}

/// `up`.
#[derive(Debug, Clone, Serialize)]
pub struct UpSummary {
    pub cluster: String,
    pub state: String,
    pub members: usize,
    /// Members this run started (the others were running).
    pub started: Vec<String>,
    pub seconds: f64,
    pub spec: String,
    pub endpoints: Vec<String>,
    pub adopted: bool,
    pub allow_old_etcd: bool,
    pub outputs: Option<UpOutputs>,
}

impl UpSummary {
    pub fn new(plan: &Plan, report: &crate::ops::up::UpReport, elapsed: std::time::Duration, spec: &std::path::Path) -> UpSummary {
        let spec_data = &plan.loaded.spec;
        let pki = plan.pki();
        let hc = pki.leaf(&pki::cluster::Role::HealthcheckClient);
        let out = &plan.loaded.output_dir;
        let path = |p: std::path::PathBuf| p.display().to_string();
        UpSummary {
            cluster: spec_data.name.clone(),
            state: report.verdict.state.word().to_string(),
            members: plan.members.len(),
            started: report.started.clone(),
            seconds: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            spec: spec.display().to_string(),
            endpoints: plan.endpoints(),
            adopted: spec_data.adopted.is_some(),
            allow_old_etcd: spec_data.kubernetes.allow_old_etcd,
            outputs: spec_data.adopted.is_none().then(|| UpOutputs {
                healthcheck: ClientFiles { cacert: path(pki.ca().cert), cert: path(hc.cert.clone()), key: path(hc.key.clone()) },
                kubeadm: path(out.join("kubeadm")),
                nodes: path(out.join("control-plane")),
                haproxy: path(out.join("haproxy/haproxy.cfg")),
                runbook: path(out.join("RUNBOOK.md")),
            }),
        }
    }
}

impl Summary for UpSummary {
    fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "cluster {}: {} ({} members, {} started now) in {:.1}s", self.cluster, self.state, self.members, self.started.len(), self.seconds);
        let _ = writeln!(s, "spec:        {}", self.spec);
        let endpoints = self.endpoints.join(",");
        let Some(o) = &self.outputs else {
            let _ = writeln!(s, "endpoints:   {endpoints}");
            let _ = writeln!(s, "adopted:     every member started as it was found; nothing issued, delivered or written");
            return s;
        };
        if self.allow_old_etcd {
            let _ = writeln!(
                s,
                "etcd:        kubernetes.allow_old_etcd is set (a lab cluster): an etcd below kubeadm's minimum is accepted, and the kubeadm configs ignore its ExternalEtcdVersion check"
            );
        }
        let _ = writeln!(s, "endpoints:   {endpoints}");
        let h = &o.healthcheck;
        let _ = writeln!(
            s,
            "check with:  ETCDCTL_ENDPOINTS={endpoints} ETCDCTL_CACERT={} ETCDCTL_CERT={} ETCDCTL_KEY={} etcdctl-lite quorum",
            h.cacert, h.cert, h.key
        );
        let _ = writeln!(s, "kubeadm:     {}", o.kubeadm);
        let _ = writeln!(s, "nodes:       {}", o.nodes);
        let _ = writeln!(s, "haproxy:     {}", o.haproxy);
        let _ = writeln!(s, "next:        {}", o.runbook);
        s
    }
}

/// `restore`.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    #[serde(flatten)]
    pub report: RestoreReport,
    pub members: usize,
    /// What to do with kube-apiserver and the clients that watch, line by line.
    pub kubernetes_steps: Vec<String>,
}

impl RestoreSummary {
    pub fn new(plan: &Plan, report: RestoreReport) -> RestoreSummary {
        let steps = crate::ops::restore::kubernetes_steps(plan, Around::After, report.bumped_by > 0);
        RestoreSummary { members: plan.members.len(), kubernetes_steps: steps.lines().map(str::to_string).collect(), report }
    }
}

impl Summary for RestoreSummary {
    fn text(&self) -> String {
        let r = &self.report;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "restored revision {} ({} keys) on {} members; cluster {} (was {}), HEALTHY at revision {}",
            r.snapshot_revision,
            r.snapshot_keys,
            self.members,
            r.cluster_id,
            r.old_cluster_id.as_deref().unwrap_or("unreachable"),
            r.revision_now
        );
        let old = r.old_revision.map(|o| o.to_string()).unwrap_or_else(|| "unknown".into());
        if r.bumped_by > 0 {
            let _ = writeln!(
                s,
                "revision raised by {} above the old cluster's ({old}); the history below is marked compacted, so a client watching from an old revision re-lists",
                r.bumped_by
            );
        } else {
            let _ = writeln!(
                s,
                "warning: the revision went back to the snapshot's (old cluster: {old}); the hosts' etcd tool cannot raise it (etcdutl 3.5.10+ can; etcd 3.4's etcdctl cannot)"
            );
        }
        for m in &r.moved {
            let _ = writeln!(s, "old data dir of {m}");
        }
        for l in &self.kubernetes_steps {
            let _ = writeln!(s, "{l}");
        }
        s
    }
}

/// `upgrade` and `downgrade --to`, done or (`--dry-run`) planned.
#[derive(Debug, Clone, Serialize)]
pub struct RollSummary {
    pub command: &'static str,
    pub dry_run: bool,
    #[serde(flatten)]
    pub report: RollReport,
    pub adopted: bool,
    /// What the spec should name now, so later starts use the new binary (not for an adopted
    /// cluster, whose binaries were replaced where they run from).
    pub spec_advice: Option<String>,
}

impl RollSummary {
    pub fn new(plan: &Plan, kind: Roll, to: &str, sha256: Option<&str>, dry_run: bool, report: RollReport) -> RollSummary {
        let adopted = plan.loaded.spec.adopted.is_some();
        let why = match kind {
            Roll::Upgrade => "a start with the older binary is refused",
            Roll::Downgrade => "a start with the newer binary would upgrade the member again",
        };
        let pinned = sha256.map(|h| format!(" and etcd_sha256: {h}")).unwrap_or_default();
        let spec_advice = (!adopted && !dry_run).then(|| format!("set etcd_archive: {to}{pinned} so that later starts use etcd {} ({why})", report.to));
        RollSummary { command: kind.command(), dry_run, report, adopted, spec_advice }
    }
}

impl Summary for RollSummary {
    fn text(&self) -> String {
        let (r, verb) = (&self.report, self.command);
        let mut s = String::new();
        if self.dry_run {
            let _ = writeln!(s, "{verb} {} -> {} would:", r.from, r.to);
            for (i, step) in r.steps.iter().enumerate() {
                let _ = writeln!(s, "  {}. {step}", i + 1);
            }
            if r.steps.is_empty() {
                let _ = writeln!(s, "  nothing: every member runs {} (cluster version {})", r.to, r.cluster_version);
            }
            return s;
        }
        if r.moved.is_empty() {
            let _ = writeln!(s, "nothing to do: every member runs etcd {} (cluster version {})", r.to, r.cluster_version);
        } else {
            let backup = r.backup.clone().unwrap_or_default();
            let _ = writeln!(s, "{verb}d {} from etcd {} to {}; cluster version {}; backup {backup}", r.moved.join(", "), r.from, r.to, r.cluster_version);
        }
        if self.adopted {
            let _ = writeln!(s, "each member's binary was replaced where it runs from; its unit or command line is unchanged");
        }
        if let Some(a) = &self.spec_advice {
            let _ = writeln!(s, "spec: {a}");
        }
        s
    }
}

/// `replace MEMBER`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplaceSummary {
    pub member: String,
    pub state: String,
}

impl Summary for ReplaceSummary {
    fn text(&self) -> String {
        format!("member {} replaced; the cluster is {}\n", self.member, self.state)
    }
}

/// `rotate certs`.
#[derive(Debug, Clone, Serialize)]
pub struct RotateCertsSummary {
    pub members: usize,
    /// Adopted: renewed where the members read them, without a restart; the count.
    pub in_place: Option<usize>,
    pub state: String,
}

impl Summary for RotateCertsSummary {
    fn text(&self) -> String {
        match self.in_place {
            Some(n) => format!("{n} certificates renewed in place on {} members (no restart); the cluster stayed {}\n", self.members, self.state),
            None => format!("certificates rotated on {} members; the cluster stayed {}\n", self.members, self.state),
        }
    }
}

/// `rotate ca` (and `--continue`): where it stopped and what the operator does next.
#[derive(Debug, Clone, Serialize)]
pub struct RotateCaSummary {
    /// `trusts-both`, `reissued` or `done`.
    pub stage: String,
    pub instructions: Vec<String>,
}

impl RotateCaSummary {
    pub fn new(plan: &Plan, outcome: crate::ops::rotate_ca::Outcome) -> RotateCaSummary {
        use crate::ops::rotate_ca::Outcome;
        let stage = match outcome {
            Outcome::TrustsBoth => "trusts-both",
            Outcome::Reissued => "reissued",
            Outcome::Done => "done",
        };
        let text = crate::ops::rotate_ca::instructions(plan, outcome);
        RotateCaSummary { stage: stage.into(), instructions: text.lines().map(str::to_string).collect() }
    }
}

impl Summary for RotateCaSummary {
    fn text(&self) -> String {
        self.instructions.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// `downgrade --cancel`.
#[derive(Debug, Clone, Serialize)]
pub struct CancelSummary {
    #[serde(flatten)]
    pub report: crate::ops::downgrade::CancelReport,
    /// What brings the members already moved back (`upgrade --to` the release they came from).
    pub bring_back: Option<String>,
}

impl CancelSummary {
    pub fn new(plan: &Plan, report: crate::ops::downgrade::CancelReport) -> CancelSummary {
        let bring_back = report.back_to.as_ref().map(|back| crate::run::context::command_for(plan, &format!("upgrade --to RELEASE (the etcd {back} release)")));
        CancelSummary { report, bring_back }
    }
}

impl Summary for CancelSummary {
    fn text(&self) -> String {
        let mut s = format!("downgrade cancelled; cluster version {}\n", self.report.cluster_version);
        if let Some(cmd) = &self.bring_back {
            s.push_str(&format!("{} already on the older release: bring them back with: {cmd}\n", self.report.moved.join(", ")));
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod golden {
    //! The summaries from fixed reports, compared with `bootstrap/tests/golden/`. Regenerate with
    //! `UPDATE_GOLDEN=1 cargo test -p bootstrap golden`.
    use super::*;

    pub(crate) fn check(name: &str, got: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
        if std::env::var("UPDATE_GOLDEN").is_ok() {
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(got, want, "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)");
    }

    fn both(name: &str, s: &impl Summary) {
        check(&format!("{name}.txt"), &s.text());
        check(&format!("{name}.json"), &s.render(crate::format::Format::Json));
    }

    fn up(outputs: bool, allow_old_etcd: bool) -> UpSummary {
        UpSummary {
            cluster: "prod-etcd".into(),
            state: "HEALTHY".into(),
            members: 3,
            started: vec!["etcd-1".into(), "etcd-2".into()],
            seconds: 4.2,
            spec: "cluster.yaml".into(),
            endpoints: (1..=3).map(|i| format!("https://10.0.0.1{i}:2379")).collect(),
            adopted: !outputs,
            allow_old_etcd,
            outputs: outputs.then(|| UpOutputs {
                healthcheck: ClientFiles {
                    cacert: "pki/etcd/ca.crt".into(),
                    cert: "pki/etcd/healthcheck-client.crt".into(),
                    key: "pki/etcd/healthcheck-client.key".into(),
                },
                kubeadm: "out/kubeadm".into(),
                nodes: "out/control-plane".into(),
                haproxy: "out/haproxy/haproxy.cfg".into(),
                runbook: "out/RUNBOOK.md".into(),
            }),
        }
    }

    #[test]
    fn up_summaries() {
        both("up", &up(true, false));
        both("up-old-etcd", &up(true, true));
        both("up-adopted", &up(false, false));
    }

    #[test]
    fn restore_summaries() {
        let report = RestoreReport {
            snapshot_revision: 1200,
            snapshot_keys: 340,
            revision_now: 1001201,
            cluster_id: "8e9e05c52164694d".into(),
            old_cluster_id: Some("cdf818194e3a8c32".into()),
            old_revision: Some(1500),
            bumped_by: 1000000,
            moved: vec!["etcd-1: /var/lib/etcd.replaced-20261206T050000".into()],
        };
        let steps = vec!["next, on each control-plane node, start kube-apiserver again:".into(), "  cp-1: start kube-apiserver".into()];
        both("restore", &RestoreSummary { report: report.clone(), members: 3, kubernetes_steps: steps.clone() });
        let back = RestoreReport { bumped_by: 0, old_revision: None, old_cluster_id: None, ..report };
        both("restore-not-bumped", &RestoreSummary { report: back, members: 3, kubernetes_steps: steps });
    }

    #[test]
    fn roll_summaries() {
        let report = RollReport {
            from: "3.6.17".into(),
            to: "3.7.4".into(),
            moved: vec!["etcd-2".into(), "etcd-3".into(), "etcd-1".into()],
            cluster_version: "3.7.0".into(),
            backup: Some("backups/prod-etcd-20261206T050000Z-r1200.db".into()),
            steps: vec!["back up the cluster".into(), "etcd-2: deliver 3.7.4, restart, check its version".into()],
        };
        let advice =
            Some("set etcd_archive: /srv/etcd-v3.7.4.tar.gz so that later starts use etcd 3.7.4 (a start with the older binary is refused)".to_string());
        both("upgrade", &RollSummary { command: "upgrade", dry_run: false, report: report.clone(), adopted: false, spec_advice: advice });
        both("upgrade-dry-run", &RollSummary { command: "upgrade", dry_run: true, report: report.clone(), adopted: false, spec_advice: None });
        both("downgrade-adopted", &RollSummary { command: "downgrade", dry_run: false, report, adopted: true, spec_advice: None });
    }

    #[test]
    fn replace_and_rotation_summaries() {
        both("replace", &ReplaceSummary { member: "etcd-2".into(), state: "HEALTHY".into() });
        both("rotate-certs", &RotateCertsSummary { members: 3, in_place: None, state: "HEALTHY".into() });
        both("rotate-certs-in-place", &RotateCertsSummary { members: 3, in_place: Some(9), state: "HEALTHY".into() });
        both("rotate-ca", &RotateCaSummary { stage: "trusts-both".into(), instructions: vec!["stopped after step 1 of 3".into(), "  copy ...".into()] });
    }
}

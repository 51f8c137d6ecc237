//! What the operations see of etcd and ask of it, as one trait: the quorum verdict, health,
//! membership changes, leadership, a member's version and the certificate it serves.
//! [`LiveEtcd`] does it over etcd's API (one runtime for the whole operation, the operator's
//! healthcheck client, both CAs trusted during a CA rotation); tests script a fake.

use crate::error::{BootError, Result};
use crate::plan::Plan;
use crate::spec::versions::Version;
use etcdctl_lite::maintenance::Downgrade;
use etcdctl_lite::model::{MemberInfo, Status36};
use etcdctl_lite::options::ClientOptions;
use etcdctl_lite::quorum::Verdict;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub trait EtcdView: Send + Sync {
    /// One quorum verdict over the spec's members (an election re-checked for one election
    /// timeout before it is reported).
    fn verdict(&self) -> Result<Verdict>;
    /// Whether the member at `endpoint` says it leads (its status: the leader is itself); `None`
    /// when it does not answer. A leader knows it leads: `Some(false)` needs no verdict.
    fn leads(&self, endpoint: &str) -> Option<bool>;
    /// Whether every member answers a health check now (short bounds).
    fn all_healthy(&self) -> Result<bool>;
    /// etcd's `endpoint health` of one member: a linearizable read through it (its leader is
    /// known and answers it over the peer link) and no alarm; else why not.
    fn member_health(&self, endpoint: &str) -> std::result::Result<(), String>;
    /// The member list, asked of `via` (client URLs; the first that answers).
    fn member_list(&self, via: &[String]) -> Result<Vec<MemberInfo>>;
    /// `member add --learner`: the new member and the list to start it with.
    fn add_learner(&self, via: &[String], peer_url: &str) -> Result<(MemberInfo, Vec<MemberInfo>)>;
    fn remove_member(&self, via: &[String], id: u64) -> Result<()>;
    fn promote(&self, via: &[String], id: u64) -> Result<()>;
    fn move_leader(&self, to: u64) -> Result<()>;
    /// The etcd version the member at `endpoint` runs, if it answers.
    fn version_of(&self, endpoint: &str) -> Option<Version>;
    /// The cluster version (`/version`'s `etcdcluster`), from the first member that answers.
    fn cluster_version(&self) -> Option<String>;
    /// etcd's downgrade API (3.6+): the cluster version it answers with.
    fn downgrade(&self, what: &Downgrade) -> Result<String>;
    /// What 3.6+ adds to the status of the member at `endpoint`: its storage version and the
    /// downgrade it knows of. `None` from a 3.5 member or one that does not answer.
    fn storage_of(&self, endpoint: &str) -> Option<Status36>;
    /// The DER certificate the member at `endpoint` presents in a TLS handshake.
    fn served_certificate(&self, endpoint: &str) -> Option<Vec<u8>>;
    /// Whether the member behind `peer_url` answers HTTP on its peer port within `within`:
    /// etcd serves it once its own bootstrap is done, before any election.
    fn peer_serves(&self, peer_url: &str, within: Duration) -> bool;
    /// From now on, verdicts keep their connections for the next one: for an operation whose
    /// verdict after each member would otherwise open a connection to every member. A member's
    /// stop and start forget the connection to it ([`EtcdView::forget_connections_to`]).
    fn keep_connections(&self) {}
    /// Forgets the connection kept to `endpoint` and lets it close: before the member stops
    /// (etcd's graceful stop waits about a second for an idle client connection to close) and
    /// after it starts (the old one would not serve until the member has rejoined).
    fn forget_connections_to(&self, _endpoint: &str) {}
    /// Client options and a runtime, for what the trait does not cover (compaction, snapshots).
    fn client(&self) -> Result<(ClientOptions, &tokio::runtime::Runtime)>;
}

/// etcd's API with the operator's healthcheck client.
pub struct LiveEtcd {
    endpoints: Vec<String>,
    ca: PathBuf,
    bundle: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    election_timeout: Duration,
    rt: tokio::runtime::Runtime,
    /// The verdicts' clients, kept for the operation once asked to (a verdict after each member).
    kept: etcdctl_lite::connect::KeptClients,
    keeping: std::sync::atomic::AtomicBool,
}

fn etcd_err(what: &str) -> impl FnOnce(etcdctl_lite::CtlError) -> BootError + '_ {
    move |source| BootError::Etcd { what: what.to_string(), source }
}

impl LiveEtcd {
    pub fn new(plan: &Plan) -> Result<LiveEtcd> {
        let (ca, cert, key) = plan.client_files();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(BootError::Runtime)?;
        Ok(LiveEtcd {
            endpoints: plan.endpoints(),
            ca,
            bundle: crate::plan::trust_bundle_path(plan),
            cert,
            key,
            election_timeout: plan.loaded.spec.etcd.election_timeout(),
            rt,
            kept: Default::default(),
            keeping: Default::default(),
        })
    }

    /// Read at each call: the files appear during `up`, and a CA rotation adds the bundle.
    fn options(&self) -> Result<ClientOptions> {
        let s = |p: &std::path::Path| p.display().to_string();
        // during a CA rotation, trust both CAs (members serve certificates from either)
        let ca = if self.bundle.exists() { &self.bundle } else { &self.ca };
        ClientOptions::new(&self.endpoints, Some(&s(ca)), Some(&s(&self.cert)), Some(&s(&self.key)), Duration::from_secs(1), Duration::from_secs(2))
            .map_err(etcd_err("the healthcheck client's files"))
    }

    /// Runs `work` on the view's runtime, then lets the connections it dropped close: on this
    /// one-thread runtime their tasks run only inside a `block_on`, and etcd's graceful stop
    /// waits (about a second) for a client connection left open.
    fn block_on<F: std::future::Future>(&self, work: F) -> F::Output {
        let out = self.rt.block_on(work);
        self.rt.block_on(async {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        });
        out
    }

    fn via(&self, via: &[String]) -> Result<ClientOptions> {
        Ok(self.options()?.with_endpoints(via.to_vec()))
    }
}

impl EtcdView for LiveEtcd {
    fn verdict(&self) -> Result<Verdict> {
        let opts = match self.keeping.load(std::sync::atomic::Ordering::Relaxed) {
            true => self.options()?.keeping(&self.kept),
            false => self.options()?,
        };
        Ok(self.block_on(etcdctl_lite::observe::assess(&opts, self.election_timeout)))
    }
    fn leads(&self, endpoint: &str) -> Option<bool> {
        let opts = self.via(&[endpoint.to_string()]).ok()?;
        let status = self.block_on(etcdctl_lite::ops::status_one(endpoint.to_string(), opts)).result.ok()?;
        // no leader known (an election): not a `false` to skip the verdict on
        (status.leader != 0).then_some(status.leader == status.member_id)
    }
    fn all_healthy(&self) -> Result<bool> {
        let mut opts = self.options()?;
        opts.dial_timeout = Duration::from_millis(500);
        opts.command_timeout = Duration::from_secs(1);
        Ok(self.block_on(etcdctl_lite::ops::health(&opts)).iter().all(|h| h.healthy()))
    }
    fn member_health(&self, endpoint: &str) -> std::result::Result<(), String> {
        let opts = self.via(&[endpoint.to_string()]).map_err(|e| e.to_string())?;
        self.block_on(etcdctl_lite::ops::health_one(endpoint.to_string(), opts)).result.map_err(|f| f.message)
    }
    fn member_list(&self, via: &[String]) -> Result<Vec<MemberInfo>> {
        let opts = self.via(via)?;
        self.block_on(etcdctl_lite::ops::member_list(&opts)).map(|l| l.members).map_err(etcd_err("listing the members"))
    }
    fn add_learner(&self, via: &[String], peer_url: &str) -> Result<(MemberInfo, Vec<MemberInfo>)> {
        let opts = self.via(via)?;
        self.block_on(etcdctl_lite::ops::member_add(&opts, &[peer_url.to_string()], true)).map_err(etcd_err("adding the learner"))
    }
    fn remove_member(&self, via: &[String], id: u64) -> Result<()> {
        let opts = self.via(via)?;
        self.block_on(etcdctl_lite::ops::member_remove(&opts, id)).map(|_| ()).map_err(etcd_err("removing the member"))
    }
    fn promote(&self, via: &[String], id: u64) -> Result<()> {
        let opts = self.via(via)?;
        self.block_on(etcdctl_lite::ops::member_promote(&opts, id)).map(|_| ()).map_err(etcd_err("promoting the learner"))
    }
    fn move_leader(&self, to: u64) -> Result<()> {
        let opts = self.options()?;
        self.block_on(etcdctl_lite::ops::move_leader(&opts, to)).map(|_| ()).map_err(etcd_err("moving leadership"))
    }
    fn version_of(&self, endpoint: &str) -> Option<Version> {
        let opts = self.via(&[endpoint.to_string()]).ok()?;
        self.block_on(etcdctl_lite::ops::status(&opts)).into_iter().find_map(|s| s.result.ok()).and_then(|s| Version::parse(&s.version))
    }
    fn cluster_version(&self) -> Option<String> {
        let opts = self.options().ok()?;
        self.endpoints.iter().find_map(|e| etcdctl_lite::version::get(e, &opts, Duration::from_secs(2)).ok()).map(|v| v.cluster)
    }
    fn downgrade(&self, what: &Downgrade) -> Result<String> {
        let opts = self.options()?;
        self.block_on(etcdctl_lite::maintenance::downgrade(&opts, what)).map_err(etcd_err("asking etcd's downgrade API"))
    }
    fn storage_of(&self, endpoint: &str) -> Option<Status36> {
        let opts = self.via(&[endpoint.to_string()]).ok()?;
        self.block_on(etcdctl_lite::ops::status(&opts)).into_iter().find_map(|s| s.result.ok()).and_then(|s| s.since_36)
    }
    fn served_certificate(&self, endpoint: &str) -> Option<Vec<u8>> {
        let opts = self.options().ok()?;
        opts.tls.as_ref().and_then(|tls| etcdctl_lite::diagnose::presented_certificate(endpoint, tls, Duration::from_secs(1)))
    }
    fn peer_serves(&self, peer_url: &str, within: Duration) -> bool {
        let Ok(opts) = self.options() else { return false };
        let deadline = Instant::now() + within;
        // refused until etcd listens (at once), then unanswered until its bootstrap is done
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if etcdctl_lite::version::get(peer_url, &opts, left).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
    fn keep_connections(&self) {
        self.keeping.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    fn forget_connections_to(&self, endpoint: &str) {
        if self.kept.forget_endpoint(endpoint) {
            self.block_on(async {}); // its connection's task runs (and closes it) only in a block_on
        }
    }
    fn client(&self) -> Result<(ClientOptions, &tokio::runtime::Runtime)> {
        Ok((self.options()?, &self.rt))
    }
}

//! `status` and `certs check`: read-only reports on the spec's cluster.

use crate::error::Result;
use crate::plan::Plan;
use etcdctl_lite::quorum::Verdict;

/// The quorum verdict over the spec's members (an election re-checked for one election
/// timeout). Read-only: no journal, no lock.
pub fn status(plan: &Plan) -> Result<Verdict> {
    use crate::run::etcd_view::EtcdView;
    crate::run::etcd_view::LiveEtcd::new(plan)?.verdict()
}

/// `certs check`: every certificate of the spec's PKI, with SAN coverage of the members' addresses.
/// An adopted cluster's certificates are read on the members' hosts, where they are.
pub fn certs_check(plan: &Plan, threshold: pki::expiry::Threshold) -> Result<pki::expiry::Report> {
    if plan.loaded.spec.adopted.is_some() {
        return crate::run::context::read_only(plan, &crate::progress::Progress::new(true), |ctx| crate::in_place::certs_report(ctx, threshold));
    }
    Ok(pki::expiry::check_dir(&plan.issue.dir, Some(&plan.issue.members), threshold)?)
}

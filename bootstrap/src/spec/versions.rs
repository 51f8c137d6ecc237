//! kubeadm's version rules in one table: for each kubeadm minor, the config API versions it
//! reads and the oldest external etcd its preflight check `ExternalEtcdVersion` accepts
//! (`MinExternalEtcdVersion` in `cmd/kubeadm/app/constants/constants.go`). A spec's
//! `kubernetes.version` picks the row; `plan`/`up` refuse a config API that kubeadm cannot read
//! and, in preflight, an etcd below the minimum (a warning with `allow_old_etcd`).
//!
//! The minimum is the one of each minor's latest patch release: kubeadm raised it inside minors
//! (1.31.0 accepted 3.5.11, 1.31.14 wants 3.5.24), and a cluster must keep passing preflight
//! when the operator moves to the next kubeadm patch.

/// A kubeadm config API version (`kubeadm.k8s.io/v1beta4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    V1Beta4,
    V1Beta3,
}

impl ApiVersion {
    /// `v1beta4`, as the `--kubeadm-api` flag takes it.
    pub fn name(self) -> &'static str {
        match self {
            ApiVersion::V1Beta4 => "v1beta4",
            ApiVersion::V1Beta3 => "v1beta3",
        }
    }
    pub fn group(self) -> &'static str {
        match self {
            ApiVersion::V1Beta4 => "kubeadm.k8s.io/v1beta4",
            ApiVersion::V1Beta3 => "kubeadm.k8s.io/v1beta3",
        }
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1beta4" => Ok(ApiVersion::V1Beta4),
            "v1beta3" => Ok(ApiVersion::V1Beta3),
            o => Err(format!("unknown kubeadm API {o:?}; use v1beta4 or v1beta3")),
        }
    }
}

/// A version `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

impl Version {
    /// `3.5.1`, `v3.5.1`, `3.5.24-0` (kubeadm's image suffix), `etcd Version: 3.4.23`.
    pub fn parse(text: &str) -> Option<Version> {
        let t = text.trim();
        let t = t.rsplit(' ').next().unwrap_or(t).trim_start_matches('v');
        let core = t.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let v = Version(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }
}

/// The version in what `etcd --version` prints (`etcd Version: 3.5.1` on its first line).
pub fn etcd_version_output(text: &str) -> Option<Version> {
    text.lines().find_map(|l| l.strip_prefix("etcd Version:")).and_then(Version::parse)
}

/// One kubeadm minor release.
#[derive(Debug, Clone, Copy)]
pub struct KubeadmRelease {
    pub minor: u64,
    /// The config API versions it reads, newest first.
    pub apis: &'static [ApiVersion],
    /// `MinExternalEtcdVersion` of its latest patch; `None` where no source was read.
    pub min_etcd: Option<Version>,
    /// The etcd line of its `DefaultEtcdVersion` (what its stacked etcd runs): the line `up
    /// --local` and plans take; `None` where no source was read.
    pub etcd_line: Option<(u64, u64)>,
    /// Where the numbers come from.
    pub source: &'static str,
}

const BOTH: &[ApiVersion] = &[ApiVersion::V1Beta4, ApiVersion::V1Beta3];
const V1BETA3: &[ApiVersion] = &[ApiVersion::V1Beta3];
const V1BETA4: &[ApiVersion] = &[ApiVersion::V1Beta4];

/// The table, oldest first. Minors newer than the last row use the last row. Rows 34-37 are
/// checked against kubeadm's own source at the tags below (`cmd/kubeadm/app/constants/constants.go`
/// and `cmd/kubeadm/app/apis/kubeadm/`) by the `kubeadm_matrix` integration test.
pub const KUBEADM: &[KubeadmRelease] = &[
    KubeadmRelease { minor: 22, apis: V1BETA3, min_etcd: None, etcd_line: None, source: "v1beta3 added in 1.22 (kubeadm-config.v1beta3 docs)" },
    KubeadmRelease {
        minor: 28,
        apis: V1BETA3,
        min_etcd: Some(Version(3, 4, 13)),
        etcd_line: Some((3, 5)),
        source: "kubernetes/kubernetes#118733 (1.28: MinExternalEtcdVersion 3.4.13-4)",
    },
    KubeadmRelease {
        minor: 29,
        apis: V1BETA3,
        min_etcd: Some(Version(3, 5, 16)),
        etcd_line: Some((3, 5)),
        source: "constants.go at v1.29.11..v1.29.15 (table in kubesphere/kubekey#2952)",
    },
    KubeadmRelease { minor: 30, apis: V1BETA3, min_etcd: None, etcd_line: Some((3, 5)), source: "not read; 1.30 is out of support" },
    KubeadmRelease {
        minor: 31,
        apis: BOTH,
        min_etcd: Some(Version(3, 5, 24)),
        etcd_line: Some((3, 5)),
        source: "v1beta4 from 1.31; constants.go at v1.31.14 (3.5.11-0 at v1.31.0: flatcar/scripts#2311)",
    },
    KubeadmRelease {
        minor: 32,
        apis: BOTH,
        min_etcd: Some(Version(3, 5, 24)),
        etcd_line: Some((3, 5)),
        source: "kubernetes/kubernetes#134779 (3.5.24-0 for 1.32, 1.33, 1.34)",
    },
    KubeadmRelease { minor: 33, apis: BOTH, min_etcd: Some(Version(3, 5, 24)), etcd_line: Some((3, 5)), source: "kubernetes/kubernetes#134779" },
    KubeadmRelease {
        minor: 34,
        apis: BOTH,
        min_etcd: Some(Version(3, 5, 24)),
        etcd_line: Some((3, 6)),
        source: "constants.go at v1.34.4 (DefaultEtcdVersion 3.6.5-0)",
    },
    KubeadmRelease {
        minor: 35,
        apis: BOTH,
        min_etcd: Some(Version(3, 5, 24)),
        etcd_line: Some((3, 6)),
        source: "constants.go at v1.35.4 (DefaultEtcdVersion 3.6.6-0)",
    },
    KubeadmRelease {
        minor: 36,
        apis: BOTH,
        min_etcd: Some(Version(3, 5, 24)),
        etcd_line: Some((3, 6)),
        source: "constants.go at v1.36.3 (DefaultEtcdVersion 3.6.8-0)",
    },
    KubeadmRelease {
        minor: 37,
        apis: V1BETA4,
        min_etcd: Some(Version(3, 5, 24)),
        etcd_line: Some((3, 7)),
        source: "constants.go at v1.37.2 (DefaultEtcdVersion 3.7.0-0; v1beta3 removed, kubernetes/kubernetes#136016)",
    },
];

/// The Kubernetes version a new spec (`up --local`) names: the newest release of the newest
/// minor in the table, checked against kubeadm's source like the table.
pub const DEFAULT_KUBERNETES: &str = "v1.37.2";

/// The tags of `k8s.io/kubernetes` the table's rows 34-37 were read from.
pub const KUBEADM_SOURCES: &[&str] = &["v1.34.4", "v1.35.4", "v1.36.3", "v1.37.2"];

/// The row for Kubernetes `k8s` (major 1), or why there is none.
pub fn release_for(k8s: Version) -> Result<KubeadmRelease, String> {
    if k8s.0 != 1 || k8s.1 < KUBEADM[0].minor {
        return Err(format!(
            "Kubernetes v{k8s}: kubeadm before 1.{} reads neither v1beta3 nor v1beta4 configs; use 1.{} or newer",
            KUBEADM[0].minor,
            KUBEADM[KUBEADM.len() - 1].minor
        ));
    }
    Ok(*KUBEADM.iter().rev().find(|r| r.minor <= k8s.1).unwrap_or(&KUBEADM[0]))
}

/// The config API to write for `k8s`: the newest it reads.
pub fn default_api(k8s: Version) -> Result<ApiVersion, String> {
    Ok(release_for(k8s)?.apis[0])
}

/// Refuses an API version kubeadm `k8s` cannot read.
pub fn check_api(k8s: Version, api: ApiVersion) -> Result<(), String> {
    let r = release_for(k8s)?;
    if r.apis.contains(&api) {
        return Ok(());
    }
    let names: Vec<&str> = r.apis.iter().map(|a| a.name()).collect();
    Err(format!(
        "kubeadm {}.{} (kubernetes.version v{k8s}) cannot read {}; it reads {} — drop --kubeadm-api or use {}",
        k8s.0,
        k8s.1,
        api.group(),
        names.join(" and "),
        names[0]
    ))
}

/// What kubeadm's `ExternalEtcdVersion` preflight check will say of `etcd` for `k8s`:
/// `Ok(None)` passes, `Ok(Some(note))` passes but the minimum is not known here, `Err` fails.
pub fn check_etcd(k8s: Version, etcd: Version) -> Result<Option<String>, String> {
    let r = release_for(k8s)?;
    match r.min_etcd {
        Some(min) if etcd < min => Err(format!(
            "etcd {etcd} is older than kubeadm 1.{}'s minimum for external etcd, {min} (its preflight check ExternalEtcdVersion, MinExternalEtcdVersion in constants.go; {}): upgrade etcd to {min} or newer (spec etcd_binary / etcd_archive), or set kubernetes.allow_old_etcd: true for a lab cluster",
            r.minor, r.source
        )),
        Some(_) => Ok(None),
        None => Ok(Some(format!("kubeadm 1.{}'s minimum external etcd is not in this tool's table ({}); etcd {etcd} not checked", r.minor, r.source))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_in_every_form_seen() {
        assert_eq!(Version::parse("3.5.1"), Some(Version(3, 5, 1)));
        assert_eq!(Version::parse("v1.34.2"), Some(Version(1, 34, 2)));
        assert_eq!(Version::parse("3.5.24-0"), Some(Version(3, 5, 24)));
        assert_eq!(Version::parse("etcd Version: 3.4.23"), Some(Version(3, 4, 23)));
        assert_eq!(etcd_version_output("etcd Version: 3.5.1\nGit SHA: e8732fb5f\n"), Some(Version(3, 5, 1)));
        assert_eq!(etcd_version_output("Git SHA: x\n"), None);
        for bad in ["", "3.5", "3.5.x", "3.5.1.2", "-"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn api_versions_follow_kubeadm() {
        assert_eq!(default_api(Version(1, 29, 0)).unwrap(), ApiVersion::V1Beta3);
        assert_eq!(default_api(Version(1, 31, 0)).unwrap(), ApiVersion::V1Beta4);
        assert_eq!(default_api(Version(1, 40, 0)).unwrap(), ApiVersion::V1Beta4, "newer minors use the last row");
        let e = check_api(Version(1, 29, 0), ApiVersion::V1Beta4).unwrap_err();
        assert!(e.contains("cannot read kubeadm.k8s.io/v1beta4") && e.contains("v1beta3"), "{e}");
        assert!(check_api(Version(1, 34, 2), ApiVersion::V1Beta3).is_ok());
        assert!(release_for(Version(1, 21, 0)).is_err());
    }

    #[test]
    fn etcd_minimums() {
        let e = check_etcd(Version(1, 34, 2), Version(3, 4, 23)).unwrap_err();
        assert!(e.contains("3.5.24") && e.contains("ExternalEtcdVersion") && e.contains("allow_old_etcd"), "{e}");
        assert!(check_etcd(Version(1, 34, 2), Version(3, 5, 1)).is_err());
        assert_eq!(check_etcd(Version(1, 34, 2), Version(3, 5, 24)), Ok(None));
        assert_eq!(check_etcd(Version(1, 35, 0), Version(3, 6, 5)), Ok(None));
        // 1.37 reads v1beta4 only (v1beta3 removed) and runs etcd 3.7 itself
        assert_eq!(default_api(Version(1, 37, 2)), Ok(ApiVersion::V1Beta4));
        assert!(check_api(Version(1, 37, 2), ApiVersion::V1Beta3).unwrap_err().contains("cannot read kubeadm.k8s.io/v1beta3"));
        assert_eq!(release_for(Version(1, 37, 2)).unwrap().etcd_line, Some((3, 7)));
        assert_eq!(release_for(Version(1, 36, 3)).unwrap().etcd_line, Some((3, 6)));
        assert!(check_etcd(Version(1, 30, 3), Version(3, 4, 23)).unwrap().is_some(), "unknown minimum: a note, not a pass in silence");
        for w in KUBEADM.windows(2) {
            assert!(w[0].minor < w[1].minor, "table sorted");
        }
    }
}

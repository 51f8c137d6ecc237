//! The version table (bootstrap/src/spec/versions.rs) against kubeadm's own source at each tag it was
//! read from: `MinExternalEtcdVersion` and `DefaultEtcdVersion` in
//! `cmd/kubeadm/app/constants/constants.go`, and which config API folders
//! (`cmd/kubeadm/app/apis/kubeadm/v1beta3`, `v1beta4`) exist. The tags sit in Go's module cache
//! (scripts/fetch-kubeadm-sources.sh, run by install-deps).

use bootstrap::kube::kubeadm::ApiVersion;
use bootstrap::spec::versions::{DEFAULT_KUBERNETES, KUBEADM_SOURCES, Version, release_for};
use std::path::PathBuf;
use std::process::Command;

fn source_of(tag: &str) -> PathBuf {
    let out = Command::new("go").args(["env", "GOMODCACHE"]).output().expect("the go command (install-deps needs it)");
    let cache = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = PathBuf::from(cache).join(format!("k8s.io/kubernetes@{tag}"));
    assert!(
        dir.join("cmd/kubeadm/app/constants/constants.go").is_file(),
        "{} is not in Go's module cache: run scripts/fetch-kubeadm-sources.sh (install-deps does)",
        dir.display()
    );
    dir
}

/// `NAME = "VALUE"` in constants.go.
fn constant(text: &str, name: &str) -> String {
    let at = text.find(&format!("{name} = \"")).unwrap_or_else(|| panic!("{name} not in constants.go"));
    text[at + name.len() + 4..].split('"').next().unwrap_or_default().to_string()
}

#[test]
fn the_version_table_says_what_kubeadms_source_says_at_each_tag() {
    for tag in KUBEADM_SOURCES {
        let dir = source_of(tag);
        let text = std::fs::read_to_string(dir.join("cmd/kubeadm/app/constants/constants.go")).unwrap();
        let k8s = Version::parse(tag).unwrap();
        let row = release_for(k8s).unwrap();
        assert_eq!(row.minor, k8s.1, "{tag} has a row of its own");
        let min = constant(&text, "MinExternalEtcdVersion");
        assert_eq!(row.min_etcd, Version::parse(&min), "{tag}: MinExternalEtcdVersion is {min}");
        let default = Version::parse(&constant(&text, "DefaultEtcdVersion")).unwrap();
        assert_eq!(row.etcd_line, Some((default.0, default.1)), "{tag}: DefaultEtcdVersion is {default}");
        for (api, folder) in [(ApiVersion::V1Beta3, "v1beta3"), (ApiVersion::V1Beta4, "v1beta4")] {
            let there = dir.join("cmd/kubeadm/app/apis/kubeadm").join(folder).is_dir();
            assert_eq!(row.apis.contains(&api), there, "{tag}: kubeadm {} {folder}", if there { "reads" } else { "does not read" });
        }
    }
    assert_eq!(Some(&DEFAULT_KUBERNETES), KUBEADM_SOURCES.last(), "the default is the newest tag read");
}

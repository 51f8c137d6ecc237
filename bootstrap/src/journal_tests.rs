use super::*;
use OpKind::*;

fn req(kind: OpKind, target: Option<&str>) -> Request {
    Request { kind, target: target.map(String::from), finish: format!("etcd-bootstrap {kind}") }
}

fn entry(kind: OpKind, target: Option<&str>) -> Entry {
    Entry {
        kind,
        target: target.map(String::from),
        finish: format!("etcd-bootstrap {kind}{}", target.map(|t| format!(" {t}")).unwrap_or_default()),
        pid: 4242,
        pid_start: Some(1),
        started: "2026-11-25 18:00:00 UTC".into(),
        paused: None,
        changed: true,
        step: Some("remove etcd-2".into()),
        error: None,
    }
}

fn under(kind: OpKind, target: Option<&str>, standing: Standing) -> UnderWay {
    let mut e = entry(kind, target);
    if standing == Standing::Paused {
        e.paused = Some("update kube-apiserver".into());
        e.finish = "etcd-bootstrap rotate ca --continue".into();
    }
    UnderWay { entry: e, standing }
}

#[test]
fn nothing_under_way_starts_anything() {
    for k in OpKind::ALL {
        assert_eq!(admit(&req(k, None), &[]), Ok(Admission::Start), "{k}");
    }
}

#[test]
fn during_a_paused_ca_rotation_only_the_listed_operations_start() {
    let paused = [under(RotateCa, None, Standing::Paused)];
    let allowed = [Up, Down, Maintain, Backup];
    for k in OpKind::ALL {
        let got = admit(&req(k, Some("x").filter(|_| k == Replace)), &paused);
        if k == RotateCa {
            assert_eq!(got, Ok(Admission::Resume));
        } else if allowed.contains(&k) {
            assert_eq!(got, Ok(Admission::Start), "{k} should be allowed during a paused rotate ca");
        } else {
            let r = got.expect_err(&format!("{k} must be refused during a paused rotate ca"));
            let text = r.to_string();
            assert!(text.contains("`rotate ca` is paused since 2026-11-25 18:00:00 UTC"), "{text}");
            assert!(text.ends_with("finish it with: etcd-bootstrap rotate ca --continue"), "{text}");
        }
    }
}

#[test]
fn an_unfinished_replace_blocks_all_but_itself_down_and_backup() {
    let unfinished = [under(Replace, Some("etcd-2"), Standing::Unfinished)];
    assert_eq!(admit(&req(Replace, Some("etcd-2")), &unfinished), Ok(Admission::Resume));
    let other = admit(&req(Replace, Some("etcd-1")), &unfinished).unwrap_err().to_string();
    assert!(other.starts_with("refusing to start `replace etcd-1`: `replace etcd-2` stopped unfinished at step 'remove etcd-2'"), "{other}");
    assert!(other.ends_with("finish it with: etcd-bootstrap replace etcd-2"), "{other}");
    for k in [Up, Purge, RotateCerts, RotateCa, Restore, Upgrade, Maintain] {
        assert!(admit(&req(k, None), &unfinished).is_err(), "{k} during an unfinished replace");
    }
    for k in [Down, Backup] {
        assert_eq!(admit(&req(k, None), &unfinished), Ok(Admission::Start), "{k}");
    }
}

#[test]
fn backup_is_refused_only_beside_a_restore_and_never_blocks() {
    for k in OpKind::ALL {
        let got = admit(&req(Backup, None), &[under(k, None, Standing::Unfinished)]);
        assert_eq!(got.is_ok(), k != Restore, "backup during an unfinished {k}");
        // a running backup blocks nothing that gets past the lock
        if k != Backup {
            assert!(admit(&req(k, None), &[under(Backup, None, Standing::Running)]).is_ok(), "{k} beside a backup");
        }
    }
}

#[test]
fn an_upgrade_to_another_release_does_not_resume_the_unfinished_one() {
    let unfinished = [under(Upgrade, Some("etcd-v3.5.30.tar.gz"), Standing::Unfinished)];
    assert_eq!(admit(&req(Upgrade, Some("etcd-v3.5.30.tar.gz")), &unfinished), Ok(Admission::Resume));
    assert!(admit(&req(Upgrade, Some("etcd-v3.6.0.tar.gz")), &unfinished).is_err());
}

#[test]
fn purge_waits_for_everything_and_down_for_nothing() {
    for k in OpKind::ALL.into_iter().filter(|k| *k != Backup && *k != Purge) {
        let u = [under(k, None, Standing::Unfinished)];
        assert!(admit(&req(Purge, None), &u).is_err(), "purge during {k}");
        assert!(admit(&req(Down, None), &u).is_ok(), "down during {k}");
    }
}

#[test]
fn maintain_goes_beside_a_paused_rotation_but_not_an_interrupted_one() {
    assert!(admit(&req(Maintain, None), &[under(RotateCa, None, Standing::Paused)]).is_ok());
    assert!(admit(&req(Maintain, None), &[under(RotateCa, None, Standing::Unfinished)]).is_err());
}

#[test]
fn standing_comes_from_the_process_and_the_first_change() {
    let mut j = Journal::default();
    let mut checking = entry(Restore, None);
    checking.changed = false;
    let mut paused = entry(RotateCa, None);
    paused.paused = Some("x".into());
    let killed_backup = entry(Backup, None);
    j.operations = vec![entry(Replace, Some("etcd-2")), checking, paused, killed_backup];
    let dead = j.under_way(|_, _| false);
    let standings: Vec<(OpKind, Standing)> = dead.iter().map(|u| (u.entry.kind, u.standing)).collect();
    // killed before its first change, or only reading: nothing is half-done
    assert_eq!(standings, vec![(Replace, Standing::Unfinished), (RotateCa, Standing::Paused)]);
    let alive = j.under_way(|_, _| true);
    assert_eq!(alive.iter().filter(|u| u.standing == Standing::Running).count(), 3);
}

#[test]
fn an_unfinished_entry_names_its_step_and_first_error_line() {
    let mut u = under(Replace, Some("etcd-2"), Standing::Unfinished);
    u.entry.error = Some("member etcd-2 (127.0.0.13): starting etcd failed\nlog tail".into());
    let d = u.describe();
    assert_eq!(
        d,
        "`replace etcd-2` stopped unfinished at step 'remove etcd-2' (started 2026-11-25 18:00:00 UTC): member etcd-2 (127.0.0.13): starting etcd failed; finish it with: etcd-bootstrap replace etcd-2"
    );
}

proptest::proptest! {
    /// Whatever is under way, admission never panics, a refusal names the blocking operation's
    /// finish command, and a resume is only of the same job.
    #[test]
    fn admission_is_total_and_explains_itself(new in 0usize..10, others in proptest::collection::vec((0usize..10, 0usize..3, proptest::bool::ANY), 0..5)) {
        let standings = [Standing::Running, Standing::Paused, Standing::Unfinished];
        let u: Vec<UnderWay> = others.iter().map(|(k, s, t)| under(OpKind::ALL[*k], t.then_some("a"), standings[*s])).collect();
        let r = req(OpKind::ALL[new], None);
        match admit(&r, &u) {
            Ok(Admission::Resume) => proptest::prop_assert!(u.iter().any(|x| x.entry.kind == r.kind && x.entry.target.is_none())),
            Ok(Admission::Start) => {}
            Err(refusal) => {
                let text = refusal.to_string();
                proptest::prop_assert!(text.contains(&refusal.blocking.entry.kind.to_string()));
                if refusal.blocking.standing != Standing::Running {
                    proptest::prop_assert!(text.contains("finish it with: etcd-bootstrap"));
                }
            }
        }
    }
}

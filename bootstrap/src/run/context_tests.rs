//! The journal's life cycle around an operation, with operations that only touch the journal:
//! milliseconds, no etcd, no host.

use super::*;
use crate::journal::Journal;
use crate::run::fakes::{Cluster, cluster};

fn go<T>(c: &Cluster, kind: OpKind, target: Option<&str>, args: &str, op: impl FnOnce(&Ctx) -> Result<T>) -> Result<T> {
    let quiet = Progress::new(true);
    // not zero: another test's fork() holds a copy of the lock's descriptor until its exec
    run(&c.plan, &quiet, request(&c.plan, kind, target.map(String::from), args), Duration::from_secs(5), op)
}

fn journal(c: &Cluster) -> Journal {
    Store::for_spec(Path::new(&c.plan.loaded.file)).read().unwrap()
}

fn failure() -> BootError {
    BootError::Precondition { what: "x".into(), reason: "y".into() }
}

#[test]
fn a_failure_before_the_first_change_leaves_nothing_under_way() {
    let c = cluster();
    assert!(go(&c, OpKind::Replace, Some("etcd-2"), "replace etcd-2", |_| Err::<(), _>(failure())).is_err());
    assert_eq!(journal(&c), Journal::default());
    assert!(go(&c, OpKind::RotateCerts, None, "rotate certs", |_| Ok(())).is_ok());
}

#[test]
fn a_failure_after_a_change_blocks_others_until_the_same_job_finishes() {
    let c = cluster();
    let err = go(&c, OpKind::Replace, Some("etcd-2"), "replace etcd-2", |ctx| {
        ctx.changing("retire etcd-2")?;
        ctx.changing("remove etcd-2")?;
        Err::<(), _>(BootError::Host { member: "etcd-2".into(), host: "local".into(), reason: "starting etcd failed".into() })
    });
    assert!(err.is_err());
    let refused = go(&c, OpKind::RotateCerts, None, "rotate certs", |_| -> Result<()> { panic!("must not run") }).unwrap_err();
    assert_eq!(refused.exit_code(), crate::exit::REFUSED);
    let text = refused.to_string();
    assert!(text.starts_with("refusing to start `rotate certs`: `replace etcd-2` stopped unfinished at step 'remove etcd-2'"), "{text}");
    assert!(text.contains("member etcd-2 (local): starting etcd failed"), "{text}");
    assert!(text.ends_with(&format!("finish it with: etcd-bootstrap -f {} replace etcd-2", c.plan.loaded.file)), "{text}");
    // another member's replace is another job
    assert!(go(&c, OpKind::Replace, Some("etcd-3"), "replace etcd-3", |_| Ok(())).is_err());
    // the backup only reads, and a down is always allowed
    assert!(
        go(&c, OpKind::Backup, None, "backup", |ctx| {
            assert_eq!(ctx.under_way.len(), 1);
            Ok(())
        })
        .is_ok()
    );
    // the same job resumes where it stopped, and finishing it clears the journal
    go(&c, OpKind::Replace, Some("etcd-2"), "replace etcd-2", |ctx| {
        assert_eq!(ctx.admission, Admission::Resume);
        assert_eq!(ctx.resumed_step().as_deref(), Some("remove etcd-2"));
        Ok(())
    })
    .unwrap();
    assert_eq!(journal(&c).operations, vec![]);
}

#[test]
fn a_resumed_job_that_fails_its_checks_stays_unfinished() {
    let c = cluster();
    let _ = go(&c, OpKind::Restore, None, "restore s.db", |ctx| ctx.changing("stop").and(Err::<(), _>(failure())));
    let _ = go(&c, OpKind::Restore, None, "restore s.db", |_| Err::<(), _>(failure()));
    let j = journal(&c);
    assert_eq!(j.operations.len(), 1);
    assert!(j.operations[0].changed, "still half-done: {j:?}");
}

#[test]
fn a_paused_rotation_admits_up_and_tells_it_so_and_refuses_replace() {
    let c = cluster();
    go(&c, OpKind::RotateCa, None, "rotate ca", |ctx| ctx.pause("update kube-apiserver", &command_for(ctx.plan, "rotate ca --continue"))).unwrap();
    let j = journal(&c);
    assert_eq!(j.operations.len(), 1);
    assert!(j.operations[0].paused.is_some());
    go(&c, OpKind::Up, None, "up", |ctx| {
        assert!(ctx.ca_rotation_under_way());
        Ok(())
    })
    .unwrap();
    go(&c, OpKind::Down, None, "down", |_| Ok(())).unwrap();
    let text = go(&c, OpKind::Replace, Some("etcd-2"), "replace etcd-2", |_| Ok(())).unwrap_err().to_string();
    assert!(text.contains("`rotate ca` is paused since") && text.ends_with("rotate ca --continue"), "{text}");
    // --continue goes on with it; done, it leaves nothing
    go(&c, OpKind::RotateCa, None, "rotate ca --continue", |ctx| {
        assert_eq!(ctx.admission, Admission::Resume);
        ctx.changing("Reissue")?;
        ctx.finished()
    })
    .unwrap();
    assert_eq!(journal(&c).operations, vec![]);
}

#[test]
fn an_operations_own_record_without_an_entry_is_unfinished_and_a_waiting_rotation_is_paused() {
    let c = cluster();
    let etcd = c.plan.issue.dir.join("etcd");
    std::fs::create_dir_all(&etcd).unwrap();
    std::fs::write(etcd.join("ca-rotation.json"), r#"{"phase":"reissue","done":[],"waiting_for_operator":true}"#).unwrap();
    let text = go(&c, OpKind::Upgrade, None, "upgrade --to x", |_| Ok(())).unwrap_err().to_string();
    assert!(text.contains("`rotate ca` is paused") && text.ends_with("rotate ca --continue"), "{text}");
    std::fs::remove_file(etcd.join("ca-rotation.json")).unwrap();
    std::fs::write(etcd.join("upgrade.json"), r#"{"to":"3.5.30","from":"3.5.1","done":["etcd-1"]}"#).unwrap();
    let text = go(&c, OpKind::Maintain, None, "maintain", |_| Ok(())).unwrap_err().to_string();
    assert!(text.contains("`upgrade` stopped unfinished") && text.contains("upgrade --to RELEASE (the etcd 3.5.30 release)"), "{text}");
    // a downgrade's record names its release and the way out; a record's text that is no
    // version is never printed
    std::fs::remove_file(etcd.join("upgrade.json")).unwrap();
    std::fs::write(etcd.join("downgrade.json"), r#"{"to":"3.6.17\n\u001b[2J$(touch x)","from":"3.7.4","done":[]}"#).unwrap();
    let text = go(&c, OpKind::Maintain, None, "maintain", |_| Ok(())).unwrap_err().to_string();
    assert!(text.contains("downgrade --to RELEASE (the one it was started with), or downgrade --cancel") && !text.contains("touch"), "{text}");
}

#[test]
fn up_finishing_ends_an_unfinished_down() {
    let c = cluster();
    let _ = go(&c, OpKind::Down, None, "down", |ctx| ctx.changing("stop").and(Err::<(), _>(failure())));
    assert_eq!(journal(&c).operations.len(), 1);
    go(&c, OpKind::Up, None, "up", |_| Ok(())).unwrap();
    assert_eq!(journal(&c).operations, vec![]);
}

#[test]
fn notes_list_what_is_under_way_for_read_only_commands() {
    let c = cluster();
    assert!(notes(&c.plan).is_empty());
    go(&c, OpKind::RotateCa, None, "rotate ca", |ctx| ctx.pause("update kube-apiserver", "etcd-bootstrap rotate ca --continue")).unwrap();
    let n = notes(&c.plan);
    assert_eq!(n.len(), 1);
    assert!(n[0].contains("paused") && n[0].contains("update kube-apiserver"), "{n:?}");
}

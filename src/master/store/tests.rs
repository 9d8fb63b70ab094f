use super::*;
use crate::api::pod::Container;

fn pod(name: &str) -> Pod {
    let mut p = Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        ..Default::default()
    };
    p.metadata.name = name.into();
    p.spec.containers.push(Container {
        name: "main".into(),
        image: "busybox".into(),
        ..Default::default()
    });
    p
}

const NOW: &str = "2026-11-24T00:00:00Z";

#[test]
fn create_assigns_identity_and_get_returns_it() {
    let s = Store::open_in_memory().unwrap();
    let p = s.create(pod("web"), NOW).unwrap();
    assert!(!p.metadata.uid.is_empty());
    assert_eq!(p.metadata.generation, 1);
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
    let got: Pod = s.get("default", "web").unwrap().unwrap();
    assert_eq!(got, p);
    assert!(matches!(
        s.create(pod("web"), NOW),
        Err(StoreError::AlreadyExists { .. })
    ));
}

#[test]
fn update_bumps_generation_only_on_spec_change_and_skips_no_op_writes() {
    let s = Store::open_in_memory().unwrap();
    let p = s.create(pod("web"), NOW).unwrap();
    let same: Pod = s
        .update::<Pod, StoreError>("default", "web", |_| Ok(()))
        .unwrap();
    assert_eq!(same.metadata.resource_version, p.metadata.resource_version);
    let st: Pod = s
        .update::<Pod, StoreError>("default", "web", |p| {
            p.status.message = "hi".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(st.metadata.generation, 1);
    assert_ne!(st.metadata.resource_version, p.metadata.resource_version);
    let sp: Pod = s
        .update::<Pod, StoreError>("default", "web", |p| {
            p.spec.containers[0].image = "busybox:2".into();
            p.metadata.uid = "forged".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(sp.metadata.generation, 2);
    assert_eq!(sp.metadata.uid, p.metadata.uid);
}

#[test]
fn delete_with_a_stale_uid_is_refused() {
    let s = Store::open_in_memory().unwrap();
    s.create(pod("web"), NOW).unwrap();
    assert!(matches!(
        s.delete::<Pod>("default", "web", Some("other")),
        Err(StoreError::Conflict { .. })
    ));
    assert!(s.delete::<Pod>("default", "web", None).unwrap().is_some());
    assert!(s.delete::<Pod>("default", "web", None).unwrap().is_none());
}

#[test]
fn list_filters_by_namespace_and_sorts() {
    let s = Store::open_in_memory().unwrap();
    for (ns, n) in [("b", "x"), ("a", "z"), ("a", "y")] {
        let mut p = pod(n);
        p.metadata.namespace = Some(ns.into());
        s.create(p, NOW).unwrap();
    }
    let all: Vec<Pod> = s.list(None).unwrap();
    let names: Vec<_> = all.iter().map(|p| p.metadata.name.as_str()).collect();
    assert_eq!(names, ["y", "z", "x"]);
    assert_eq!(s.list::<Pod>(Some("a")).unwrap().len(), 2);
}

#[test]
fn committed_writes_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let uid = {
        let s = Store::open(&path).unwrap();
        s.create(pod("web"), NOW).unwrap().metadata.uid
    };
    let s = Store::open(&path).unwrap();
    let p: Pod = s.get("default", "web").unwrap().unwrap();
    assert_eq!(p.metadata.uid, uid);
    let rv_before: u64 = *s.subscribe().borrow();
    assert!(rv_before >= 1);
}

#[test]
fn tokens_check_by_hash_and_expire() {
    let s = Store::open_in_memory().unwrap();
    let t = s.create_token(Role::Admin, None, NOW).unwrap();
    assert_eq!(s.check_token(&t).unwrap(), TokenCheck::Valid(Role::Admin));
    let (id, _) = t.split_once('.').unwrap();
    assert_eq!(
        s.check_token(&format!("{id}.wrongsecret")).unwrap(),
        TokenCheck::Unknown
    );
    assert_eq!(s.check_token("garbage").unwrap(), TokenCheck::Unknown);
    let old = s.create_token(Role::Join, Some(-10), NOW).unwrap();
    assert_eq!(s.check_token(&old).unwrap(), TokenCheck::Expired);
}

#[test]
fn node_passwords_are_checked_and_removable() {
    let s = Store::open_in_memory().unwrap();
    s.set_node_password("w1", "secret", NOW).unwrap();
    assert!(s.check_node_password("w1", "secret").unwrap());
    assert!(!s.check_node_password("w1", "nope").unwrap());
    s.remove_node_password("w1").unwrap();
    assert!(!s.check_node_password("w1", "secret").unwrap());
}

#[test]
fn soft_updates_commit_and_leave_the_connection_durable_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = Store::open(&path).unwrap();
    s.create(pod("web"), NOW).unwrap();
    let p: Pod = s
        .update_soft::<Pod, StoreError>("default", "web", |p| {
            p.status.message = "observed".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(p.status.message, "observed");
    let sync: i64 = s
        .lock()
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(
        sync, 2,
        "synchronous must be FULL (2) again after a soft update"
    );
    drop(s);
    let s = Store::open(&path).unwrap();
    let p: Pod = s.get("default", "web").unwrap().unwrap();
    assert_eq!(p.status.message, "observed");
}

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

fn spec(role: Role, ttl: Option<i64>, single_use: bool) -> TokenSpec {
    TokenSpec {
        role,
        ttl_seconds: ttl,
        single_use,
        description: format!("{role} for a test"),
    }
}

/// Unix time of `NOW`.
const T0: i64 = 1_795_478_400;

#[test]
fn a_token_expires_after_its_ttl_counted_from_the_given_clock() {
    let s = Store::open_in_memory().unwrap();
    let t = s
        .issue_token(&spec(Role::ReadOnly, Some(60), false), NOW, T0)
        .unwrap();
    assert_eq!(t.info.expires_at, Some(T0 + 60));
    assert_eq!(
        s.check_token_at(&t.token, T0 + 60).unwrap(),
        TokenCheck::Valid(Role::ReadOnly)
    );
    assert_eq!(
        s.check_token_at(&t.token, T0 + 61).unwrap(),
        TokenCheck::Expired
    );
    let forever = s
        .issue_token(&spec(Role::Admin, None, false), NOW, T0)
        .unwrap();
    assert_eq!(
        s.check_token_at(&forever.token, i64::MAX).unwrap(),
        TokenCheck::Valid(Role::Admin)
    );
}

#[test]
fn a_revoked_token_says_revoked_and_stays_listed_without_its_secret() {
    let s = Store::open_in_memory().unwrap();
    let t = s
        .issue_token(&spec(Role::Admin, None, false), NOW, T0)
        .unwrap();
    let info = s
        .revoke_token(&t.info.id, "2026-11-24T01:00:00Z")
        .unwrap()
        .unwrap();
    assert_eq!(info.revoked_at.as_deref(), Some("2026-11-24T01:00:00Z"));
    assert_eq!(s.check_token_at(&t.token, T0).unwrap(), TokenCheck::Revoked);
    // Revoking again keeps the first time; an unknown id is None.
    let again = s
        .revoke_token(&t.info.id, "2026-11-25T00:00:00Z")
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at.as_deref(), Some("2026-11-24T01:00:00Z"));
    assert!(s.revoke_token("nosuch", NOW).unwrap().is_none());
    let listed = s.list_tokens().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].description, "admin for a test");
    assert_eq!(listed[0].state_at(T0), TokenCheck::Revoked);
}

#[test]
fn a_single_use_join_token_serves_exactly_one_join() {
    let s = Store::open_in_memory().unwrap();
    let t = s
        .issue_token(&spec(Role::Join, Some(600), true), NOW, T0)
        .unwrap();
    assert_eq!(
        s.join_with_token(&t.token, "w1", "pw1", NOW, T0).unwrap(),
        TokenCheck::Valid(Role::Join)
    );
    assert!(s.check_node_password("w1", "pw1").unwrap());
    assert_eq!(
        s.join_with_token(&t.token, "w2", "pw2", NOW, T0).unwrap(),
        TokenCheck::Used
    );
    assert!(!s.has_node_credentials("w2").unwrap());
    assert_eq!(s.list_tokens().unwrap()[0].uses, 1);
    // A reusable one counts every join.
    let multi = s
        .issue_token(&spec(Role::Join, None, false), NOW, T0)
        .unwrap();
    for node in ["a", "b", "c"] {
        let check = s
            .join_with_token(&multi.token, node, "pw", NOW, T0)
            .unwrap();
        assert_eq!(check, TokenCheck::Valid(Role::Join));
    }
    let listed = s.list_tokens().unwrap();
    assert_eq!(
        listed.iter().find(|t| t.id == multi.info.id).unwrap().uses,
        3
    );
}

#[test]
fn concurrent_joins_with_one_single_use_token_let_exactly_one_through() {
    let s = std::sync::Arc::new(Store::open_in_memory().unwrap());
    let t = s
        .issue_token(&spec(Role::Join, None, true), NOW, T0)
        .unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (s, token) = (s.clone(), t.token.clone());
            std::thread::spawn(move || {
                s.join_with_token(&token, &format!("n{i}"), "pw", NOW, T0)
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<TokenCheck> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results
        .iter()
        .filter(|r| **r == TokenCheck::Valid(Role::Join))
        .count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| *r == TokenCheck::Valid(Role::Join) || *r == TokenCheck::Used));
}

#[test]
fn a_read_only_token_cannot_join_and_nothing_is_written() {
    let s = Store::open_in_memory().unwrap();
    let t = s
        .issue_token(&spec(Role::ReadOnly, None, false), NOW, T0)
        .unwrap();
    assert_eq!(
        s.join_with_token(&t.token, "w1", "pw", NOW, T0).unwrap(),
        TokenCheck::Valid(Role::ReadOnly)
    );
    assert!(!s.has_node_credentials("w1").unwrap());
    assert_eq!(s.list_tokens().unwrap()[0].uses, 0);
    assert_eq!(
        s.join_with_token("x.y", "w1", "pw", NOW, T0).unwrap(),
        TokenCheck::Unknown
    );
}

#[test]
fn node_passwords_are_checked_and_removable() {
    let s = Store::open_in_memory().unwrap();
    s.set_node_password("w1", "secret", NOW).unwrap();
    assert!(s.check_node_password("w1", "secret").unwrap());
    assert!(!s.check_node_password("w1", "nope").unwrap());
    assert!(s.has_node_credentials("w1").unwrap());
    s.remove_node_password("w1").unwrap();
    assert!(!s.check_node_password("w1", "secret").unwrap());
    assert!(!s.has_node_credentials("w1").unwrap());
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

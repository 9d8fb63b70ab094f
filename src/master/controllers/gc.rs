//! Garbage collection by owner reference: objects whose controller owner (by uid) is gone are
//! deleted — ReplicaSets of a deleted Deployment, pods of a deleted ReplicaSet (which stop on
//! their worker like any deleted pod).

use std::collections::HashSet;
use std::sync::Arc;

use crate::api::apps::{Deployment, ReplicaSet};
use crate::api::{ObjectMeta, Pod};
use crate::master::podops::delete_pod;
use crate::master::store::{Store, StoreError};

/// Pure: is this object's controller owner missing from `alive` (uids of that kind)?
pub fn orphaned(meta: &ObjectMeta, owner_kind: &str, alive: &HashSet<String>) -> bool {
    meta.controller_ref()
        .is_some_and(|r| r.kind == owner_kind && !alive.contains(&r.uid))
}

pub fn collect(store: &Store) -> Result<(), StoreError> {
    let deployments: HashSet<String> = store
        .list::<Deployment>(None)?
        .into_iter()
        .map(|d| d.metadata.uid)
        .collect();
    for rs in store.list::<ReplicaSet>(None)? {
        if orphaned(&rs.metadata, "Deployment", &deployments) {
            tracing::info!(rs = %rs.metadata.name, "deleting replicaset whose deployment is gone");
            match store.delete::<ReplicaSet>(
                rs.metadata.ns(),
                &rs.metadata.name,
                Some(&rs.metadata.uid),
            ) {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let sets: HashSet<String> = store
        .list::<ReplicaSet>(None)?
        .into_iter()
        .map(|r| r.metadata.uid)
        .collect();
    for p in store.list::<Pod>(None)? {
        if p.metadata.deletion_timestamp.is_none() && orphaned(&p.metadata, "ReplicaSet", &sets) {
            tracing::info!(pod = %p.metadata.name, "deleting pod whose replicaset is gone");
            delete_pod(
                store,
                p.metadata.ns(),
                &p.metadata.name,
                Some(&p.metadata.uid),
                None,
            )?;
        }
    }
    Ok(())
}

pub async fn run(store: Arc<Store>) {
    super::run_level_triggered("gc", store, collect).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::meta::OwnerReference;

    fn owned_by(kind: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            name: "x".into(),
            owner_references: vec![OwnerReference {
                kind: kind.into(),
                uid: uid.into(),
                controller: Some(true),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn objects_whose_owner_is_gone_are_orphans_and_others_are_not() {
        let alive: HashSet<String> = ["a".to_string()].into();
        assert!(!orphaned(
            &owned_by("ReplicaSet", "a"),
            "ReplicaSet",
            &alive
        ));
        assert!(orphaned(&owned_by("ReplicaSet", "b"), "ReplicaSet", &alive));
        assert!(!orphaned(
            &owned_by("Deployment", "b"),
            "ReplicaSet",
            &alive
        ));
        assert!(!orphaned(&ObjectMeta::default(), "ReplicaSet", &alive));
    }

    #[test]
    fn deleting_a_deployment_cascades_to_replicasets_and_pods() {
        let s = Store::open_in_memory().unwrap();
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        let d = s.create(d, "t").unwrap();
        let mut rs = ReplicaSet::default();
        rs.metadata.name = "web-1".into();
        rs.metadata.owner_references = owned_by("Deployment", &d.metadata.uid).owner_references;
        let rs = s.create(rs, "t").unwrap();
        let mut p = Pod::default();
        p.metadata.name = "web-1-abcde".into();
        p.metadata.owner_references = owned_by("ReplicaSet", &rs.metadata.uid).owner_references;
        s.create(p, "t").unwrap();
        collect(&s).unwrap();
        assert_eq!(
            s.list::<Pod>(None).unwrap().len(),
            1,
            "owners alive: nothing collected"
        );
        s.delete::<Deployment>("default", "web", None).unwrap();
        collect(&s).unwrap();
        assert!(s.list::<ReplicaSet>(None).unwrap().is_empty());
        // The pod is unbound, so it goes at once.
        assert!(s.list::<Pod>(None).unwrap().is_empty());
    }
}

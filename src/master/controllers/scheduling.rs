//! Binds pending pods to nodes with the pure scheduler, or records why they fit nowhere.

use std::sync::Arc;

use crate::api::meta::set_condition;
use crate::api::{Condition, Node, Pod, PodPhase};
use crate::master::scheduler::{self, Decision};
use crate::master::store::{Store, StoreError};
use crate::util::time::now_rfc3339;

/// One pass over every pending pod, without image platform constraints.
pub fn reconcile(store: &Store) -> Result<usize, StoreError> {
    reconcile_with(store, &|_| Some(None))
}

/// The platforms a pod's images offer: `Some(None)` no constraint, `Some(Some(list))` that
/// constraint, `None` not known yet (the pod waits for the next pass).
pub type PlatformsOf<'a> = dyn Fn(&Pod) -> Option<Option<Vec<String>>> + 'a;

/// Answers for [`reconcile_with`] from the master's image cache.
pub fn platforms_from(
    cache: &Arc<super::imageplatforms::ImagePlatforms>,
) -> impl Fn(&Pod) -> Option<Option<Vec<String>>> + '_ {
    move |pod: &Pod| {
        let lookups: Vec<super::imageplatforms::Lookup> = pod
            .spec
            .containers
            .iter()
            .map(|c| cache.lookup(&c.image))
            .collect();
        if lookups.contains(&super::imageplatforms::Lookup::Pending) {
            return None;
        }
        Some(super::imageplatforms::combine(&lookups))
    }
}

/// One pass over every pending pod. Returns how many were bound.
pub fn reconcile_with(store: &Store, platforms_of: &PlatformsOf<'_>) -> Result<usize, StoreError> {
    let nodes: Vec<Node> = store.list(None)?;
    let pods: Vec<Pod> = store.list(None)?;
    // Built once per pass from what the store says now, and told about each bind, so later
    // decisions in the pass see earlier ones without recounting every pod.
    let mut snapshot = scheduler::Snapshot::new(&nodes, &pods);
    let mut bound = 0;
    for pod in pods
        .iter()
        .filter(|p| p.spec.node_name.is_none() && p.metadata.deletion_timestamp.is_none())
    {
        let now = now_rfc3339();
        let (ns, name) = (pod.metadata.ns().to_string(), pod.metadata.name.clone());
        let _span = tracing::info_span!("pod", pod = %format!("{ns}/{name}")).entered();
        let Some(platforms) = platforms_of(pod) else {
            // Its image is being looked up; the lookup wakes the next pass.
            continue;
        };
        match snapshot.schedule(pod, platforms.as_deref()) {
            Decision::Bind { node } => {
                let uid = pod.metadata.uid.clone();
                let res = store.update::<Pod, StoreError>(&ns, &name, |p| {
                    if p.metadata.uid != uid || p.spec.node_name.is_some() {
                        return Ok(());
                    }
                    p.spec.node_name = Some(node.clone());
                    set_condition(
                        &mut p.status.conditions,
                        Condition {
                            type_: "PodScheduled".into(),
                            status: "True".into(),
                            ..Default::default()
                        },
                        &now,
                    );
                    Ok(())
                });
                match res {
                    Ok(p) => {
                        tracing::info!(node = %node, "pod bound");
                        // The stored pod may have been bound elsewhere meanwhile: account for
                        // where it really is.
                        if let Some(on) = &p.spec.node_name {
                            snapshot.add_pod(&p, on);
                        }
                        bound += 1;
                    }
                    Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Decision::Unschedulable { message } => {
                let res = store.update::<Pod, StoreError>(&ns, &name, |p| {
                    p.status.phase = PodPhase::Pending;
                    set_condition(
                        &mut p.status.conditions,
                        Condition {
                            type_: "PodScheduled".into(),
                            status: "False".into(),
                            reason: "Unschedulable".into(),
                            message: message.clone(),
                            ..Default::default()
                        },
                        &now,
                    );
                    Ok(())
                });
                match res {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(bound)
}

pub async fn run(store: Arc<Store>, images: Arc<super::imageplatforms::ImagePlatforms>) {
    let mut changes = store.subscribe();
    let mut resolved = images.subscribe();
    loop {
        let (s, i) = (store.clone(), images.clone());
        match tokio::task::spawn_blocking(move || reconcile_with(&s, &platforms_from(&i))).await {
            Ok(Err(e)) => tracing::error!(error = %e, "scheduling pass failed"),
            Err(e) => tracing::error!(error = %e, "scheduling pass panicked"),
            Ok(Ok(_)) => {}
        }
        // Also wake periodically: a node that frees resources is a change, but a pod that was
        // unschedulable for reasons outside the store (none yet) would otherwise wait forever.
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            r = resolved.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::meta::OwnerReference;
    use crate::api::node::NodeStatus;
    use crate::api::{Container, ObjectMeta, PodSpec};

    fn ready_node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            status: NodeStatus {
                conditions: vec![Condition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                allocatable: BTreeMap::from([
                    ("cpu".to_string(), "4".to_string()),
                    ("memory".to_string(), "4Gi".to_string()),
                ]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn replica(i: usize) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: format!("web-{i}"),
                namespace: Some("default".into()),
                labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                owner_references: vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "web".into(),
                    uid: "rs-uid".into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }],
                ..Default::default()
            },
            spec: PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: "i".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn one_pass_spreads_replicas_and_a_second_pass_binds_nothing() {
        let store = Store::open_in_memory().unwrap();
        for n in ["a", "b", "c"] {
            store.create(ready_node(n), "t").unwrap();
        }
        for i in 0..6 {
            store.create(replica(i), "t").unwrap();
        }
        assert_eq!(reconcile(&store).unwrap(), 6);
        let pods: Vec<Pod> = store.list(None).unwrap();
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for p in &pods {
            *per_node
                .entry(p.spec.node_name.clone().unwrap())
                .or_default() += 1;
        }
        assert_eq!(
            per_node,
            BTreeMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 2)])
        );
        assert_eq!(reconcile(&store).unwrap(), 0);
    }
}

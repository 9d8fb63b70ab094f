//! Binds pending pods to nodes with the pure scheduler, or records why they fit nowhere.

use std::sync::Arc;

use crate::api::meta::set_condition;
use crate::api::pvc::{PersistentVolumeClaim, SELECTED_NODE};
use crate::api::{Condition, Node, Pod, PodPhase};
use crate::master::scheduler::volumes::{placement, to_bind, ClaimPlacement, Claims};
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
    let mut claims: Vec<PersistentVolumeClaim> = store.list(None)?;
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    // Pods already on a node (bound by an earlier pass that crashed before binding the claim,
    // or created with `nodeName`) bind their unbound claims there.
    for pod in &live {
        if let Some(node) = &pod.spec.node_name {
            bind_claims(store, &mut claims, pod, node)?;
        }
    }
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
        let decision = match placement(pod, &claims_of(&claims, &ns), &live) {
            ClaimPlacement::Anywhere => snapshot.schedule(pod, platforms.as_deref()),
            ClaimPlacement::Node(n) => {
                snapshot.schedule_pinned(pod, platforms.as_deref(), Some(&n))
            }
            ClaimPlacement::Blocked(message) => Decision::Unschedulable {
                message: format!("0/{} nodes are available: {message}.", nodes.len()),
            },
        };
        match decision {
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
                            bind_claims(store, &mut claims, &p, on)?;
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

/// The claims of one namespace by name.
fn claims_of<'a>(claims: &'a [PersistentVolumeClaim], ns: &str) -> Claims<'a> {
    claims
        .iter()
        .filter(|c| c.metadata.ns() == ns)
        .map(|c| (c.metadata.name.as_str(), c))
        .collect()
}

/// Binds the pod's unbound claims to `node` (WaitForFirstConsumer), in the store and in
/// `claims` so later decisions of the pass see it.
fn bind_claims(
    store: &Store,
    claims: &mut [PersistentVolumeClaim],
    pod: &Pod,
    node: &str,
) -> Result<(), StoreError> {
    let ns = pod.metadata.ns();
    let names: Vec<String> = to_bind(pod, &claims_of(claims, ns))
        .iter()
        .map(|c| c.metadata.name.clone())
        .collect();
    for name in names {
        let res = store.update::<PersistentVolumeClaim, StoreError>(ns, &name, |c| {
            if c.node().is_some() {
                return Ok(());
            }
            c.metadata
                .annotations
                .insert(SELECTED_NODE.into(), node.to_string());
            c.status.phase = "Bound".into();
            c.status.access_modes = c.spec.access_modes.clone();
            c.status.capacity = c
                .spec
                .resources
                .requests
                .iter()
                .filter(|(k, _)| k.as_str() == "storage")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok(())
        });
        match res {
            Ok(c) => {
                tracing::info!(claim = %format!("{ns}/{name}"), node = c.node().unwrap_or_default(), "claim bound");
                if let Some(slot) = claims
                    .iter_mut()
                    .find(|x| x.metadata.ns() == ns && x.metadata.name == name)
                {
                    *slot = c;
                }
            }
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

    fn with_claim(mut p: Pod, claim: &str) -> Pod {
        p.spec.volumes = vec![crate::api::volume::Volume {
            name: "data".into(),
            persistent_volume_claim: Some(crate::api::volume::ClaimSource {
                claim_name: claim.into(),
                read_only: false,
            }),
            ..Default::default()
        }];
        p
    }

    #[test]
    fn the_first_consumer_binds_a_claim_and_later_pods_follow_it() {
        let store = Store::open_in_memory().unwrap();
        for n in ["a", "b"] {
            store.create(ready_node(n), "t").unwrap();
        }
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = "data".into();
        c.metadata.namespace = Some("default".into());
        c.spec.access_modes = vec!["ReadWriteOnce".into()];
        c.spec
            .resources
            .requests
            .insert("storage".into(), "1Gi".into());
        store.create(c, "t").unwrap();
        store.create(with_claim(replica(0), "data"), "t").unwrap();
        assert_eq!(reconcile(&store).unwrap(), 1);
        let first: Pod = store.get("default", "web-0").unwrap().unwrap();
        let node = first.spec.node_name.clone().unwrap();
        let claim: PersistentVolumeClaim = store.get("default", "data").unwrap().unwrap();
        assert_eq!(claim.node(), Some(node.as_str()));
        assert_eq!(claim.phase(), "Bound");
        assert_eq!(claim.status.capacity["storage"], "1Gi");
        // Replica spreading alone would put the next ones on the other node.
        for i in 1..4 {
            store.create(with_claim(replica(i), "data"), "t").unwrap();
        }
        assert_eq!(reconcile(&store).unwrap(), 3);
        let pods: Vec<Pod> = store.list(None).unwrap();
        assert!(pods
            .iter()
            .all(|p| p.spec.node_name.as_deref() == Some(node.as_str())));
        // A pod whose claim does not exist stays pending with the reason.
        store.create(with_claim(replica(9), "nope"), "t").unwrap();
        assert_eq!(reconcile(&store).unwrap(), 0);
        let p: Pod = store.get("default", "web-9").unwrap().unwrap();
        let cond = p
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .unwrap();
        assert!(
            cond.message
                .contains("persistentvolumeclaim \"nope\" not found"),
            "{}",
            cond.message
        );
    }
}

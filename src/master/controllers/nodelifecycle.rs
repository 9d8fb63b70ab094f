//! What happens to pods when their node stops answering: after the eviction grace (5 s, or
//! the pod's toleration of `node.kubernetes.io/unreachable`), pods owned by a ReplicaSet are
//! deleted so their controller replaces them elsewhere; a bare pod is marked `Unknown`
//! (`NodeLost`), never silently moved. When the board comes back, its worker stops whatever is
//! no longer in its desired index.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::meta::set_condition;
use crate::api::scheduling::{TaintEffect, TolerationOperator};
use crate::api::{Condition, Node, Pod, PodPhase};
use crate::master::podops::delete_pod;
use crate::master::store::{Store, StoreError};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// herd's default: Kubernetes waits 5 minutes, which is an outage on a home lab.
pub const DEFAULT_EVICTION: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Remove the pod row (its node cannot confirm anything).
    Delete {
        ns: String,
        name: String,
        uid: String,
    },
    /// A bare pod on a lost node: phase Unknown, reason NodeLost.
    MarkLost {
        ns: String,
        name: String,
        uid: String,
        node: String,
    },
}

/// How long the pod tolerates an unreachable node: `None` = forever.
pub fn tolerated_for(pod: &Pod, default: Duration) -> Option<Duration> {
    let t = pod.spec.tolerations.iter().find(|t| {
        let key_ok = match t.operator {
            TolerationOperator::Exists => t.key.is_empty() || t.key == UNREACHABLE,
            TolerationOperator::Equal => t.key == UNREACHABLE,
        };
        key_ok && t.effect.is_none_or(|e| e == TaintEffect::NoExecute)
    });
    match t {
        None => Some(default),
        Some(t) => t
            .toleration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    }
}

/// When the node stopped being Ready, if it is not Ready.
pub fn not_ready_since(node: &Node) -> Option<DateTime<Utc>> {
    let c = node.status.conditions.iter().find(|c| c.type_ == "Ready");
    match c {
        Some(c) if c.status == "True" => None,
        Some(c) => c
            .last_transition_time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        // Never reported: not ready since we know of it.
        None => node
            .metadata
            .creation_timestamp
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// Pure: pods on a node with `NoExecute` taints they do not tolerate (or tolerate only for
/// `tolerationSeconds`, counted from the taint's `timeAdded`) are evicted, as Kubernetes'
/// taint manager does — owned or not.
fn no_execute(node: &Node, pods: &[Pod], now: DateTime<Utc>, out: &mut Vec<Action>) {
    let taints: Vec<_> = node
        .spec
        .taints
        .iter()
        .filter(|t| t.effect == TaintEffect::NoExecute)
        .collect();
    if taints.is_empty() {
        return;
    }
    for p in pods.iter().filter(|p| {
        p.spec.node_name.as_deref() == Some(node.metadata.name.as_str())
            && p.metadata.deletion_timestamp.is_none()
    }) {
        let evict = taints.iter().any(|taint| {
            let covering: Vec<_> = p
                .spec
                .tolerations
                .iter()
                .filter(|t| t.tolerates(taint))
                .collect();
            if covering.is_empty() {
                return true;
            }
            // Tolerated forever unless every covering toleration has a time limit.
            let Some(secs) = covering
                .iter()
                .map(|t| t.toleration_seconds)
                .try_fold(0i64, |acc, s| s.map(|s| acc.max(s)))
            else {
                return false;
            };
            let added = taint
                .time_added
                .as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(now, |t| t.with_timezone(&Utc));
            now - added >= chrono::Duration::seconds(secs.max(0))
        });
        if evict {
            out.push(Action::Delete {
                ns: p.metadata.ns().to_string(),
                name: p.metadata.name.clone(),
                uid: p.metadata.uid.clone(),
            });
        }
    }
}

/// Pure: the actions for every pod on a node that is not Ready or has `NoExecute` taints.
///
/// When no node at all is Ready the fault is most likely the master's side (its Wi-Fi, the
/// broker, a switch), not every board at once: owned pods are then not evicted (there is
/// nowhere to run them anyway), as Kubernetes does in a fully disrupted zone. Otherwise a
/// blip of the master's link would kill and recreate every pod in the fleet.
pub fn plan(nodes: &[Node], pods: &[Pod], now: DateTime<Utc>, default: Duration) -> Vec<Action> {
    let mut out = Vec::new();
    let fully_disrupted = nodes.iter().all(|n| not_ready_since(n).is_some());
    for node in nodes {
        let Some(since) = not_ready_since(node) else {
            no_execute(node, pods, now, &mut out);
            continue;
        };
        let down = (now - since).to_std().unwrap_or_default();
        for p in pods
            .iter()
            .filter(|p| p.spec.node_name.as_deref() == Some(node.metadata.name.as_str()))
        {
            let (ns, name, uid) = (
                p.metadata.ns().to_string(),
                p.metadata.name.clone(),
                p.metadata.uid.clone(),
            );
            if p.metadata.deletion_timestamp.is_some() {
                // Nobody will report it stopped: finish the delete after its grace.
                let grace = Duration::from_secs(
                    p.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0) as u64,
                );
                if down >= grace {
                    out.push(Action::Delete { ns, name, uid });
                }
                continue;
            }
            let Some(limit) = tolerated_for(p, default) else {
                continue;
            };
            if down < limit {
                continue;
            }
            if p.metadata.controller_ref().is_some() {
                if !fully_disrupted {
                    out.push(Action::Delete { ns, name, uid });
                }
            } else if !matches!(
                p.status.phase,
                PodPhase::Unknown | PodPhase::Succeeded | PodPhase::Failed
            ) {
                out.push(Action::MarkLost {
                    ns,
                    name,
                    uid,
                    node: node.metadata.name.clone(),
                });
            }
        }
    }
    out
}

pub fn reconcile(store: &Store, default: Duration) -> Result<(), StoreError> {
    let nodes: Vec<Node> = store.list(None)?;
    if nodes
        .iter()
        .all(|n| n.is_ready() && n.spec.taints.is_empty())
    {
        return Ok(());
    }
    let pods: Vec<Pod> = store.list(None)?;
    let now = Utc::now();
    for a in plan(&nodes, &pods, now, default) {
        match a {
            Action::Delete { ns, name, uid } => {
                tracing::info!(pod = %format!("{ns}/{name}"), "evicting pod (node unreachable or NoExecute taint)");
                delete_pod(store, &ns, &name, Some(&uid), None)?;
            }
            Action::MarkLost {
                ns,
                name,
                uid,
                node,
            } => {
                tracing::warn!(pod = %format!("{ns}/{name}"), %node, "node unreachable: bare pod marked Unknown");
                let now_s = crate::util::time::now_rfc3339();
                match store.update::<Pod, StoreError>(&ns, &name, |p| {
                    if p.metadata.uid != uid {
                        return Ok(());
                    }
                    p.status.phase = PodPhase::Unknown;
                    p.status.reason = "NodeLost".into();
                    p.status.message =
                        format!("node {node} which was running pod {name} is unresponsive");
                    set_condition(
                        &mut p.status.conditions,
                        Condition {
                            type_: "Ready".into(),
                            status: "False".into(),
                            reason: "NodeLost".into(),
                            ..Default::default()
                        },
                        &now_s,
                    );
                    Ok(())
                }) {
                    Ok(_) | Err(StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

pub async fn run(store: Arc<Store>, default: Duration) {
    super::run_level_triggered("node-lifecycle", store, move |s| reconcile(s, default)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::meta::OwnerReference;
    use crate::api::scheduling::Toleration;

    fn node(name: &str, ready: &str, since: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = name.into();
        n.status.conditions.push(Condition {
            type_: "Ready".into(),
            status: ready.into(),
            last_transition_time: Some(since.into()),
            ..Default::default()
        });
        n
    }

    fn pod(name: &str, node: &str, owned: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.uid = format!("u-{name}");
        p.spec.node_name = Some(node.into());
        p.status.phase = PodPhase::Running;
        if owned {
            p.metadata.owner_references.push(OwnerReference {
                kind: "ReplicaSet".into(),
                uid: "rs".into(),
                controller: Some(true),
                ..Default::default()
            });
        }
        p
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn owned_pods_go_after_the_grace_and_bare_pods_are_marked_lost() {
        let nodes = [
            node("w1", "Unknown", "2026-01-01T00:00:00Z"),
            node("w2", "True", "2026-01-01T00:00:00Z"),
        ];
        let pods = [
            pod("a", "w1", true),
            pod("b", "w1", false),
            pod("c", "w2", true),
        ];
        assert!(plan(&nodes, &pods, at("2026-01-01T00:00:04Z"), DEFAULT_EVICTION).is_empty());
        let acts = plan(&nodes, &pods, at("2026-01-01T00:00:05Z"), DEFAULT_EVICTION);
        assert_eq!(acts.len(), 2);
        assert!(matches!(&acts[0], Action::Delete { name, .. } if name == "a"));
        assert!(matches!(&acts[1], Action::MarkLost { name, .. } if name == "b"));
    }

    #[test]
    fn no_owned_pod_is_evicted_when_no_node_at_all_is_ready() {
        let nodes = [
            node("w1", "Unknown", "2026-01-01T00:00:00Z"),
            node("w2", "Unknown", "2026-01-01T00:00:00Z"),
        ];
        let pods = [pod("a", "w1", true), pod("b", "w2", false)];
        let acts = plan(&nodes, &pods, at("2026-01-01T01:00:00Z"), DEFAULT_EVICTION);
        assert_eq!(acts.len(), 1, "{acts:?}");
        assert!(matches!(&acts[0], Action::MarkLost { name, .. } if name == "b"));
        // One node back: the other one's pods can go somewhere, so they are evicted.
        let nodes = [nodes[0].clone(), node("w2", "True", "2026-01-01T00:59:00Z")];
        let acts = plan(
            &nodes,
            &pods[..1],
            at("2026-01-01T01:00:00Z"),
            DEFAULT_EVICTION,
        );
        assert!(matches!(&acts[..], [Action::Delete { name, .. }] if name == "a"));
    }

    #[test]
    fn tolerations_stretch_or_waive_the_eviction_grace() {
        let mut p = pod("a", "w1", true);
        assert_eq!(tolerated_for(&p, DEFAULT_EVICTION), Some(DEFAULT_EVICTION));
        p.spec.tolerations.push(Toleration {
            key: UNREACHABLE.into(),
            operator: TolerationOperator::Exists,
            effect: Some(TaintEffect::NoExecute),
            toleration_seconds: Some(60),
            ..Default::default()
        });
        assert_eq!(
            tolerated_for(&p, DEFAULT_EVICTION),
            Some(Duration::from_secs(60))
        );
        p.spec.tolerations[0].toleration_seconds = None;
        assert_eq!(tolerated_for(&p, DEFAULT_EVICTION), None);
    }

    #[test]
    fn no_execute_taints_evict_pods_that_do_not_tolerate_them() {
        use crate::api::scheduling::Taint;
        let mut n = node("w1", "True", "2026-01-01T00:00:00Z");
        n.spec.taints.push(Taint {
            key: "maintenance".into(),
            value: String::new(),
            effect: TaintEffect::NoExecute,
            time_added: Some("2026-01-01T00:00:00Z".into()),
        });
        let plain = pod("plain", "w1", false);
        let mut forever = pod("forever", "w1", true);
        forever.spec.tolerations.push(Toleration {
            key: "maintenance".into(),
            operator: TolerationOperator::Exists,
            ..Default::default()
        });
        let mut for_a_while = pod("a-while", "w1", true);
        for_a_while.spec.tolerations.push(Toleration {
            key: "maintenance".into(),
            operator: TolerationOperator::Exists,
            effect: Some(TaintEffect::NoExecute),
            toleration_seconds: Some(30),
            ..Default::default()
        });
        let pods = [plain, forever, for_a_while];
        let names = |acts: Vec<Action>| -> Vec<String> {
            acts.into_iter()
                .map(|a| match a {
                    Action::Delete { name, .. } | Action::MarkLost { name, .. } => name,
                })
                .collect()
        };
        let early = plan(
            &[n.clone()],
            &pods,
            at("2026-01-01T00:00:10Z"),
            DEFAULT_EVICTION,
        );
        assert_eq!(names(early), ["plain"]);
        let late = plan(&[n], &pods, at("2026-01-01T00:00:30Z"), DEFAULT_EVICTION);
        assert_eq!(names(late), ["plain", "a-while"]);
    }

    #[test]
    fn a_pod_already_being_deleted_on_a_lost_node_is_removed_after_its_grace() {
        let nodes = [node("w1", "False", "2026-01-01T00:00:00Z")];
        let mut p = pod("a", "w1", false);
        p.metadata.deletion_timestamp = Some("x".into());
        p.metadata.deletion_grace_period_seconds = Some(10);
        assert!(plan(
            &nodes,
            &[p.clone()],
            at("2026-01-01T00:00:09Z"),
            DEFAULT_EVICTION
        )
        .is_empty());
        assert_eq!(
            plan(&nodes, &[p], at("2026-01-01T00:00:10Z"), DEFAULT_EVICTION).len(),
            1
        );
    }
}

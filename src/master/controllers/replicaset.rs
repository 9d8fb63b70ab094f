//! ReplicaSet controller: keeps `replicas` active pods from the template. The decision is a
//! pure function of the ReplicaSet, the pods it owns and the time; the shell applies it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::api::apps::{ReplicaSet, ReplicaSetStatus};
use crate::api::meta::OwnerReference;
use crate::api::{Pod, PodPhase};
use crate::master::podops::delete_pod;
use crate::master::store::{Store, StoreError};
use crate::util::time::now_rfc3339;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this many pods from the template.
    Create(usize),
    /// Delete these pods (namespace, name, uid), in order.
    Delete(Vec<(String, String)>),
    SetStatus(ReplicaSetStatus),
}

/// Counts towards replicas: not being deleted and not finished.
pub fn is_active(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(p.status.phase, PodPhase::Succeeded | PodPhase::Failed)
}

/// When the pod's Ready condition became True, if it is Ready.
pub fn ready_since(p: &Pod) -> Option<DateTime<Utc>> {
    let c = p
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    match &c.last_transition_time {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        // Ready without a time: treat as ready since forever.
        None => Some(DateTime::<Utc>::MIN_UTC),
    }
}

pub fn is_available(p: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    is_active(p)
        && ready_since(p).is_some_and(|t| {
            min_ready_seconds <= 0
                || now - t >= chrono::Duration::seconds(i64::from(min_ready_seconds))
        })
}

/// Kubernetes' order for scale-down: the pods that matter least go first — unscheduled before
/// scheduled, pending before running, not ready before ready, recently ready before long
/// ready, more restarts first, newer before older.
type Rank = (
    u8,
    u8,
    u8,
    std::cmp::Reverse<Option<DateTime<Utc>>>,
    std::cmp::Reverse<u32>,
    std::cmp::Reverse<String>,
);

fn deletion_rank(p: &Pod) -> Rank {
    let scheduled = u8::from(p.spec.node_name.is_some());
    let phase = match p.status.phase {
        PodPhase::Pending => 0,
        PodPhase::Unknown => 1,
        _ => 2,
    };
    let ready = ready_since(p);
    let restarts = p
        .status
        .container_statuses
        .iter()
        .map(|c| c.restart_count)
        .sum();
    (
        scheduled,
        phase,
        u8::from(ready.is_some()),
        std::cmp::Reverse(ready),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(p.metadata.creation_timestamp.clone().unwrap_or_default()),
    )
}

/// Pure: what to do for one ReplicaSet given the pods it owns.
pub fn reconcile(rs: &ReplicaSet, owned: &[&Pod], now: DateTime<Utc>) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut active: Vec<&Pod> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let want = rs.spec.replicas().max(0) as usize;
    let mut creating = 0;
    // Finished pods never run again under restartPolicy Always; clear them out.
    let mut delete: Vec<(String, String)> = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !is_active(p))
        .map(|p| (p.metadata.name.clone(), p.metadata.uid.clone()))
        .collect();
    if active.len() < want {
        creating = want - active.len();
        actions.push(Action::Create(creating));
    } else if active.len() > want {
        active.sort_by_key(|p| deletion_rank(p));
        delete.extend(
            active[..active.len() - want]
                .iter()
                .map(|p| (p.metadata.name.clone(), p.metadata.uid.clone())),
        );
        active.drain(..active.len() - want);
    }
    if !delete.is_empty() {
        actions.push(Action::Delete(delete));
    }
    // Status as it will be once these actions are applied: a status that still counted the
    // pods being deleted now would let the Deployment controller scale down twice.
    let counted = active;
    let status = ReplicaSetStatus {
        replicas: (counted.len() + creating) as i32,
        fully_labeled_replicas: counted
            .iter()
            .filter(|p| {
                rs.spec
                    .template
                    .metadata
                    .labels
                    .iter()
                    .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
            })
            .count() as i32,
        ready_replicas: counted.iter().filter(|p| ready_since(p).is_some()).count() as i32,
        available_replicas: counted
            .iter()
            .filter(|p| is_available(p, rs.spec.min_ready_seconds, now))
            .count() as i32,
        observed_generation: rs.metadata.generation,
    };
    if status != rs.status {
        actions.push(Action::SetStatus(status));
    }
    actions
}

/// A pod from the template, owned by the ReplicaSet.
pub fn new_pod(rs: &ReplicaSet) -> Pod {
    let t = &rs.spec.template;
    let mut p = Pod {
        api_version: "v1".into(),
        kind: "Pod".into(),
        ..Default::default()
    };
    p.metadata.name = format!("{}-{}", rs.metadata.name, random_suffix());
    p.metadata.namespace = rs.metadata.namespace.clone();
    p.metadata.labels = t.metadata.labels.clone();
    p.metadata.annotations = t.metadata.annotations.clone();
    p.metadata.owner_references = vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs.metadata.name.clone(),
        uid: rs.metadata.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }];
    p.spec = t.spec.clone();
    p.spec.node_name = None;
    p
}

/// Five characters from Kubernetes' alphabet (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    if getrandom::fill(&mut b).is_err() {
        b = [0, 1, 2, 3, 4];
    }
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// Pods owned (by controller uid) by each ReplicaSet.
pub fn owned_by<'a>(pods: &'a [Pod], uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| p.metadata.controller_ref().is_some_and(|r| r.uid == uid))
        .collect()
}

/// One pass over every ReplicaSet.
pub fn reconcile_all(store: &Store) -> Result<(), StoreError> {
    let now = Utc::now();
    let sets: Vec<ReplicaSet> = store.list(None)?;
    let pods: Vec<Pod> = store.list(None)?;
    for rs in &sets {
        let ns = rs.metadata.ns().to_string();
        let _span =
            tracing::info_span!("replicaset", rs = %format!("{ns}/{}", rs.metadata.name)).entered();
        let owned = owned_by(&pods, &rs.metadata.uid);
        for action in reconcile(rs, &owned, now) {
            match action {
                Action::Create(n) => {
                    for _ in 0..n {
                        let mut pod = new_pod(rs);
                        // A name collision (1 in 27^5) just retries next pass.
                        pod.metadata.namespace = Some(ns.clone());
                        match store.create(pod, &now_rfc3339()) {
                            Ok(p) => tracing::info!(pod = %p.metadata.name, "created pod"),
                            Err(StoreError::AlreadyExists { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Action::Delete(list) => {
                    for (name, uid) in list {
                        tracing::info!(pod = %name, "deleting pod");
                        delete_pod(store, &ns, &name, Some(&uid), None)?;
                    }
                }
                Action::SetStatus(status) => {
                    let uid = rs.metadata.uid.clone();
                    match store.update::<ReplicaSet, StoreError>(&ns, &rs.metadata.name, |r| {
                        if r.metadata.uid == uid {
                            r.status = status.clone();
                        }
                        Ok(())
                    }) {
                        Ok(_) | Err(StoreError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(())
}

pub async fn run(store: Arc<Store>) {
    super::run_level_triggered("replicaset", store, reconcile_all).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Condition;

    fn rs(replicas: i32) -> ReplicaSet {
        let mut r = ReplicaSet::default();
        r.metadata.name = "web-abc".into();
        r.metadata.uid = "rs-uid".into();
        r.spec.replicas = Some(replicas);
        r.spec
            .template
            .metadata
            .labels
            .insert("app".into(), "web".into());
        r
    }

    fn pod(name: &str, node: Option<&str>, ready_at: Option<&str>) -> Pod {
        let mut p = new_pod(&rs(1));
        p.metadata.name = name.into();
        p.metadata.uid = format!("uid-{name}");
        p.metadata.creation_timestamp = Some("2026-01-01T00:00:00Z".into());
        p.spec.node_name = node.map(Into::into);
        if let Some(t) = ready_at {
            p.status.phase = PodPhase::Running;
            p.status.conditions.push(Condition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(t.into()),
                ..Default::default()
            });
        }
        p
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn too_few_pods_are_created_and_counted() {
        let a = pod("a", Some("n1"), Some("2026-01-01T00:00:10Z"));
        let acts = reconcile(&rs(3), &[&a], now());
        assert_eq!(acts[0], Action::Create(2));
        let Action::SetStatus(s) = &acts[1] else {
            panic!("{acts:?}")
        };
        assert_eq!(
            (s.replicas, s.ready_replicas, s.available_replicas),
            (3, 1, 1)
        );
    }

    #[test]
    fn the_status_already_leaves_out_the_pods_this_pass_deletes() {
        let a = pod("a", Some("n1"), Some("2026-01-01T00:00:10Z"));
        let b = pod("b", Some("n1"), Some("2026-01-01T00:00:20Z"));
        let acts = reconcile(&rs(1), &[&a, &b], now());
        let Action::SetStatus(s) = &acts[1] else {
            panic!("{acts:?}")
        };
        assert_eq!((s.replicas, s.available_replicas), (1, 1));
    }

    #[test]
    fn scale_down_removes_unscheduled_then_unready_pods_first() {
        let ready = pod("ready", Some("n1"), Some("2026-01-01T00:00:10Z"));
        let unready = pod("unready", Some("n1"), None);
        let unscheduled = pod("unscheduled", None, None);
        let acts = reconcile(&rs(1), &[&ready, &unready, &unscheduled], now());
        assert_eq!(
            acts[0],
            Action::Delete(vec![
                ("unscheduled".into(), "uid-unscheduled".into()),
                ("unready".into(), "uid-unready".into())
            ])
        );
    }

    #[test]
    fn pods_being_deleted_do_not_count_and_finished_pods_are_cleared() {
        let mut going = pod("going", Some("n1"), None);
        going.metadata.deletion_timestamp = Some("t".into());
        let mut done = pod("done", Some("n1"), None);
        done.status.phase = PodPhase::Failed;
        let acts = reconcile(&rs(1), &[&going, &done], now());
        assert_eq!(acts[0], Action::Create(1));
        assert_eq!(
            acts[1],
            Action::Delete(vec![("done".into(), "uid-done".into())])
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let mut r = rs(1);
        r.spec.min_ready_seconds = 30;
        let fresh = pod("a", Some("n1"), Some("2026-01-01T00:00:50Z"));
        let acts = reconcile(&r, &[&fresh], now());
        let Action::SetStatus(s) = &acts[0] else {
            panic!("{acts:?}")
        };
        assert_eq!((s.ready_replicas, s.available_replicas), (1, 0));
    }

    #[test]
    fn a_settled_replicaset_needs_nothing() {
        let mut r = rs(1);
        let a = pod("a", Some("n1"), Some("2026-01-01T00:00:10Z"));
        let acts = reconcile(&r, &[&a], now());
        let Action::SetStatus(s) = acts[0].clone() else {
            panic!()
        };
        r.status = s;
        assert!(reconcile(&r, &[&a], now()).is_empty());
    }

    #[test]
    fn new_pods_carry_the_template_and_a_controller_reference() {
        let p = new_pod(&rs(1));
        assert!(p.metadata.name.starts_with("web-abc-"));
        assert_eq!(p.metadata.name.len(), "web-abc-".len() + 5);
        assert_eq!(
            p.metadata.labels.get("app").map(String::as_str),
            Some("web")
        );
        assert_eq!(p.metadata.controller_ref().unwrap().uid, "rs-uid");
    }
}

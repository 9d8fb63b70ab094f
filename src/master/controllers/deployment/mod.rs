//! Deployment controller: rolls the pod template out through ReplicaSets (RollingUpdate within
//! maxSurge/maxUnavailable, or Recreate), keeps revision history, reports status and
//! conditions. `plan` is pure (the Deployment, its ReplicaSets, the time → actions); `sync`
//! applies the actions to the store.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::api::apps::{
    surge_and_unavailable, Deployment, DeploymentStatus, PodTemplateSpec, ReplicaSet, StrategyType,
    POD_TEMPLATE_HASH, REVISION_ANNOTATION,
};
use crate::api::meta::{set_condition, OwnerReference};
use crate::api::Condition;
use crate::master::store::{Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateReplicaSet(Box<ReplicaSet>),
    Scale { name: String, replicas: i32 },
    SetRevision { name: String, revision: i64 },
    DeleteReplicaSet { name: String, uid: String },
    SetStatus(Box<DeploymentStatus>, Option<i64>),
}

/// Hash of a template, without the hash label itself: names the ReplicaSet of each template.
pub fn template_hash(t: &PodTemplateSpec) -> String {
    let mut t = t.clone();
    t.metadata.labels.remove(POD_TEMPLATE_HASH);
    let json = serde_json::to_vec(&t).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..5])
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn same_template(rs: &ReplicaSet, d: &Deployment) -> bool {
    template_hash(&rs.spec.template) == template_hash(&d.spec.template)
}

/// The ReplicaSet a Deployment creates for its current template.
pub fn new_replica_set(d: &Deployment, replicas: i32, revision: i64) -> ReplicaSet {
    let hash = template_hash(&d.spec.template);
    let mut rs = ReplicaSet {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        ..Default::default()
    };
    rs.metadata.name = format!("{}-{hash}", d.metadata.name);
    rs.metadata.namespace = d.metadata.namespace.clone();
    rs.metadata.labels = d.spec.template.metadata.labels.clone();
    rs.metadata
        .labels
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    rs.metadata
        .annotations
        .insert(REVISION_ANNOTATION.into(), revision.to_string());
    // `rollout history` shows why each revision exists.
    if let Some(cause) = d.metadata.annotations.get(CHANGE_CAUSE) {
        rs.metadata
            .annotations
            .insert(CHANGE_CAUSE.into(), cause.clone());
    }
    rs.metadata.owner_references = vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: d.metadata.name.clone(),
        uid: d.metadata.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }];
    rs.spec.replicas = Some(replicas);
    rs.spec.min_ready_seconds = d.spec.min_ready_seconds;
    rs.spec.selector = d.spec.selector.clone();
    rs.spec
        .selector
        .match_labels
        .insert(POD_TEMPLATE_HASH.into(), hash.clone());
    rs.spec.template = d.spec.template.clone();
    rs.spec
        .template
        .metadata
        .labels
        .insert(POD_TEMPLATE_HASH.into(), hash);
    rs
}

/// Annotation recording why a revision was made (`kubectl annotate ... kubernetes.io/change-cause`).
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas()
}

/// Pure: the next actions for a Deployment given the ReplicaSets it owns.
pub fn plan(d: &Deployment, owned: &[&ReplicaSet], now: DateTime<Utc>) -> Vec<Action> {
    let mut actions = Vec::new();
    let n = d.spec.replicas().max(0);
    let (surge, max_unavailable) = surge_and_unavailable(&d.spec).unwrap_or((1, 0));
    let max_rev = owned.iter().map(|r| revision(r)).max().unwrap_or(0);
    let new_rs = owned.iter().copied().find(|r| same_template(r, d));
    let mut olds: Vec<&ReplicaSet> = owned
        .iter()
        .copied()
        .filter(|r| new_rs.is_none_or(|n| n.metadata.uid != r.metadata.uid))
        .collect();
    olds.sort_by_key(|r| revision(r));
    let mut progressed = false;

    // Rolling back to an old template makes its ReplicaSet the newest revision again.
    if let Some(nr) = new_rs {
        if revision(nr) < max_rev || revision(nr) == 0 {
            actions.push(Action::SetRevision {
                name: nr.metadata.name.clone(),
                revision: max_rev + 1,
            });
        }
    }
    let current_rev = match new_rs {
        Some(nr) if revision(nr) >= max_rev && revision(nr) > 0 => revision(nr),
        _ => max_rev + 1,
    };

    // ReplicaSet status lags its spec until the ReplicaSet controller has acted on the last
    // change: counting stale "available" pods would scale down twice for one replacement.
    let synced = owned
        .iter()
        .all(|r| r.status.observed_generation >= r.metadata.generation);
    let old_active: i32 = olds.iter().map(|r| spec_replicas(r)).sum();
    let old_pods: i32 = olds.iter().map(|r| r.status.replicas).sum();

    if !synced {
        // Wait for the ReplicaSet controller; the next pass continues.
    } else if d.spec.paused {
        // Paused: no rollout progress; only a settled Deployment follows its replica count.
        if let Some(nr) = new_rs {
            if old_active == 0 && spec_replicas(nr) != n {
                actions.push(Action::Scale {
                    name: nr.metadata.name.clone(),
                    replicas: n,
                });
            }
        }
    } else {
        match d.spec.strategy.type_ {
            StrategyType::Recreate => {
                if old_active > 0 {
                    for r in olds.iter().filter(|r| spec_replicas(r) > 0) {
                        actions.push(Action::Scale {
                            name: r.metadata.name.clone(),
                            replicas: 0,
                        });
                    }
                    progressed = true;
                } else if old_pods == 0 {
                    match new_rs {
                        None => {
                            actions.push(Action::CreateReplicaSet(Box::new(new_replica_set(
                                d,
                                n,
                                current_rev,
                            ))));
                            progressed = true;
                        }
                        Some(nr) if spec_replicas(nr) != n => {
                            actions.push(Action::Scale {
                                name: nr.metadata.name.clone(),
                                replicas: n,
                            });
                            progressed = true;
                        }
                        _ => {}
                    }
                }
            }
            StrategyType::RollingUpdate => {
                let total: i32 = owned.iter().map(|r| spec_replicas(r)).sum();
                let new_spec = new_rs.map_or(0, spec_replicas);
                // Scale up the new ReplicaSet within maxSurge.
                let target_new = if new_spec > n {
                    n
                } else {
                    let room = (n + surge - total).max(0);
                    new_spec + room.min(n - new_spec)
                };
                match new_rs {
                    None => {
                        actions.push(Action::CreateReplicaSet(Box::new(new_replica_set(
                            d,
                            target_new,
                            current_rev,
                        ))));
                        progressed = true;
                    }
                    Some(nr) if target_new != new_spec => {
                        actions.push(Action::Scale {
                            name: nr.metadata.name.clone(),
                            replicas: target_new,
                        });
                        progressed = true;
                    }
                    _ => {}
                }
                // Scale down old ReplicaSets, never below n - maxUnavailable available.
                if !progressed {
                    let min_available = n - max_unavailable;
                    let new_unavailable = new_rs.map_or(0, |r| {
                        (spec_replicas(r) - r.status.available_replicas).max(0)
                    });
                    let all_pods: i32 = owned.iter().map(|r| r.status.replicas).sum();
                    let mut budget = all_pods - min_available - new_unavailable;
                    // First old pods that are not available anyway (they cost nothing).
                    let mut scaled: Vec<(String, i32)> = Vec::new();
                    for r in &olds {
                        if budget <= 0 {
                            break;
                        }
                        let unhealthy = (spec_replicas(r) - r.status.available_replicas).max(0);
                        let cut = unhealthy.min(budget);
                        if cut > 0 {
                            scaled.push((r.metadata.name.clone(), spec_replicas(r) - cut));
                            budget -= cut;
                        }
                    }
                    // Then available old pods, oldest revision first.
                    let available: i32 = owned.iter().map(|r| r.status.available_replicas).sum();
                    let mut budget2 = available - min_available;
                    for r in &olds {
                        if budget2 <= 0 {
                            break;
                        }
                        let cur = scaled
                            .iter()
                            .find(|(nm, _)| *nm == r.metadata.name)
                            .map_or(spec_replicas(r), |(_, v)| *v);
                        let cut = cur.min(budget2);
                        if cut > 0 {
                            scaled.retain(|(nm, _)| *nm != r.metadata.name);
                            scaled.push((r.metadata.name.clone(), cur - cut));
                            budget2 -= cut;
                        }
                    }
                    for (name, replicas) in scaled {
                        actions.push(Action::Scale { name, replicas });
                        progressed = true;
                    }
                }
            }
        }
    }

    // History: old, empty ReplicaSets beyond the limit go, oldest first.
    let limit = d.spec.revision_history_limit().max(0) as usize;
    let empty_olds: Vec<&&ReplicaSet> = olds
        .iter()
        .filter(|r| spec_replicas(r) == 0 && r.status.replicas == 0)
        .collect();
    if empty_olds.len() > limit {
        for r in &empty_olds[..empty_olds.len() - limit] {
            actions.push(Action::DeleteReplicaSet {
                name: r.metadata.name.clone(),
                uid: r.metadata.uid.clone(),
            });
        }
    }

    let status = status(d, owned, new_rs, max_unavailable, progressed, now);
    let want_rev = Some(current_rev);
    let have_rev = d
        .metadata
        .annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok());
    if status != d.status || have_rev != want_rev {
        actions.push(Action::SetStatus(Box::new(status), want_rev));
    }
    actions
}

fn status(
    d: &Deployment,
    owned: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    max_unavailable: i32,
    progressed: bool,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let n = d.spec.replicas().max(0);
    let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: owned.iter().map(|r| r.status.replicas).sum(),
        updated_replicas: new_rs.map_or(0, |r| r.status.replicas),
        ready_replicas: owned.iter().map(|r| r.status.ready_replicas).sum(),
        available_replicas: owned.iter().map(|r| r.status.available_replicas).sum(),
        unavailable_replicas: 0,
        conditions: d.status.conditions.clone(),
    };
    s.unavailable_replicas = (n - s.available_replicas).max(0);
    let available = s.available_replicas >= n - max_unavailable;
    set_condition(
        &mut s.conditions,
        Condition {
            type_: "Available".into(),
            status: if available { "True" } else { "False" }.into(),
            reason: if available {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            }
            .into(),
            message: if available {
                "Deployment has minimum availability."
            } else {
                "Deployment does not have minimum availability."
            }
            .into(),
            last_update_time: Some(now_s.clone()),
            ..Default::default()
        },
        &now_s,
    );
    let rs_name = new_rs.map_or_else(|| d.metadata.name.clone(), |r| r.metadata.name.clone());
    let complete = new_rs.is_some_and(|r| {
        r.spec.replicas() == n && r.status.available_replicas == n && r.status.replicas == n
    }) && s.replicas == n;
    let old = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .cloned();
    let progressing = if complete {
        Some(Condition {
            type_: "Progressing".into(),
            status: "True".into(),
            reason: "NewReplicaSetAvailable".into(),
            message: format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            ..Default::default()
        })
    } else if d.spec.paused {
        Some(Condition {
            type_: "Progressing".into(),
            status: "Unknown".into(),
            reason: "DeploymentPaused".into(),
            message: "Deployment is paused".into(),
            ..Default::default()
        })
    } else if progressed
        || old.as_ref().is_none_or(|c| {
            c.reason != "ReplicaSetUpdated" && c.reason != "ProgressDeadlineExceeded"
        })
    {
        Some(Condition {
            type_: "Progressing".into(),
            status: "True".into(),
            reason: "ReplicaSetUpdated".into(),
            message: format!("ReplicaSet \"{rs_name}\" is progressing."),
            last_update_time: Some(now_s.clone()),
            ..Default::default()
        })
    } else {
        // No progress this pass: past the deadline since the last progress, it has failed.
        let last = old
            .as_ref()
            .and_then(|c| c.last_update_time.as_deref())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let deadline = chrono::Duration::seconds(i64::from(d.spec.progress_deadline_seconds()));
        if last.is_some_and(|t| now - t > deadline) {
            Some(Condition {
                type_: "Progressing".into(),
                status: "False".into(),
                reason: "ProgressDeadlineExceeded".into(),
                message: format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
                last_update_time: last
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                ..Default::default()
            })
        } else {
            None
        }
    };
    if let Some(mut c) = progressing {
        // Keep the update time unless this pass changed something.
        if c.last_update_time.is_none() || !progressed {
            if let Some(o) = old.as_ref().filter(|o| o.reason == c.reason) {
                c.last_update_time = o.last_update_time.clone();
            }
        }
        if c.last_update_time.is_none() {
            c.last_update_time = Some(now_s.clone());
        }
        set_condition(&mut s.conditions, c, &now_s);
    }
    // The Available condition's update time only moves when it changes.
    if let (Some(new), Some(prev)) = (
        s.conditions.iter_mut().find(|c| c.type_ == "Available"),
        d.status.conditions.iter().find(|c| c.type_ == "Available"),
    ) {
        if new.status == prev.status {
            new.last_update_time = prev.last_update_time.clone();
        }
    }
    s
}

/// One pass over every Deployment.
pub fn reconcile_all(store: &Store) -> Result<(), StoreError> {
    let now = Utc::now();
    let deployments: Vec<Deployment> = store.list(None)?;
    let sets: Vec<ReplicaSet> = store.list(None)?;
    for d in &deployments {
        let ns = d.metadata.ns().to_string();
        let _span =
            tracing::info_span!("deployment", deploy = %format!("{ns}/{}", d.metadata.name))
                .entered();
        let owned: Vec<&ReplicaSet> = sets
            .iter()
            .filter(|r| {
                r.metadata
                    .controller_ref()
                    .is_some_and(|o| o.uid == d.metadata.uid)
            })
            .collect();
        let actions = plan(d, &owned, now);
        if actions.iter().any(|a| matches!(a, Action::Scale { .. })) {
            for r in &owned {
                tracing::debug!(rs = %r.metadata.name, spec = r.spec.replicas(), gen = r.metadata.generation, observed = r.status.observed_generation, replicas = r.status.replicas, available = r.status.available_replicas, "replicaset before scaling");
            }
        }
        for action in actions {
            apply(store, &ns, d, action)?;
        }
    }
    Ok(())
}

fn apply(store: &Store, ns: &str, d: &Deployment, action: Action) -> Result<(), StoreError> {
    let now = crate::util::time::now_rfc3339();
    let ignore_missing = |r: Result<(), StoreError>| match r {
        Err(StoreError::NotFound { .. }) | Err(StoreError::Conflict { .. }) => Ok(()),
        other => other,
    };
    match action {
        Action::CreateReplicaSet(mut rs) => {
            rs.metadata.namespace = Some(ns.to_string());
            tracing::info!(rs = %rs.metadata.name, replicas = rs.spec.replicas(), "creating replicaset");
            match store.create(*rs, &now) {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Action::Scale { name, replicas } => {
            tracing::info!(rs = %name, replicas, "scaling replicaset");
            ignore_missing(
                store
                    .update::<ReplicaSet, StoreError>(ns, &name, |r| {
                        r.spec.replicas = Some(replicas);
                        Ok(())
                    })
                    .map(|_| ()),
            )
        }
        Action::SetRevision { name, revision } => ignore_missing(
            store
                .update::<ReplicaSet, StoreError>(ns, &name, |r| {
                    r.metadata
                        .annotations
                        .insert(REVISION_ANNOTATION.into(), revision.to_string());
                    Ok(())
                })
                .map(|_| ()),
        ),
        Action::DeleteReplicaSet { name, uid } => {
            tracing::info!(rs = %name, "deleting old replicaset (revision history)");
            ignore_missing(
                store
                    .delete::<ReplicaSet>(ns, &name, Some(&uid))
                    .map(|_| ()),
            )
        }
        Action::SetStatus(status, rev) => {
            let uid = d.metadata.uid.clone();
            ignore_missing(
                store
                    .update::<Deployment, StoreError>(ns, &d.metadata.name, |x| {
                        if x.metadata.uid == uid {
                            x.status = (*status).clone();
                            if let Some(rev) = rev {
                                x.metadata
                                    .annotations
                                    .insert(REVISION_ANNOTATION.into(), rev.to_string());
                            }
                        }
                        Ok(())
                    })
                    .map(|_| ()),
            )
        }
    }
}

pub async fn run(store: Arc<Store>) {
    super::run_level_triggered("deployment", store, reconcile_all).await
}

#[cfg(test)]
mod tests;

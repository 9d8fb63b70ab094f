//! Deleting a pod, shared by the API, controllers, garbage collection and eviction: one rule
//! for when a pod can go at once and when its worker must stop it first.

use crate::api::{Node, Pod};
use crate::master::store::{Store, StoreError};
use crate::util::time::now_rfc3339;

/// How a delete went.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// The row is gone.
    Removed(Pod),
    /// Marked for deletion; the worker stops it and reports it gone.
    Terminating(Pod),
    NotFound,
}

/// A bound pod on a live node is marked for deletion (its worker stops it within the grace
/// period and reports it gone; then the row goes). An unbound pod, a pod on a node that is not
/// Ready (nobody could confirm it stopped; a returning worker stops pods that are no longer in
/// its desired index), or grace 0 is removed at once. `uid` guards against deleting a newer pod
/// of the same name.
pub fn delete_pod(
    store: &Store,
    ns: &str,
    name: &str,
    uid: Option<&str>,
    grace: Option<i64>,
) -> Result<Deleted, StoreError> {
    let Some(pod) = store.get::<Pod>(ns, name)? else {
        return Ok(Deleted::NotFound);
    };
    if uid.is_some_and(|u| u != pod.metadata.uid) {
        return Ok(Deleted::NotFound);
    }
    let node_ready = match pod.spec.node_name.as_deref() {
        Some(node) => store.get::<Node>("", node)?.is_some_and(|n| n.is_ready()),
        None => false,
    };
    let terminal = matches!(
        pod.status.phase,
        crate::api::PodPhase::Succeeded | crate::api::PodPhase::Failed
    ) && pod
        .status
        .container_statuses
        .iter()
        .all(|c| c.state.running.is_none());
    if !node_ready || grace == Some(0) || (terminal && pod.spec.node_name.is_none()) {
        return match store.delete::<Pod>(ns, name, Some(&pod.metadata.uid)) {
            Ok(Some(p)) => Ok(Deleted::Removed(p)),
            Ok(None) => Ok(Deleted::NotFound),
            Err(StoreError::Conflict { .. }) => Ok(Deleted::NotFound),
            Err(e) => Err(e),
        };
    }
    let now = now_rfc3339();
    let grace = grace.unwrap_or(pod.spec.grace_seconds());
    let p = store.update::<Pod, StoreError>(ns, name, |p| {
        if p.metadata.deletion_timestamp.is_none() {
            p.metadata.deletion_timestamp = Some(now.clone());
        }
        // A shorter grace may replace a longer one, never the other way (as Kubernetes).
        let g = p
            .metadata
            .deletion_grace_period_seconds
            .map_or(grace, |old| old.min(grace));
        p.metadata.deletion_grace_period_seconds = Some(g);
        Ok(())
    })?;
    Ok(Deleted::Terminating(p))
}

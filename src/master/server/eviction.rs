//! `POST .../pods/{name}/eviction`: a delete that respects the owning Deployment's rolling
//! update budget (`replicas - maxUnavailable` must stay Ready), as a PodDisruptionBudget would.
//! `herd drain` retries on 429 until the replacement pods are Ready elsewhere.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::{blocking, ApiError, AppState};
use crate::api::apps::{surge_and_unavailable, Deployment, ReplicaSet};
use crate::api::{Pod, Status};
use crate::master::podops::{delete_pod, Deleted};
use crate::master::store::Store;

/// True when the pod counts as healthy for a disruption budget.
pub fn healthy(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// `Err(message)` when evicting `pod` would break its Deployment's budget.
pub fn check_budget(store: &Store, pod: &Pod) -> Result<Result<(), String>, ApiError> {
    if !healthy(pod) {
        return Ok(Ok(()));
    }
    let ns = pod.metadata.ns();
    let Some(rs_ref) = pod
        .metadata
        .controller_ref()
        .filter(|r| r.kind == "ReplicaSet")
    else {
        return Ok(Ok(()));
    };
    let Some(rs) = store
        .get::<ReplicaSet>(ns, &rs_ref.name)?
        .filter(|r| r.metadata.uid == rs_ref.uid)
    else {
        return Ok(Ok(()));
    };
    let Some(d_ref) = rs
        .metadata
        .controller_ref()
        .filter(|r| r.kind == "Deployment")
    else {
        return Ok(Ok(()));
    };
    let Some(d) = store
        .get::<Deployment>(ns, &d_ref.name)?
        .filter(|d| d.metadata.uid == d_ref.uid)
    else {
        return Ok(Ok(()));
    };
    let (_, max_unavailable) =
        surge_and_unavailable(&d.spec).map_err(|e| ApiError::invalid(e.to_string()))?;
    let rs_uids: Vec<String> = store
        .list::<ReplicaSet>(Some(ns))?
        .into_iter()
        .filter(|r| {
            r.metadata
                .controller_ref()
                .is_some_and(|o| o.uid == d.metadata.uid)
        })
        .map(|r| r.metadata.uid)
        .collect();
    let healthy_now = store
        .list::<Pod>(Some(ns))?
        .iter()
        .filter(|p| {
            p.metadata
                .controller_ref()
                .is_some_and(|o| rs_uids.contains(&o.uid))
        })
        .filter(|p| healthy(p))
        .count() as i32;
    let need = d.spec.replicas() - max_unavailable;
    if healthy_now - 1 < need {
        return Ok(Err(format!(
            "Cannot evict pod as it would violate the disruption budget of deployment {}: \
             {healthy_now} healthy, at least {need} must stay (replicas {} - maxUnavailable {max_unavailable})",
            d.metadata.name,
            d.spec.replicas()
        )));
    }
    Ok(Ok(()))
}

pub async fn evict(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Status>), ApiError> {
    let mut grace = None;
    if !body.is_empty() {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("eviction body: {e}")))?;
        if let Some(k) = v.get("kind").and_then(|k| k.as_str()) {
            if k != "Eviction" {
                return Err(ApiError::bad_request(format!(
                    "kind: expected Eviction, got {k}"
                )));
            }
        }
        if let Some(g) = v.pointer("/deleteOptions/gracePeriodSeconds") {
            let g = g.as_i64().filter(|g| *g >= 0).ok_or_else(|| {
                ApiError::bad_request("deleteOptions.gracePeriodSeconds: must be an integer >= 0")
            })?;
            grace = Some(g);
        }
    }
    let store = st.store.clone();
    blocking(move || {
        let Some(pod) = store.get::<Pod>(&ns, &name)? else {
            return Err(ApiError::not_found("pods", &name));
        };
        if let Err(message) = check_budget(&store, &pod)? {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                message,
            ));
        }
        match delete_pod(&store, &ns, &name, Some(&pod.metadata.uid), grace)? {
            Deleted::NotFound => Err(ApiError::not_found("pods", &name)),
            _ => Ok((
                StatusCode::CREATED,
                Json(Status::success(format!("pod {ns}/{name} evicted"))),
            )),
        }
    })
    .await
}

//! `/api/v1/nodes`.

use axum::extract::{Path, State};
use axum::Json;

use super::{blocking, ApiError, AppState};
use crate::api::{List, Node};
use crate::proto::topics;

pub async fn list(State(st): State<AppState>) -> Result<Json<List<Node>>, ApiError> {
    let store = st.store.clone();
    let nodes = blocking(move || Ok(store.list::<Node>(None)?)).await?;
    let mut l = List::new(nodes);
    l.kind = "NodeList".into();
    Ok(Json(l))
}

pub async fn get_one(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiError> {
    let store = st.store.clone();
    let n = name.clone();
    blocking(move || Ok(store.get::<Node>("", &n)?))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("nodes", &name))
}

/// Removes the node and revokes its MQTT credentials: the credentials go first (a reconnect
/// racing this is refused), then the row, then the node's live broker session is cut and its
/// retained info cleared, so nothing the node said brings it back. Its pods are not moved
/// (that is the node lifecycle controller's job, later).
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiError> {
    let store = st.store.clone();
    let n = name.clone();
    let node = blocking(move || {
        store.remove_node_password(&n)?;
        Ok(store.delete::<Node>("", &n, None)?)
    })
    .await?
    .ok_or_else(|| ApiError::not_found("nodes", &name))?;
    if let Err(e) = st.bus.cut_session(&name).await {
        tracing::warn!(node = %name, error = %e, "could not cut the removed node's mqtt session");
    }
    for topic in [topics::info(&name), topics::online(&name)] {
        if let Err(e) = st.bus.publish_retained(topic, Vec::new()).await {
            tracing::warn!(node = %name, error = %e, "could not clear the removed node's retained state");
        }
    }
    tracing::info!(node = %name, "node removed; its mqtt credentials are revoked");
    Ok(Json(node))
}

/// Replaces what an administrator owns on a node: `spec` (unschedulable, taints) and labels
/// and annotations. Status stays the worker's.
pub async fn replace(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Node>, ApiError> {
    let new: Node = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("node body: {e}")))?;
    if !new.metadata.name.is_empty() && new.metadata.name != name {
        return Err(ApiError::bad_request(format!(
            "metadata.name: {:?} does not match the name in the URL {name:?}",
            new.metadata.name
        )));
    }
    for (k, v) in &new.metadata.labels {
        crate::api::validate::validate_label_key(k)
            .map_err(|e| ApiError::invalid(format!("metadata.labels[{k}]: {e}")))?;
        crate::api::validate::validate_label_value(v)
            .map_err(|e| ApiError::invalid(format!("metadata.labels[{k}]: {e}")))?;
    }
    let store = st.store.clone();
    let updated = blocking(move || {
        store.update::<Node, ApiError>("", &name, |n| {
            n.spec = new.spec.clone();
            n.metadata.labels = new.metadata.labels.clone();
            n.metadata.annotations = new.metadata.annotations.clone();
            Ok(())
        })
    })
    .await?;
    Ok(Json(updated))
}

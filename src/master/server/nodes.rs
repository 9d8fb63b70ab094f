//! `/api/v1/nodes`.

use axum::extract::{Path, State};
use axum::Json;

use super::{blocking, ApiError, AppState};
use crate::api::{List, Node};

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

/// Removes the node and revokes its MQTT credentials; its pods are not moved (that is the
/// node lifecycle controller's job, later).
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Node>, ApiError> {
    let store = st.store.clone();
    let n = name.clone();
    blocking(move || {
        let node = store.delete::<Node>("", &n, None)?;
        store.remove_node_password(&n)?;
        Ok(node)
    })
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::not_found("nodes", &name))
}

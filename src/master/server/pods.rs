//! `/api/v1/namespaces/{ns}/pods[/{name}]` and `/api/v1/pods`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::hygiene::MAX_BODY;
use super::{blocking, ApiError, AppState};
use crate::api::{List, Object, Pod};
use crate::master::podops::{delete_pod, Deleted};
use crate::util::time::now_rfc3339;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    label_selector: Option<String>,
}

fn filter(pods: Vec<Pod>, q: &ListQuery) -> Result<Vec<Pod>, ApiError> {
    let sel = super::workloads::selector(q.label_selector.as_deref())?;
    Ok(pods
        .into_iter()
        .filter(|p| sel.matches(&p.metadata.labels))
        .collect())
}

fn pod_list(items: Vec<Pod>) -> Json<List<Pod>> {
    let mut l = List::new(items);
    l.kind = "PodList".into();
    Json(l)
}

pub async fn list_all(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<Pod>>, ApiError> {
    let store = st.store.clone();
    let pods = blocking(move || Ok(store.list::<Pod>(None)?)).await?;
    Ok(pod_list(filter(pods, &q)?))
}

pub async fn list_ns(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<Pod>>, ApiError> {
    let store = st.store.clone();
    let pods = blocking(move || Ok(store.list::<Pod>(Some(&ns))?)).await?;
    Ok(pod_list(filter(pods, &q)?))
}

pub async fn get_one(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<Pod>, ApiError> {
    let store = st.store.clone();
    let n = name.clone();
    blocking(move || Ok(store.get::<Pod>(&ns, &n)?))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("pods", &name))
}

/// Parses a request body with the same parser as manifests, so HTTP clients get the same
/// field-path errors as `herd apply`. Exactly one object.
pub(super) fn parse_one(body: &[u8]) -> Result<Object, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!(
                "request body of {} bytes exceeds the limit of {MAX_BODY} bytes",
                body.len()
            ),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("request body is not UTF-8"))?;
    let mut objs = crate::api::manifest::parse(text).map_err(|e| {
        let where_ = if e.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", e.path)
        };
        ApiError::invalid(format!("{where_}{}", e.message))
    })?;
    if objs.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "expected one object, got {}",
            objs.len()
        )));
    }
    Ok(objs.remove(0))
}

fn parse_pod(body: &[u8], ns: &str, name: Option<&str>) -> Result<Pod, ApiError> {
    let Object::Pod(pod) = parse_one(body)? else {
        return Err(ApiError::bad_request("expected kind Pod at this path"));
    };
    let mut pod = *pod;
    match pod.metadata.namespace.as_deref() {
        Some(bns) if bns != ns => {
            return Err(ApiError::bad_request(format!(
                "metadata.namespace: {bns:?} does not match the request namespace {ns:?}"
            )))
        }
        _ => pod.metadata.namespace = Some(ns.to_string()),
    }
    if let Some(name) = name {
        if pod.metadata.name != name {
            return Err(ApiError::bad_request(format!(
                "metadata.name: {:?} does not match the name in the URL {name:?}",
                pod.metadata.name
            )));
        }
    }
    pod.status = Default::default();
    Ok(pod)
}

pub async fn create(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Pod>), ApiError> {
    crate::api::validate::validate_dns1123_label(&ns)
        .map_err(|e| ApiError::bad_request(format!("namespace: {e}")))?;
    let pod = parse_pod(&body, &ns, None)?;
    let store = st.store.clone();
    let created = blocking(move || Ok(store.create(pod, &now_rfc3339())?)).await?;
    tracing::info!(pod = %format!("{ns}/{}", created.metadata.name), "pod created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// What a pod update may change once it exists, as in Kubernetes: labels, annotations and
/// container images. Everything else requires delete and re-create.
fn merge_update(current: &mut Pod, new: &Pod) -> Result<(), ApiError> {
    let mut want = new.spec.clone();
    want.node_name = current.spec.node_name.clone().or(want.node_name);
    let mut cur_no_images = current.spec.clone();
    let mut want_no_images = want.clone();
    if cur_no_images.containers.len() == want_no_images.containers.len() {
        for (a, b) in cur_no_images
            .containers
            .iter_mut()
            .zip(want_no_images.containers.iter_mut())
        {
            a.image.clear();
            b.image.clear();
        }
    }
    if cur_no_images != want_no_images {
        return Err(ApiError::invalid(
            "spec: Forbidden: pod updates may not change fields other than \
             spec.containers[*].image (delete and re-create the pod)",
        ));
    }
    current.spec = want;
    current.metadata.labels = new.metadata.labels.clone();
    current.metadata.annotations = new.metadata.annotations.clone();
    Ok(())
}

pub async fn replace(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Pod>, ApiError> {
    let new = parse_pod(&body, &ns, Some(&name))?;
    let store = st.store.clone();
    let updated = blocking(move || {
        store.update::<Pod, ApiError>(&ns, &name, |p| {
            if p.metadata.deletion_timestamp.is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("pod \"{name}\" is being deleted"),
                ));
            }
            merge_update(p, &new)
        })
    })
    .await?;
    Ok(Json(updated))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    grace_period_seconds: Option<i64>,
}

/// A bound pod on a live node is marked for deletion; the worker stops it (SIGTERM, grace,
/// SIGKILL) and reports it gone, then the row goes. An unbound pod, a pod on a node that is
/// not Ready, or `gracePeriodSeconds=0` is removed at once (a returning worker stops pods that
/// are no longer in its desired index).
pub async fn delete(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> Result<Json<Pod>, ApiError> {
    if q.grace_period_seconds.is_some_and(|g| g < 0) {
        return Err(ApiError::bad_request("gracePeriodSeconds: must be >= 0"));
    }
    let store = st.store.clone();
    let n = name.clone();
    blocking(
        move || match delete_pod(&store, &ns, &n, None, q.grace_period_seconds)? {
            Deleted::Removed(p) | Deleted::Terminating(p) => Ok(p),
            Deleted::NotFound => Err(ApiError::not_found("pods", &n)),
        },
    )
    .await
    .map(Json)
}

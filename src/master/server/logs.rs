//! `GET .../pods/{name}/log`: relayed to the pod's worker over MQTT RPC and streamed back.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{blocking, ApiError, AppState};
use crate::api::Pod;
use crate::master::bus::Bus;
use crate::proto::{RpcCall, RpcResponse};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    container: Option<String>,
    tail_lines: Option<u64>,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    previous: bool,
}

/// How long a worker may take to send the first chunk.
const FIRST_CHUNK: Duration = Duration::from_secs(10);

/// Cancels the worker-side stream when the HTTP client goes away.
struct CancelOnDrop {
    bus: Arc<Bus>,
    node: String,
    id: String,
    done: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.done {
            let (bus, node, id) = (self.bus.clone(), self.node.clone(), self.id.clone());
            tokio::spawn(async move { bus.cancel_rpc(&node, &id).await });
        }
    }
}

pub async fn logs(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let store = st.store.clone();
    let (n2, ns2) = (name.clone(), ns.clone());
    let pod = blocking(move || Ok(store.get::<Pod>(&ns2, &n2)?))
        .await?
        .ok_or_else(|| ApiError::not_found("pods", &name))?;
    let container = match q.container {
        Some(c) => {
            let known = pod.spec.containers.iter().chain(&pod.spec.init_containers);
            if !known.into_iter().any(|x| x.name == c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c
        }
        None if pod.spec.containers.len() == 1 => pod.spec.containers[0].name.clone(),
        None => {
            let names: Vec<&str> = pod
                .spec
                .containers
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let Some(node) = pod.spec.node_name.clone() else {
        return Err(ApiError::bad_request(format!(
            "pod {name} is not scheduled to a node yet"
        )));
    };
    let call = RpcCall::Logs {
        namespace: ns,
        pod: name,
        uid: pod.metadata.uid.clone(),
        container,
        tail_lines: q.tail_lines,
        follow: q.follow,
        previous: q.previous,
    };
    let (id, mut rx) = st.bus.rpc(&node, call).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            e.to_string(),
        )
    })?;
    let mut guard = CancelOnDrop {
        bus: st.bus.clone(),
        node: node.clone(),
        id,
        done: false,
    };
    let first = match tokio::time::timeout(FIRST_CHUNK, rx.recv()).await {
        Ok(Some(r)) => r,
        Ok(None) | Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                format!("node {node} did not answer the log request (is it online?)"),
            ))
        }
    };
    if let Some(err) = &first.error {
        guard.done = true;
        return Err(ApiError::bad_request(err.clone()));
    }
    if first.eof {
        guard.done = true;
    }
    let stream = futures_util::stream::unfold(
        (Some(first), rx, guard),
        |(pending, mut rx, mut guard): (
            Option<RpcResponse>,
            mpsc::Receiver<RpcResponse>,
            CancelOnDrop,
        )| async move {
            let chunk = match pending {
                Some(c) => c,
                None => {
                    if guard.done {
                        return None;
                    }
                    match rx.recv().await {
                        Some(c) => c,
                        None => {
                            guard.done = true;
                            drop(guard);
                            return None;
                        }
                    }
                }
            };
            if chunk.eof {
                guard.done = true;
            }
            let data = match chunk.error {
                Some(e) => format!("{}error: {e}\n", chunk.data),
                None => chunk.data,
            };
            Some((Ok::<_, std::io::Error>(data), (None, rx, guard)))
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

//! Node join: a join (or admin) token traded for per-node MQTT credentials.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::ratelimit::FailureLimiter;
use super::{auth, blocking, ApiError, AppState, BrokerEndpoint};
use crate::master::store::{Role, TokenCheck};
use crate::util::time::now_rfc3339;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    pub node_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinResponse {
    pub node_name: String,
    pub mqtt_url: String,
    pub username: String,
    pub password: String,
}

/// The broker URL as this worker should dial it. For the embedded broker, the host the worker
/// used to reach the API is the best guess of how it can reach the broker too.
fn broker_url(b: &BrokerEndpoint, headers: &HeaderMap) -> String {
    match b {
        BrokerEndpoint::External { url } => url.clone(),
        BrokerEndpoint::Embedded {
            port,
            advertise,
            tls,
        } => {
            let host = advertise.clone().unwrap_or_else(|| {
                let h = headers
                    .get(axum::http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1");
                match h.rsplit_once(':') {
                    Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
                        host.to_string()
                    }
                    _ => h.to_string(),
                }
            });
            let scheme = if *tls { "mqtts" } else { "mqtt" };
            format!("{scheme}://{host}:{port}")
        }
    }
}

pub async fn join(
    State(st): State<AppState>,
    Extension(limiter): Extension<Arc<FailureLimiter>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<JoinResponse>, Response> {
    let ip = connect.map(|Extension(ConnectInfo(addr))| addr.ip());
    auth::gate(&limiter, ip).map_err(IntoResponse::into_response)?;
    let req: JoinRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("join request: {e}")).into_response())?;
    crate::api::validate::validate_dns1123_subdomain(&req.node_name)
        .map_err(|e| ApiError::bad_request(format!("nodeName: {e}")).into_response())?;
    if req.node_name == crate::master::broker::MASTER_USER {
        return Err(ApiError::bad_request("nodeName: reserved name").into_response());
    }
    let store = st.store.clone();
    let node = req.node_name.clone();
    let password = crate::util::fsutil::random_hex(24);
    let pw = password.clone();
    let now = chrono::Utc::now().timestamp();
    // Re-joining (a reflashed board) replaces the old credentials.
    let check = blocking(move || {
        Ok(store.join_with_token(&req.token, &req.node_name, &pw, &now_rfc3339(), now)?)
    })
    .await
    .map_err(IntoResponse::into_response)?;
    match check {
        TokenCheck::Valid(Role::Join | Role::Admin) => {}
        TokenCheck::Valid(role) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "{role} token cannot join nodes: create a join token with `herd token create`"
                ),
            )
            .into_response())
        }
        refused => {
            auth::count_failure(&limiter, ip);
            let why = match refused {
                TokenCheck::Unknown => "invalid join token",
                other => auth::token_refusal(&other),
            };
            return Err(auth::unauthorized(format!(
                "{why}: create a join token with `herd token create`"
            ))
            .into_response());
        }
    }
    tracing::info!(node = %node, "node joined");
    Ok(Json(JoinResponse {
        mqtt_url: broker_url(&st.broker, &headers),
        username: node.clone(),
        node_name: node,
        password,
    }))
}

/// The default lifetime of the join token a master creates at first start.
pub fn join_ttl() -> i64 {
    super::tokens::DEFAULT_TOKEN_TTL
}

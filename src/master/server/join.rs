//! Node join (token → per-node MQTT credentials) and join-token creation.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{blocking, ApiError, AppState, BrokerEndpoint};
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
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<JoinResponse>, ApiError> {
    let req: JoinRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("join request: {e}")))?;
    crate::api::validate::validate_dns1123_subdomain(&req.node_name)
        .map_err(|e| ApiError::bad_request(format!("nodeName: {e}")))?;
    if req.node_name == crate::master::broker::MASTER_USER {
        return Err(ApiError::bad_request("nodeName: reserved name"));
    }
    let store = st.store.clone();
    let node = req.node_name.clone();
    let password = crate::util::fsutil::random_hex(24);
    let pw = password.clone();
    blocking(move || match store.check_token(&req.token)? {
        TokenCheck::Valid(Role::Join | Role::Admin) => {
            // Re-joining (a reflashed board) replaces the old credentials.
            store.set_node_password(&req.node_name, &pw, &now_rfc3339())?;
            Ok(())
        }
        TokenCheck::Expired => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "join token expired: create one with `herd token create`",
        )),
        TokenCheck::Unknown => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "invalid join token",
        )),
    })
    .await?;
    tracing::info!(node = %node, "node joined");
    Ok(Json(JoinResponse {
        mqtt_url: broker_url(&st.broker, &headers),
        username: node.clone(),
        node_name: node,
        password,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    pub ttl_seconds: Option<i64>,
}

/// Join tokens live 24 h unless asked otherwise, like kubeadm's.
pub const DEFAULT_TOKEN_TTL: i64 = 24 * 3600;

pub fn join_ttl() -> i64 {
    DEFAULT_TOKEN_TTL
}

pub async fn create_token(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req: TokenRequest = if body.is_empty() {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("token request: {e}")))?
    };
    let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL);
    if ttl <= 0 {
        return Err(ApiError::bad_request("ttlSeconds: must be positive"));
    }
    let store = st.store.clone();
    let token =
        blocking(move || Ok(store.create_token(Role::Join, Some(ttl), &now_rfc3339())?)).await?;
    Ok(Json(
        serde_json::json!({ "token": token, "ttlSeconds": ttl }),
    ))
}

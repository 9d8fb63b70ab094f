//! The HTTP API: Kubernetes-style REST paths over the store, bearer-token auth, node join and
//! the log relay to workers. Handlers are thin: parse, call the store, shape the answer.

pub mod auth;
mod eviction;
mod hygiene;
mod join;
pub use eviction::{check_budget, healthy};
pub use join::{join_ttl, JoinRequest, JoinResponse};
pub use tokens::{TokenCreated, TokenList, TokenRequest, TokenView};
mod logs;
mod nodes;
mod pods;
pub mod ratelimit;
mod tokens;
mod workloads;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};

use super::bus::Bus;
use super::store::{Store, StoreError};
use crate::api::apps::{Deployment, ReplicaSet};
use crate::api::Status;

/// What the join endpoint tells workers about the broker.
#[derive(Clone, Debug)]
pub enum BrokerEndpoint {
    /// Embedded broker on this port; the host is the one the worker used to reach the API.
    Embedded {
        port: u16,
        advertise: Option<String>,
    },
    /// External broker, told to workers as given.
    External { url: String },
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub bus: Arc<Bus>,
    pub broker: BrokerEndpoint,
}

/// Errors as Kubernetes `Status` bodies, so clients print `message` as-is.
#[derive(Debug)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
    }
    pub fn not_found(kind: &str, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{kind} \"{name}\" not found"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::AlreadyExists { .. } => {
                ApiError::new(StatusCode::CONFLICT, "AlreadyExists", e.to_string())
            }
            StoreError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "NotFound", e.to_string())
            }
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    e.to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Status::failure(self.code.as_u16(), self.reason, self.message);
        (self.code, Json(body)).into_response()
    }
}

/// Runs store work off the async workers (SQLite fsyncs on commit).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("request handler failed: {e}"),
        )
    })?
}

pub fn router(state: AppState) -> Router {
    router_with(state, Arc::new(ratelimit::FailureLimiter::default()))
}

/// The API with the given failed-authentication limiter (shared by the bearer-token routes
/// and the join endpoint).
pub fn router_with(state: AppState, limiter: Arc<ratelimit::FailureLimiter>) -> Router {
    let authed = Router::new()
        .route("/api/v1/nodes", get(nodes::list))
        .route(
            "/api/v1/nodes/{name}",
            get(nodes::get_one)
                .put(nodes::replace)
                .delete(nodes::delete),
        )
        .route("/api/v1/pods", get(pods::list_all))
        .route(
            "/api/v1/namespaces/{ns}/pods",
            get(pods::list_ns).post(pods::create),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(pods::get_one).put(pods::replace).delete(pods::delete),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(logs::logs))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/eviction",
            post(eviction::evict),
        )
        .route(
            "/apis/apps/v1/deployments",
            get(workloads::list_all::<Deployment>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            get(workloads::list_ns::<Deployment>).post(workloads::create::<Deployment>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(workloads::get_one::<Deployment>)
                .put(workloads::replace::<Deployment>)
                .delete(workloads::delete::<Deployment>),
        )
        .route(
            "/apis/apps/v1/replicasets",
            get(workloads::list_all::<ReplicaSet>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/replicasets",
            get(workloads::list_ns::<ReplicaSet>).post(workloads::create::<ReplicaSet>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
            get(workloads::get_one::<ReplicaSet>)
                .put(workloads::replace::<ReplicaSet>)
                .delete(workloads::delete::<ReplicaSet>),
        )
        .route(
            "/apis/herd.io/v1/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route("/apis/herd.io/v1/tokens/{id}", delete(tokens::revoke))
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), limiter.clone()),
            auth::middleware,
        ));
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/apis/herd.io/v1/join", post(join::join))
        .merge(authed)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
        .layer(DefaultBodyLimit::max(hygiene::MAX_BODY))
        .layer(Extension(limiter))
        .layer(axum::middleware::from_fn(hygiene::middleware))
        .with_state(state)
}

async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "major": "0",
        "minor": "1",
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "platform": format!("linux/{}", crate::worker::platform::goarch()),
    }))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Connection info gives the auth limiter each client's address.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

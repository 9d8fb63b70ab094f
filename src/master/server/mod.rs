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

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};

use crate::master::registry::serve as images;
use axum::{Extension, Json, Router};

use super::bus::Bus;
use super::store::{Store, StoreError};
use crate::api::apps::{Deployment, ReplicaSet};
use crate::api::secret::Secret;
use crate::api::Status;

/// What the join endpoint tells workers about the broker.
#[derive(Clone, Debug)]
pub enum BrokerEndpoint {
    /// Embedded broker on this port; the host is the one the worker used to reach the API.
    Embedded {
        port: u16,
        advertise: Option<String>,
        /// The gate speaks MQTTS (`mqtts://`).
        tls: bool,
    },
    /// External broker, told to workers as given.
    External { url: String },
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub bus: Arc<Bus>,
    pub broker: BrokerEndpoint,
    /// The cluster CA (PEM) when serving TLS: served to joining workers, who check its hash.
    pub ca_pem: Option<Arc<str>>,
    /// The image cache served under `/v2/`.
    pub registry: Arc<crate::master::registry::Registry>,
}

/// Where a joining worker fetches the CA certificate (no auth: it is public, and the worker
/// trusts it only if its hash matches the one it was given).
pub const CA_PATH: &str = "/apis/herd.io/v1/ca";

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
        .route("/api/v1/secrets", get(workloads::list_all::<Secret>))
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            get(workloads::list_ns::<Secret>).post(workloads::create::<Secret>),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(workloads::get_one::<Secret>)
                .put(workloads::replace::<Secret>)
                .delete(workloads::delete::<Secret>),
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
        .route(
            images::IMAGES_PATH,
            get(images::list).post(images::push).delete(images::prune),
        )
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), limiter.clone()),
            auth::middleware,
        ));
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/apis/herd.io/v1/join", post(join::join))
        .route(CA_PATH, get(ca_cert))
        // The registry authenticates on its own (node credentials or API tokens, with the
        // Basic challenge registry clients expect), so it sits outside the bearer middleware.
        .route("/v2", any(images::v2))
        .route("/v2/", any(images::v2))
        .route("/v2/{*rest}", any(images::v2))
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

async fn ca_cert(State(st): State<AppState>) -> Result<String, ApiError> {
    st.ca_pem.as_deref().map(str::to_string).ok_or_else(|| {
        ApiError::not_found(
            "certificate",
            "ca (this master serves plain HTTP: --insecure)",
        )
    })
}

async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "major": "0",
        "minor": "1",
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "platform": format!("linux/{}", crate::worker::platform::goarch()),
    }))
}

/// Serves until `shutdown` resolves; over TLS when `tls` is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    let Some(acceptor) = tls else {
        // Connection info gives the auth limiter each client's address.
        let svc = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        return axum::serve(listener, svc)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    // axum::serve speaks plain TCP only: accept, handshake (bounded, off the accept loop so
    // a stalled client blocks nobody), then hand the stream to hyper with the same router.
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "api: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let hs = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let stream = match hs.await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "api: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // What into_make_service_with_connect_info does for plain connections: the auth
            // limiter keys on the client's address.
            let app = app.layer(Extension(axum::extract::ConnectInfo(peer)));
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "api: connection ended");
            }
        });
    }
}

//! Who may call what: bearer-token authentication, role checks (admin, read-only, join) and
//! the failed-authentication limit per client address.
//!
//! The verb and resource of a request come from its route template (`MatchedPath`), the way
//! Kubernetes names them, so a refusal says exactly what was refused: "read-only token cannot
//! create pods".

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ratelimit::FailureLimiter;
use super::{blocking, ApiError, AppState};
use crate::master::store::{Role, TokenCheck};

/// What a request does, in Kubernetes RBAC terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// `pods`, `nodes`, `deployments`, or with a subresource `pods/log`.
    pub resource: String,
}

impl Access {
    fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
}

/// Derives verb and resource from the method and the route template, e.g. `GET
/// /api/v1/namespaces/{ns}/pods/{name}/log` is `get pods/log`.
pub fn access(method: &Method, route: &str, query: Option<&str>) -> Access {
    let segs: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
    // Skip the group/version prefix: `api/v1` or `apis/<group>/<version>`.
    let rest: &[&str] = match segs.as_slice() {
        ["api", _, rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        other => other,
    };
    let rest: &[&str] = match rest {
        ["namespaces", ns, rest @ ..] if is_param(ns) && !rest.is_empty() => rest,
        other => other,
    };
    let resource = rest.first().copied().unwrap_or("");
    let named = rest.get(1).is_some_and(|s| is_param(s));
    let sub = if named { rest.get(2).copied() } else { None };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    let watch = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1" || kv == "watch")
    });
    let verb = match *method {
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => {
            return Access {
                verb: method.as_str().to_ascii_lowercase(),
                resource,
            }
        }
    };
    Access {
        verb: verb.to_string(),
        resource,
    }
}

fn is_param(seg: &str) -> bool {
    seg.starts_with('{') && seg.ends_with('}')
}

/// Whether `role` may do `access`; the refusal names role, verb and resource.
pub fn authorize(role: Role, access: &Access) -> Result<(), String> {
    let refuse = |why: &str| {
        Err(format!(
            "{role} token cannot {} {}{why}",
            access.verb, access.resource
        ))
    };
    match role {
        Role::Admin => Ok(()),
        // Token management is admin-only, reads included: the list says which tokens exist.
        Role::ReadOnly if access.resource == "tokens" => refuse(""),
        Role::ReadOnly if access.is_read() => Ok(()),
        Role::ReadOnly => refuse(""),
        Role::Join => refuse(": it may only join nodes"),
    }
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The client's address, when the server was started with connection info.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

pub fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
}

/// The 401 message for a token that did not pass.
pub fn token_refusal(check: &TokenCheck) -> &'static str {
    match check {
        TokenCheck::Expired => "token expired",
        TokenCheck::Revoked => "token revoked",
        TokenCheck::Used => "token already used (it was single-use)",
        TokenCheck::Unknown | TokenCheck::Valid(_) => "invalid bearer token",
    }
}

/// 429 with `Retry-After` (whole seconds, rounded up).
pub fn too_many(ip: IpAddr, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        format!("too many failed authentication attempts from {ip}: retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    resp
}

/// A client refused for its failed authentications: answered with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub ip: IpAddr,
    pub wait: Duration,
}

impl IntoResponse for Blocked {
    fn into_response(self) -> Response {
        too_many(self.ip, self.wait)
    }
}

/// Gate in front of anything that authenticates: `Err` while `ip` is blocked.
pub fn gate(limiter: &FailureLimiter, ip: Option<IpAddr>) -> Result<(), Blocked> {
    match ip {
        Some(ip) => limiter
            .check(ip, Instant::now())
            .map_err(|wait| Blocked { ip, wait }),
        None => Ok(()),
    }
}

/// Counts a rejected credential from `ip`, logging when it starts a block.
pub fn count_failure(limiter: &FailureLimiter, ip: Option<IpAddr>) {
    let Some(ip) = ip else { return };
    if let Some(wait) = limiter.failure(ip, Instant::now()) {
        tracing::warn!(client = %ip, cooldown = ?wait, "too many failed authentication attempts; refusing this client for a while");
    }
}

/// The middleware in front of every authenticated route.
pub async fn middleware(
    State((st, limiter)): State<(AppState, Arc<FailureLimiter>)>,
    req: Request,
    next: Next,
) -> Response {
    let ip = client_ip(&req);
    if let Err(blocked) = gate(&limiter, ip) {
        return blocked.into_response();
    }
    let Some(token) = bearer(&req).map(str::to_string) else {
        // Not a guess, so not counted: a client that sent nothing learns nothing.
        return unauthorized("missing bearer token (Authorization: Bearer ...)").into_response();
    };
    let store = st.store.clone();
    let check = match blocking(move || Ok(store.check_token(&token)?)).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let TokenCheck::Valid(role) = check else {
        count_failure(&limiter, ip);
        return unauthorized(token_refusal(&check)).into_response();
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let access = access(req.method(), &route, req.uri().query());
    if let Err(message) = authorize(role, &access) {
        return ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(method: Method, route: &str) -> Access {
        access(&method, route, None)
    }

    fn pair(a: &Access) -> (&str, &str) {
        (a.verb.as_str(), a.resource.as_str())
    }

    #[test]
    fn verbs_and_resources_come_from_the_route_template() {
        let cases = [
            (Method::GET, "/api/v1/pods", ("list", "pods")),
            (
                Method::GET,
                "/api/v1/namespaces/{ns}/pods",
                ("list", "pods"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/{ns}/pods",
                ("create", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/{ns}/pods/{name}",
                ("get", "pods"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/{ns}/pods/{name}",
                ("update", "pods"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/{ns}/pods/{name}",
                ("delete", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/{ns}/pods/{name}/log",
                ("get", "pods/log"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/{ns}/pods/{name}/eviction",
                ("create", "pods/eviction"),
            ),
            (Method::GET, "/api/v1/nodes/{name}", ("get", "nodes")),
            (Method::DELETE, "/api/v1/nodes/{name}", ("delete", "nodes")),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
                ("patch", "deployments"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/replicasets",
                ("list", "replicasets"),
            ),
            (
                Method::POST,
                "/apis/herd.io/v1/tokens",
                ("create", "tokens"),
            ),
            (Method::GET, "/apis/herd.io/v1/tokens", ("list", "tokens")),
            (
                Method::DELETE,
                "/apis/herd.io/v1/tokens/{id}",
                ("delete", "tokens"),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/{ns}/pods",
                ("deletecollection", "pods"),
            ),
        ];
        for (m, route, want) in cases {
            let a = acc(m.clone(), route);
            assert_eq!(pair(&a), want, "{m} {route}");
        }
        let w = access(
            &Method::GET,
            "/api/v1/pods",
            Some("labelSelector=a&watch=true"),
        );
        assert_eq!(pair(&w), ("watch", "pods"));
        // The namespace object itself.
        let ns = acc(Method::GET, "/api/v1/namespaces/{ns}");
        assert_eq!(pair(&ns), ("get", "namespaces"));
    }

    #[test]
    fn read_only_reads_everything_but_tokens_and_writes_nothing() {
        let ok = [
            (Method::GET, "/api/v1/pods"),
            (Method::GET, "/api/v1/namespaces/{ns}/pods/{name}/log"),
            (
                Method::GET,
                "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            ),
            (Method::GET, "/api/v1/nodes"),
        ];
        for (m, r) in ok {
            assert_eq!(
                authorize(Role::ReadOnly, &acc(m.clone(), r)),
                Ok(()),
                "{m} {r}"
            );
        }
        let refused = [
            (
                Method::POST,
                "/api/v1/namespaces/{ns}/pods",
                "read-only token cannot create pods",
            ),
            (
                Method::PUT,
                "/api/v1/nodes/{name}",
                "read-only token cannot update nodes",
            ),
            (
                Method::DELETE,
                "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
                "read-only token cannot delete deployments",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/{ns}/pods/{name}/eviction",
                "read-only token cannot create pods/eviction",
            ),
            (
                Method::GET,
                "/apis/herd.io/v1/tokens",
                "read-only token cannot list tokens",
            ),
            (
                Method::POST,
                "/apis/herd.io/v1/tokens",
                "read-only token cannot create tokens",
            ),
        ];
        for (m, r, msg) in refused {
            assert_eq!(
                authorize(Role::ReadOnly, &acc(m.clone(), r)),
                Err(msg.to_string()),
                "{m} {r}"
            );
        }
    }

    #[test]
    fn join_tokens_only_join_and_admin_does_anything() {
        assert_eq!(
            authorize(Role::Join, &acc(Method::GET, "/api/v1/pods")),
            Err("join token cannot list pods: it may only join nodes".to_string())
        );
        for (m, r) in [
            (Method::DELETE, "/api/v1/nodes/{name}"),
            (Method::POST, "/apis/herd.io/v1/tokens"),
            (Method::GET, "/apis/herd.io/v1/tokens"),
        ] {
            assert_eq!(authorize(Role::Admin, &acc(m, r)), Ok(()));
        }
    }

    #[test]
    fn refusals_say_what_was_wrong_with_the_token() {
        assert_eq!(token_refusal(&TokenCheck::Expired), "token expired");
        assert_eq!(token_refusal(&TokenCheck::Revoked), "token revoked");
        assert!(token_refusal(&TokenCheck::Used).contains("already used"));
        assert_eq!(token_refusal(&TokenCheck::Unknown), "invalid bearer token");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let r = too_many("10.0.0.1".parse().unwrap(), Duration::from_millis(1500));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[axum::http::header::RETRY_AFTER], "2");
    }
}

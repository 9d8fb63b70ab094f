//! The `/v2/` endpoints (OCI distribution spec, pull side) and the image management API
//! (`/apis/herd.io/v1/images`: push, list, prune).
//!
//! Authentication on `/v2/`: nodes send their MQTT credentials as HTTP Basic (checked against
//! the same stored hash the broker's login check uses); people and tools send an admin or
//! read-only API token, as a bearer token or as the Basic password (so `skopeo --creds
//! any:TOKEN` works). Join tokens are refused. No credentials: 401 with a Basic challenge, as
//! registry clients expect. Failed attempts count against the same per-address limiter as the
//! rest of the API.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::gc::{self, Policy};
use super::names::{self, RangeAnswer, Target};
use super::platforms::platforms_of;
use super::{unix_now, RegistryError, UpstreamError};
use crate::master::server::auth::{client_ip, count_failure, gate};
use crate::master::server::ratelimit::FailureLimiter;
use crate::master::server::{blocking, ApiError, AppState};
use crate::master::store::{Role, TokenCheck};
use crate::worker::images::Limits;

const API_VERSION: &str = "Docker-Distribution-API-Version";
const REALM: &str = "Basic realm=\"herd\"";
/// Chunk size when streaming a blob from disk.
const CHUNK: usize = 256 << 10;

/// An OCI error response: `{"errors":[{"code":..,"message":..}]}`.
pub fn oci_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body =
        serde_json::json!({"errors": [{"code": code, "message": message.into(), "detail": null}]});
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
    }
    resp
}

/// Who a `/v2/` request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    Node(String),
    Token(Role),
}

/// Splits an `Authorization` header into Basic (user, password) or a bearer token.
fn credentials(headers: &HeaderMap) -> Option<(Option<String>, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    if let Some(t) = v.strip_prefix("Bearer ") {
        return Some((None, t.trim().to_string()));
    }
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (user, pass) = s.split_once(':')?;
    Some((Some(user.to_string()), pass.to_string()))
}

async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
    limiter: Option<Arc<FailureLimiter>>,
) -> Result<Client, Response> {
    if let Some(l) = &limiter {
        if let Err(b) = gate(l, ip) {
            return Err(b.into_response());
        }
    }
    let Some((user, secret)) = credentials(headers) else {
        return Err(oci_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required: a node's credentials or an API token",
        ));
    };
    let store = st.store.clone();
    let checked = blocking(move || {
        if let Some(u) = &user {
            if store.check_node_password(u, &secret)? {
                return Ok(Ok(Client::Node(u.clone())));
            }
        }
        Ok(match store.check_token(&secret)? {
            TokenCheck::Valid(Role::Join) => Err(true),
            TokenCheck::Valid(role) => Ok(Client::Token(role)),
            _ => Err(false),
        })
    })
    .await
    .map_err(IntoResponse::into_response)?;
    match checked {
        Ok(c) => Ok(c),
        Err(true) => Err(oci_error(
            StatusCode::FORBIDDEN,
            "DENIED",
            "join token cannot pull images: it may only join nodes",
        )),
        Err(false) => {
            if let Some(l) = &limiter {
                count_failure(l, ip);
            }
            Err(oci_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "invalid credentials",
            ))
        }
    }
}

fn registry_error(e: RegistryError, unknown: &'static str) -> Response {
    match &e {
        RegistryError::Upstream(UpstreamError::NotFound { .. }) => {
            oci_error(StatusCode::NOT_FOUND, unknown, e.to_string())
        }
        RegistryError::Upstream(_)
        | RegistryError::DigestMismatch { .. }
        | RegistryError::SizeMismatch { .. } => oci_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            e.to_string(),
        ),
        RegistryError::BadDigest(_) => {
            oci_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string())
        }
        _ => {
            tracing::error!(error = %e, "registry failure");
            oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string())
        }
    }
}

/// `GET|HEAD /v2/` and everything below it.
pub async fn v2(State(st): State<AppState>, req: Request) -> Response {
    let ip = client_ip(&req);
    let limiter = req.extensions().get::<Arc<FailureLimiter>>().cloned();
    let (parts, _body) = req.into_parts();
    if let Err(resp) = authenticate(&st, &parts.headers, ip, limiter).await {
        return resp;
    }
    let head = parts.method == Method::HEAD;
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return oci_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this registry is read-only over /v2/: push images with `herd image push`",
        );
    }
    let path = parts.uri.path();
    let rest = path.strip_prefix("/v2").unwrap_or(path);
    let target = match names::parse(rest) {
        Ok(t) => t,
        Err(e) => {
            let status = if e.code == "UNSUPPORTED" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            return oci_error(status, e.code, e.message);
        }
    };
    let registry = st.registry.clone();
    match target {
        Target::Base => {
            let mut r = Json(serde_json::json!({})).into_response();
            r.headers_mut()
                .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
            r
        }
        Target::Tags { repo } => {
            let store = registry.store().clone();
            let name = repo.repository();
            let n = name.clone();
            match tokio::task::spawn_blocking(move || store.tags_of(&n)).await {
                Ok(Ok(tags)) if !tags.is_empty() => {
                    let mut r =
                        Json(serde_json::json!({"name": name, "tags": tags})).into_response();
                    r.headers_mut()
                        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
                    r
                }
                Ok(Ok(_)) => oci_error(
                    StatusCode::NOT_FOUND,
                    "NAME_UNKNOWN",
                    format!("repository {name} has no cached tags"),
                ),
                Ok(Err(e)) => registry_error(e, "NAME_UNKNOWN"),
                Err(e) => oci_error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e.to_string()),
            }
        }
        Target::Manifest { reference } => match registry.manifest(&reference).await {
            Ok(m) => {
                let len = m.bytes.len();
                let mut resp = Response::new(if head {
                    Body::empty()
                } else {
                    Body::from(m.bytes)
                });
                let h = resp.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&m.media_type) {
                    h.insert(header::CONTENT_TYPE, v);
                }
                if let Ok(v) = HeaderValue::from_str(&m.digest) {
                    h.insert("Docker-Content-Digest", v);
                }
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                h.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
                resp
            }
            Err(e) => registry_error(e, "MANIFEST_UNKNOWN"),
        },
        Target::Blob { repo, digest } => match registry.blob(&repo, &digest).await {
            Ok(path) => {
                let range = parts
                    .headers
                    .get(header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                serve_blob(path, &digest, range.as_deref(), head).await
            }
            Err(e) => registry_error(e, "BLOB_UNKNOWN"),
        },
    }
}

/// Streams a blob (or the requested range of it) from disk, chunk by chunk.
async fn serve_blob(path: PathBuf, digest: &str, range: Option<&str>, head: bool) -> Response {
    let io_fail = |e: std::io::Error| {
        oci_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            format!("blob {digest}: {e}"),
        )
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return oci_error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                format!("blob {digest} unknown"),
            )
        }
        Err(e) => return io_fail(e),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return io_fail(e),
    };
    let (status, start, count) = match names::range(range, len) {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let mut r = oci_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "UNSUPPORTED",
                format!(
                    "range {:?} not satisfiable for blob {digest} of {len} bytes",
                    range.unwrap_or("")
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = if head {
        Body::empty()
    } else {
        if start > 0 {
            if let Err(e) = file.seek(SeekFrom::Start(start)).await {
                return io_fail(e);
            }
        }
        let stream = futures_util::stream::unfold((file, count), |(mut f, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0u8; (left as usize).min(CHUNK)];
            match f.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob shrank while served",
                    )),
                    (f, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), (f, left - n as u64)))
                }
                Err(e) => Some((Err(e), (f, 0))),
            }
        });
        Body::from_stream(stream)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    if let Ok(v) = HeaderValue::from_str(digest) {
        h.insert("Docker-Content-Digest", v);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    resp
}

/// Path of the image management API.
pub const IMAGES_PATH: &str = "/apis/herd.io/v1/images";

#[derive(Debug, serde::Deserialize)]
pub struct PushQuery {
    /// Tag override (`herd image push --name`).
    pub name: Option<String>,
}

/// `POST /apis/herd.io/v1/images[?name=REF]`: the body is an image archive, streamed to a
/// staging file (never held in memory), then verified and stored.
pub async fn push(
    State(st): State<AppState>,
    Query(q): Query<PushQuery>,
    body: Body,
) -> Result<Json<Vec<super::push::Pushed>>, ApiError> {
    use futures_util::StreamExt as _;
    let store = st.registry.store().clone();
    let limits = Limits::default();
    let tmp = store.tmp_path("upload");
    let internal = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("upload: {e}"),
        )
    };
    let written = async {
        let mut f = tokio::fs::File::create(&tmp).await.map_err(internal)?;
        let mut stream = body.into_data_stream();
        let mut total: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
            total += chunk.len() as u64;
            if total > limits.max_archive_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    format!(
                        "image archive exceeds the limit of {} bytes",
                        limits.max_archive_bytes
                    ),
                ));
            }
            f.write_all(&chunk).await.map_err(internal)?;
        }
        f.flush().await.map_err(internal)?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    let t = tmp.clone();
    let result = blocking(move || {
        super::push::push_archive(&store, &t, q.name.as_deref(), &limits).map_err(|e| match e {
            RegistryError::Invalid { .. } | RegistryError::BadDigest(_) => {
                ApiError::invalid(format!("image archive: {e}"))
            }
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                other.to_string(),
            ),
        })
    })
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    Ok(Json(result?))
}

/// One row of `herd image ls`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageView {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: String,
    pub platforms: Option<Vec<String>>,
    /// Bytes of the cached blobs the image reaches (what it costs on the master's disk).
    pub size: u64,
    /// Unix seconds.
    pub last_used: i64,
    pub pushed: bool,
}

/// `GET /apis/herd.io/v1/images`.
pub async fn list(State(st): State<AppState>) -> Result<Json<Vec<ImageView>>, ApiError> {
    let store = st.registry.store().clone();
    blocking(move || {
        let fail = |e: RegistryError| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        };
        let read = |d: &str| store.blob_path(d).and_then(|p| std::fs::read(p).ok());
        let mut out = Vec::new();
        for row in store.images().map_err(fail)? {
            let (platforms, size) = match store.manifest(&row.digest).map_err(fail)? {
                Some((bytes, media)) => {
                    let live = gc::live_blobs(std::slice::from_ref(&row.digest), &read);
                    let size = live.iter().filter_map(|d| store.blob_size(d)).sum();
                    (platforms_of(&bytes, &media, &read), size)
                }
                None => (None, 0),
            };
            out.push(ImageView {
                repository: row.repo,
                tag: row.tag,
                digest: row.digest,
                platforms,
                size,
                last_used: row.last_used,
                pushed: row.pushed,
            });
        }
        Ok(Json(out))
    })
    .await
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneQuery {
    /// Remove unreferenced images not pulled for this many seconds.
    pub unused_seconds: Option<u64>,
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub dry_run: bool,
    /// Unreferenced blobs younger than this many seconds stay (default one hour).
    pub grace_seconds: Option<u64>,
}

/// `DELETE /apis/herd.io/v1/images?...`: prune the cache.
pub async fn prune(
    State(st): State<AppState>,
    Query(q): Query<PruneQuery>,
) -> Result<Json<gc::Report>, ApiError> {
    let store = st.registry.store().clone();
    let state = st.store.clone();
    blocking(move || {
        let in_use = gc::cluster_images(&state)?;
        let policy = Policy {
            unused_for: q.unused_seconds.map(std::time::Duration::from_secs),
            all: q.all,
            include_pushed: true,
            blob_grace: q
                .grace_seconds
                .map(std::time::Duration::from_secs)
                .unwrap_or(gc::BLOB_GRACE),
        };
        gc::prune(&store, &in_use, &policy, unix_now(), q.dry_run)
            .map(Json)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    e.to_string(),
                )
            })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_credentials_are_told_apart() {
        let mut h = HeaderMap::new();
        assert_eq!(credentials(&h), None);
        let b64 = base64::engine::general_purpose::STANDARD.encode("w1:pa:ss");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {b64}")).unwrap(),
        );
        assert_eq!(credentials(&h), Some((Some("w1".into()), "pa:ss".into())));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def"),
        );
        assert_eq!(credentials(&h), Some((None, "abc.def".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(credentials(&h), None);
    }

    #[test]
    fn errors_are_oci_json_and_401_carries_a_basic_challenge() {
        let r = oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "no");
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], REALM);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[API_VERSION], "registry/2.0");
    }
}

//! Request and response hygiene in front of every route: bodies only in the media types the
//! API reads, and every error answered as a Kubernetes `Status` (axum's own rejections —
//! body too large, bad query string, method not allowed — are plain text or empty).

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Largest request body: a manifest is a few KB.
pub const MAX_BODY: usize = 1 << 20;
/// Largest plain-text error body worth quoting.
const MAX_ERROR_TEXT: usize = 4096;

/// Media types a request body may declare (a missing Content-Type is accepted: scripts).
fn accepted_media_type(value: &str) -> bool {
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        mime.as_str(),
        "application/json"
            | "application/yaml"
            | "application/x-yaml"
            | "text/yaml"
            | "text/x-yaml"
    )
}

fn reason_for(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    }
}

pub async fn middleware(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // An image push streams an archive of any size and type to disk (its own limits apply).
    let upload = path == crate::master::registry::serve::IMAGES_PATH;
    if matches!(method, Method::POST | Method::PUT | Method::PATCH) && !upload {
        // A declared length over the limit is refused before the body is read: the client
        // gets the answer instead of "100 Continue" and a connection closed mid-upload.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("request body exceeds the limit of {MAX_BODY} bytes"),
            )
            .into_response();
        }
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = String::from_utf8_lossy(ct.as_bytes()).into_owned();
            if !accepted_media_type(&ct) {
                return ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "Content-Type {ct:?} is not supported: send application/json or \
                         application/yaml"
                    ),
                )
                .into_response();
            }
        }
    }
    let resp = next.run(req).await;
    let code = resp.status();
    if !(code.is_client_error() || code.is_server_error()) {
        return resp;
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return resp;
    }
    let retry_after = resp.headers().get(header::RETRY_AFTER).cloned();
    let text = axum::body::to_bytes(resp.into_body(), MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match code {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body exceeds the limit of {MAX_BODY} bytes")
        }
        StatusCode::METHOD_NOT_ALLOWED => format!("method {method} is not allowed on {path}"),
        _ if text.is_empty() => format!("{method} {path}: {code}"),
        _ => text,
    };
    let mut out = ApiError::new(code, reason_for(code), message).into_response();
    if let Some(v) = retry_after {
        out.headers_mut().insert(header::RETRY_AFTER, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_bodies_are_accepted_with_parameters() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/YAML",
            "text/yaml",
        ] {
            assert!(accepted_media_type(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ] {
            assert!(!accepted_media_type(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn plain_rejections_become_status_bodies() {
        use axum::routing::post;
        let app = axum::Router::new()
            .route(
                "/x",
                post(|| async { (StatusCode::BAD_REQUEST, "plain words") }),
            )
            .route("/e", post(|| async { StatusCode::METHOD_NOT_ALLOWED }))
            .layer(axum::middleware::from_fn(middleware));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        crate::pki::install_provider();
        let client = reqwest::Client::new();
        let call = |path: &str, ct: Option<&str>| {
            let mut r = client.post(format!("http://{addr}{path}"));
            if let Some(ct) = ct {
                r = r.header(header::CONTENT_TYPE, ct);
            }
            async move {
                let resp = r.send().await.unwrap();
                let code = resp.status().as_u16();
                let v: serde_json::Value = resp.json().await.unwrap();
                let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                (code, text("reason"), text("message"))
            }
        };
        assert_eq!(
            call("/x", None).await,
            (400, "BadRequest".into(), "plain words".into())
        );
        let (code, _, msg) = call("/e", Some("application/json")).await;
        assert_eq!(code, 405);
        assert_eq!(msg, "method POST is not allowed on /e");
        let (code, reason, msg) = call("/x", Some("text/plain")).await;
        assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
        assert!(msg.contains("text/plain"), "{msg}");
    }
}

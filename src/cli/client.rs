//! A small HTTP client for the herd API: bearer token, JSON in and out, and Kubernetes
//! `Status` error bodies turned into the messages kubectl users already know.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::Status;

/// Why a request failed, in terms a CLI user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error; rendered like kubectl.
    #[error("{}", render_status(.0))]
    Status(Box<Status>),
    #[error("cannot reach the herd API at {server}: is `herd up`/`herd master` running?")]
    Unreachable { server: String },
    #[error("{server}: {problem}")]
    Tls { server: String, problem: String },
    /// The cause is the `source()`, printed by the error chain (`{:#}`).
    #[error("{method} {url}")]
    Transport {
        method: &'static str,
        url: String,
        source: reqwest::Error,
    },
    #[error("{method} {url}: unexpected response: {message}")]
    Decode {
        method: &'static str,
        url: String,
        message: String,
    },
}

impl ApiError {
    /// The HTTP status the server reported, if it reported one.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status(s) => Some(s.code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
}

/// `Error from server (NotFound): pods "x" not found`, as kubectl prints it.
pub fn render_status(s: &Status) -> String {
    let message = if s.message.is_empty() {
        format!("the server responded with status {}", s.code)
    } else {
        s.message.clone()
    };
    if s.reason.is_empty() {
        format!("Error from server: {message}")
    } else {
        format!("Error from server ({}): {message}", s.reason)
    }
}

/// Kubernetes' reason for a status code, for servers (or proxies) that send no `Status` body.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Gone",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

/// Turns an error response body into a `Status`: the server's own if it sent one, else one
/// built from the code and the body text.
pub fn status_from_body(code: u16, body: &[u8]) -> Status {
    if let Ok(s) = serde_json::from_slice::<Status>(body) {
        if s.kind == "Status" {
            let code = if s.code == 0 { code } else { s.code };
            return Status { code, ..s };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("the server responded with status {code}")
    } else {
        text.chars().take(500).collect()
    };
    Status::failure(code, reason_for(code), message)
}

/// Connection details plus a pooled HTTP client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Client {
    /// `server` is the base URL (`http://HOST:PORT`); requests carry `token` as a bearer token.
    pub fn new(server: &str, token: &str) -> Result<Client, ApiError> {
        Self::with_ca(server, token, None, false)
    }

    /// For https: trust `ca_pem_base64` (the kubeconfig's certificate-authority-data) and
    /// nothing else, or skip verification when the config says so explicitly.
    pub fn with_ca(
        server: &str,
        token: &str,
        ca_pem_base64: Option<&str>,
        insecure_skip_verify: bool,
    ) -> Result<Client, ApiError> {
        // reqwest asks rustls for the process's provider even for plain http.
        crate::pki::install_provider();
        let server = server.trim_end_matches('/').to_string();
        let tls_err = |problem: String| ApiError::Tls {
            server: server.clone(),
            problem,
        };
        // No overall timeout: `logs -f` streams for as long as the user wants.
        let mut builder = reqwest::Client::builder();
        if server.starts_with("https://") {
            if insecure_skip_verify {
                builder = builder.danger_accept_invalid_certs(true);
            } else {
                let b64 = ca_pem_base64.ok_or_else(|| {
                    tls_err("https server but the config has no certificate-authority-data (copy admin.conf from the master)".into())
                })?;
                use base64::Engine;
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| tls_err(format!("certificate-authority-data: {e}")))?;
                let pem = String::from_utf8_lossy(&pem);
                let der = crate::pki::der_from_pem(
                    &pem,
                    std::path::Path::new("certificate-authority-data"),
                )
                .map_err(|e| tls_err(e.to_string()))?;
                let cfg = crate::pki::client_config(&der).map_err(|e| tls_err(e.to_string()))?;
                builder = builder.use_preconfigured_tls((*cfg).clone());
            }
        }
        let http = builder
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("herd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ApiError::Transport {
                method: "BUILD",
                url: server.clone(),
                source,
            })?;
        Ok(Client {
            http,
            server,
            token: token.to_string(),
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.json(reqwest::Method::GET, path, &[], None::<&()>)
            .await
    }

    pub async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        self.json(reqwest::Method::GET, path, query, None::<&()>)
            .await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.json(reqwest::Method::POST, path, &[], Some(body))
            .await
    }

    /// POST whose answer body does not matter (an eviction's may be a Status or empty).
    pub async fn post_discard<B: Serialize>(&self, path: &str, body: &B) -> Result<(), ApiError> {
        self.send(reqwest::Method::POST, path, &[], Some(body))
            .await
            .map(drop)
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.json(reqwest::Method::PUT, path, &[], Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ApiError> {
        self.json(reqwest::Method::DELETE, path, query, None::<&()>)
            .await
    }

    /// Sends a GET and returns the response once its status is a success, for callers that
    /// read the body as a stream (logs).
    pub async fn get_stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ApiError> {
        self.send(reqwest::Method::GET, path, query, None::<&()>)
            .await
    }

    /// POSTs a streamed body (an image archive: never read into memory) and decodes the JSON
    /// answer.
    pub async fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: reqwest::Body,
        len: Option<u64>,
    ) -> Result<T, ApiError> {
        let url = format!("{}{}", self.server, path);
        let mut req = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .query(query)
            .body(body);
        if let Some(n) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, n);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport("POST", &url, e))?;
        let code = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport("POST", &url, e))?;
        if !code.is_success() {
            return Err(ApiError::Status(Box::new(status_from_body(
                code.as_u16(),
                &bytes,
            ))));
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            method: "POST",
            url,
            message: e.to_string(),
        })
    }

    async fn json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let name = method_name(&method);
        let resp = self.send(method, path, query, body).await?;
        let url = resp.url().to_string();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport(name, &url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            method: name,
            url,
            message: e.to_string(),
        })
    }

    async fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<reqwest::Response, ApiError> {
        let name = method_name(&method);
        let url = format!("{}{}", self.server, path);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.transport(name, &url, e))?;
        let code = resp.status();
        if code.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        Err(ApiError::Status(Box::new(status_from_body(
            code.as_u16(),
            &body,
        ))))
    }

    fn transport(&self, method: &'static str, url: &str, source: reqwest::Error) -> ApiError {
        if source.is_connect() {
            ApiError::Unreachable {
                server: self.server.clone(),
            }
        } else {
            ApiError::Transport {
                method,
                url: url.to_string(),
                source,
            }
        }
    }
}

fn method_name(m: &reqwest::Method) -> &'static str {
    match *m {
        reqwest::Method::GET => "GET",
        reqwest::Method::POST => "POST",
        reqwest::Method::PUT => "PUT",
        reqwest::Method::DELETE => "DELETE",
        _ => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_not_found_status_renders_like_kubectl() {
        let body = br#"{"apiVersion":"v1","kind":"Status","status":"Failure",
            "message":"pods \"x\" not found","reason":"NotFound","code":404}"#;
        let s = status_from_body(404, body);
        assert_eq!(
            ApiError::Status(Box::new(s)).to_string(),
            r#"Error from server (NotFound): pods "x" not found"#
        );
    }

    #[test]
    fn a_status_without_reason_or_message_still_says_something() {
        let s = Status::failure(500, "", "");
        assert_eq!(
            render_status(&s),
            "Error from server: the server responded with status 500"
        );
    }

    #[test]
    fn a_plain_text_error_body_gets_a_reason_from_the_code() {
        let s = status_from_body(401, b"bad token\n");
        assert_eq!(
            render_status(&s),
            "Error from server (Unauthorized): bad token"
        );
        let s = status_from_body(502, b"");
        assert_eq!(
            render_status(&s),
            "Error from server: the server responded with status 502"
        );
    }

    #[test]
    fn not_found_is_recognised_by_code() {
        let e = ApiError::Status(Box::new(status_from_body(404, b"{}")));
        assert!(e.is_not_found());
        let e = ApiError::Unreachable {
            server: "http://127.0.0.1:1".into(),
        };
        assert!(!e.is_not_found());
        assert_eq!(
            e.to_string(),
            "cannot reach the herd API at http://127.0.0.1:1: is `herd up`/`herd master` running?"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_says_how_to_start_the_server() {
        // Bind then drop a listener so the port is (very likely) closed.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = Client::new(&format!("http://127.0.0.1:{port}/"), "t").unwrap();
        let err = c.get::<serde_json::Value>("/version").await.unwrap_err();
        assert!(matches!(err, ApiError::Unreachable { .. }), "{err}");
        assert!(err
            .to_string()
            .contains(&format!("http://127.0.0.1:{port}:")));
    }

    #[test]
    fn https_needs_the_cluster_ca_in_the_config() {
        let err = Client::new("https://10.0.0.1:6443", "t").unwrap_err();
        assert!(
            err.to_string().contains("no certificate-authority-data"),
            "{err}"
        );
        let err = Client::with_ca("https://10.0.0.1:6443", "t", Some("%%%"), false).unwrap_err();
        assert!(
            err.to_string().contains("certificate-authority-data"),
            "{err}"
        );
        assert!(Client::with_ca("https://10.0.0.1:6443", "t", None, true).is_ok());
    }
}

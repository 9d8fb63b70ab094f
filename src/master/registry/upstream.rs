//! The registry client the pull-through cache fetches with: manifests by tag or digest,
//! blobs streamed to a file. Plain HTTP for insecure hosts, HTTPS (webpki roots are not
//! bundled: the system's are not read either, so only hosts whose CA rustls is given work)
//! otherwise; anonymous, Basic, or the bearer-token challenge registries like Docker Hub use.
//!
//! Interim: the shared `oci::Puller` replaces this once it lands (same trait).

use std::path::Path;

use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::config::Registries;
use super::{BoxFut, Fetched, Upstream, UpstreamError};
use crate::worker::images::Reference;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";
/// Largest manifest accepted from upstream.
const MAX_MANIFEST: usize = 8 << 20;

pub struct HttpUpstream {
    http: reqwest::Client,
    settings: Registries,
}

impl HttpUpstream {
    pub fn new(settings: &Registries) -> HttpUpstream {
        crate::pki::install_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("herd/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        HttpUpstream {
            http,
            settings: settings.clone(),
        }
    }

    fn base(&self, r: &Reference) -> String {
        let host = match r.domain() {
            "docker.io" => "registry-1.docker.io",
            d => d,
        };
        let scheme = if self.settings.is_insecure(r.domain()) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}/v2/{}", r.path())
    }

    fn unreachable(r: &Reference, e: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Unreachable {
            registry: r.domain().to_string(),
            reason: e.to_string(),
        }
    }

    fn failed(r: &Reference, e: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Failed {
            registry: r.domain().to_string(),
            reason: e.to_string(),
        }
    }

    /// GET with the registry's auth: anonymous first; on 401 a Basic login (configured
    /// credentials) or a bearer token from the challenge's realm.
    async fn get(
        &self,
        r: &Reference,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let req = |auth: Option<&str>| {
            let mut b = self.http.get(url);
            if let Some(a) = accept {
                b = b.header(reqwest::header::ACCEPT, a);
            }
            if let Some(a) = auth {
                b = b.header(reqwest::header::AUTHORIZATION, a);
            }
            b
        };
        let resp = req(None)
            .send()
            .await
            .map_err(|e| Self::unreachable(r, e))?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let cred = self.settings.auth.get(r.domain());
        let auth = if challenge.to_ascii_lowercase().starts_with("bearer ") {
            let params = parse_challenge(&challenge[7..]);
            let realm = params
                .iter()
                .find(|(k, _)| k == "realm")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| Self::failed(r, "bearer challenge without a realm"))?;
            let mut tok = self.http.get(&realm);
            let query: Vec<(String, String)> = params
                .into_iter()
                .filter(|(k, _)| k == "service" || k == "scope")
                .collect();
            tok = tok.query(&query);
            if let Some(c) = cred {
                tok = tok.basic_auth(&c.username, Some(&c.password));
            }
            let t: serde_json::Value = tok
                .send()
                .await
                .map_err(|e| Self::unreachable(r, e))?
                .error_for_status()
                .map_err(|e| {
                    Self::failed(
                        r,
                        format!(
                            "token: {}",
                            e.status().map_or(String::new(), |s| s.to_string())
                        ),
                    )
                })?
                .json()
                .await
                .map_err(|e| Self::failed(r, e))?;
            let token = t
                .get("token")
                .or_else(|| t.get("access_token"))
                .and_then(|v| v.as_str())
                .ok_or_else(|| Self::failed(r, "token response without a token"))?;
            format!("Bearer {token}")
        } else {
            let c = cred.ok_or_else(|| {
                Self::failed(
                    r,
                    "authentication required and no credentials configured (registries.toml)",
                )
            })?;
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password))
            )
        };
        req(Some(&auth))
            .send()
            .await
            .map_err(|e| Self::unreachable(r, e))
    }

    fn check(r: &Reference, what: &str, resp: &reqwest::Response) -> Result<(), UpstreamError> {
        let s = resp.status();
        if s.is_success() {
            return Ok(());
        }
        if s == reqwest::StatusCode::NOT_FOUND {
            return Err(UpstreamError::NotFound {
                registry: r.domain().to_string(),
                what: what.to_string(),
            });
        }
        if s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Self::unreachable(r, format!("{what}: {s}")));
        }
        Err(Self::failed(r, format!("{what}: {s}")))
    }
}

/// `realm="...",service="...",scope="..."` → pairs.
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((k, v.to_string()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

impl Upstream for HttpUpstream {
    fn manifest<'a>(&'a self, r: &'a Reference) -> BoxFut<'a, Result<Fetched, UpstreamError>> {
        Box::pin(async move {
            let reference = r.digest().or(r.tag()).unwrap_or("latest");
            let url = format!("{}/manifests/{reference}", self.base(r));
            let resp = self.get(r, &url, Some(ACCEPT)).await?;
            Self::check(r, &format!("manifest {}", r), &resp)?;
            let media_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
                .unwrap_or_default();
            if resp
                .content_length()
                .is_some_and(|n| n as usize > MAX_MANIFEST)
            {
                return Err(Self::failed(r, "manifest larger than 8 MiB"));
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| Self::unreachable(r, e))?
                .to_vec();
            if bytes.len() > MAX_MANIFEST {
                return Err(Self::failed(r, "manifest larger than 8 MiB"));
            }
            let media_type = if media_type.is_empty() {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
                    .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into())
            } else {
                media_type
            };
            let digest = super::store::sha256_digest(&bytes);
            Ok(Fetched {
                bytes,
                media_type,
                digest,
            })
        })
    }

    fn blob<'a>(
        &'a self,
        r: &'a Reference,
        digest: &'a str,
        dest: &'a Path,
    ) -> BoxFut<'a, Result<u64, UpstreamError>> {
        Box::pin(async move {
            let url = format!("{}/blobs/{digest}", self.base(r));
            let resp = self.get(r, &url, None).await?;
            Self::check(r, &format!("blob {digest}"), &resp)?;
            let mut f = tokio::fs::File::create(dest)
                .await
                .map_err(|e| Self::failed(r, format!("{}: {e}", dest.display())))?;
            let mut stream = resp.bytes_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| Self::unreachable(r, e))?;
                n += chunk.len() as u64;
                f.write_all(&chunk)
                    .await
                    .map_err(|e| Self::failed(r, format!("{}: {e}", dest.display())))?;
            }
            f.flush()
                .await
                .map_err(|e| Self::failed(r, format!("{}: {e}", dest.display())))?;
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_parsed() {
        let p = parse_challenge(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            p,
            vec![
                (
                    "realm".to_string(),
                    "https://auth.docker.io/token".to_string()
                ),
                ("service".to_string(), "registry.docker.io".to_string()),
                (
                    "scope".to_string(),
                    "repository:library/busybox:pull".to_string()
                ),
            ]
        );
    }
}

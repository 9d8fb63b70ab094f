//! Registry reads over the OCI distribution API (oci-client): manifests as raw bytes and blobs
//! streamed to disk with their sha256 and size checked, so nothing unverified is ever used.
//!
//! Two routes: straight to the image's registry, or through a mirror that keeps the upstream
//! registry as the first path component (`/v2/docker.io/library/busybox/...`), which is how
//! workers pull through the master's cache.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::select::{INDEX_TYPES, MANIFEST_TYPES};
use super::settings::{Credentials, RegistrySettings};
use crate::worker::images::Reference;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry could not be reached at all (connection refused, timeout, 5xx): a local
    /// copy may stand in under `imagePullPolicy: Always`.
    #[error("registry {registry} unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("{image}: registry {registry}: {reason}")]
    Registry {
        image: String,
        registry: String,
        reason: String,
    },
    #[error("blob {digest}: content has sha256:{actual} (corrupt or tampered download)")]
    Digest { digest: String, actual: String },
    #[error("blob {digest}: got {actual} bytes, expected {expected}")]
    Size {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Select(#[from] super::select::SelectError),
    #[error(transparent)]
    Image(#[from] crate::worker::images::ImageError),
}

impl PullError {
    fn io(path: &Path, source: std::io::Error) -> PullError {
        PullError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(self, PullError::Unreachable { .. })
    }
}

/// The master's registry endpoint, as a worker reaches it.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// `host:port` of the master's API.
    pub host: String,
    /// Plain HTTP (a master started with `--insecure`).
    pub plain: bool,
    /// The cluster CA, the only root trusted for the mirror.
    pub ca_pem: Option<Vec<u8>>,
    pub credentials: Option<Credentials>,
}

/// A manifest document exactly as the registry served it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: bytes::Bytes,
    /// `sha256:<hex>` of `bytes`, checked.
    pub digest: String,
}

/// One registry session for one image repository.
pub struct Puller {
    client: oci_client::Client,
    auth: RegistryAuth,
    /// Where requests go: the image's own registry or the mirror.
    registry: String,
    repository: String,
    /// For messages: the image as the user named it.
    image: String,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Puller {
    /// Straight to the registry `image` names.
    pub fn direct(settings: &RegistrySettings, image: &Reference) -> Puller {
        let host = image.domain().to_owned();
        let protocol = if settings.plain_http(&host) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let auth = match settings.credentials(&host) {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Puller {
            client: client(protocol, Vec::new()),
            auth,
            registry: host,
            repository: image.path().to_owned(),
            image: image.to_string(),
        }
    }

    /// Through a mirror that names the upstream registry in the repository path.
    pub fn via(mirror: &Mirror, image: &Reference) -> Puller {
        let protocol = if mirror.plain {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let roots = mirror
            .ca_pem
            .iter()
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect();
        let auth = match &mirror.credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Puller {
            client: client(protocol, roots),
            auth,
            registry: mirror.host.clone(),
            repository: format!("{}/{}", image.domain(), image.path()),
            image: image.to_string(),
        }
    }

    fn reference(&self, tag_or_digest: &str) -> oci_client::Reference {
        if tag_or_digest.starts_with("sha256:") {
            oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        } else {
            oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        }
    }

    /// The manifest or index for a tag or digest, verified against the digest when given.
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<Fetched, PullError> {
        let accepted: Vec<&str> = INDEX_TYPES
            .iter()
            .chain(MANIFEST_TYPES.iter())
            .copied()
            .collect();
        let r = self.reference(tag_or_digest);
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&r, &self.auth, &accepted)
            .await
            .map_err(|e| self.error(e))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != digest || (tag_or_digest.starts_with("sha256:") && actual != tag_or_digest) {
            return Err(PullError::Digest {
                digest: if tag_or_digest.starts_with("sha256:") {
                    tag_or_digest.to_owned()
                } else {
                    digest
                },
                actual: actual.trim_start_matches("sha256:").to_owned(),
            });
        }
        Ok(Fetched { bytes, digest })
    }

    /// A small blob (an image config) into memory, verified.
    pub async fn blob_bytes(&self, digest: &str, size: u64) -> Result<Vec<u8>, PullError> {
        const MAX_CONFIG: u64 = 8 << 20;
        if size > MAX_CONFIG {
            return Err(PullError::Registry {
                image: self.image.clone(),
                registry: self.registry.clone(),
                reason: format!("config blob {digest} of {size} bytes exceeds {MAX_CONFIG}"),
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        let mut stream = self.open(digest, size).await?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.stream_error(digest, e))?;
            if out.len() as u64 + chunk.len() as u64 > size {
                return Err(size_error(
                    digest,
                    size,
                    out.len() as u64 + chunk.len() as u64,
                ));
            }
            out.extend_from_slice(&chunk);
        }
        verify(digest, size, &out, out.len() as u64)?;
        Ok(out)
    }

    /// Streams a blob into `dest`: written to `dest` + `.part`, checked (sha256 and size),
    /// fsynced, then renamed, so `dest` exists only when complete and correct. `progress`
    /// gets the bytes written so far.
    pub async fn blob_to_file(
        &self,
        digest: &str,
        size: u64,
        dest: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, PullError> {
        let part = dest.with_extension("part");
        let result = async {
            let mut file = tokio::fs::File::create(&part)
                .await
                .map_err(|e| PullError::io(&part, e))?;
            let mut hasher = Sha256::new();
            let mut done = 0u64;
            let mut stream = self.open(digest, size).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.stream_error(digest, e))?;
                done += chunk.len() as u64;
                if done > size {
                    return Err(size_error(digest, size, done));
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| PullError::io(&part, e))?;
                progress(done);
            }
            if done != size {
                return Err(size_error(digest, size, done));
            }
            let actual = hex::encode(hasher.finalize());
            if format!("sha256:{actual}") != digest {
                return Err(PullError::Digest {
                    digest: digest.to_owned(),
                    actual,
                });
            }
            file.sync_all().await.map_err(|e| PullError::io(&part, e))?;
            drop(file);
            tokio::fs::rename(&part, dest)
                .await
                .map_err(|e| PullError::io(dest, e))?;
            Ok(done)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }

    async fn open(
        &self,
        digest: &str,
        size: u64,
    ) -> Result<
        futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>,
        PullError,
    > {
        let desc = OciDescriptor {
            digest: digest.to_owned(),
            size: size as i64,
            ..Default::default()
        };
        let r = self.reference(digest);
        // Authenticates (anonymous or basic, following a bearer challenge) once per session.
        self.client
            .store_auth_if_needed(r.resolve_registry(), &self.auth)
            .await;
        let sized = self
            .client
            .pull_blob_stream(&r, &desc)
            .await
            .map_err(|e| self.error(e))?;
        if let Some(len) = sized.content_length {
            if len != size {
                return Err(size_error(digest, size, len));
            }
        }
        Ok(sized.stream)
    }

    fn stream_error(&self, digest: &str, e: std::io::Error) -> PullError {
        // oci-client's own verifying stream reports a digest mismatch as an I/O error.
        let text = e.to_string();
        if text.to_ascii_lowercase().contains("digest") {
            return PullError::Digest {
                digest: digest.to_owned(),
                actual: text,
            };
        }
        PullError::Unreachable {
            registry: self.registry.clone(),
            reason: format!("download of {digest} broke off: {text}"),
        }
    }

    fn error(&self, e: oci_client::errors::OciDistributionError) -> PullError {
        use oci_client::errors::OciDistributionError as E;
        let unreachable = match &e {
            E::RequestError(r) => r.is_connect() || r.is_timeout() || r.is_request(),
            E::ServerError { code, .. } => *code >= 500,
            _ => false,
        };
        let reason = match &e {
            // reqwest hides the cause (refused, reset, bad certificate) in its source chain.
            E::RequestError(r) => chain(r),
            other => other.to_string(),
        };
        if unreachable {
            PullError::Unreachable {
                registry: self.registry.clone(),
                reason,
            }
        } else {
            PullError::Registry {
                image: self.image.clone(),
                registry: self.registry.clone(),
                reason,
            }
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn size_error(digest: &str, expected: u64, actual: u64) -> PullError {
    PullError::Size {
        digest: digest.to_owned(),
        expected,
        actual,
    }
}

fn verify(digest: &str, size: u64, bytes: &[u8], got: u64) -> Result<(), PullError> {
    if got != size {
        return Err(size_error(digest, size, got));
    }
    let actual = hex::encode(Sha256::digest(bytes));
    if format!("sha256:{actual}") != digest {
        return Err(PullError::Digest {
            digest: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}

fn client(protocol: ClientProtocol, roots: Vec<Certificate>) -> oci_client::Client {
    // reqwest (inside oci-client) panics without a process-wide rustls provider.
    crate::pki::install_provider();
    let only_ours = !roots.is_empty();
    oci_client::Client::new(ClientConfig {
        protocol,
        // The mirror (the master) is trusted through the cluster CA only, as the worker's
        // other connections to it are.
        tls_certs_only: if only_ours { roots } else { Vec::new() },
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        // Selection is ours (with ARM variants); never let the client pick.
        platform_resolver: None,
        user_agent: concat!("herd/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    })
}

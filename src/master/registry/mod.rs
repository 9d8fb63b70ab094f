//! The master's image registry: an OCI distribution (pull side) endpoint under `/v2/` that
//! serves a local cache of images, filled by pull-through from upstream registries and by
//! `herd image push`. Workers pull through it, so a fleet of boards fetches each layer from the
//! internet once, and an image pushed from a laptop runs with no registry at all.
//!
//! - [`store`]: blobs on disk and the tag index (SQLite), crash-safe;
//! - [`names`]: pure parsing of `/v2/` paths and `Range` headers;
//! - [`pull`]: pull-through with single-flight, tag TTL and stale serving;
//! - [`serve`]: the HTTP handlers and their authentication;
//! - [`push`]: storing an uploaded `docker save` / OCI archive, verified before indexing;
//! - [`gc`]: what to prune (pure) and the periodic sweep;
//! - [`platforms`]: which platforms a cached image offers, for the scheduler.

pub mod config;
pub mod gc;
pub mod names;
pub mod platforms;
pub mod pull;
pub mod push;
pub mod serve;
pub mod store;
pub mod upstream;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use pull::{Registry, RegistryOptions};
pub use store::{BlobStore, ImageRow};

/// A boxed future, so [`Upstream`] can be a trait object.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Default time a pulled tag is served without asking upstream again.
pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);

/// Everything the registry can fail with; messages name the digest, path or upstream involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry index: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0:?} is not a sha256 digest (sha256:<64 lowercase hex>)")]
    BadDigest(String),
    #[error("blob {digest}: content has {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest}: {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

/// What went wrong talking to an upstream registry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The registry answered: no such repository, tag, manifest or blob.
    #[error("upstream {registry}: {what} not found")]
    NotFound { registry: String, what: String },
    /// No answer (DNS, connect, TLS, timeout) or a server error: a cached tag may be served.
    #[error("upstream {registry} unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    /// It answered with something wrong (bad digest, auth refused, ...).
    #[error("upstream {registry}: {reason}")]
    Failed { registry: String, reason: String },
}

/// A manifest or index as an upstream registry served it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    /// `sha256:<hex>` of `bytes` (verified by whoever built this).
    pub digest: String,
}

/// The upstream side of the pull-through cache: one implementation over the real registry
/// client, fakes in tests.
pub trait Upstream: Send + Sync {
    /// The manifest or index `reference` names (by tag or digest).
    fn manifest<'a>(
        &'a self,
        reference: &'a crate::worker::images::Reference,
    ) -> BoxFut<'a, Result<Fetched, UpstreamError>>;

    /// Streams blob `digest` (of `size` bytes, as a manifest's descriptor says) of the
    /// repository of `repo` into `dest` (complete when this returns Ok; verification is the
    /// caller's too). Returns its size.
    fn blob<'a>(
        &'a self,
        repo: &'a crate::worker::images::Reference,
        digest: &'a str,
        size: u64,
        dest: &'a Path,
    ) -> BoxFut<'a, Result<u64, UpstreamError>>;
}

/// An upstream that has nothing (an `--air-gapped` master): what is not cached is unknown
/// (404), and a cached tag is served as it is.
pub struct NoUpstream;

impl Upstream for NoUpstream {
    fn manifest<'a>(
        &'a self,
        reference: &'a crate::worker::images::Reference,
    ) -> BoxFut<'a, Result<Fetched, UpstreamError>> {
        Box::pin(async move {
            Err(UpstreamError::NotFound {
                registry: reference.domain().to_string(),
                what: format!("{reference}: not cached, and this master is air-gapped"),
            })
        })
    }

    fn blob<'a>(
        &'a self,
        repo: &'a crate::worker::images::Reference,
        _digest: &'a str,
        _size: u64,
        _dest: &'a Path,
    ) -> BoxFut<'a, Result<u64, UpstreamError>> {
        Box::pin(async move {
            Err(UpstreamError::NotFound {
                registry: repo.domain().to_string(),
                what: format!(
                    "{}: blob not cached, and this master is air-gapped",
                    repo.repository()
                ),
            })
        })
    }
}

/// The upstream side for the configured registries.
pub fn upstream(settings: &crate::oci::RegistrySettings) -> Arc<dyn Upstream> {
    Arc::new(upstream::PullerUpstream::new(settings.clone()))
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The registry directory under a master data dir.
pub fn registry_dir(master_data: &Path) -> PathBuf {
    master_data.join("registry")
}

/// Shared handle the API server keeps.
pub type SharedRegistry = Arc<Registry>;

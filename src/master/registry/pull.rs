//! Pull-through: what the cache has is served from disk; what it lacks is fetched from the
//! registry the name starts with, verified, stored, then served.
//!
//! - Digests never expire; a pulled tag is served from the cache for `tag_ttl`, then upstream
//!   is asked again. If upstream cannot answer, the cached tag is served anyway (stale) and a
//!   warning says so: a fleet keeps starting pods while the internet is away.
//! - Pushed tags are authoritative: upstream is never asked about them.
//! - Concurrent requests for the same blob or tag fetch upstream once (single-flight): the
//!   first takes the key's lock and fetches, the others wait on it and then find the result
//!   in the store. A blob is served only once it is complete and verified.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::store::{sha256_digest, BlobStore};
use super::{unix_now, RegistryError, Upstream, UpstreamError, DEFAULT_TAG_TTL};
use crate::worker::images::Reference;

#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// How long a pulled tag is trusted before upstream is asked again.
    pub tag_ttl: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            tag_ttl: DEFAULT_TAG_TTL,
        }
    }
}

/// One lock per key in flight; entries disappear when the last holder is done.
#[derive(Default)]
struct Flights {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Flights {
    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string()).or_default().clone()
    }

    /// Drops the key's entry if nobody else holds or waits on it. Clones are only made under
    /// the map lock, so the count cannot grow while it is checked.
    fn release(&self, key: &str, slot: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&slot) == 2 {
            map.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
}

/// A manifest as served: bytes, media type, digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// The registry: the store plus the way to fill it.
pub struct Registry {
    store: Arc<BlobStore>,
    upstream: Arc<dyn Upstream>,
    opts: RegistryOptions,
    flights: Flights,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Invalid {
            what: "registry task".into(),
            reason: e.to_string(),
        })?
}

impl Registry {
    pub fn new(
        store: Arc<BlobStore>,
        upstream: Arc<dyn Upstream>,
        opts: RegistryOptions,
    ) -> Registry {
        Registry {
            store,
            upstream,
            opts,
            flights: Flights::default(),
        }
    }

    pub fn store(&self) -> &Arc<BlobStore> {
        &self.store
    }

    /// The manifest `reference` names, from the cache or upstream.
    pub async fn manifest(&self, reference: &Reference) -> Result<Served, RegistryError> {
        match reference.digest() {
            Some(digest) => self.manifest_by_digest(reference, digest).await,
            None => {
                let tag = reference.tag().unwrap_or("latest").to_string();
                self.manifest_by_tag(reference, &tag).await
            }
        }
    }

    async fn cached(
        &self,
        repo: &str,
        digest: &str,
        used: &str,
    ) -> Result<Option<Served>, RegistryError> {
        let (store, repo, digest, used) = (
            self.store.clone(),
            repo.to_string(),
            digest.to_string(),
            used.to_string(),
        );
        blocking(move || {
            let Some((bytes, media_type)) = store.manifest(&digest)? else {
                return Ok(None);
            };
            store.touch(&repo, &used, unix_now())?;
            Ok(Some(Served {
                bytes,
                media_type,
                digest,
            }))
        })
        .await
    }

    async fn manifest_by_digest(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Served, RegistryError> {
        let repo = reference.repository();
        if let Some(s) = self.cached(&repo, digest, digest).await? {
            return Ok(s);
        }
        let key = format!("manifest {repo}@{digest}");
        let slot = self.flights.slot(&key);
        let result = async {
            let _guard = slot.lock().await;
            if let Some(s) = self.cached(&repo, digest, digest).await? {
                return Ok(s);
            }
            let fetched = self.upstream.manifest(reference).await?;
            let actual = sha256_digest(&fetched.bytes);
            if actual != digest {
                return Err(RegistryError::DigestMismatch {
                    digest: digest.to_string(),
                    actual,
                });
            }
            self.store_manifest(&repo, None, fetched.bytes, fetched.media_type)
                .await
        }
        .await;
        self.flights.release(&key, slot);
        result
    }

    async fn store_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        bytes: Vec<u8>,
        media_type: String,
    ) -> Result<Served, RegistryError> {
        let (store, repo, tag) = (
            self.store.clone(),
            repo.to_string(),
            tag.map(str::to_string),
        );
        blocking(move || {
            let digest =
                store.put_manifest(&repo, tag.as_deref(), &bytes, &media_type, false, unix_now())?;
            tracing::info!(%repo, tag = tag.as_deref().unwrap_or(""), %digest, "registry: cached manifest from upstream");
            Ok(Served {
                bytes,
                media_type,
                digest,
            })
        })
        .await
    }

    async fn manifest_by_tag(
        &self,
        reference: &Reference,
        tag: &str,
    ) -> Result<Served, RegistryError> {
        let repo = reference.repository();
        let ttl = self.opts.tag_ttl.as_secs() as i64;
        let fresh = |row: &super::store::TagRow| row.pushed || unix_now() - row.checked_at < ttl;
        let lookup = {
            let (store, repo, tag) = (self.store.clone(), repo.clone(), tag.to_string());
            move || {
                let (store, repo, tag) = (store.clone(), repo.clone(), tag.clone());
                blocking(move || store.tag(&repo, &tag))
            }
        };
        if let Some(row) = lookup().await?.filter(|r| fresh(r)) {
            if let Some(s) = self.cached(&repo, &row.digest, tag).await? {
                return Ok(s);
            }
        }
        let key = format!("tag {repo}:{tag}");
        let slot = self.flights.slot(&key);
        let result = async {
            let _guard = slot.lock().await;
            let row = lookup().await?;
            if let Some(row) = row.as_ref().filter(|r| fresh(r)) {
                if let Some(s) = self.cached(&repo, &row.digest, tag).await? {
                    return Ok(s);
                }
            }
            match self.upstream.manifest(reference).await {
                Ok(fetched) => {
                    let actual = sha256_digest(&fetched.bytes);
                    if actual != fetched.digest {
                        return Err(RegistryError::DigestMismatch {
                            digest: fetched.digest,
                            actual,
                        });
                    }
                    if row.as_ref().is_some_and(|r| r.digest == actual) {
                        if let Some(s) = self.cached(&repo, &actual, tag).await? {
                            let (store, repo, tag) =
                                (self.store.clone(), repo.clone(), tag.to_string());
                            blocking(move || store.confirm_tag(&repo, &tag, unix_now())).await?;
                            return Ok(s);
                        }
                    }
                    self.store_manifest(&repo, Some(tag), fetched.bytes, fetched.media_type)
                        .await
                }
                Err(e) => {
                    let stale = match &row {
                        Some(r) => self.cached(&repo, &r.digest, tag).await?,
                        None => None,
                    };
                    match stale {
                        Some(s) => {
                            tracing::warn!(%repo, %tag, digest = %s.digest, error = %e, "registry: upstream did not answer; serving the cached tag (stale)");
                            Ok(s)
                        }
                        None => Err(e.into()),
                    }
                }
            }
        }
        .await;
        self.flights.release(&key, slot);
        result
    }

    /// The path of blob `digest`, fetching it from `repo`'s registry first if needed.
    pub async fn blob(&self, repo: &Reference, digest: &str) -> Result<PathBuf, RegistryError> {
        let path = self
            .store
            .blob_path(digest)
            .ok_or_else(|| RegistryError::BadDigest(digest.to_string()))?;
        if path.is_file() {
            return Ok(path);
        }
        let key = format!("blob {digest}");
        let slot = self.flights.slot(&key);
        let result = async {
            let _guard = slot.lock().await;
            if path.is_file() {
                return Ok(path.clone());
            }
            // The puller needs the size (it verifies it): a cached manifest's descriptor
            // gives it. Clients fetch the manifest (through here) before its blobs.
            let (store, d) = (self.store.clone(), digest.to_string());
            let Some(want) = blocking(move || store.descriptor_size(&d)).await? else {
                return Err(RegistryError::Upstream(UpstreamError::NotFound {
                    registry: repo.domain().to_string(),
                    what: format!(
                        "blob {digest}: not cached, and no cached manifest names it (fetch its manifest through this registry first)"
                    ),
                }));
            };
            let tmp = self.store.tmp_path("fetch");
            let started = std::time::Instant::now();
            let fetched = self.upstream.blob(repo, digest, want, &tmp).await;
            let size = match fetched {
                Ok(n) => n,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e.into());
                }
            };
            let (store, d, t) = (self.store.clone(), digest.to_string(), tmp.clone());
            let stored = blocking(move || store.put_blob_file(&t, &d, Some(size))).await;
            if stored.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            stored?;
            tracing::info!(repo = %repo.repository(), %digest, bytes = size, ms = started.elapsed().as_millis() as u64, "registry: cached blob from upstream");
            Ok(path.clone())
        }
        .await;
        self.flights.release(&key, slot);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BoxFut, Fetched, UpstreamError};
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An upstream with one manifest per tag and some blobs; counts fetches; can go down.
    #[derive(Default)]
    struct FakeUpstream {
        manifests: Mutex<HashMap<String, Vec<u8>>>,
        blobs: HashMap<String, Vec<u8>>,
        manifest_calls: AtomicUsize,
        blob_calls: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    impl Upstream for FakeUpstream {
        fn manifest<'a>(&'a self, r: &'a Reference) -> BoxFut<'a, Result<Fetched, UpstreamError>> {
            Box::pin(async move {
                self.manifest_calls.fetch_add(1, Ordering::SeqCst);
                if self.down.load(Ordering::SeqCst) {
                    return Err(UpstreamError::Unreachable {
                        registry: r.domain().into(),
                        reason: "down".into(),
                    });
                }
                let key = r.tag().or(r.digest()).unwrap_or("").to_string();
                let map = self.manifests.lock().unwrap();
                let bytes = map
                    .get(&key)
                    .or_else(|| map.values().find(|b| sha256_digest(b) == key))
                    .cloned()
                    .ok_or_else(|| UpstreamError::NotFound {
                        registry: r.domain().into(),
                        what: key.clone(),
                    })?;
                Ok(Fetched {
                    digest: sha256_digest(&bytes),
                    bytes,
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                })
            })
        }

        fn blob<'a>(
            &'a self,
            r: &'a Reference,
            digest: &'a str,
            _size: u64,
            dest: &'a Path,
        ) -> BoxFut<'a, Result<u64, UpstreamError>> {
            Box::pin(async move {
                self.blob_calls.fetch_add(1, Ordering::SeqCst);
                // Give concurrent callers time to pile up on the single flight.
                tokio::task::yield_now().await;
                let data = self
                    .blobs
                    .get(digest)
                    .ok_or_else(|| UpstreamError::NotFound {
                        registry: r.domain().into(),
                        what: digest.into(),
                    })?;
                std::fs::write(dest, data).map_err(|e| UpstreamError::Failed {
                    registry: r.domain().into(),
                    reason: e.to_string(),
                })?;
                Ok(data.len() as u64)
            })
        }
    }

    /// Caches a manifest naming `digest` (blob fetches need the size it gives).
    fn name_blob(reg: &Registry, repo: &str, digest: &str, size: usize) {
        let m = format!(r#"{{"layers":[{{"digest":"{digest}","size":{size}}}]}}"#);
        reg.store()
            .put_manifest(repo, Some("1"), m.as_bytes(), "m", false, 0)
            .unwrap();
    }

    #[tokio::test]
    async fn a_blob_no_cached_manifest_names_is_unknown() {
        let up = Arc::new(FakeUpstream::default());
        let (_dir, reg) = registry(up.clone(), 300);
        let repo = Reference::parse("x.io/app").unwrap();
        let err = reg.blob(&repo, &sha256_digest(b"x")).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::Upstream(UpstreamError::NotFound { .. })),
            "{err}"
        );
        assert_eq!(up.blob_calls.load(Ordering::SeqCst), 0);
    }

    fn registry(up: Arc<FakeUpstream>, ttl: u64) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlobStore::open(dir.path()).unwrap());
        let r = Registry::new(
            store,
            up,
            RegistryOptions {
                tag_ttl: Duration::from_secs(ttl),
            },
        );
        (dir, r)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_for_one_blob_fetch_it_once() {
        let data = vec![7u8; 100_000];
        let digest = sha256_digest(&data);
        let up = Arc::new(FakeUpstream {
            blobs: HashMap::from([(digest.clone(), data.clone())]),
            ..Default::default()
        });
        let (_dir, reg) = registry(up.clone(), 300);
        name_blob(&reg, "127.0.0.1:5000/app", &digest, data.len());
        let reg = Arc::new(reg);
        let repo = Reference::parse("127.0.0.1:5000/app").unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (reg, repo, digest) = (reg.clone(), repo.clone(), digest.clone());
                tokio::spawn(async move { reg.blob(&repo, &digest).await.unwrap() })
            })
            .collect();
        for t in tasks {
            let path = t.await.unwrap();
            assert_eq!(std::fs::read(path).unwrap(), data);
        }
        assert_eq!(up.blob_calls.load(Ordering::SeqCst), 1);
        assert_eq!(reg.flights.len(), 0, "flight entries are released");
    }

    #[tokio::test]
    async fn a_blob_that_upstream_corrupts_is_not_stored() {
        let data = b"good".to_vec();
        let digest = sha256_digest(&data);
        let up = Arc::new(FakeUpstream {
            blobs: HashMap::from([(digest.clone(), b"evil".to_vec())]),
            ..Default::default()
        });
        let (_dir, reg) = registry(up, 300);
        name_blob(&reg, "x.io/app", &digest, 4);
        let repo = Reference::parse("x.io/app").unwrap();
        let err = reg.blob(&repo, &digest).await.unwrap_err();
        assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
        assert!(!reg.store().has_blob(&digest));
        let tmp: Vec<_> = std::fs::read_dir(reg.store().root().join("tmp"))
            .unwrap()
            .collect();
        assert!(tmp.is_empty(), "nothing left in tmp/");
    }

    #[tokio::test]
    async fn tags_are_rechecked_after_the_ttl_and_served_stale_when_upstream_is_down() {
        let up = Arc::new(FakeUpstream::default());
        up.manifests
            .lock()
            .unwrap()
            .insert("1".into(), b"{\"v\":1}".to_vec());
        let (_dir, reg) = registry(up.clone(), 0);
        let r = Reference::parse("x.io/app:1").unwrap();
        let first = reg.manifest(&r).await.unwrap();
        assert_eq!(first.bytes, b"{\"v\":1}");
        // TTL 0: every request asks upstream, which moved the tag.
        up.manifests
            .lock()
            .unwrap()
            .insert("1".into(), b"{\"v\":2}".to_vec());
        let second = reg.manifest(&r).await.unwrap();
        assert_eq!(second.bytes, b"{\"v\":2}");
        assert_eq!(up.manifest_calls.load(Ordering::SeqCst), 2);
        // Down: the cached tag is served.
        up.down.store(true, Ordering::SeqCst);
        assert_eq!(reg.manifest(&r).await.unwrap().digest, second.digest);
        // A tag never cached cannot be served.
        let other = Reference::parse("x.io/app:2").unwrap();
        assert!(matches!(
            reg.manifest(&other).await.unwrap_err(),
            RegistryError::Upstream(UpstreamError::Unreachable { .. })
        ));
        // By digest: served from the cache without asking.
        let calls = up.manifest_calls.load(Ordering::SeqCst);
        let pinned = Reference::parse(&format!("x.io/app@{}", first.digest)).unwrap();
        assert_eq!(reg.manifest(&pinned).await.unwrap().bytes, b"{\"v\":1}");
        assert_eq!(up.manifest_calls.load(Ordering::SeqCst), calls);
    }

    #[tokio::test]
    async fn a_fresh_tag_is_served_without_asking_upstream() {
        let up = Arc::new(FakeUpstream::default());
        up.manifests
            .lock()
            .unwrap()
            .insert("1".into(), b"{}".to_vec());
        let (_dir, reg) = registry(up.clone(), 300);
        let r = Reference::parse("x.io/app:1").unwrap();
        reg.manifest(&r).await.unwrap();
        reg.manifest(&r).await.unwrap();
        assert_eq!(up.manifest_calls.load(Ordering::SeqCst), 1);
    }
}

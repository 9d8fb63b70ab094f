//! Registry pulls into the store: index → this node's manifest → config → layers, each blob
//! streamed to `tmp/` and checked (sha256, size) before the import path verifies diff ids and
//! unpacks; the reference is written last. A pull that breaks off or is killed leaves only
//! `tmp/` files, which the next `ImageStore::open` removes, so it simply starts again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use oci_spec::image::{ImageConfiguration, ImageManifest};

use super::archive::StagedFile;
use super::import::{config_diff_ids, platform_of, PendingImage, PendingLayer};
use super::store::RefEntry;
use super::{Image, ImageError, ImageStore, Reference};
use crate::oci::select::{self, Kind};
use crate::oci::{PullError, Puller};

/// Layers fetched at once: enough to hide per-request latency, few enough for a Pi's link.
const PARALLEL_BLOBS: usize = 3;

/// Bytes done and total of one pull, for progress bars and pod status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

impl Progress {
    pub fn percent(&self) -> u64 {
        (self.done * 100).checked_div(self.total).unwrap_or(0)
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// The digest the registry answered for the reference (an index's for multi-arch).
    pub digest: String,
    /// False when the store already had exactly this image: nothing was downloaded.
    pub downloaded: bool,
    /// Bytes fetched from the registry.
    pub bytes: u64,
}

impl ImageStore {
    /// Pulls `reference` for this store's platform. `progress` is called as bytes arrive.
    pub async fn pull(
        &self,
        puller: &Puller,
        reference: &Reference,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<Pulled, PullError> {
        let name = reference.to_string();
        let wanted = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_owned();
        let top = puller.manifest(&wanted).await?;
        // Same top-level digest as the stored reference: nothing to fetch (an `Always` pull of
        // an unchanged tag costs one manifest request).
        if let Some(entry) = self.ref_entry(&name)? {
            if entry.manifest == top.digest {
                if let Some(image) = self.resolve(&name)? {
                    return Ok(Pulled {
                        image,
                        digest: top.digest,
                        downloaded: false,
                        bytes: 0,
                    });
                }
            }
        }
        let host = self.host().clone();
        let (manifest_bytes, manifest_digest) = match select::classify(&name, "", &top.bytes)? {
            Kind::Image => (top.bytes.clone(), top.digest.clone()),
            Kind::Index(entries) => {
                let entry = select::choose(&name, &entries, &host)?;
                let m = puller.manifest(&entry.digest).await?;
                if !matches!(
                    select::classify(&name, &entry.media_type, &m.bytes)?,
                    Kind::Image
                ) {
                    return Err(malformed(&name, "an index entry points at another index").into());
                }
                (m.bytes, m.digest)
            }
        };
        let manifest = ImageManifest::from_reader(&manifest_bytes[..])
            .map_err(|e| malformed(&name, format!("manifest {manifest_digest}: {e}")))?;
        let config_desc = manifest.config();
        let config_digest = config_desc.digest().to_string();
        let config_bytes = puller
            .blob_bytes(&config_digest, config_desc.size())
            .await?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| malformed(&name, format!("config {config_digest}: {e}")))?;
        select::check_single(&name, &platform_of(&config), &host)?;
        let diff_ids = config_diff_ids(&config, &format!("config {config_digest}"))?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(malformed(
                &name,
                format!(
                    "manifest has {} layers, config {} diff ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            )
            .into());
        }

        let staging = self.tmp_path("pull");
        std::fs::create_dir_all(&staging).map_err(|e| ImageError::io(&staging, e))?;
        let result = self
            .fetch_and_commit(
                puller,
                &name,
                &staging,
                (&manifest, &manifest_bytes, &manifest_digest),
                (config, &config_bytes, &config_digest),
                diff_ids,
                progress,
            )
            .await;
        let _ = std::fs::remove_dir_all(&staging);
        let (image, bytes) = result?;
        // The reference remembers the digest it was pulled by, so the next `Always` pull of an
        // unchanged multi-arch tag is one request.
        self.set_ref(
            &name,
            RefEntry {
                id: image.id.clone(),
                manifest: top.digest.clone(),
            },
        )?;
        tracing::info!(image = %name, digest = %top.digest, bytes, "image pulled");
        Ok(Pulled {
            image,
            digest: top.digest,
            downloaded: true,
            bytes,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_and_commit(
        &self,
        puller: &Puller,
        name: &str,
        staging: &std::path::Path,
        (manifest, manifest_bytes, manifest_digest): (&ImageManifest, &[u8], &str),
        (config, config_bytes, config_digest): (ImageConfiguration, &[u8], &str),
        diff_ids: Vec<String>,
        progress: Arc<dyn Fn(Progress) + Send + Sync>,
    ) -> Result<(Image, u64), PullError> {
        let write = |file: &str, bytes: &[u8], digest: &str| -> Result<StagedFile, PullError> {
            let path = staging.join(file);
            std::fs::write(&path, bytes).map_err(|e| ImageError::io(&path, e))?;
            Ok(StagedFile {
                path,
                size: bytes.len() as u64,
                sha256: digest.trim_start_matches("sha256:").to_owned(),
            })
        };
        let config_file = write("config.json", config_bytes, config_digest)?;
        let manifest_file = write("manifest.json", manifest_bytes, manifest_digest)?;

        let layers = manifest.layers();
        let total: u64 = layers
            .iter()
            .filter(|d| !self.blob_path(hex_of(d.digest().as_ref())).exists())
            .map(|d| d.size())
            .sum();
        let done = Arc::new(AtomicU64::new(0));
        progress(Progress { done: 0, total });
        // Owned items: a closure taking borrowed descriptors makes the future's `Send`
        // unprovable to the compiler (rust-lang/rust#102211).
        let jobs: Vec<(String, u64, String)> = layers
            .iter()
            .zip(diff_ids)
            .map(|(d, diff_id)| (d.digest().to_string(), d.size(), diff_id))
            .collect();
        let fetched: Vec<(PendingLayer, u64)> = futures_util::stream::iter(jobs)
            .map(|(digest, size, diff_id)| {
                let done = done.clone();
                let progress = progress.clone();
                async move {
                    let hex = hex_of(&digest).to_owned();
                    let stored = self.blob_path(&hex);
                    let path = if stored.exists() {
                        stored
                    } else {
                        let dest = staging.join(&hex);
                        let before = AtomicU64::new(0);
                        let report = |n: u64| {
                            let delta = n - before.swap(n, Ordering::Relaxed);
                            let now = done.fetch_add(delta, Ordering::Relaxed) + delta;
                            progress(Progress { done: now, total });
                        };
                        puller.blob_to_file(&digest, size, &dest, &report).await?;
                        dest
                    };
                    let layer = PendingLayer {
                        name: digest,
                        file: StagedFile {
                            path,
                            size,
                            sha256: hex,
                        },
                        diff_id,
                    };
                    // Unpack now, while the other layers still download.
                    let store = self.clone();
                    let (layer, unpacked) = tokio::task::spawn_blocking(move || {
                        let r = store.prepare_layer(&layer);
                        (layer, r)
                    })
                    .await
                    .map_err(|e| malformed(name, format!("unpack task failed: {e}")))?;
                    Ok::<_, PullError>((layer, unpacked?))
                }
            })
            .buffered(PARALLEL_BLOBS)
            .try_collect()
            .await?;
        let (layers, sizes): (Vec<PendingLayer>, Vec<u64>) = fetched.into_iter().unzip();
        let pending = PendingImage {
            refs: vec![name.to_owned()],
            config_file,
            config,
            manifest: Some(manifest_file),
            layers,
        };
        let store = self.clone();
        let image = tokio::task::spawn_blocking(move || store.commit_prepared(pending, &sizes))
            .await
            .map_err(|e| malformed(name, format!("unpack task failed: {e}")))??;
        Ok((image, done.load(Ordering::Relaxed)))
    }
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn malformed(image: &str, reason: impl std::fmt::Display) -> ImageError {
    ImageError::malformed(format!("image {image}"), reason)
}

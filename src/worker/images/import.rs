//! `herd image import`: `docker save` archives and OCI image layout archives into the store.
//!
//! Everything is verified before the index changes: each blob's sha256 against the digest that
//! names it, each layer's uncompressed sha256 against the config's `rootfs.diff_ids`, and the
//! config's own sha256 against the image id the archive claims. Blobs and layers that pass are
//! put in place by rename; the references are written last, so a failed import leaves at most
//! unreferenced content for GC.

use std::io;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifestBuilder, MediaType};

use super::archive::{StagedArchive, StagedFile};
use super::digest::Compression;
use super::reference::{is_sha256_digest, Reference};
use super::store::{sync_dir, ImageRecord, ImageStore, LayerRecord};
use super::{Image, ImageConfig, ImageError, Platform};

/// One image found in an archive, verified except for its layer diff ids.
pub(crate) struct PendingImage {
    pub(crate) refs: Vec<String>,
    pub(crate) config_file: StagedFile,
    pub(crate) config: ImageConfiguration,
    /// The archive's own manifest (OCI); `None` for `docker save`, which has none.
    pub(crate) manifest: Option<StagedFile>,
    pub(crate) layers: Vec<PendingLayer>,
}

pub(crate) struct PendingLayer {
    /// How errors name the layer: its digest, or its path in a `docker save` archive.
    pub(crate) name: String,
    pub(crate) file: StagedFile,
    /// Lowercase hex diff id from the config.
    pub(crate) diff_id: String,
}

impl ImageStore {
    /// Imports every image of a `docker save` or OCI layout archive (plain or gzip tar).
    /// `tag` names the image instead of the archive's own tags (the archive must then hold
    /// exactly one image). Returns the imported images, each under its first reference.
    pub fn import_archive(&self, path: &Path, tag: Option<&str>) -> Result<Vec<Image>, ImageError> {
        let tag = tag.map(normalise_tag).transpose()?;
        let staged = StagedArchive::read(path, self.tmp_path("import"), self.limits())?;
        let mut pending = if staged.contains("manifest.json") {
            super::docker::docker_images(&staged)?
        } else if staged.contains("index.json") {
            self.oci_images(&staged)?
        } else {
            return Err(ImageError::BadArchive {
                archive: path.to_owned(),
                reason: "neither a docker save archive (no manifest.json) nor an OCI layout \
                         (no index.json)"
                    .to_owned(),
            });
        };
        if pending.is_empty() {
            return Err(ImageError::BadArchive {
                archive: path.to_owned(),
                reason: "holds no images".to_owned(),
            });
        }
        match tag {
            Some(tag) if pending.len() == 1 => pending[0].refs = vec![tag],
            Some(tag) => {
                return Err(ImageError::TagAmbiguous {
                    tag,
                    count: pending.len(),
                })
            }
            None if pending.iter().any(|p| p.refs.is_empty()) => return Err(ImageError::NoTag),
            None => {}
        }
        let mut images = Vec::new();
        for image in pending {
            images.push(self.commit_pending(image)?);
        }
        tracing::info!(archive = %path.display(), images = images.len(), "image archive imported");
        Ok(images)
    }

    pub(super) fn commit_pending(&self, image: PendingImage) -> Result<Image, ImageError> {
        let mut sizes = Vec::new();
        for layer in &image.layers {
            sizes.push(self.prepare_layer(layer)?);
        }
        self.commit_prepared(image, &sizes)
    }

    /// Puts a verified layer blob in place and unpacks it (checking its diff id). Returns
    /// the uncompressed size. Pulls call it per layer as soon as the blob is in, so unpacking
    /// overlaps the download of the next layers.
    pub(super) fn prepare_layer(&self, layer: &PendingLayer) -> Result<u64, ImageError> {
        let blob = self.put_blob_file(&layer.file.path, &layer.file.sha256)?;
        self.ensure_layer(&blob, layer)
    }

    /// Records an image whose layers `prepare_layer` has made ready (`sizes` in layer order).
    pub(super) fn commit_prepared(
        &self,
        image: PendingImage,
        sizes: &[u64],
    ) -> Result<Image, ImageError> {
        let mut layers = Vec::new();
        let mut size = 0;
        let mut manifest_layers = Vec::new();
        for (i, layer) in image.layers.iter().enumerate() {
            let blob = self.blob_path(&layer.file.sha256);
            size += sizes.get(i).copied().unwrap_or(0);
            layers.push(LayerRecord {
                diff_id: format!("sha256:{}", layer.diff_id),
                blob: format!("sha256:{}", layer.file.sha256),
            });
            manifest_layers.push((blob, layer.file.sha256.clone(), layer.file.size));
        }
        self.put_blob_file(&image.config_file.path, &image.config_file.sha256)?;
        let id = format!("sha256:{}", image.config_file.sha256);
        let manifest_hex = match &image.manifest {
            Some(m) => {
                self.put_blob_file(&m.path, &m.sha256)?;
                m.sha256.clone()
            }
            None => {
                let bytes = synthesise_manifest(&image.config_file, &manifest_layers)?;
                self.put_blob_bytes(&bytes)?
            }
        };
        let record = ImageRecord {
            id,
            manifest: format!("sha256:{manifest_hex}"),
            platform: platform_of(&image.config),
            config: image_config(&image.config),
            created: image.config.created().clone(),
            size,
            layers,
        };
        self.commit(&record, &image.refs)?;
        let reference = image
            .refs
            .first()
            .cloned()
            .unwrap_or_else(|| record.id.clone());
        Ok(self.image_from_record(record, reference))
    }

    /// Makes sure `layers/<diff-id>` exists, unpacking the blob if not; verifies the diff id
    /// either way. Returns the uncompressed size.
    fn ensure_layer(&self, blob: &Path, layer: &PendingLayer) -> Result<u64, ImageError> {
        let dest = self.layer_path(&layer.diff_id);
        let mismatch = |actual: String| ImageError::DiffIdMismatch {
            blob: layer.name.clone(),
            expected: format!("sha256:{}", layer.diff_id),
            actual,
        };
        if dest.is_dir() {
            // Already unpacked (by an earlier import, or a concurrent one that won the race);
            // this archive's copy must still be the content the config names.
            if layer.file.sha256 == layer.diff_id {
                return Ok(layer.file.size);
            }
            let got = super::unpack::diff_id_of(blob, &layer.name, self.limits())?;
            if got.diff_id != layer.diff_id {
                return Err(mismatch(got.diff_id));
            }
            return Ok(got.size);
        }
        let tmp = self.tmp_path("layer");
        std::fs::create_dir(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        let result = (|| {
            let got = super::unpack::unpack_layer(blob, &layer.name, &tmp, self.limits())?;
            if got.diff_id != layer.diff_id {
                return Err(mismatch(got.diff_id));
            }
            syncfs(&tmp)?;
            match std::fs::rename(&tmp, &dest) {
                Ok(()) => sync_dir(dest.parent().unwrap_or(&dest))?,
                // A concurrent import put the same layer in place first: same diff id, same
                // content; keep theirs.
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) =>
                {
                    let _ = std::fs::remove_dir_all(&tmp);
                }
                Err(e) => return Err(ImageError::io(&dest, e)),
            }
            Ok(got.size)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }
}

/// A `--tag` value, normalised; a digest cannot be a tag.
fn normalise_tag(tag: &str) -> Result<String, ImageError> {
    let r = Reference::parse(tag)?;
    if r.digest().is_some() {
        return Err(ImageError::malformed(
            format!("--tag {tag}"),
            "a tag cannot pin a digest",
        ));
    }
    Ok(r.to_string())
}

pub(super) fn digest_string(hex: &str) -> String {
    format!("sha256:{hex}")
}

/// The config's diff ids as lowercase hex, each checked to be `sha256:<64 hex>`.
pub(crate) fn config_diff_ids(
    config: &ImageConfiguration,
    what: &str,
) -> Result<Vec<String>, ImageError> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            if is_sha256_digest(d) {
                Ok(d.trim_start_matches("sha256:").to_owned())
            } else {
                Err(ImageError::malformed(
                    what.to_owned(),
                    format!("diff id {d:?} is not sha256:<64 hex>"),
                ))
            }
        })
        .collect()
}

/// An OCI manifest for a `docker save` image (which has none), so every stored image is
/// reachable as manifest → config + layers (what GC will walk). Deterministic: the same
/// archive always gives the same manifest digest.
pub(crate) fn synthesise_manifest(
    config: &StagedFile,
    layers: &[(std::path::PathBuf, String, u64)],
) -> Result<Vec<u8>, ImageError> {
    let descriptor = |media: MediaType, hex: &str, size: u64| -> Result<Descriptor, ImageError> {
        let digest = oci_spec::image::Digest::try_from(digest_string(hex))
            .map_err(|e| ImageError::malformed(format!("blob sha256:{hex}"), e))?;
        Ok(Descriptor::new(media, size, digest))
    };
    let mut layer_descs = Vec::new();
    for (path, hex, size) in layers {
        let media = match sniff_file(path)? {
            Compression::Gzip => MediaType::ImageLayerGzip,
            _ => MediaType::ImageLayer,
        };
        layer_descs.push(descriptor(media, hex, *size)?);
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config.sha256,
            config.size,
        )?)
        .layers(layer_descs)
        .build()
        .map_err(|e| ImageError::malformed("synthesised manifest", e))?;
    serde_json::to_vec(&manifest).map_err(|e| ImageError::malformed("synthesised manifest", e))
}

fn sniff_file(path: &Path) -> Result<Compression, ImageError> {
    use std::io::Read;
    let mut head = [0u8; 6];
    let mut f = std::fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let n = f.read(&mut head).map_err(|e| ImageError::io(path, e))?;
    Ok(Compression::sniff(&head[..n]))
}

pub(crate) fn platform_of(config: &ImageConfiguration) -> Platform {
    Platform {
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        variant: config.variant().clone().unwrap_or_default(),
    }
}

fn image_config(config: &ImageConfiguration) -> ImageConfig {
    let Some(c) = config.config() else {
        return ImageConfig::default();
    };
    ImageConfig {
        env: c.env().clone().unwrap_or_default(),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
    }
}

/// Flushes the filesystem holding `dir` (one `syncfs` instead of an fsync per unpacked file),
/// so a layer directory is durable before it is renamed into place.
fn syncfs(dir: &Path) -> Result<(), ImageError> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(dir).map_err(|e| ImageError::io(dir, e))?;
    // SAFETY: syncfs on an fd we own for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(ImageError::io(dir, io::Error::last_os_error()));
    }
    Ok(())
}

//! `herd image import`: `docker save` archives and OCI image layout archives into the store.
//!
//! Everything is verified before the index changes: each blob's sha256 against the digest that
//! names it, each layer's uncompressed sha256 against the config's `rootfs.diff_ids`, and the
//! config's own sha256 against the image id the archive claims. Blobs and layers that pass are
//! put in place by rename; the references are written last, so a failed import leaves at most
//! unreferenced content for GC.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType,
    ANNOTATION_REF_NAME,
};

use super::archive::{normalise_entry, StagedArchive, StagedFile};
use super::digest::Compression;
use super::platform::score;
use super::reference::{is_sha256_digest, is_sha256_hex, Reference};
use super::store::{sync_dir, ImageRecord, ImageStore, LayerRecord};
use super::{Image, ImageConfig, ImageError, Platform};

/// containerd's (and Docker 25+'s) annotation carrying the full image name in an OCI layout.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// How deep nested indexes may go before the archive is called malformed.
const MAX_INDEX_DEPTH: usize = 4;

/// One image found in an archive, verified except for its layer diff ids.
struct PendingImage {
    refs: Vec<String>,
    config_file: StagedFile,
    config: ImageConfiguration,
    /// The archive's own manifest (OCI); `None` for `docker save`, which has none.
    manifest: Option<StagedFile>,
    layers: Vec<PendingLayer>,
}

struct PendingLayer {
    /// How errors name the layer: its digest, or its path in a `docker save` archive.
    name: String,
    file: StagedFile,
    /// Lowercase hex diff id from the config.
    diff_id: String,
}

/// docker save's manifest.json, one element per image.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image of a `docker save` or OCI layout archive (plain or gzip tar).
    /// `tag` names the image instead of the archive's own tags (the archive must then hold
    /// exactly one image). Returns the imported images, each under its first reference.
    pub fn import_archive(&self, path: &Path, tag: Option<&str>) -> Result<Vec<Image>, ImageError> {
        let tag = tag.map(normalise_tag).transpose()?;
        let staged = StagedArchive::read(path, self.tmp_path("import"), self.limits())?;
        let mut pending = if staged.contains("manifest.json") {
            docker_images(&staged)?
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

    fn commit_pending(&self, image: PendingImage) -> Result<Image, ImageError> {
        let mut layers = Vec::new();
        let mut size = 0;
        let mut manifest_layers = Vec::new();
        for layer in &image.layers {
            let blob = self.put_blob_file(&layer.file.path, &layer.file.sha256)?;
            size += self.ensure_layer(&blob, layer)?;
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

    /// Images of an OCI layout: one per distinct reference in index.json; where several
    /// manifests share a reference (or an index is nested), the one for this platform.
    fn oci_images(&self, staged: &StagedArchive) -> Result<Vec<PendingImage>, ImageError> {
        if let Some(layout) = staged.metadata("oci-layout")? {
            let v: serde_json::Value = serde_json::from_slice(&layout)
                .map_err(|e| ImageError::malformed("oci-layout", e))?;
            if v.get("imageLayoutVersion")
                .and_then(|v| v.as_str())
                .is_none()
            {
                return Err(ImageError::malformed("oci-layout", "no imageLayoutVersion"));
            }
        }
        let bytes = staged
            .metadata("index.json")?
            .ok_or_else(|| ImageError::MissingEntry {
                entry: "index.json".into(),
            })?;
        let index = ImageIndex::from_reader(&bytes[..])
            .map_err(|e| ImageError::malformed("index.json", e))?;
        // Group the top-level descriptors by reference (None: no usable name).
        let mut groups: BTreeMap<Option<String>, Vec<Descriptor>> = BTreeMap::new();
        for desc in index.manifests() {
            groups
                .entry(ref_name(desc)?)
                .or_default()
                .push(desc.clone());
        }
        let mut out = Vec::new();
        for (name, descs) in groups {
            let mut candidates = Vec::new();
            for desc in &descs {
                self.expand(staged, desc, 0, &mut candidates)?;
            }
            let manifest = self.pick_platform(staged, candidates)?;
            let mut image = oci_image(staged, &manifest)?;
            image.refs = name.into_iter().collect();
            out.push(image);
        }
        Ok(out)
    }

    /// Flattens nested indexes into the image manifests they list.
    fn expand(
        &self,
        staged: &StagedArchive,
        desc: &Descriptor,
        depth: usize,
        out: &mut Vec<Descriptor>,
    ) -> Result<(), ImageError> {
        if !is_index(desc.media_type()) {
            out.push(desc.clone());
            return Ok(());
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(ImageError::malformed(
                format!("index {}", desc.digest()),
                "indexes nested too deeply",
            ));
        }
        let bytes = read_blob(staged, desc)?;
        let index = ImageIndex::from_reader(&bytes[..])
            .map_err(|e| ImageError::malformed(format!("index {}", desc.digest()), e))?;
        for child in index.manifests() {
            self.expand(staged, child, depth + 1, out)?;
        }
        Ok(())
    }

    fn pick_platform(
        &self,
        staged: &StagedArchive,
        candidates: Vec<Descriptor>,
    ) -> Result<Descriptor, ImageError> {
        if candidates.len() == 1 {
            return candidates
                .into_iter()
                .next()
                .ok_or_else(|| ImageError::malformed("index.json", "no manifests"));
        }
        let mut best: Option<(u32, Descriptor)> = None;
        let mut have = Vec::new();
        for desc in candidates {
            let platform = match desc.platform() {
                Some(p) => Platform {
                    os: p.os().to_string(),
                    architecture: p.architecture().to_string(),
                    variant: p.variant().clone().unwrap_or_default(),
                },
                // No platform on the descriptor: ask the image's config.
                None => platform_of(&manifest_config(staged, &desc)?.1),
            };
            have.push(platform.to_string());
            if let Some(s) = score(self.host(), &platform) {
                if best.as_ref().is_none_or(|(b, _)| s > *b) {
                    best = Some((s, desc));
                }
            }
        }
        best.map(|(_, d)| d).ok_or_else(|| ImageError::NoPlatform {
            want: self.host().to_string(),
            have: if have.is_empty() {
                "nothing".to_owned()
            } else {
                have.join(", ")
            },
        })
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

/// The reference a top-level index descriptor names: containerd's full-name annotation, else
/// `ref.name` when it is a full reference. A bare `ref.name` such as `latest` is only a tag
/// (the OCI spec allows that), which names no repository: the import then needs `--tag`.
fn ref_name(desc: &Descriptor) -> Result<Option<String>, ImageError> {
    let Some(annotations) = desc.annotations() else {
        return Ok(None);
    };
    if let Some(name) = annotations.get(ANNOTATION_IMAGE_NAME) {
        return Ok(Some(Reference::parse(name)?.to_string()));
    }
    match annotations.get(ANNOTATION_REF_NAME) {
        Some(name) if name.contains(['/', ':', '@']) => {
            Ok(Some(Reference::parse(name)?.to_string()))
        }
        _ => Ok(None),
    }
}

fn is_index(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(m) => m == "application/vnd.docker.distribution.manifest.list.v2+json",
        _ => false,
    }
}

/// The staged file of an OCI blob, checked against its descriptor's digest and size.
fn blob_file<'a>(
    staged: &'a StagedArchive,
    desc: &Descriptor,
) -> Result<&'a StagedFile, ImageError> {
    let digest = desc.digest().to_string();
    let hex = desc
        .as_digest_sha256()
        .filter(|h| is_sha256_hex(h))
        .ok_or_else(|| {
            ImageError::malformed(
                format!("descriptor {digest}"),
                "only sha256 digests are supported",
            )
        })?;
    let file = staged.file(&format!("blobs/sha256/{hex}"))?;
    if file.sha256 != hex {
        return Err(ImageError::DigestMismatch {
            blob: digest,
            expected: digest_string(hex),
            actual: file.sha256.clone(),
        });
    }
    if file.size != desc.size() {
        return Err(ImageError::SizeMismatch {
            blob: digest,
            expected: desc.size(),
            actual: file.size,
        });
    }
    Ok(file)
}

fn digest_string(hex: &str) -> String {
    format!("sha256:{hex}")
}

fn read_blob(staged: &StagedArchive, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
    let file = blob_file(staged, desc)?;
    staged.read_capped(file, &format!("blob {}", desc.digest()))
}

/// A manifest and its config, both verified.
fn manifest_config(
    staged: &StagedArchive,
    desc: &Descriptor,
) -> Result<(ImageManifest, ImageConfiguration, StagedFile), ImageError> {
    let bytes = read_blob(staged, desc)?;
    let manifest = ImageManifest::from_reader(&bytes[..])
        .map_err(|e| ImageError::malformed(format!("manifest {}", desc.digest()), e))?;
    let config_desc = manifest.config();
    let config_file = blob_file(staged, config_desc)?.clone();
    let config_bytes =
        staged.read_capped(&config_file, &format!("config {}", config_desc.digest()))?;
    let config = ImageConfiguration::from_reader(&config_bytes[..])
        .map_err(|e| ImageError::malformed(format!("config {}", config_desc.digest()), e))?;
    Ok((manifest, config, config_file))
}

fn oci_image(staged: &StagedArchive, desc: &Descriptor) -> Result<PendingImage, ImageError> {
    let (manifest, config, config_file) = manifest_config(staged, desc)?;
    let diff_ids = config_diff_ids(&config, &format!("config {}", manifest.config().digest()))?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::malformed(
            format!("manifest {}", desc.digest()),
            format!(
                "{} layers but the config lists {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
        layers.push(PendingLayer {
            name: layer.digest().to_string(),
            file: blob_file(staged, layer)?.clone(),
            diff_id,
        });
    }
    Ok(PendingImage {
        refs: Vec::new(),
        config_file,
        config,
        manifest: Some(blob_file(staged, desc)?.clone()),
        layers,
    })
}

/// The config's diff ids as lowercase hex, each checked to be `sha256:<64 hex>`.
fn config_diff_ids(config: &ImageConfiguration, what: &str) -> Result<Vec<String>, ImageError> {
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

/// The hex digest a `docker save` path claims for itself (`<hex>.json`, `blobs/sha256/<hex>`),
/// if any: such a name is a promise the content has to keep.
fn claimed_hex(path: &str) -> Option<String> {
    let norm = normalise_entry(path).ok()?;
    let last = norm.rsplit('/').next()?;
    let candidate = if let Some(rest) = norm.strip_prefix("blobs/sha256/") {
        rest
    } else {
        last.strip_suffix(".json").unwrap_or("")
    };
    is_sha256_hex(candidate).then(|| candidate.to_owned())
}

fn docker_images(staged: &StagedArchive) -> Result<Vec<PendingImage>, ImageError> {
    let bytes = staged
        .metadata("manifest.json")?
        .ok_or_else(|| ImageError::MissingEntry {
            entry: "manifest.json".into(),
        })?;
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&bytes).map_err(|e| ImageError::malformed("manifest.json", e))?;
    let mut out = Vec::new();
    for entry in entries {
        let config_file = staged.file(&entry.config)?.clone();
        if let Some(hex) = claimed_hex(&entry.config) {
            if hex != config_file.sha256 {
                return Err(ImageError::DigestMismatch {
                    blob: entry.config.clone(),
                    expected: digest_string(&hex),
                    actual: config_file.sha256.clone(),
                });
            }
        }
        let config_bytes = staged.read_capped(&config_file, &entry.config)?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| ImageError::malformed(format!("config {}", entry.config), e))?;
        let diff_ids = config_diff_ids(&config, &format!("config {}", entry.config))?;
        if diff_ids.len() != entry.layers.len() {
            return Err(ImageError::malformed(
                "manifest.json",
                format!(
                    "image {} has {} layers but its config lists {} diff ids",
                    entry.config,
                    entry.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let file = staged.file(path)?.clone();
            if let Some(hex) = claimed_hex(path).filter(|_| path.contains("blobs/")) {
                if hex != file.sha256 {
                    return Err(ImageError::DigestMismatch {
                        blob: path.clone(),
                        expected: digest_string(&hex),
                        actual: file.sha256.clone(),
                    });
                }
            }
            layers.push(PendingLayer {
                name: path.clone(),
                file,
                diff_id,
            });
        }
        let mut refs = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            refs.push(Reference::parse(&tag)?.to_string());
        }
        out.push(PendingImage {
            refs,
            config_file,
            config,
            manifest: None,
            layers,
        });
    }
    Ok(out)
}

/// An OCI manifest for a `docker save` image (which has none), so every stored image is
/// reachable as manifest → config + layers (what GC will walk). Deterministic: the same
/// archive always gives the same manifest digest.
fn synthesise_manifest(
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

fn platform_of(config: &ImageConfiguration) -> Platform {
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

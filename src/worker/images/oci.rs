//! OCI image layout archives: index.json (possibly nested indexes) → manifest → config and
//! layers, every blob checked against its descriptor's digest and size. Where several manifests
//! answer to one reference, the one for this machine's platform is taken.

use std::collections::BTreeMap;

use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, ANNOTATION_REF_NAME,
};

use super::archive::{StagedArchive, StagedFile};
use super::import::{config_diff_ids, digest_string, platform_of, PendingImage, PendingLayer};
use super::platform::score;
use super::reference::{is_sha256_hex, Reference};
use super::store::ImageStore;
use super::{ImageError, Platform};

/// containerd's (and Docker 25+'s) annotation carrying the full image name in an OCI layout.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// How deep nested indexes may go before the archive is called malformed.
const MAX_INDEX_DEPTH: usize = 4;

impl ImageStore {
    /// Images of an OCI layout: one per distinct reference in index.json; where several
    /// manifests share a reference (or an index is nested), the one for this platform.
    pub(super) fn oci_images(
        &self,
        staged: &StagedArchive,
    ) -> Result<Vec<PendingImage>, ImageError> {
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

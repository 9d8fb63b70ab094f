//! `docker save` archives: manifest.json lists each image's config and layer paths (legacy
//! `<id>/layer.tar` or Docker 25+'s `blobs/sha256/<hex>`), with its RepoTags. There are no
//! descriptors, so a name that embeds a digest is held to it, and the config's diff ids check
//! the layers later.

use oci_spec::image::ImageConfiguration;

use super::archive::{normalise_entry, StagedArchive};
use super::import::{config_diff_ids, digest_string, PendingImage, PendingLayer};
use super::reference::{is_sha256_hex, Reference};
use super::ImageError;

/// docker save's manifest.json, one element per image.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
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

pub(crate) fn docker_images(staged: &StagedArchive) -> Result<Vec<PendingImage>, ImageError> {
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

//! `herd image push`: a `docker save` or OCI layout archive (plain or gzip) uploaded to the
//! master becomes cached images, served under `/v2/` like pulled ones.
//!
//! The archive is read with the worker's archive reader (same limits, same path-safety
//! rules), then everything is verified before anything is stored: each blob's sha256 and size
//! against its descriptor, each layer's uncompressed sha256 against the config's diff ids.
//! Only then are the blobs renamed into the store and the tags written, in one index
//! transaction. A corrupt archive therefore leaves nothing behind but its staging directory,
//! which is removed on the way out.
//!
//! Unlike a worker import, an OCI archive keeps every platform: its index is stored as is,
//! so a multi-arch image pushed once serves an arm64 board and an armv7 one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use super::store::BlobStore;
use super::{unix_now, RegistryError};
use crate::worker::images::archive::{StagedArchive, StagedFile};
use crate::worker::images::{ImageError, Limits, Reference};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MAX_INDEX_DEPTH: usize = 4;

/// One image the push stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pushed {
    /// Normalised reference, e.g. `docker.io/library/app:1`.
    pub reference: String,
    pub digest: String,
    pub media_type: String,
}

fn archive_err(e: ImageError) -> RegistryError {
    RegistryError::Invalid {
        what: "archive".into(),
        reason: e.to_string(),
    }
}

fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Everything a push will store once verified.
#[derive(Default)]
struct Plan {
    /// Blob digest → staged file.
    blobs: BTreeMap<String, PathBuf>,
    /// Manifests and indexes: digest → (media type, bytes).
    manifests: BTreeMap<String, (String, Vec<u8>)>,
    /// (reference, top digest).
    tags: Vec<(Reference, String)>,
}

/// Stores the images of `archive`; `name` replaces the archive's own names (the archive must
/// then hold exactly one image).
pub fn push_archive(
    store: &BlobStore,
    archive: &Path,
    name: Option<&str>,
    limits: &Limits,
) -> Result<Vec<Pushed>, RegistryError> {
    let name = name
        .map(|n| {
            let r = Reference::parse(n).map_err(|e| invalid(format!("--name {n}"), e))?;
            if r.digest().is_some() {
                return Err(invalid(format!("--name {n}"), "a name cannot pin a digest"));
            }
            Ok(r)
        })
        .transpose()?;
    let staged =
        StagedArchive::read(archive, store.tmp_path("stage"), limits).map_err(archive_err)?;
    let mut plan = Plan::default();
    let images: Vec<(Vec<Reference>, String)> = if staged.contains("manifest.json") {
        docker_plan(&staged, limits, &mut plan)?
    } else if staged.contains("index.json") {
        oci_plan(&staged, limits, &mut plan)?
    } else {
        return Err(invalid(
            "archive",
            "neither a docker save archive (no manifest.json) nor an OCI layout (no index.json)",
        ));
    };
    if images.is_empty() {
        return Err(invalid("archive", "holds no images"));
    }
    match name {
        Some(n) if images.len() == 1 => plan.tags.push((n, images[0].1.clone())),
        Some(n) => {
            return Err(invalid(
                format!("--name {n}"),
                format!(
                    "the archive holds {} images; push them with their own names",
                    images.len()
                ),
            ))
        }
        None => {
            for (refs, digest) in &images {
                if refs.is_empty() {
                    return Err(invalid(
                        "archive",
                        format!("image {digest} has no name; pass --name"),
                    ));
                }
                for r in refs {
                    plan.tags.push((r.clone(), digest.clone()));
                }
            }
        }
    }
    // Verified: move blobs in (each a rename of a complete fsynced file), then the index.
    let _exclusive = store.exclusive();
    for (digest, file) in &plan.blobs {
        let dest = store
            .blob_path(digest)
            .ok_or_else(|| RegistryError::BadDigest(digest.clone()))?;
        if !dest.is_file() && !file.is_file() {
            // Two descriptors named the same staged file; the first rename took it.
            continue;
        }
        store.install(file, &dest)?;
    }
    let mut out = Vec::new();
    let mut manifest_rows = Vec::new();
    for (digest, (media, bytes)) in &plan.manifests {
        store.put_blob_bytes(bytes)?;
        manifest_rows.push((digest.clone(), media.clone(), bytes.len() as u64));
    }
    let mut tag_rows = Vec::new();
    for (r, digest) in &plan.tags {
        let media = plan
            .manifests
            .get(digest)
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        let tag = r.tag().unwrap_or("latest").to_string();
        tag_rows.push((r.repository(), tag, digest.clone()));
        out.push(Pushed {
            reference: r.to_string(),
            digest: digest.clone(),
            media_type: media,
        });
    }
    store.index_push(&manifest_rows, &tag_rows, unix_now())?;
    tracing::info!(archive = %archive.display(), images = out.len(), "registry: image archive pushed");
    Ok(out)
}

/// Checks a layer's uncompressed content against the diff id its config names.
fn check_diff_id(
    file: &StagedFile,
    name: &str,
    diff_hex: &str,
    limits: &Limits,
) -> Result<(), RegistryError> {
    if file.sha256 == diff_hex {
        return Ok(());
    }
    let got =
        crate::worker::images::unpack::diff_id_of(&file.path, name, limits).map_err(archive_err)?;
    if got.diff_id != diff_hex {
        return Err(invalid(
            format!("layer {name}"),
            format!(
                "uncompressed content has diff id sha256:{}, config says sha256:{diff_hex}",
                got.diff_id
            ),
        ));
    }
    Ok(())
}

fn docker_plan(
    staged: &StagedArchive,
    limits: &Limits,
    plan: &mut Plan,
) -> Result<Vec<(Vec<Reference>, String)>, RegistryError> {
    let pending = crate::worker::images::docker::docker_images(staged).map_err(archive_err)?;
    let mut out = Vec::new();
    for image in pending {
        let mut layers = Vec::new();
        for layer in &image.layers {
            check_diff_id(&layer.file, &layer.name, &layer.diff_id, limits)?;
            plan.blobs.insert(
                format!("sha256:{}", layer.file.sha256),
                layer.file.path.clone(),
            );
            layers.push((
                layer.file.path.clone(),
                layer.file.sha256.clone(),
                layer.file.size,
            ));
        }
        plan.blobs.insert(
            format!("sha256:{}", image.config_file.sha256),
            image.config_file.path.clone(),
        );
        let bytes = crate::worker::images::import::synthesise_manifest(&image.config_file, &layers)
            .map_err(archive_err)?;
        let digest = super::store::sha256_digest(&bytes);
        plan.manifests
            .insert(digest.clone(), (OCI_MANIFEST.to_string(), bytes));
        let refs = image
            .refs
            .iter()
            .map(|r| Reference::parse(r).map_err(|e| invalid("manifest.json", e)))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((refs, digest));
    }
    Ok(out)
}

/// The staged file of a descriptor's blob, checked against its digest and size.
fn blob_file<'a>(
    staged: &'a StagedArchive,
    desc: &Descriptor,
) -> Result<&'a StagedFile, RegistryError> {
    let digest = desc.digest().to_string();
    let hex = super::store::digest_hex(&digest).ok_or_else(|| {
        invalid(
            format!("descriptor {digest}"),
            "only sha256 digests are supported",
        )
    })?;
    let file = staged
        .file(&format!("blobs/sha256/{hex}"))
        .map_err(archive_err)?;
    if file.sha256 != hex {
        return Err(invalid(
            format!("blob {digest}"),
            format!("content has sha256:{}", file.sha256),
        ));
    }
    if file.size != desc.size() {
        return Err(invalid(
            format!("blob {digest}"),
            format!("{} bytes, descriptor says {}", file.size, desc.size()),
        ));
    }
    Ok(file)
}

fn is_index(media: &str) -> bool {
    media == OCI_INDEX || media == DOCKER_LIST
}

/// Verifies the image or index `desc` names, recursively, adding its blobs to the plan.
fn walk(
    staged: &StagedArchive,
    desc: &Descriptor,
    depth: usize,
    limits: &Limits,
    plan: &mut Plan,
) -> Result<(), RegistryError> {
    let digest = desc.digest().to_string();
    let file = blob_file(staged, desc)?;
    let bytes = staged
        .read_capped(file, &format!("manifest {digest}"))
        .map_err(archive_err)?;
    let media = desc.media_type().to_string();
    if is_index(&media) {
        if depth >= MAX_INDEX_DEPTH {
            return Err(invalid(
                format!("index {digest}"),
                "indexes nested too deeply",
            ));
        }
        let index = ImageIndex::from_reader(&bytes[..])
            .map_err(|e| invalid(format!("index {digest}"), e))?;
        for child in index.manifests() {
            walk(staged, child, depth + 1, limits, plan)?;
        }
    } else {
        let manifest = ImageManifest::from_reader(&bytes[..])
            .map_err(|e| invalid(format!("manifest {digest}"), e))?;
        let config_file = blob_file(staged, manifest.config())?;
        let config_bytes = staged
            .read_capped(
                config_file,
                &format!("config {}", manifest.config().digest()),
            )
            .map_err(archive_err)?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| invalid(format!("config {}", manifest.config().digest()), e))?;
        let diff_ids = crate::worker::images::import::config_diff_ids(&config, "config")
            .map_err(archive_err)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(invalid(
                format!("manifest {digest}"),
                format!(
                    "{} layers but the config lists {} diff ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        for (layer, diff) in manifest.layers().iter().zip(&diff_ids) {
            let lf = blob_file(staged, layer)?;
            check_diff_id(lf, layer.digest().as_ref(), diff, limits)?;
            plan.blobs
                .insert(layer.digest().to_string(), lf.path.clone());
        }
        plan.blobs.insert(
            manifest.config().digest().to_string(),
            config_file.path.clone(),
        );
    }
    plan.manifests.insert(digest, (media, bytes));
    Ok(())
}

/// The name a top-level descriptor carries: containerd's full-name annotation, else a
/// `ref.name` that is a full reference (a bare tag names no repository).
fn ref_name(desc: &Descriptor) -> Result<Option<Reference>, RegistryError> {
    let Some(a) = desc.annotations() else {
        return Ok(None);
    };
    let name = a.get("io.containerd.image.name").or_else(|| {
        a.get(oci_spec::image::ANNOTATION_REF_NAME)
            .filter(|n| n.contains(['/', ':']))
    });
    name.map(|n| Reference::parse(n).map_err(|e| invalid("index.json", e)))
        .transpose()
}

fn oci_plan(
    staged: &StagedArchive,
    limits: &Limits,
    plan: &mut Plan,
) -> Result<Vec<(Vec<Reference>, String)>, RegistryError> {
    let bytes = staged
        .metadata("index.json")
        .map_err(archive_err)?
        .ok_or_else(|| invalid("archive", "no index.json"))?;
    let index = ImageIndex::from_reader(&bytes[..]).map_err(|e| invalid("index.json", e))?;
    let mut out: Vec<(Vec<Reference>, String)> = Vec::new();
    for desc in index.manifests() {
        if !matches!(
            desc.media_type(),
            MediaType::ImageManifest | MediaType::ImageIndex
        ) && !is_index(desc.media_type().as_ref())
            && desc.media_type().to_string()
                != "application/vnd.docker.distribution.manifest.v2+json"
        {
            return Err(invalid(
                format!("index.json descriptor {}", desc.digest()),
                format!(
                    "media type {} is not a manifest or index",
                    desc.media_type()
                ),
            ));
        }
        walk(staged, desc, 0, limits, plan)?;
        let digest = desc.digest().to_string();
        let name = ref_name(desc)?;
        match out.iter_mut().find(|(_, d)| *d == digest) {
            Some((refs, _)) => refs.extend(name),
            None => out.push((name.into_iter().collect(), digest)),
        }
    }
    Ok(out)
}

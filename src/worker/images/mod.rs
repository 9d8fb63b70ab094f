//! Worker image store: content-addressed blobs under the data dir, `docker save` / OCI layout
//! archive import, layer unpack with whiteouts, overlayfs rootfs per container.
//!
//! Layout under the store root (the worker's `<data-dir>/images`):
//! - `blobs/sha256/<hex>`: every blob (manifests, configs, layer tars as imported), named by
//!   the sha256 of its bytes, so a blob is valid exactly when its name matches its content;
//! - `layers/<diffid-hex>/`: one unpacked layer per uncompressed diff id, overlay-ready
//!   (whiteouts as 0:0 char devices, opaque dirs as `trusted.overlay.opaque=y`);
//! - `images/<config-hex>.json`: what the store knows of one image (manifest, layers, size);
//! - `refs.json`: normalised reference → image id and manifest digest;
//! - `lock`: `flock`ed around every change of `images/` and `refs.json`;
//! - `tmp/`: staging for imports and layer unpacks, renamed into place when complete.
//!
//! `herd image import` runs as its own process next to a running worker, so every change is a
//! rename of something complete, and the index is changed only under the lock.

pub(crate) mod archive;
pub(crate) mod digest;
pub(crate) mod docker;
pub mod gc;
pub(crate) mod import;
#[cfg(test)]
mod import_tests;
mod mount;
mod oci;
mod platform;
pub mod pull;
pub mod reference;
mod store;
#[cfg(test)]
mod testutil;
pub(crate) mod unpack;

use std::path::PathBuf;

pub use mount::{is_mounted, unmount_rootfs};
pub use platform::{host_platform, score as platform_score};
pub use reference::{Reference, ReferenceError};
pub use store::{ImageStore, Limits};

/// The parts of an OCI image config a container needs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// OCI platform of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: String,
}

impl Platform {
    /// `os/arch[/variant]`, e.g. `linux/arm/v6`.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: String::new(),
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: variant.to_string(),
            }),
            _ => Err(format!(
                "platform {s:?}: want OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm/v7"
            )),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// A locally available image, ready to run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Image {
    /// `sha256:<hex>` of the image config blob (Docker's image id).
    pub id: String,
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    pub config: ImageConfig,
    pub platform: Platform,
    /// Unpacked layer directories, bottom layer first.
    pub layers: Vec<PathBuf>,
}

/// One row of `herd image ls`: an untagged image shows as reference `<none>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageSummary {
    pub reference: String,
    /// `sha256:<hex>` of the config blob.
    pub id: String,
    /// Uncompressed size of all layers, in bytes.
    pub size: u64,
    /// RFC 3339 creation time from the image config, if it has one.
    pub created: Option<String>,
}

/// Everything the image store can fail with. Messages name the archive entry, blob digest or
/// path involved, so an operator can tell which input was bad.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("archive {archive}: {reason}")]
    BadArchive { archive: PathBuf, reason: String },
    #[error("archive entry {entry}: path escapes the archive (absolute or `..`)")]
    UnsafePath { entry: String },
    #[error("archive entry {entry}: {reason}")]
    UnsafeLink { entry: String, reason: String },
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{what} has more than {limit} entries (the limit)")]
    TooManyEntries { what: String, limit: u64 },
    #[error("archive has no entry {entry}")]
    MissingEntry { entry: String },
    #[error("blob {blob}: content has sha256:{actual}, expected {expected}")]
    DigestMismatch {
        blob: String,
        expected: String,
        actual: String,
    },
    #[error("blob {blob}: size is {actual} bytes, descriptor says {expected}")]
    SizeMismatch {
        blob: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "layer {blob}: uncompressed content has diff id sha256:{actual}, config says {expected}"
    )]
    DiffIdMismatch {
        blob: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("layer {blob}: {compression} compression is not supported (gzip or plain tar only)")]
    UnsupportedCompression {
        blob: String,
        compression: &'static str,
    },
    #[error("no tag in archive; pass --tag")]
    NoTag,
    #[error("--tag {tag} given but the archive holds {count} images")]
    TagAmbiguous { tag: String, count: usize },
    #[error("no image for platform {want} in archive (it has: {have})")]
    NoPlatform { want: String, have: String },
    #[error("layer {layer}: entry {entry}: {reason}")]
    Unpack {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("image {reference} not found")]
    NotFound { reference: String },
    #[error("image id prefix {prefix} matches more than one image")]
    AmbiguousId { prefix: String },
    #[error("image {id}: missing layer {layer} (store damaged; re-import the image)")]
    MissingLayer { id: String, layer: PathBuf },
    #[error("overlay mount at {target}: {reason}")]
    Mount { target: PathBuf, reason: String },
}

impl ImageError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ImageError::Malformed {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

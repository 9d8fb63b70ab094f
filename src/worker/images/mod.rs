//! Worker image store: content-addressed blobs under the data dir, `docker save` / OCI layout
//! archive import, layer unpack with whiteouts, overlayfs rootfs per container.
//! (Owned by the images helper: interface fixed, implementation to come.)

use std::path::PathBuf;

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

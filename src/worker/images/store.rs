//! The on-disk store: layout, the reference index, lookups. Import lives in `import.rs`, the
//! overlay mount in `mount.rs`.
//!
//! Concurrency model: blobs and layer directories are immutable and appear by `rename(2)` of
//! something complete, so readers never need a lock and two writers of the same content both
//! succeed (the second rename finds the first's result). The small mutable index (`images/`,
//! `refs.json`) is only changed under an exclusive `flock` on `lock`, as a read-modify-write
//! ending in an atomic file replace.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::reference::{is_sha256_hex, Reference};
use super::{Image, ImageConfig, ImageError, ImageSummary, Platform};
use crate::util::fsutil;

/// Shortest image id prefix accepted, as Docker does (shorter ones collide too easily).
const MIN_ID_PREFIX: usize = 12;
const REFS_FILE: &str = "refs.json";
const LOCK_FILE: &str = "lock";
const INDEX_VERSION: u32 = 1;

/// Caps on what an import may consume; an archive past any of them is refused, not truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed bytes in the whole archive.
    pub max_archive_bytes: u64,
    /// Bytes in one archive entry (one blob).
    pub max_entry_bytes: u64,
    /// Entries in the archive.
    pub max_entries: u64,
    /// Bytes of a JSON document (manifest.json, index.json, manifests, configs).
    pub max_metadata_bytes: u64,
    /// Uncompressed bytes of one layer tar.
    pub max_layer_bytes: u64,
    /// Entries in one layer tar.
    pub max_layer_entries: u64,
}

impl Default for Limits {
    /// Generous for real images (a full Debian image is under 200 MB uncompressed), small
    /// enough that a hostile archive cannot fill an SD card's worth of space unnoticed.
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        Limits {
            max_archive_bytes: 32 * GIB,
            max_entry_bytes: 16 * GIB,
            max_entries: 100_000,
            max_metadata_bytes: 8 << 20,
            max_layer_bytes: 32 * GIB,
            max_layer_entries: 2_000_000,
        }
    }
}

/// What the store knows of one image, in `images/<config-hex>.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ImageRecord {
    /// `sha256:<hex>` of the config blob.
    pub(crate) id: String,
    /// `sha256:<hex>` of the manifest blob (the archive's, or one written for `docker save`).
    pub(crate) manifest: String,
    pub(crate) platform: Platform,
    pub(crate) config: ImageConfig,
    #[serde(default)]
    pub(crate) created: Option<String>,
    /// Uncompressed bytes of all layers.
    pub(crate) size: u64,
    /// Bottom layer first.
    pub(crate) layers: Vec<LayerRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LayerRecord {
    /// `sha256:<hex>` of the uncompressed tar; names the directory under `layers/`.
    pub(crate) diff_id: String,
    /// `sha256:<hex>` of the blob as stored.
    pub(crate) blob: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RefEntry {
    pub(crate) id: String,
    pub(crate) manifest: String,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct RefIndex {
    v: u32,
    refs: BTreeMap<String, RefEntry>,
}

/// The worker's image store under one root directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    limits: Limits,
    host: Platform,
}

/// An exclusive `flock` on the store's lock file, released on drop (close).
pub(crate) struct IndexLock {
    _file: File,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, and removes leftovers of imports whose
    /// process is gone.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let store = ImageStore {
            root: root.to_owned(),
            limits: Limits::default(),
            host: super::host_platform(),
        };
        for dir in [
            store.root.join("blobs/sha256"),
            store.root.join("layers"),
            store.root.join("images"),
            store.root.join("tmp"),
        ] {
            fs::create_dir_all(&dir).map_err(|e| ImageError::io(&dir, e))?;
        }
        store.clean_tmp();
        Ok(store)
    }

    /// Replaces the import limits (tests use small ones).
    pub fn with_limits(mut self, limits: Limits) -> ImageStore {
        self.limits = limits;
        self
    }

    /// Pretends to run on `platform` when choosing among an archive's manifests.
    pub fn with_platform(mut self, platform: Platform) -> ImageStore {
        self.host = platform;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn host(&self) -> &Platform {
        &self.host
    }

    pub(crate) fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    pub(crate) fn layer_path(&self, diff_hex: &str) -> PathBuf {
        self.root.join("layers").join(diff_hex)
    }

    fn record_path(&self, id_hex: &str) -> PathBuf {
        self.root.join("images").join(format!("{id_hex}.json"))
    }

    /// A fresh path under `tmp/`, named `<kind>-<pid>-<random>` so that `open` can tell
    /// leftovers of dead processes from work in progress.
    pub(crate) fn tmp_path(&self, kind: &str) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{kind}-{}-{}",
            std::process::id(),
            fsutil::random_hex(8)
        ))
    }

    fn clean_tmp(&self) {
        let dir = self.root.join("tmp");
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|pid| {
                // SAFETY: kill with signal 0 only checks whether the pid exists.
                let rc = unsafe { libc::kill(pid, 0) };
                rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
            });
            if !alive {
                let path = entry.path();
                let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
            }
        }
    }

    /// Takes the index lock (blocking until other importers are done with the index).
    pub(crate) fn lock(&self) -> Result<IndexLock, ImageError> {
        let path = self.root.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io(&path, e))?;
        loop {
            // SAFETY: flock on an fd we own; released when `file` is closed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(IndexLock { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(ImageError::io(&path, err));
            }
        }
    }

    fn read_refs(&self) -> Result<RefIndex, ImageError> {
        let path = self.root.join(REFS_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::malformed(path.display().to_string(), format!("bad index: {e}"))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RefIndex {
                v: INDEX_VERSION,
                refs: BTreeMap::new(),
            }),
            Err(e) => Err(ImageError::io(path, e)),
        }
    }

    fn write_refs(&self, index: &RefIndex, _lock: &IndexLock) -> Result<(), ImageError> {
        let path = self.root.join(REFS_FILE);
        let data =
            serde_json::to_vec_pretty(index).map_err(|e| ImageError::malformed("refs index", e))?;
        fsutil::write_atomic(&path, &data, 0o644).map_err(|e| ImageError::io(path, e))
    }

    pub(crate) fn read_record(&self, id: &str) -> Result<Option<ImageRecord>, ImageError> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        if !is_sha256_hex(hex) {
            return Ok(None);
        }
        let path = self.record_path(hex);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ImageError::malformed(path.display().to_string(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io(path, e)),
        }
    }

    /// Records an image and points `refs` at it, atomically with respect to other writers.
    pub(crate) fn commit(&self, record: &ImageRecord, refs: &[String]) -> Result<(), ImageError> {
        let lock = self.lock()?;
        let hex = record.id.trim_start_matches("sha256:");
        let path = self.record_path(hex);
        let data = serde_json::to_vec_pretty(record)
            .map_err(|e| ImageError::malformed("image record", e))?;
        fsutil::write_atomic(&path, &data, 0o644).map_err(|e| ImageError::io(&path, e))?;
        let mut index = self.read_refs()?;
        index.v = INDEX_VERSION;
        let mut replaced = Vec::new();
        for r in refs {
            let entry = RefEntry {
                id: record.id.clone(),
                manifest: record.manifest.clone(),
            };
            if let Some(old) = index.refs.insert(r.clone(), entry) {
                if old.id != record.id {
                    replaced.push(old.id);
                }
            }
        }
        self.write_refs(&index, &lock)?;
        // An image that just lost its last tag is dropped from the index (its blobs and layers
        // stay for GC), as `docker load` does when it moves a tag.
        for old in replaced {
            if !index.refs.values().any(|e| e.id == old) {
                self.drop_record(&old);
            }
        }
        Ok(())
    }

    /// The index entry of one normalised reference: which image and which manifest (for a
    /// pulled image, the digest the registry answered for the tag, an index's for multi-arch).
    pub(crate) fn ref_entry(&self, reference: &str) -> Result<Option<RefEntry>, ImageError> {
        Ok(self.read_refs()?.refs.get(reference).cloned())
    }

    /// Points `reference` at `entry`'s image, recording the manifest digest it was pulled by.
    pub(crate) fn set_ref(&self, reference: &str, entry: RefEntry) -> Result<(), ImageError> {
        let lock = self.lock()?;
        let mut index = self.read_refs()?;
        index.v = INDEX_VERSION;
        index.refs.insert(reference.to_owned(), entry);
        self.write_refs(&index, &lock)
    }

    fn drop_record(&self, id: &str) {
        let hex = id.trim_start_matches("sha256:");
        if is_sha256_hex(hex) {
            let _ = fs::remove_file(self.record_path(hex));
        }
    }

    pub(crate) fn all_records(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let entry = entry.map_err(|e| ImageError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue; // temp files of a write in progress
            };
            if let Some(record) = self.read_record(hex)? {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Image ids (full) starting with `prefix` (`sha256:` optional).
    fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>, ImageError> {
        let hex = prefix.strip_prefix("sha256:").unwrap_or(prefix);
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let entry = entry.map_err(|e| ImageError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id_hex) = name.strip_suffix(".json") {
                if is_sha256_hex(id_hex) && id_hex.starts_with(hex) {
                    out.push(format!("sha256:{id_hex}"));
                }
            }
        }
        Ok(out)
    }

    /// Whether `s` should be looked up as an image id: `sha256:<hex prefix>`, or a bare hex
    /// string of 12 to 64 characters.
    fn id_like(s: &str) -> Option<&str> {
        let (hex, explicit) = match s.strip_prefix("sha256:") {
            Some(h) => (h, true),
            None => (s, false),
        };
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        (is_hex && hex.len() <= 64 && (hex.len() >= MIN_ID_PREFIX || explicit && hex.len() == 64))
            .then_some(hex)
    }

    /// The one id `prefix` names; `Ok(None)` when none, an error when several.
    fn id_by_prefix(&self, prefix: &str) -> Result<Option<String>, ImageError> {
        let mut ids = self.ids_with_prefix(prefix)?;
        match ids.len() {
            0 => Ok(None),
            1 => Ok(ids.pop()),
            _ => Err(ImageError::AmbiguousId {
                prefix: prefix.to_owned(),
            }),
        }
    }

    /// Finds an image by reference (`busybox`, `ghcr.io/x/y:1`, `name@sha256:<manifest>`) or
    /// by id (`sha256:<hex>`, or a unique prefix of at least 12 hex digits).
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        // Full ids and explicit `sha256:` prefixes are ids; they are not valid names anyway.
        if reference.starts_with("sha256:") || is_sha256_hex(reference) {
            let Some(hex) = Self::id_like(reference) else {
                return Err(ImageError::malformed(
                    format!("image id {reference}"),
                    "want sha256: and at least 12 lowercase hex digits",
                ));
            };
            return match self.id_by_prefix(hex)? {
                Some(id) => self.image_for_id(&id, None),
                None => Ok(None),
            };
        }
        let parsed = Reference::parse(reference);
        if let Ok(r) = &parsed {
            let index = self.read_refs()?;
            let hit = match r.digest() {
                Some(digest) => index
                    .refs
                    .iter()
                    .find(|(name, e)| {
                        e.manifest == digest
                            && Reference::parse(name)
                                .is_ok_and(|n| n.repository() == r.repository())
                    })
                    .map(|(_, e)| e.clone()),
                None => index.refs.get(&r.to_string()).cloned(),
            };
            if let Some(entry) = hit {
                return self.image_for_id(&entry.id, Some(r.to_string()));
            }
        }
        // Like Docker, a short hex string that is no known name may be an id prefix.
        if let Some(hex) = Self::id_like(reference) {
            if let Some(id) = self.id_by_prefix(hex)? {
                return self.image_for_id(&id, None);
            }
        }
        parsed?;
        Ok(None)
    }

    fn image_for_id(
        &self,
        id: &str,
        reference: Option<String>,
    ) -> Result<Option<Image>, ImageError> {
        let Some(record) = self.read_record(id)? else {
            return Ok(None);
        };
        let reference = match reference {
            Some(r) => r,
            None => {
                let index = self.read_refs()?;
                index
                    .refs
                    .iter()
                    .find(|(_, e)| e.id == record.id)
                    .map(|(name, _)| name.clone())
                    .unwrap_or_else(|| record.id.clone())
            }
        };
        Ok(Some(self.image_from_record(record, reference)))
    }

    pub(crate) fn image_from_record(&self, record: ImageRecord, reference: String) -> Image {
        let layers = record
            .layers
            .iter()
            .map(|l| self.layer_path(l.diff_id.trim_start_matches("sha256:")))
            .collect();
        Image {
            id: record.id,
            reference,
            config: record.config,
            platform: record.platform,
            layers,
        }
    }

    /// One row per reference, plus `<none>` rows for images no reference points at.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let index = self.read_refs()?;
        let records: BTreeMap<String, ImageRecord> = self
            .all_records()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut out = Vec::new();
        for (name, entry) in &index.refs {
            if let Some(record) = records.get(&entry.id) {
                out.push(summary(name.clone(), record));
            }
        }
        for record in records.values() {
            if !index.refs.values().any(|e| e.id == record.id) {
                out.push(summary("<none>".to_owned(), record));
            }
        }
        Ok(out)
    }

    /// Untags `reference`; given an image id, untags every reference to that image. An image
    /// left without references leaves the index; blobs and layers stay until GC. Returns the
    /// references removed (an untagged image removed by id gives its id).
    pub fn remove(&self, reference: &str) -> Result<Vec<String>, ImageError> {
        let lock = self.lock()?;
        let mut index = self.read_refs()?;
        let mut removed = Vec::new();
        let mut ids = Vec::new();
        let by_name = Reference::parse(reference)
            .ok()
            .filter(|r| r.digest().is_none())
            .map(|r| r.to_string())
            .filter(|name| index.refs.contains_key(name));
        if let Some(name) = by_name {
            if let Some(entry) = index.refs.remove(&name) {
                ids.push(entry.id);
            }
            removed.push(name);
        } else if let Some(hex) = Self::id_like(reference) {
            if let Some(id) = self.id_by_prefix(hex)? {
                index.refs.retain(|name, e| {
                    let hit = e.id == id;
                    if hit {
                        removed.push(name.clone());
                    }
                    !hit
                });
                if removed.is_empty() {
                    removed.push(id.clone());
                }
                ids.push(id);
            }
        } else {
            Reference::parse(reference)?;
        }
        if removed.is_empty() {
            return Err(ImageError::NotFound {
                reference: reference.to_owned(),
            });
        }
        self.write_refs(&index, &lock)?;
        for id in ids {
            if !index.refs.values().any(|e| e.id == id) {
                self.drop_record(&id);
            }
        }
        Ok(removed)
    }

    /// Moves a staged, already verified file into `blobs/` under its digest (a no-op when the
    /// store has it: same name, same content).
    pub(crate) fn put_blob_file(&self, staged: &Path, hex: &str) -> Result<PathBuf, ImageError> {
        let dest = self.blob_path(hex);
        if dest.exists() {
            return Ok(dest);
        }
        match fs::rename(staged, &dest) {
            Ok(()) => {}
            // Another reference to the same staged file already moved it (two tags of one
            // image in an archive): the blob is in place.
            Err(e) if e.kind() == io::ErrorKind::NotFound && dest.exists() => {}
            Err(e) => return Err(ImageError::io(staged, e)),
        }
        sync_dir(dest.parent().unwrap_or(&self.root))?;
        Ok(dest)
    }

    /// Writes bytes as a blob (temp file, fsync, rename); returns the hex digest.
    pub(crate) fn put_blob_bytes(&self, data: &[u8]) -> Result<String, ImageError> {
        use std::io::Write;
        let hex = super::digest::sha256_hex(data);
        let dest = self.blob_path(&hex);
        if dest.exists() {
            return Ok(hex);
        }
        let tmp = self.tmp_path("blob");
        let mut f = File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| ImageError::io(&tmp, e))?;
        fs::rename(&tmp, &dest).map_err(|e| ImageError::io(&dest, e))?;
        sync_dir(dest.parent().unwrap_or(&self.root))?;
        Ok(hex)
    }
}

fn summary(reference: String, record: &ImageRecord) -> ImageSummary {
    ImageSummary {
        reference,
        id: record.id.clone(),
        size: record.size,
        created: record.created.clone(),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io(dir, e))
}

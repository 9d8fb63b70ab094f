//! Reading an untrusted image archive (`docker save` or OCI layout, plain or gzip tar) into a
//! staging directory inside the store.
//!
//! The archive is read once, front to back (`docker save` puts manifest.json last, so nothing
//! can be interpreted before the end). Every regular file is written to a flat, numbered
//! staging file while its sha256 is computed, so later verification costs nothing and blobs
//! move into `blobs/` by rename. Archive paths are only ever used as map keys, never joined to a
//! host path, so a hostile name cannot place a file anywhere. Links inside the archive (legacy
//! `docker save` links duplicate `layer.tar`s) are recorded as aliases and must resolve inside
//! the archive; metadata files must be regular files.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::digest::{CappedReader, HashingReader};
use super::store::Limits;
use super::ImageError;

/// Alias hops followed before giving up (a loop of links inside the archive).
const MAX_LINK_HOPS: usize = 16;

/// One regular file of the archive, staged on disk.
#[derive(Debug, Clone)]
pub(crate) struct StagedFile {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// Lowercase hex sha256 of the content.
    pub(crate) sha256: String,
}

/// The archive's files, staged; the staging directory is removed on drop.
#[derive(Debug)]
pub(crate) struct StagedArchive {
    archive: PathBuf,
    dir: PathBuf,
    files: HashMap<String, StagedFile>,
    /// Normalised entry name → normalised name it links to.
    links: HashMap<String, String>,
    max_metadata: u64,
    next_file: u64,
}

impl Drop for StagedArchive {
    fn drop(&mut self) {
        // Best effort: blobs already moved out by rename are gone from here; the rest is junk.
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl StagedArchive {
    /// Stages `archive` into the new directory `dir` (created here, removed on drop).
    pub(crate) fn read(
        archive: &Path,
        dir: PathBuf,
        limits: &Limits,
    ) -> Result<StagedArchive, ImageError> {
        fs::create_dir(&dir).map_err(|e| ImageError::io(&dir, e))?;
        let mut staged = StagedArchive {
            archive: archive.to_owned(),
            dir,
            files: HashMap::new(),
            links: HashMap::new(),
            max_metadata: limits.max_metadata_bytes,
            next_file: 0,
        };
        staged.fill(limits)?;
        Ok(staged)
    }

    fn bad(&self, reason: impl std::fmt::Display) -> ImageError {
        ImageError::BadArchive {
            archive: self.archive.clone(),
            reason: reason.to_string(),
        }
    }

    fn fill(&mut self, limits: &Limits) -> Result<(), ImageError> {
        let file = File::open(&self.archive).map_err(|e| ImageError::io(&self.archive, e))?;
        let name = self.archive.display().to_string();
        let stream = super::digest::decompressed(file, &name).map_err(|e| match e {
            ImageError::UnsupportedCompression { compression, .. } => {
                self.bad(format!("{compression} compression is not supported"))
            }
            other => other,
        })?;
        let capped = CappedReader::new(stream, limits.max_archive_bytes);
        let mut tar = tar::Archive::new(capped);
        let entries = tar.entries().map_err(|e| self.bad(e))?;
        let mut count: u64 = 0;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.read_error(e, limits))?;
            count += 1;
            if count > limits.max_entries {
                return Err(ImageError::TooManyEntries {
                    what: format!("archive {}", self.archive.display()),
                    limit: limits.max_entries,
                });
            }
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = normalise_entry(&raw_name)?;
            let kind = entry.header().entry_type();
            if name.is_empty() {
                continue; // the archive root itself
            }
            match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.header().size().map_err(|e| self.bad(e))?;
                    if size > limits.max_entry_bytes {
                        return Err(ImageError::TooLarge {
                            what: format!("archive entry {name}"),
                            limit: limits.max_entry_bytes,
                        });
                    }
                    let staged = self.stage_file(&mut entry, &name, limits)?;
                    self.links.remove(&name);
                    self.files.insert(name, staged);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let resolved = if kind == tar::EntryType::Symlink {
                        resolve_symlink(&name, &target)?
                    } else {
                        normalise_entry(&target).map_err(|_| ImageError::UnsafeLink {
                            entry: name.clone(),
                            reason: format!("hard link to {target:?} leaves the archive"),
                        })?
                    };
                    self.files.remove(&name);
                    self.links.insert(name, resolved);
                }
                // Directories carry nothing we need; devices, fifos and the like are never
                // referenced by image metadata, so they are simply not staged.
                _ => {}
            }
        }
        Ok(())
    }

    /// Turns a read error into "too large" when the cap tripped, else "truncated or corrupt".
    fn read_error(&self, e: io::Error, limits: &Limits) -> ImageError {
        if e.kind() == io::ErrorKind::FileTooLarge {
            ImageError::TooLarge {
                what: format!("archive {} (uncompressed)", self.archive.display()),
                limit: limits.max_archive_bytes,
            }
        } else {
            self.bad(format!("truncated or corrupt: {e}"))
        }
    }

    fn stage_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        limits: &Limits,
    ) -> Result<StagedFile, ImageError> {
        // Numbered, never derived from the entry name: a repeated name gets a fresh file.
        self.next_file += 1;
        let path = self.dir.join(self.next_file.to_string());
        let mut out = File::create(&path).map_err(|e| ImageError::io(&path, e))?;
        let mut hashing = HashingReader::new(entry, limits.max_entry_bytes);
        io::copy(&mut hashing, &mut out).map_err(|e| {
            if e.kind() == io::ErrorKind::FileTooLarge {
                ImageError::TooLarge {
                    what: format!("archive entry {name}"),
                    limit: limits.max_entry_bytes,
                }
            } else {
                self.bad(format!("entry {name}: truncated or corrupt: {e}"))
            }
        })?;
        let (sha256, size) = hashing
            .finish()
            .map_err(|e| self.bad(format!("entry {name}: {e}")))?;
        // Durable before anything renames it into blobs/.
        out.sync_all().map_err(|e| ImageError::io(&path, e))?;
        Ok(StagedFile { path, size, sha256 })
    }

    /// Whether the archive has a file (or link to one) called `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name) || self.links.contains_key(name)
    }

    /// The staged file behind a name from the archive's metadata, following in-archive links.
    pub(crate) fn file(&self, name: &str) -> Result<&StagedFile, ImageError> {
        let mut current = normalise_entry(name)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(f) = self.files.get(&current) {
                return Ok(f);
            }
            match self.links.get(&current) {
                Some(next) => current = next.clone(),
                None => {
                    return Err(ImageError::MissingEntry {
                        entry: name.to_owned(),
                    })
                }
            }
        }
        Err(ImageError::UnsafeLink {
            entry: name.to_owned(),
            reason: "too many levels of links".to_owned(),
        })
    }

    /// A metadata file (manifest.json, index.json, ...): must be a regular file, size-capped.
    pub(crate) fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
        if self.links.contains_key(name) {
            return Err(ImageError::UnsafeLink {
                entry: name.to_owned(),
                reason: "archive metadata must be a regular file, not a link".to_owned(),
            });
        }
        match self.files.get(name) {
            None => Ok(None),
            Some(f) => self.read_capped(f, name).map(Some),
        }
    }

    /// Reads a staged file into memory, refusing anything over the metadata cap.
    pub(crate) fn read_capped(&self, f: &StagedFile, what: &str) -> Result<Vec<u8>, ImageError> {
        if f.size > self.max_metadata {
            return Err(ImageError::TooLarge {
                what: what.to_owned(),
                limit: self.max_metadata,
            });
        }
        fs::read(&f.path).map_err(|e| ImageError::io(&f.path, e))
    }
}

/// Normalises an archive entry name to `a/b/c`: drops `.` parts and a trailing `/`; refuses
/// absolute names and any `..` part.
pub(crate) fn normalise_entry(name: &str) -> Result<String, ImageError> {
    let unsafe_path = || ImageError::UnsafePath {
        entry: name.to_owned(),
    };
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(unsafe_path)?),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(unsafe_path())
            }
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink's target relative to the link's directory, lexically, refusing targets
/// that are absolute or climb out of the archive.
fn resolve_symlink(link: &str, target: &str) -> Result<String, ImageError> {
    let escape = |why: &str| ImageError::UnsafeLink {
        entry: link.to_owned(),
        reason: format!("symlink to {target:?} {why}"),
    };
    if target.starts_with('/') {
        return Err(escape("is absolute"));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop(); // the link's own name
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(escape("leaves the archive"));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(escape("points at the archive root"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_normalised_and_escapes_refused() {
        assert_eq!(normalise_entry("./a/./b/").unwrap(), "a/b");
        assert_eq!(normalise_entry("manifest.json").unwrap(), "manifest.json");
        assert_eq!(normalise_entry("./").unwrap(), "");
        for bad in ["../x", "a/../../x", "/etc/passwd", "a/../b"] {
            assert!(
                matches!(normalise_entry(bad), Err(ImageError::UnsafePath { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn symlink_targets_resolve_inside_the_archive_only() {
        assert_eq!(
            resolve_symlink("b/layer.tar", "../a/layer.tar").unwrap(),
            "a/layer.tar"
        );
        assert_eq!(resolve_symlink("x", "y").unwrap(), "y");
        for (link, target) in [("b/layer.tar", "../../etc/shadow"), ("x", "/etc/passwd")] {
            let err = resolve_symlink(link, target).unwrap_err();
            assert!(matches!(err, ImageError::UnsafeLink { .. }), "{err}");
            assert!(err.to_string().contains(link));
        }
    }
}

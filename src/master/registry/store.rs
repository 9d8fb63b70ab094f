//! The master's image cache on disk: content-addressed blobs plus a small SQLite index of
//! which repository tags and digests point at which manifests.
//!
//! Layout under `<master data>/registry/`:
//! - `blobs/sha256/<hex>`: every blob (manifests and indexes too), named by the sha256 of its
//!   bytes; a blob appears only by `rename(2)` of a complete, fsynced, verified temp file;
//! - `tmp/`: staging (uploads, upstream fetches), emptied when the master starts;
//! - `index.db`: `manifests` (media type of each stored manifest), `tags` (repository:tag →
//!   manifest digest, whether it was pushed, when upstream was last asked) and `pins`
//!   (repository@digest pulled by digest). The index changes only after the blobs it names
//!   are in place, so a crash leaves at most unreferenced blobs, which GC removes.
//!
//! Why a database of its own and not tables in `state.db`: this is a cache, not cluster
//! state; it can be deleted at any time, is not part of `herd master backup`, and its writes
//! (one per pull of a new tag) stay out of the state store's change feed.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest as _, Sha256};

use super::RegistryError;
use crate::util::fsutil::random_hex;

/// A `last_used` stamp is rewritten only when it is older than this: a busy image costs one
/// small write an hour, not one per pull (SD cards wear out).
const TOUCH_GRANULARITY_SECS: i64 = 3600;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS manifests (
    digest TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    pushed INTEGER NOT NULL,
    checked_at INTEGER NOT NULL,
    last_used INTEGER NOT NULL,
    PRIMARY KEY (repo, tag)
);
CREATE TABLE IF NOT EXISTS sizes (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    last_used INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
";

/// A tag as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub digest: String,
    /// Pushed with `herd image push`: authoritative, never re-checked upstream.
    pub pushed: bool,
    /// Unix seconds when upstream last confirmed (or gave) this digest.
    pub checked_at: i64,
    pub last_used: i64,
}

/// One cached image as `herd image ls` shows it: a tag, or a digest pulled without one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRow {
    /// Repository with its registry, e.g. `docker.io/library/busybox`.
    pub repo: String,
    /// `None` for a manifest pulled by digest only.
    pub tag: Option<String>,
    pub digest: String,
    pub pushed: bool,
    pub last_used: i64,
}

/// The cache's blobs and index under one root.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
    db: Mutex<Connection>,
    /// Held by GC for a whole sweep and by a push while it installs and indexes, so a push
    /// never indexes a blob GC is deleting.
    exclusive: Mutex<()>,
}

/// Lowercase hex of a `sha256:<64 hex>` digest; `None` for anything else (no path is ever
/// built from an unchecked string).
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// sha256 digest and size of a file, read in one streaming pass.
pub fn file_digest(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut n_total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((
        format!("sha256:{}", hex::encode(hasher.finalize())),
        n_total,
    ))
}

/// (digest, size) of every descriptor a manifest or index names: its config, layers and
/// child manifests.
fn descriptors(bytes: &[u8]) -> Vec<(String, u64)> {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let one = |v: &serde_json::Value| {
        Some((
            v.get("digest")?.as_str()?.to_string(),
            v.get("size")?.as_u64()?,
        ))
    };
    let mut out: Vec<(String, u64)> = doc.get("config").and_then(one).into_iter().collect();
    for key in ["layers", "manifests"] {
        if let Some(list) = doc.get(key).and_then(|l| l.as_array()) {
            out.extend(list.iter().filter_map(one));
        }
    }
    out.retain(|(d, _)| digest_hex(d).is_some());
    out
}

fn record_sizes(tx: &rusqlite::Transaction<'_>, bytes: &[u8]) -> Result<(), RegistryError> {
    for (d, size) in descriptors(bytes) {
        tx.execute(
            "INSERT INTO sizes (digest, size) VALUES (?1, ?2) ON CONFLICT(digest) DO NOTHING",
            params![d, size as i64],
        )?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlobStore {
    /// Opens (creating) the cache at `root` and empties its `tmp/` (nothing survives a
    /// restart half-done: uploads and fetches start over).
    pub fn open(root: &Path) -> Result<BlobStore, RegistryError> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| RegistryError::Io { path: p, source }
        };
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
        let tmp = root.join("tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let db_path = root.join("index.db");
        let conn = Connection::open(&db_path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(BlobStore {
            root: root.to_path_buf(),
            db: Mutex::new(conn),
            exclusive: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable (every change is a
        // transaction that either committed or rolled back).
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Excludes GC (see the field).
    pub fn exclusive(&self) -> std::sync::MutexGuard<'_, ()> {
        self.exclusive.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the blob `digest` lives (whether or not it is there); `None` for a malformed digest.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        digest_hex(digest).map(|hex| self.root.join("blobs/sha256").join(hex))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_some_and(|p| p.is_file())
    }

    /// A fresh staging path under `tmp/`.
    pub fn tmp_path(&self, kind: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{kind}-{}", random_hex(8)))
    }

    /// Moves a complete file into `blobs/` after checking that its content is `digest` (and
    /// `size` bytes, when given). The file is fsynced before the rename and the directory
    /// after, so a blob that exists is whole.
    pub fn put_blob_file(
        &self,
        file: &Path,
        digest: &str,
        size: Option<u64>,
    ) -> Result<u64, RegistryError> {
        let dest = self
            .blob_path(digest)
            .ok_or_else(|| RegistryError::BadDigest(digest.to_string()))?;
        let io_err = |source| RegistryError::Io {
            path: file.to_path_buf(),
            source,
        };
        let (actual, n) = file_digest(file).map_err(io_err)?;
        if actual != digest {
            let _ = fs::remove_file(file);
            return Err(RegistryError::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        if let Some(want) = size.filter(|w| *w != n) {
            let _ = fs::remove_file(file);
            return Err(RegistryError::SizeMismatch {
                digest: digest.to_string(),
                expected: want,
                actual: n,
            });
        }
        File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(io_err)?;
        self.install(file, &dest)?;
        Ok(n)
    }

    /// Renames a verified staged file to `dest` (a no-op if the blob is already there).
    pub(super) fn install(&self, file: &Path, dest: &Path) -> Result<(), RegistryError> {
        if dest.is_file() {
            let _ = fs::remove_file(file);
            // Fresh again: the grace period protects a blob someone is about to index.
            let _ = File::options()
                .write(true)
                .open(dest)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(());
        }
        fs::rename(file, dest).map_err(|source| RegistryError::Io {
            path: dest.to_path_buf(),
            source,
        })?;
        sync_dir(dest.parent().unwrap_or(&self.root)).map_err(|source| RegistryError::Io {
            path: dest.to_path_buf(),
            source,
        })
    }

    /// Writes `data` as a blob (temp, fsync, rename) and returns its digest.
    pub fn put_blob_bytes(&self, data: &[u8]) -> Result<String, RegistryError> {
        let digest = sha256_digest(data);
        let Some(dest) = self.blob_path(&digest) else {
            return Err(RegistryError::BadDigest(digest));
        };
        if dest.is_file() {
            return Ok(digest);
        }
        let tmp = self.tmp_path("blob");
        let io_err = |source| RegistryError::Io {
            path: tmp.clone(),
            source,
        };
        let mut f = File::create(&tmp).map_err(io_err)?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(io_err)?;
        self.install(&tmp, &dest)?;
        Ok(digest)
    }

    /// Reads a stored manifest's bytes and media type.
    pub fn manifest(&self, digest: &str) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        let media: Option<String> = self
            .db()
            .query_row(
                "SELECT media_type FROM manifests WHERE digest = ?1",
                params![digest],
                |r| r.get(0),
            )
            .optional()?;
        let (Some(media), Some(path)) = (media, self.blob_path(digest)) else {
            return Ok(None);
        };
        match fs::read(&path) {
            Ok(bytes) => Ok(Some((bytes, media))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RegistryError::Io { path, source }),
        }
    }

    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<TagRow>, RegistryError> {
        Ok(self
            .db()
            .query_row(
                "SELECT digest, pushed, checked_at, last_used FROM tags WHERE repo = ?1 AND tag = ?2",
                params![repo, tag],
                |r| {
                    Ok(TagRow {
                        digest: r.get(0)?,
                        pushed: r.get::<_, i64>(1)? != 0,
                        checked_at: r.get(2)?,
                        last_used: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Stores a manifest (bytes as served or pushed) and points `repo:tag` (or, without a tag,
    /// a digest pin in `repo`) at it. The blob is written first, the index after, in one
    /// transaction. A pulled tag never replaces a pushed one.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        bytes: &[u8],
        media_type: &str,
        pushed: bool,
        now: i64,
    ) -> Result<String, RegistryError> {
        let digest = self.put_blob_bytes(bytes)?;
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute(
            "INSERT INTO manifests (digest, media_type, size) VALUES (?1, ?2, ?3)
             ON CONFLICT(digest) DO UPDATE SET media_type = excluded.media_type",
            params![digest, media_type, bytes.len() as i64],
        )?;
        record_sizes(&tx, bytes)?;
        match tag {
            Some(tag) => {
                tx.execute(
                    "INSERT INTO tags (repo, tag, digest, pushed, checked_at, last_used)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     ON CONFLICT(repo, tag) DO UPDATE SET digest = excluded.digest,
                       pushed = excluded.pushed, checked_at = excluded.checked_at
                     WHERE excluded.pushed = 1 OR tags.pushed = 0",
                    params![repo, tag, digest, pushed as i64, now],
                )?;
            }
            None => {
                tx.execute(
                    "INSERT INTO pins (repo, digest, last_used) VALUES (?1, ?2, ?3)
                     ON CONFLICT(repo, digest) DO NOTHING",
                    params![repo, digest, now],
                )?;
            }
        }
        tx.commit()?;
        Ok(digest)
    }

    /// Indexes a verified push in one transaction: its manifests (already stored as blobs)
    /// and its tags, which become pushed tags (authoritative, never re-checked upstream).
    pub fn index_push(
        &self,
        manifests: &[(String, String, u64)],
        tags: &[(String, String, String)],
        now: i64,
    ) -> Result<(), RegistryError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for (digest, media, size) in manifests {
            tx.execute(
                "INSERT INTO manifests (digest, media_type, size) VALUES (?1, ?2, ?3)
                 ON CONFLICT(digest) DO UPDATE SET media_type = excluded.media_type",
                params![digest, media, *size as i64],
            )?;
        }
        for (repo, tag, digest) in tags {
            tx.execute(
                "INSERT INTO tags (repo, tag, digest, pushed, checked_at, last_used)
                 VALUES (?1, ?2, ?3, 1, ?4, ?4)
                 ON CONFLICT(repo, tag) DO UPDATE SET digest = excluded.digest, pushed = 1,
                   checked_at = excluded.checked_at, last_used = excluded.last_used",
                params![repo, tag, digest, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The size a cached manifest's descriptor gives for `digest`.
    pub fn descriptor_size(&self, digest: &str) -> Result<Option<u64>, RegistryError> {
        Ok(self
            .db()
            .query_row(
                "SELECT size FROM sizes WHERE digest = ?1",
                params![digest],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|n| n as u64))
    }

    /// Records that upstream confirmed `repo:tag` still points where it did.
    pub fn confirm_tag(&self, repo: &str, tag: &str, now: i64) -> Result<(), RegistryError> {
        self.db().execute(
            "UPDATE tags SET checked_at = ?3 WHERE repo = ?1 AND tag = ?2",
            params![repo, tag, now],
        )?;
        Ok(())
    }

    /// Notes a pull of `repo:tag` or `repo@digest`, at most once per granularity period.
    pub fn touch(&self, repo: &str, reference: &str, now: i64) -> Result<(), RegistryError> {
        let stale = now - TOUCH_GRANULARITY_SECS;
        let db = self.db();
        if digest_hex(reference).is_some() {
            db.execute(
                "UPDATE pins SET last_used = ?3 WHERE repo = ?1 AND digest = ?2 AND last_used < ?4",
                params![repo, reference, now, stale],
            )?;
            db.execute(
                "UPDATE tags SET last_used = ?3 WHERE repo = ?1 AND digest = ?2 AND last_used < ?4",
                params![repo, reference, now, stale],
            )?;
        } else {
            db.execute(
                "UPDATE tags SET last_used = ?3 WHERE repo = ?1 AND tag = ?2 AND last_used < ?4",
                params![repo, reference, now, stale],
            )?;
        }
        Ok(())
    }

    /// The tags cached for `repo`, sorted.
    pub fn tags_of(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT tag FROM tags WHERE repo = ?1 ORDER BY tag")?;
        let rows = stmt.query_map(params![repo], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every tag and digest pin, by repository.
    pub fn images(&self) -> Result<Vec<ImageRow>, RegistryError> {
        let db = self.db();
        let mut out = Vec::new();
        let mut stmt =
            db.prepare("SELECT repo, tag, digest, pushed, last_used FROM tags ORDER BY repo, tag")?;
        let rows = stmt.query_map([], |r| {
            Ok(ImageRow {
                repo: r.get(0)?,
                tag: Some(r.get(1)?),
                digest: r.get(2)?,
                pushed: r.get::<_, i64>(3)? != 0,
                last_used: r.get(4)?,
            })
        })?;
        for row in rows {
            out.push(row?);
        }
        let mut stmt = db.prepare(
            "SELECT repo, digest, last_used FROM pins
             WHERE NOT EXISTS (SELECT 1 FROM tags WHERE tags.repo = pins.repo AND tags.digest = pins.digest)
             ORDER BY repo, digest",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ImageRow {
                repo: r.get(0)?,
                tag: None,
                digest: r.get(1)?,
                pushed: false,
                last_used: r.get(2)?,
            })
        })?;
        for row in rows {
            out.push(row?);
        }
        Ok(out)
    }

    /// Removes a tag or pin from the index (its blobs stay until GC).
    pub fn remove_image(&self, row: &ImageRow) -> Result<(), RegistryError> {
        let db = self.db();
        match &row.tag {
            Some(tag) => db.execute(
                "DELETE FROM tags WHERE repo = ?1 AND tag = ?2 AND digest = ?3",
                params![row.repo, tag, row.digest],
            )?,
            None => db.execute(
                "DELETE FROM pins WHERE repo = ?1 AND digest = ?2",
                params![row.repo, row.digest],
            )?,
        };
        Ok(())
    }

    /// Every blob on disk: (digest, size, modification time in unix seconds).
    pub fn blobs(&self) -> Result<Vec<(String, u64, i64)>, RegistryError> {
        let dir = self.root.join("blobs/sha256");
        let io_err = |source| RegistryError::Io {
            path: dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if digest_hex(&digest).is_none() {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs() as i64);
            out.push((digest, meta.len(), mtime));
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a blob and its manifest row, if it is one.
    pub fn remove_blob(&self, digest: &str) -> Result<(), RegistryError> {
        {
            let db = self.db();
            db.execute("DELETE FROM manifests WHERE digest = ?1", params![digest])?;
            db.execute("DELETE FROM sizes WHERE digest = ?1", params![digest])?;
        }
        if let Some(path) = self.blob_path(digest) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(RegistryError::Io { path, source }),
            }
        }
        Ok(())
    }

    /// Size of a stored blob, if present.
    pub fn blob_size(&self, digest: &str) -> Option<u64> {
        self.blob_path(digest)
            .and_then(|p| fs::metadata(p).ok())
            .map(|m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_whose_content_differs_from_its_digest_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let tmp = s.tmp_path("t");
        std::fs::write(&tmp, b"hello").unwrap();
        let wrong = sha256_digest(b"other");
        let err = s.put_blob_file(&tmp, &wrong, None).unwrap_err();
        assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
        assert!(!tmp.exists());
        assert!(!s.has_blob(&wrong));
        std::fs::write(&tmp, b"hello").unwrap();
        let right = sha256_digest(b"hello");
        assert!(matches!(
            s.put_blob_file(&tmp, &right, Some(4)),
            Err(RegistryError::SizeMismatch { .. })
        ));
        std::fs::write(&tmp, b"hello").unwrap();
        assert_eq!(s.put_blob_file(&tmp, &right, Some(5)).unwrap(), 5);
        assert!(s.has_blob(&right));
    }

    #[test]
    fn a_pulled_tag_never_replaces_a_pushed_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let pushed = s
            .put_manifest(
                "docker.io/library/app",
                Some("1"),
                b"{\"a\":1}",
                "m",
                true,
                10,
            )
            .unwrap();
        s.put_manifest(
            "docker.io/library/app",
            Some("1"),
            b"{\"a\":2}",
            "m",
            false,
            20,
        )
        .unwrap();
        let row = s.tag("docker.io/library/app", "1").unwrap().unwrap();
        assert_eq!(row.digest, pushed);
        assert!(row.pushed);
        let (bytes, media) = s.manifest(&pushed).unwrap().unwrap();
        assert_eq!((bytes.as_slice(), media.as_str()), (&b"{\"a\":1}"[..], "m"));
    }

    #[test]
    fn last_used_is_written_at_most_once_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        s.put_manifest("r", Some("t"), b"{}", "m", false, 1000)
            .unwrap();
        s.touch("r", "t", 1000 + 60).unwrap();
        assert_eq!(s.tag("r", "t").unwrap().unwrap().last_used, 1000);
        s.touch("r", "t", 1000 + 7200).unwrap();
        assert_eq!(s.tag("r", "t").unwrap().unwrap().last_used, 8200);
    }

    #[test]
    fn malformed_digests_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        for bad in ["sha256:../../etc/passwd", "sha256:ABC", "md5:00", ""] {
            assert!(s.blob_path(bad).is_none(), "{bad}");
        }
    }
}

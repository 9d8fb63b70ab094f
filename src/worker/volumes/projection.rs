//! ConfigMap and Secret volumes: which files a volume holds (pure), and writing them the
//! kubelet's way so a running container never sees a half-updated set:
//!
//! ```text
//! <volume>/..2026_11_24_05_40_01.123456789/app.ini   the files of one version
//! <volume>/..data -> ..2026_11_24_05_40_01.123456789 swapped by rename(2), atomically
//! <volume>/app.ini -> ..data/app.ini                 one symlink per top-level entry
//! ```
//!
//! An update writes a new timestamped dir, points `..data_tmp` at it, renames that over
//! `..data`, fixes the top-level symlinks, then removes the old dir. Readers that open
//! `app.ini` resolve through `..data` and see either the old or the new version, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::api::volume::KeyToPath;

/// Kubernetes' default mode of projected files.
pub const DEFAULT_MODE: u32 = 0o644;
const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative path inside the volume (validated: no `..`, not absolute).
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// Pure: the files for `data` (key → bytes) under `items` (all keys when empty) and modes.
/// A key named by `items` but absent is an error unless the source is optional, as in
/// Kubernetes.
pub fn plan(
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: &[KeyToPath],
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Vec<File>, String> {
    let mode = default_mode.map_or(DEFAULT_MODE, |m| (m & 0o777) as u32);
    if items.is_empty() {
        return Ok(data
            .iter()
            .map(|(k, v)| File {
                path: k.clone(),
                bytes: v.clone(),
                mode,
            })
            .collect());
    }
    let mut out = Vec::new();
    for it in items {
        match data.get(&it.key) {
            Some(v) => out.push(File {
                path: it.path.clone(),
                bytes: v.clone(),
                mode: it.mode.map_or(mode, |m| (m & 0o777) as u32),
            }),
            None if optional => {}
            None => return Err(format!("{what}: key {:?} not found", it.key)),
        }
    }
    Ok(out)
}

/// Pure: Kubernetes' `fsGroup` rule for read-only volumes: every file also readable by the
/// group (`| 0440`); `write` makes the group `fs_group`.
pub fn with_fs_group(mut files: Vec<File>, fs_group: Option<u32>) -> Vec<File> {
    if fs_group.is_some() {
        for f in &mut files {
            f.mode |= 0o440;
        }
    }
    files
}

/// Pure: the top-level names the volume exposes (first path component of every file).
pub fn top_level(files: &[File]) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|f| f.path.split('/').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `dir` already holds exactly `files` through `..data` (so nothing is rewritten, e.g.
/// after an agent restart or an unrelated payload change).
pub fn is_current(dir: &Path, files: &[File]) -> bool {
    let data = dir.join(DATA);
    let Ok(target) = std::fs::read_link(&data) else {
        return false;
    };
    let version = dir.join(target);
    let mut seen = 0usize;
    for f in files {
        let p = version.join(&f.path);
        match (std::fs::read(&p), std::fs::metadata(&p)) {
            (Ok(b), Ok(m)) if b == f.bytes && m.permissions().mode() & 0o777 == f.mode => seen += 1,
            _ => return false,
        }
    }
    count_files(&version) == seen
        && top_level(files)
            .iter()
            .all(|t| std::fs::symlink_metadata(dir.join(t)).is_ok())
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Whether a projection was ever written into `dir`.
pub fn exists(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(DATA)).is_ok()
}

/// Writes `files` into `dir` atomically (see the module doc). Idempotent: returns `false`
/// without writing when `dir` already holds them.
pub fn write(
    dir: &Path,
    files: &[File],
    stamp: &str,
    fs_group: Option<u32>,
) -> std::io::Result<bool> {
    if is_current(dir, files) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let version_name = format!("..{stamp}");
    let version = dir.join(&version_name);
    if version.exists() {
        std::fs::remove_dir_all(&version)?;
    }
    std::fs::create_dir(&version)?;
    std::fs::set_permissions(&version, std::fs::Permissions::from_mode(0o755))?;
    for f in files {
        let p = version.join(&f.path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(f.mode)
            .open(&p)?;
        out.write_all(&f.bytes)?;
        if let Some(g) = fs_group {
            std::os::unix::fs::chown(&p, None, Some(g))?;
        }
        // The umask may have narrowed the mode (and chown may have cleared bits).
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))?;
    }
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&version_name, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    let wanted = top_level(files);
    for t in &wanted {
        let link = dir.join(t);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(t), &link)?;
        }
    }
    // Top-level entries of keys that went away.
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !wanted.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old {
        if old != Path::new(&version_name) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn every_key_becomes_a_file_with_the_default_mode() {
        let files = plan(
            "configmap \"app\"",
            &data(&[("a", "1"), ("b", "2")]),
            &[],
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            files,
            [
                File {
                    path: "a".into(),
                    bytes: b"1".to_vec(),
                    mode: 0o644
                },
                File {
                    path: "b".into(),
                    bytes: b"2".to_vec(),
                    mode: 0o644
                },
            ]
        );
    }

    #[test]
    fn items_select_rename_and_set_modes_and_a_missing_key_is_an_error_unless_optional() {
        let items = [
            KeyToPath {
                key: "a".into(),
                path: "conf/a.ini".into(),
                mode: Some(0o600),
            },
            KeyToPath {
                key: "z".into(),
                path: "z".into(),
                mode: None,
            },
        ];
        let e = plan(
            "secret \"db\"",
            &data(&[("a", "1"), ("b", "2")]),
            &items,
            Some(0o400),
            false,
        )
        .unwrap_err();
        assert_eq!(e, "secret \"db\": key \"z\" not found");
        let files = plan(
            "secret \"db\"",
            &data(&[("a", "1")]),
            &items,
            Some(0o400),
            true,
        )
        .unwrap();
        assert_eq!(
            files,
            [File {
                path: "conf/a.ini".into(),
                bytes: b"1".to_vec(),
                mode: 0o600
            }]
        );
        assert_eq!(top_level(&files), BTreeSet::from(["conf".to_string()]));
    }

    #[test]
    fn an_update_swaps_the_data_link_and_drops_removed_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("vol");
        let v1 = plan("cm", &data(&[("a", "1"), ("b", "2")]), &[], None, false).unwrap();
        assert!(write(&dir, &v1, "t1", None).unwrap());
        assert!(
            !write(&dir, &v1, "t1b", None).unwrap(),
            "unchanged content is not rewritten"
        );
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let v2 = plan("cm", &data(&[("a", "one")]), &[], Some(0o400), false).unwrap();
        let v2 = with_fs_group(v2, Some(4321));
        assert!(write(&dir, &v2, "t2", Some(4321)).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "one");
        let meta = std::fs::metadata(dir.join("a")).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o440,
            "fsGroup adds group read"
        );
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 4321);
        assert!(std::fs::symlink_metadata(dir.join("b")).is_err());
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["..data", "..t2", "a"]);
    }
}

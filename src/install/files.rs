//! Idempotent file operations under an install prefix: each reports whether it changed
//! anything, so a second `herd install` can say "no changes", and every replacement is atomic
//! (a power cut leaves the old file or the new one, never half of each).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::InstallError;

/// Where everything goes, below `prefix` (`/` on a real system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub prefix: PathBuf,
}

impl Layout {
    pub fn new(prefix: Option<&Path>) -> Layout {
        let prefix = match prefix {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("/"),
        };
        Layout { prefix }
    }

    /// True when installing into the running system (so systemctl applies).
    pub fn is_root(&self) -> bool {
        self.prefix == Path::new("/")
    }

    fn under(&self, rel: &str) -> PathBuf {
        self.prefix.join(rel)
    }

    pub fn binary(&self) -> PathBuf {
        self.under("usr/local/bin/herd")
    }

    pub fn unit_dir(&self) -> PathBuf {
        self.under("etc/systemd/system")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.under("etc/herd")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.under("var/lib/herd")
    }
}

/// What an operation did to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    /// Same content, only the mode was fixed.
    ModeFixed,
    Unchanged,
    /// A config file left as the user may have edited it.
    Kept,
    Removed,
    Absent,
}

impl Change {
    pub fn is_change(self) -> bool {
        matches!(
            self,
            Change::Created | Change::Updated | Change::ModeFixed | Change::Removed
        )
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad, not write_str: the install listing aligns on a width.
        f.pad(match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::ModeFixed => "mode fixed",
            Change::Unchanged => "unchanged",
            Change::Kept => "kept",
            Change::Removed => "removed",
            Change::Absent => "absent",
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn mode_of(path: &Path) -> Result<u32, InstallError> {
    Ok(std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o7777)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), InstallError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// Makes `path` a directory with `mode` (parents created 0755).
pub fn ensure_dir(path: &Path, mode: u32) -> Result<Change, InstallError> {
    if path.is_dir() {
        if mode_of(path)? == mode {
            return Ok(Change::Unchanged);
        }
        set_mode(path, mode)?;
        return Ok(Change::ModeFixed);
    }
    std::fs::create_dir_all(path).map_err(io(path))?;
    set_mode(path, mode)?;
    Ok(Change::Created)
}

/// Makes `path` hold exactly `data` with `mode`. An existing file with the same bytes is left
/// alone (its mode fixed if needed); a different one is replaced atomically.
pub fn ensure_file(path: &Path, data: &[u8], mode: u32) -> Result<Change, InstallError> {
    let existing = match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(io(path)(source)),
    };
    if existing.as_deref() == Some(data) {
        if mode_of(path)? == mode {
            return Ok(Change::Unchanged);
        }
        set_mode(path, mode)?;
        return Ok(Change::ModeFixed);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    // The temp file is created with `mode` (less the umask) before any byte is written, so a
    // token is never readable by others, not even briefly; the chmod then undoes the umask.
    crate::util::fsutil::write_atomic(path, data, mode).map_err(io(path))?;
    set_mode(path, mode)?;
    Ok(if existing.is_some() {
        Change::Updated
    } else {
        Change::Created
    })
}

/// Removes the file at `path` if there is one.
pub fn remove_file(path: &Path) -> Result<Change, InstallError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(Change::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Change::Absent),
        Err(source) => Err(io(path)(source)),
    }
}

/// Removes the directory at `path` if it exists and is empty (the user may keep files there).
pub fn remove_empty_dir(path: &Path) -> Result<Change, InstallError> {
    match std::fs::remove_dir(path) {
        Ok(()) => Ok(Change::Removed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Change::Absent),
        Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(Change::Kept),
        Err(source) => Err(io(path)(source)),
    }
}

/// Mount points at or below `dir` in `mountinfo` (pod root file systems, namespaces). Pure.
pub fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writing_the_same_file_twice_changes_nothing_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/worker.env");
        assert_eq!(ensure_file(&p, b"x=1\n", 0o600).unwrap(), Change::Created);
        assert_eq!(ensure_file(&p, b"x=1\n", 0o600).unwrap(), Change::Unchanged);
        assert_eq!(mode_of(&p).unwrap(), 0o600);
        set_mode(&p, 0o644).unwrap();
        assert_eq!(ensure_file(&p, b"x=1\n", 0o600).unwrap(), Change::ModeFixed);
        assert_eq!(ensure_file(&p, b"x=2\n", 0o600).unwrap(), Change::Updated);
        assert_eq!(std::fs::read(&p).unwrap(), b"x=2\n");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn removing_is_idempotent_and_keeps_non_empty_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("herd");
        assert_eq!(ensure_dir(&d, 0o755).unwrap(), Change::Created);
        assert_eq!(ensure_dir(&d, 0o755).unwrap(), Change::Unchanged);
        std::fs::write(d.join("mine"), "x").unwrap();
        assert_eq!(remove_empty_dir(&d).unwrap(), Change::Kept);
        assert_eq!(remove_file(&d.join("mine")).unwrap(), Change::Removed);
        assert_eq!(remove_file(&d.join("mine")).unwrap(), Change::Absent);
        assert_eq!(remove_empty_dir(&d).unwrap(), Change::Removed);
        assert_eq!(remove_empty_dir(&d).unwrap(), Change::Absent);
    }

    #[test]
    fn mounts_below_a_data_dir_are_found_in_mountinfo() {
        let mi = "\
22 1 179:2 / / rw - ext4 /dev/root rw
90 22 0:50 / /var/lib/herd/worker/containers/u1/c/rootfs rw - overlay overlay rw
91 22 0:51 / /var/lib/herdsman rw - tmpfs tmpfs rw";
        assert_eq!(
            mounts_below(mi, Path::new("/var/lib/herd")),
            [PathBuf::from("/var/lib/herd/worker/containers/u1/c/rootfs")]
        );
    }

    #[test]
    fn an_empty_or_slash_prefix_is_the_real_system() {
        assert!(Layout::new(None).is_root());
        assert!(Layout::new(Some(Path::new("/"))).is_root());
        assert!(Layout::new(Some(Path::new(""))).is_root());
        assert_eq!(
            Layout::new(None).binary(),
            PathBuf::from("/usr/local/bin/herd")
        );
        let l = Layout::new(Some(Path::new("/tmp/r")));
        assert!(!l.is_root());
        assert_eq!(l.binary(), PathBuf::from("/tmp/r/usr/local/bin/herd"));
        assert_eq!(l.unit_dir(), PathBuf::from("/tmp/r/etc/systemd/system"));
    }
}

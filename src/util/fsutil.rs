//! File writes that survive power loss halfway through.

use std::io::Write;
use std::path::Path;

/// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename, fsync
/// the directory. A reader sees the old or the new content, never a torn file.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    write_renamed(path, data, mode, true)
}

/// `write_atomic` without the fsyncs: never torn, but a power cut may lose it. For files
/// rewritten on every start (pid file, spec), where an fsync only costs latency and SD writes.
pub fn write_replace(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    write_renamed(path, data, mode, false)
}

fn write_renamed(path: &Path, data: &[u8], mode: u32, durable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    // A leftover from a crashed writer (same pid after a reboot) would keep its old mode, or
    // be a symlink: start from a fresh file so `mode` holds (secrets are written 0600).
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Random bytes as lowercase hex, for tokens, passwords and ids.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // getrandom only fails when the kernel has no entropy source at all, which no Linux this
    // runs on lacks; an all-zero token would still be rejected as weak by nobody, so fail loud.
    getrandom::fill(&mut buf).expect("kernel random source unavailable");
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_stale_temp_file_does_not_lend_its_mode_to_a_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("admin.token");
        let stale = dir
            .path()
            .join(format!(".admin.token.tmp.{}", std::process::id()));
        std::fs::write(&stale, b"old").unwrap();
        std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"secret", 0o600).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        assert!(!stale.exists());
    }

    #[test]
    fn random_hex_has_the_asked_length_and_differs() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16));
    }
}

//! `herd master backup FILE` and `herd master restore FILE`: the state database copied out
//! consistently while the master runs, and put back while it does not.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("a master is running on {dir} (it holds {dir}/master.lock): stop it first")]
    Running { dir: PathBuf },
    #[error("{path}: not a herd state database: {message}")]
    NotABackup { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> MaintenanceError {
    MaintenanceError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// An exclusive lock on `DIR/master.lock`, held for as long as the master runs, so two
/// masters never share one database and a restore never swaps it under a running one.
pub struct DirLock(#[allow(dead_code)] File);

pub fn lock_dir(dir: &Path) -> Result<DirLock, MaintenanceError> {
    let path = dir.join("master.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| file_err(&path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(MaintenanceError::Running {
            dir: dir.to_path_buf(),
        });
    }
    Ok(DirLock(f))
}

pub fn backup(data_dir: &Path, file: &Path) -> Result<(), MaintenanceError> {
    let db = data_dir.join("state.db");
    if !db.exists() {
        return Err(file_err(&db, "no state database here (wrong --data-dir?)"));
    }
    if file.exists() {
        return Err(file_err(file, "already exists; choose a new file"));
    }
    Store::open(&db)?.backup_to(file)?;
    Ok(())
}

/// Writes `herd.passwd` and `herd.acl` for an external mosquitto into `out` (0600: the
/// password file holds hashes) and returns the mosquitto.conf lines that use them. Reads the
/// store while the master runs (WAL readers never block it).
pub fn broker_config(data_dir: &Path, out: &Path) -> Result<String, MaintenanceError> {
    let db = data_dir.join("state.db");
    if !db.exists() {
        return Err(file_err(&db, "no state database here (wrong --data-dir?)"));
    }
    let secret = data_dir.join("mqtt-master.secret");
    let master_password = std::fs::read_to_string(&secret).map_err(|e| file_err(&secret, e))?;
    let nodes = Store::open(&db)?.mosquitto_credentials()?;
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    let passwd = out.join("herd.passwd");
    let body = super::mosquitto::password_file(master_password.trim(), &nodes);
    crate::util::fsutil::write_atomic(&passwd, body.as_bytes(), 0o600)
        .map_err(|e| file_err(&passwd, e))?;
    let acl = out.join("herd.acl");
    crate::util::fsutil::write_atomic(&acl, super::mosquitto::acl_file().as_bytes(), 0o644)
        .map_err(|e| file_err(&acl, e))?;
    Ok(super::mosquitto::conf_snippet(out))
}

/// Checks that `file` is a database this build can serve before anything is replaced.
fn verify(file: &Path) -> Result<(), MaintenanceError> {
    let bad = |message: String| MaintenanceError::NotABackup {
        path: file.to_path_buf(),
        message,
    };
    let conn =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| bad(e.to_string()))?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| bad(e.to_string()))?;
    if check != "ok" {
        return Err(bad(format!("integrity check: {check}")));
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('resources', 'tokens')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| bad(e.to_string()))?;
    if tables != 2 {
        return Err(bad("missing herd tables".into()));
    }
    Ok(())
}

pub fn restore(data_dir: &Path, file: &Path) -> Result<(), MaintenanceError> {
    std::fs::create_dir_all(data_dir).map_err(|e| file_err(data_dir, e))?;
    let _lock = lock_dir(data_dir)?;
    verify(file)?;
    let db = data_dir.join("state.db");
    let tmp = data_dir.join(".state.db.restore");
    std::fs::copy(file, &tmp).map_err(|e| file_err(&tmp, e))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| file_err(&tmp, e))?;
    // The old write-ahead log belongs to the old database: SQLite would replay it onto the
    // restored one. Remove it before the swap.
    for ext in ["state.db-wal", "state.db-shm"] {
        match std::fs::remove_file(data_dir.join(ext)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_err(&data_dir.join(ext), e)),
        }
    }
    std::fs::rename(&tmp, &db).map_err(|e| file_err(&db, e))?;
    File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_err(data_dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Pod;

    #[test]
    fn a_backup_restores_what_was_stored_and_drops_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("master");
        std::fs::create_dir_all(&data).unwrap();
        let store = Store::open(&data.join("state.db")).unwrap();
        let mut p = Pod::default();
        p.metadata.name = "kept".into();
        store.create(p.clone(), "t").unwrap();
        let file = dir.path().join("backup.db");
        backup(&data, &file).unwrap();
        assert!(backup(&data, &file).is_err(), "must not overwrite a backup");
        p.metadata.name = "later".into();
        store.create(p, "t").unwrap();
        drop(store);
        restore(&data, &file).unwrap();
        let store = Store::open(&data.join("state.db")).unwrap();
        let names: Vec<String> = store
            .list::<Pod>(None)
            .unwrap()
            .into_iter()
            .map(|p| p.metadata.name)
            .collect();
        assert_eq!(names, ["kept"]);
    }

    #[test]
    fn restore_refuses_a_running_master_and_a_file_that_is_not_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not sqlite at all").unwrap();
        assert!(matches!(
            restore(dir.path(), &junk),
            Err(MaintenanceError::NotABackup { .. })
        ));
        let _held = lock_dir(dir.path()).unwrap();
        assert!(matches!(
            restore(dir.path(), &junk),
            Err(MaintenanceError::Running { .. })
        ));
    }
}

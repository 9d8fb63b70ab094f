//! The worker's local copy of the desired pod set (`<data>/state/desired.json`), so pods keep
//! running (and start again after a reboot) while the master or broker is unreachable.
//!
//! SD cards wear out: the file is rewritten only when the desired set actually changes, never
//! on the identical retained messages a broker redelivers at every reconnect.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pods::manager::Desired;
use crate::api::Pod;
use crate::proto::DesiredIndex;

/// File name under the worker's `state/` dir.
pub const DESIRED_FILE: &str = "desired.json";
/// Format version of the file; a file with another version is ignored (the master resends).
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("desired state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("desired state {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    v: u32,
    index: DesiredIndex,
    /// Every spec received, including ones the index does not list (yet).
    specs: Vec<Pod>,
}

/// The desired-state file and what it last held, to skip identical writes.
#[derive(Debug)]
pub struct DesiredFile {
    path: PathBuf,
    /// What the file holds now (as loaded or last written); `None` = no file.
    last: Option<Desired>,
}

impl DesiredFile {
    /// Opens `<state_dir>/desired.json` and loads it. A missing file is an empty start; an
    /// unreadable or malformed one is logged and ignored (the master will resend), so a torn
    /// or foreign file can never keep the worker from starting.
    pub fn open(state_dir: &Path) -> (Self, Option<Desired>) {
        let path = state_dir.join(DESIRED_FILE);
        let loaded = match load(&path) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring persisted desired state");
                None
            }
        };
        let file = DesiredFile {
            path,
            last: loaded.clone(),
        };
        (file, loaded)
    }

    /// Writes `desired` if it differs from what the file holds. Returns whether it wrote.
    /// Nothing is written before the first index arrives: without an index the set is unknown.
    pub fn save(&mut self, desired: &Desired) -> Result<bool, StateError> {
        let Some(index) = &desired.index else {
            return Ok(false);
        };
        // Volume content (secrets!) never goes to disk: the master resends it.
        let desired = &desired.persisted();
        if self.last.as_ref() == Some(desired) {
            return Ok(false);
        }
        let disk = OnDisk {
            v: VERSION,
            index: index.clone(),
            specs: desired.specs.values().cloned().collect(),
        };
        let json = serde_json::to_vec(&disk).map_err(|source| StateError::Json {
            path: self.path.clone(),
            source,
        })?;
        crate::util::fsutil::write_atomic(&self.path, &json, 0o600).map_err(|source| {
            StateError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        self.last = Some(desired.clone());
        Ok(true)
    }
}

fn load(path: &Path) -> Result<Option<Desired>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|source| StateError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    if disk.v != VERSION {
        tracing::warn!(path = %path.display(), version = disk.v, "unknown desired state version, ignored");
        return Ok(None);
    }
    let specs = disk
        .specs
        .into_iter()
        .map(|p| ((p.metadata.ns().to_string(), p.metadata.name.clone()), p))
        .collect();
    Ok(Some(Desired {
        index: Some(disk.index),
        specs,
        sources: Default::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::PodKey;

    fn pod(name: &str, uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = uid.into();
        p.metadata.generation = 1;
        p
    }

    fn desired(pods: &[Pod]) -> Desired {
        Desired {
            index: Some(DesiredIndex {
                v: 1,
                pods: pods
                    .iter()
                    .map(|p| PodKey {
                        namespace: "default".into(),
                        name: p.metadata.name.clone(),
                        uid: p.metadata.uid.clone(),
                    })
                    .collect(),
                claims: None,
            }),
            specs: pods
                .iter()
                .map(|p| (("default".into(), p.metadata.name.clone()), p.clone()))
                .collect(),
            sources: Default::default(),
        }
    }

    #[test]
    fn desired_state_survives_a_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = desired(&[pod("a", "u1"), pod("b", "u2")]);
        let (mut f, loaded) = DesiredFile::open(dir.path());
        assert!(loaded.is_none());
        assert!(f.save(&d).unwrap());
        let (_, loaded) = DesiredFile::open(dir.path());
        assert_eq!(loaded, Some(d));
    }

    #[test]
    fn an_unchanged_desired_set_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DESIRED_FILE);
        let d = desired(&[pod("a", "u1")]);
        let (mut f, _) = DesiredFile::open(dir.path());
        assert!(f.save(&d).unwrap());
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(!f.save(&d.clone()).unwrap());
        // A new agent that loaded the file does not rewrite it for the same redelivered set.
        let (mut again, _) = DesiredFile::open(dir.path());
        assert!(!again.save(&d).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert!(again
            .save(&desired(&[pod("a", "u1"), pod("b", "u2")]))
            .unwrap());
    }

    #[test]
    fn volume_content_never_reaches_the_file_and_its_changes_cause_no_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DESIRED_FILE);
        let mut d = desired(&[pod("a", "u1")]);
        let mut src = crate::proto::VolumeSources::default();
        src.secrets.insert(
            "db".into(),
            Some([("password".to_string(), "aHVudGVyMg==".to_string())].into()),
        );
        d.sources
            .insert(("default".into(), "a".into()), src.clone());
        let (mut f, _) = DesiredFile::open(dir.path());
        assert!(f.save(&d).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("aHVudGVyMg=="),
            "secret data on disk: {text}"
        );
        // A changed secret alone is not a reason to write (SD-card wear, and nothing to save).
        src.secrets.insert("db".into(), None);
        d.sources.insert(("default".into(), "a".into()), src);
        assert!(!f.save(&d).unwrap());
        let (_, loaded) = DesiredFile::open(dir.path());
        assert!(loaded.unwrap().sources.is_empty());
    }

    #[test]
    fn nothing_is_written_before_an_index_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, _) = DesiredFile::open(dir.path());
        let mut d = desired(&[pod("a", "u1")]);
        d.index = None;
        assert!(!f.save(&d).unwrap());
        assert!(!dir.path().join(DESIRED_FILE).exists());
    }

    #[test]
    fn a_malformed_file_is_ignored_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DESIRED_FILE), b"{not json").unwrap();
        let (_, loaded) = DesiredFile::open(dir.path());
        assert!(loaded.is_none());
    }
}

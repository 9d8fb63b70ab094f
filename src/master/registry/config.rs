//! Which upstream registries the master reaches over plain HTTP and with which credentials:
//! `--insecure-registry HOST:PORT` flags plus `<master data>/registries.toml`, in the shared
//! format of [`crate::oci::RegistrySettings`]:
//!
//! ```toml
//! insecure = ["10.0.0.5:5000"]     # plain HTTP (127.0.0.0/8 always is)
//! [auth."ghcr.io"]
//! username = "me"
//! password = "ghp_…"
//! ```
//!
//! Why a file and not a Secret: the credentials are the master's own, used apart from the
//! API, and Secrets are readable by read-only API tokens. The file must not be readable by
//! group or others (mode 0600), like an SSH key: the master refuses it otherwise. Passwords
//! are never logged (the settings' `Debug` hides them).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::RegistryError;
use crate::oci::RegistrySettings;

/// File name under the master's data dir.
pub const FILE: &str = "registries.toml";

fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Reads `path` (a missing file is no settings), refusing one others can read, and adds the
/// `--insecure-registry` hosts.
pub fn load(path: &Path, insecure: &[String]) -> Result<RegistrySettings, RegistryError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(invalid(
                    path.display().to_string(),
                    format!("holds registry passwords but has mode {mode:o}: chmod 600 it"),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(RegistryError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    RegistrySettings::load(path)
        .and_then(|s| s.with_insecure(insecure))
        .map_err(|e| invalid("registry settings", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_others_can_read_is_refused_and_flags_add_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        assert_eq!(load(&p, &[]).unwrap(), RegistrySettings::default());
        std::fs::write(
            &p,
            "insecure = [\"10.0.0.5:5000\"]\n[auth.\"ghcr.io\"]\nusername = \"me\"\npassword = \"s3cret\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&p, &[]).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = load(&p, &["reg.lan:5000".into()]).unwrap();
        assert!(s.plain_http("10.0.0.5:5000") && s.plain_http("reg.lan:5000"));
        assert!(s.plain_http("127.0.0.1:5000"));
        assert!(!s.plain_http("ghcr.io"));
        assert!(
            !format!("{s:?}").contains("s3cret"),
            "password never printed"
        );
        let err = load(&p, &["http://x".into()]).unwrap_err().to_string();
        assert!(err.contains("--insecure-registry"), "{err}");
    }
}

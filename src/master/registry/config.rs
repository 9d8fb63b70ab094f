//! Which upstream registries the master may reach over plain HTTP and with which
//! credentials: `--insecure-registry HOST:PORT` flags plus `<master data>/registries.toml`.
//!
//! ```toml
//! # Plain-HTTP registries (127.0.0.0/8 always is).
//! insecure = ["10.0.0.5:5000"]
//!
//! [auth."ghcr.io"]
//! username = "me"
//! password = "ghp_…"
//! ```
//!
//! Why a file and not a Secret: the credentials are the master's own, used before and apart
//! from the API, and Secrets are readable by read-only API tokens. The file must not be
//! readable by group or others (mode 0600), like an SSH key: the master refuses it otherwise.
//! Passwords are never logged (the `Debug` output hides them).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::RegistryError;

/// File name under the master's data dir.
pub const FILE: &str = "registries.toml";

#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Upstream registry settings as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Hosts (`HOST[:PORT]`) reached over plain HTTP.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Credentials per registry host.
    #[serde(default)]
    pub auth: BTreeMap<String, Credential>,
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> RegistryError {
    RegistryError::Invalid {
        what: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Checks a `HOST[:PORT]` value (flag or file entry).
pub fn check_host(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && !h.contains(['/', '@', ' '])
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{h:?} is not HOST or HOST:PORT"))
    }
}

impl Registries {
    /// Reads `path` if it exists (a missing file is no settings), refusing a file others can
    /// read and any unknown key.
    pub fn load(path: &Path) -> Result<Registries, RegistryError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registries::default()),
            Err(source) => {
                return Err(RegistryError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(invalid(
                path,
                format!("holds registry passwords but has mode {mode:o}: chmod 600 it"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| invalid(path, e.message()))?;
        let r: Registries = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| invalid(path, format!("{}: {}", e.path(), e.inner().message())))?;
        for h in r.insecure.iter().chain(r.auth.keys()) {
            check_host(h).map_err(|e| invalid(path, e))?;
        }
        Ok(r)
    }

    /// Adds `--insecure-registry` flags.
    pub fn with_insecure(mut self, hosts: &[String]) -> Registries {
        for h in hosts {
            if !self.insecure.contains(h) {
                self.insecure.push(h.clone());
            }
        }
        self
    }

    /// Whether `host` is reached over plain HTTP: configured so, or on 127.0.0.0/8 (or
    /// `localhost`), which never leaves the machine.
    pub fn is_insecure(&self, host: &str) -> bool {
        let name = host
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h);
        let loopback = name == "localhost"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback());
        loopback || self.insecure.iter().any(|h| h == host || h == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_others_can_read_is_refused_and_unknown_keys_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        assert_eq!(Registries::load(&p).unwrap(), Registries::default());
        std::fs::write(
            &p,
            "insecure = [\"10.0.0.5:5000\"]\n[auth.\"ghcr.io\"]\nusername = \"me\"\npassword = \"s3cret\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Registries::load(&p).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let r = Registries::load(&p).unwrap();
        assert_eq!(r.insecure, ["10.0.0.5:5000"]);
        assert_eq!(r.auth["ghcr.io"].username, "me");
        assert!(
            !format!("{r:?}").contains("s3cret"),
            "password never printed"
        );
        std::fs::write(&p, "insecure = []\npasswrd = 1\n").unwrap();
        let err = Registries::load(&p).unwrap_err().to_string();
        assert!(err.contains("passwrd"), "{err}");
    }

    #[test]
    fn loopback_is_always_plain_http_and_flags_add_hosts() {
        let r = Registries::default().with_insecure(&["10.0.0.5:5000".into(), "reg.lan".into()]);
        assert!(r.is_insecure("127.0.0.1:5000"));
        assert!(r.is_insecure("127.3.2.1:80"));
        assert!(r.is_insecure("localhost:5000"));
        assert!(r.is_insecure("10.0.0.5:5000"));
        assert!(r.is_insecure("reg.lan:443"));
        assert!(!r.is_insecure("10.0.0.5:5001"));
        assert!(!r.is_insecure("docker.io"));
        assert!(check_host("a.b:5000").is_ok());
        assert!(check_host("http://x").is_err());
    }
}

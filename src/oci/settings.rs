//! Where and how registries are reached: which hosts speak plain HTTP, which credentials go
//! to which host. Read from the registries file (`registries.toml`) and command-line flags.
//!
//! ```toml
//! insecure = ["registry.lan:5000"]
//! [auth."ghcr.io"]
//! username = "me"
//! password = "token"
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

/// A username and password for one registry. `Debug` never shows the password, so settings
/// can be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// `host` or `host:port` reached over plain HTTP. Loopback registries always are, as
    /// Docker allows.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Credentials by registry host (`docker.io`, `ghcr.io`, `registry.lan:5000`).
    #[serde(default)]
    pub auth: BTreeMap<String, Credentials>,
}

impl RegistrySettings {
    /// Reads a registries file; a missing file means defaults.
    pub fn load(path: &Path) -> Result<RegistrySettings, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RegistrySettings::default())
            }
            Err(source) => {
                return Err(SettingsError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|message| SettingsError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<RegistrySettings, String> {
        let s: RegistrySettings = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, host) in s.insecure.iter().enumerate() {
            check_host(host).map_err(|m| format!("insecure[{i}]: {m}"))?;
        }
        for host in s.auth.keys() {
            check_host(host).map_err(|m| format!("auth.{host:?}: {m}"))?;
        }
        Ok(s)
    }

    /// Adds `--insecure-registry` values, checked like the file's.
    pub fn with_insecure(mut self, hosts: &[String]) -> Result<RegistrySettings, SettingsError> {
        for h in hosts {
            check_host(h).map_err(|message| SettingsError::Invalid {
                field: format!("--insecure-registry {h}"),
                message,
            })?;
            if !self.insecure.contains(h) {
                self.insecure.push(h.clone());
            }
        }
        Ok(self)
    }

    /// Plain HTTP for this registry host?
    pub fn plain_http(&self, host: &str) -> bool {
        is_loopback(host) || self.insecure.iter().any(|h| h == host)
    }

    pub fn credentials(&self, host: &str) -> Option<&Credentials> {
        self.auth.get(host).or_else(|| match host {
            // Docker Hub goes by several names.
            "docker.io" => self
                .auth
                .get("index.docker.io")
                .or_else(|| self.auth.get("registry-1.docker.io")),
            _ => None,
        })
    }
}

/// `host` or `host:port`: no scheme, no path, a port that is a number.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty registry host".into());
    }
    if host.contains("://") || host.contains('/') {
        return Err(format!(
            "{host:?} must be host or host:port, without scheme or path"
        ));
    }
    if let Some((_, port)) = split_port(host) {
        port.parse::<u16>()
            .map_err(|_| format!("{host:?} has a port that is not a number up to 65535"))?;
    }
    Ok(())
}

fn split_port(host: &str) -> Option<(&str, &str)> {
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']')?;
        return tail.strip_prefix(':').map(|p| (addr, p));
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, p)),
        _ => None,
    }
}

/// `localhost`, 127.0.0.0/8 and ::1, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let name = split_port(host).map(|(h, _)| h).unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http_others_only_when_listed() {
        let s = RegistrySettings::default()
            .with_insecure(&["registry.lan:5000".into()])
            .unwrap();
        for h in [
            "127.0.0.1:5000",
            "127.9.9.9",
            "localhost:5000",
            "[::1]:5000",
            "::1",
        ] {
            assert!(s.plain_http(h), "{h}");
        }
        assert!(s.plain_http("registry.lan:5000"));
        assert!(!s.plain_http("registry.lan:5001"));
        assert!(!s.plain_http("docker.io"));
        assert!(!s.plain_http("10.0.0.1:5000"));
    }

    #[test]
    fn the_file_names_the_bad_field() {
        let err = RegistrySettings::parse("insecure = [\"http://x\"]").unwrap_err();
        assert!(
            err.contains("insecure[0]") && err.contains("without scheme"),
            "{err}"
        );
        let err = RegistrySettings::parse("insecure = [\"x:99999\"]").unwrap_err();
        assert!(err.contains("port"), "{err}");
        let err = RegistrySettings::parse("[auth.\"ghcr.io\"]\nusername = \"u\"\n").unwrap_err();
        assert!(err.contains("password"), "{err}");
        let err = RegistrySettings::parse("mirrors = []").unwrap_err();
        assert!(err.contains("mirrors"), "{err}");
        assert!(RegistrySettings::with_insecure(Default::default(), &["a/b".into()]).is_err());
    }

    #[test]
    fn credentials_are_found_by_host_and_never_printed() {
        let s = RegistrySettings::parse(
            "[auth.\"index.docker.io\"]\nusername = \"me\"\npassword = \"s3cret\"\n",
        )
        .unwrap();
        let c = s.credentials("docker.io").expect("docker hub alias");
        assert_eq!(c.username, "me");
        assert!(!format!("{s:?}").contains("s3cret"));
        assert!(s.credentials("ghcr.io").is_none());
    }
}

//! The client config, in kubeconfig format so one file can describe several clusters and so
//! a kubeconfig kubectl wrote is readable too.
//!
//! Fields herd does not use (client certificates, exec plugins, extensions, preferences) are
//! kept verbatim through a load/save cycle, because the file may be shared with kubectl and
//! dropping them would silently break its other contexts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything that can go wrong finding, reading or writing the config.
#[derive(Debug, thiserror::Error)]
/// Causes are part of the message (not `source()`), so printing with or without the
/// error chain shows them exactly once.
pub enum ConfigError {
    #[error("no config: pass --config or set HERD_CONFIG or run herd up")]
    NoConfig,
    #[error("{}: {error}", show(path))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not a kubeconfig: {error}", show(path))]
    Parse {
        path: PathBuf,
        error: yaml_serde::Error,
    },
    #[error("{}: no current-context set: pass --context", show(path))]
    NoCurrentContext { path: PathBuf },
    #[error("{}: context {name:?} not found", show(path))]
    ContextNotFound { path: PathBuf, name: String },
    #[error("{}: context {context:?}: cluster {name:?} not found", show(path))]
    ClusterNotFound {
        path: PathBuf,
        context: String,
        name: String,
    },
    #[error("{}: context {context:?}: user {name:?} not found", show(path))]
    UserNotFound {
        path: PathBuf,
        context: String,
        name: String,
    },
    #[error("{}: cluster {name:?} has no server", show(path))]
    NoServer { path: PathBuf, name: String },
    #[error(
        "{}: user {name:?} has no token (herd authenticates with tokens only)",
        show(path)
    )]
    NoToken { path: PathBuf, name: String },
    #[error("{}: cannot encode config: {error}", show(path))]
    Encode {
        path: PathBuf,
        error: yaml_serde::Error,
    },
    #[error("{}: cannot write: {error}", show(path))]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Paths under the home directory are shown as `~/...`, as the user would type them.
fn show(path: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        if let Ok(rest) = path.strip_prefix(&home) {
            return format!("~/{}", rest.display());
        }
    }
    path.display().to_string()
}

/// A kubeconfig file. Only the fields herd reads are typed; the rest ride along in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KubeConfig {
    #[serde(rename = "apiVersion", default = "v1")]
    pub api_version: String,
    #[serde(default = "config_kind")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<NamedUser>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    pub current_context: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

fn v1() -> String {
    "v1".into()
}
fn config_kind() -> String {
    "Config".into()
}

/// kubectl writes `users: null` in an empty config; treat it as an empty list.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            api_version: v1(),
            kind: config_kind(),
            clusters: Vec::new(),
            users: Vec::new(),
            contexts: Vec::new(),
            current_context: String::new(),
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    #[serde(default)]
    pub cluster: Cluster,
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    #[serde(default)]
    pub server: String,
    /// Base64 of the PEM CA bundle, as kubectl stores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    #[serde(default)]
    pub user: User,
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    #[serde(default)]
    pub context: Context,
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

/// What a client needs from the config: where to connect and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub context: String,
    pub server: String,
    pub token: String,
    /// The context's namespace, if it sets one.
    pub namespace: Option<String>,
    pub ca_pem_base64: Option<String>,
    pub insecure_skip_tls_verify: bool,
}

/// The config file to use: `explicit` (from `--config`), else `$HERD_CONFIG`, else
/// `~/.config/herd/config`. `None` only when there is no home directory to look in.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("HERD_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".config/herd/config"))
}

/// Loads the config and resolves `context` (or the current-context) to server and token.
///
/// A missing default file means "no config" rather than an I/O error, because that is the
/// normal state before `herd up` has run and the message should say what to do.
pub fn load(explicit: Option<&Path>, context: Option<&str>) -> Result<Resolved, ConfigError> {
    let path = config_path(explicit).ok_or(ConfigError::NoConfig)?;
    if explicit.is_none() && std::env::var_os("HERD_CONFIG").is_none() && !path.exists() {
        return Err(ConfigError::NoConfig);
    }
    let cfg = read(&path)?;
    cfg.resolve(&path, context)
}

/// Reads and parses one file.
pub fn read(path: &Path) -> Result<KubeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<KubeConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(KubeConfig::default());
    }
    yaml_serde::from_str(text).map_err(|error| ConfigError::Parse {
        path: path.to_path_buf(),
        error,
    })
}

impl KubeConfig {
    /// Follows context → cluster and user. `path` is only for error messages.
    pub fn resolve(&self, path: &Path, context: Option<&str>) -> Result<Resolved, ConfigError> {
        let p = || path.to_path_buf();
        let name = match context {
            Some(c) => c,
            None if self.current_context.is_empty() => {
                return Err(ConfigError::NoCurrentContext { path: p() })
            }
            None => self.current_context.as_str(),
        };
        let ctx = self
            .contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ConfigError::ContextNotFound {
                path: p(),
                name: name.to_string(),
            })?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .ok_or_else(|| ConfigError::ClusterNotFound {
                path: p(),
                context: name.to_string(),
                name: ctx.context.cluster.clone(),
            })?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .ok_or_else(|| ConfigError::UserNotFound {
                path: p(),
                context: name.to_string(),
                name: ctx.context.user.clone(),
            })?;
        if cluster.cluster.server.is_empty() {
            return Err(ConfigError::NoServer {
                path: p(),
                name: cluster.name.clone(),
            });
        }
        let token = match &user.user.token {
            Some(t) if !t.is_empty() => t.clone(),
            _ => {
                return Err(ConfigError::NoToken {
                    path: p(),
                    name: user.name.clone(),
                })
            }
        };
        Ok(Resolved {
            context: name.to_string(),
            server: cluster.cluster.server.trim_end_matches('/').to_string(),
            token,
            namespace: ctx.context.namespace.clone().filter(|n| !n.is_empty()),
            ca_pem_base64: cluster.cluster.certificate_authority_data.clone(),
            insecure_skip_tls_verify: cluster.cluster.insecure_skip_tls_verify.unwrap_or(false),
        })
    }

    /// Adds or replaces the cluster, user and context called `name` (user `NAME-admin`), and
    /// makes that context current. Entries with other names are left alone.
    pub fn merge_admin(&mut self, name: &str, server: &str, token: &str, ca_pem: Option<&[u8]>) {
        let user_name = format!("{name}-admin");
        let cluster = NamedCluster {
            name: name.to_string(),
            cluster: Cluster {
                server: server.to_string(),
                certificate_authority_data: ca_pem.map(base64),
                ..Cluster::default()
            },
            extra: BTreeMap::new(),
        };
        let user = NamedUser {
            name: user_name.clone(),
            user: User {
                token: Some(token.to_string()),
                extra: BTreeMap::new(),
            },
            extra: BTreeMap::new(),
        };
        let context = NamedContext {
            name: name.to_string(),
            context: Context {
                cluster: name.to_string(),
                user: user_name,
                namespace: None,
                extra: BTreeMap::new(),
            },
            extra: BTreeMap::new(),
        };
        upsert(&mut self.clusters, cluster, |c| &c.name);
        upsert(&mut self.users, user, |u| &u.name);
        upsert(&mut self.contexts, context, |c| &c.name);
        self.current_context = name.to_string();
    }
}

fn upsert<T>(list: &mut Vec<T>, item: T, name: impl Fn(&T) -> &String) {
    match list.iter().position(|x| name(x) == name(&item)) {
        Some(i) => list[i] = item,
        None => list.push(item),
    }
}

/// Writes (or merges into) the config at `path` an admin context for `cluster_name`, and makes
/// it current. Other clusters in the file are kept. Written atomically with mode 0600, since it
/// holds an admin token.
///
/// An existing file that does not parse is an error rather than overwritten: it may be a
/// kubeconfig with contexts the user still needs.
pub fn write_admin_config(
    path: &Path,
    cluster_name: &str,
    server: &str,
    token: &str,
    ca_pem: Option<&[u8]>,
) -> Result<(), ConfigError> {
    let mut cfg = match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => KubeConfig::default(),
        Err(error) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    cfg.merge_admin(cluster_name, server, token, ca_pem);
    save(path, &cfg)
}

/// Serialises and writes atomically (0600), creating the parent directory (0700) if needed.
pub fn save(path: &Path, cfg: &KubeConfig) -> Result<(), ConfigError> {
    let text = yaml_serde::to_string(cfg).map_err(|error| ConfigError::Encode {
        path: path.to_path_buf(),
        error,
    })?;
    let write_err = |error| ConfigError::Write {
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(write_err)?;
        }
    }
    crate::util::fsutil::write_atomic(path, text.as_bytes(), 0o600).map_err(write_err)?;
    // write_atomic's mode applies to a new file under the umask; make 0600 exact either way.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(write_err)
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like what `kubectl config` and kubeadm write, with fields herd ignores.
    const KUBECTL_SAMPLE: &str = r#"
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: TFMwdExTMUNSVWRKVGc9PQ==
    server: https://10.0.0.1:6443
    extensions:
    - name: client.authentication.k8s.io/exec
      extension:
        audience: herd
  name: lab
- cluster:
    insecure-skip-tls-verify: true
    server: http://127.0.0.1:6443/
  name: local
contexts:
- context:
    cluster: lab
    user: lab-admin
    namespace: prod
  name: lab-admin@lab
- context:
    cluster: local
    user: local-admin
  name: local
current-context: lab-admin@lab
kind: Config
preferences: {}
users:
- name: lab-admin
  user:
    token: s3cret
    client-certificate-data: Zm9v
- name: local-admin
  user:
    token: t0k
- name: exec-user
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: ["eks", "get-token"]
"#;

    fn sample() -> KubeConfig {
        parse(Path::new("/x/config"), KUBECTL_SAMPLE).unwrap()
    }

    #[test]
    fn a_kubectl_written_config_resolves_the_current_context() {
        let r = sample().resolve(Path::new("/x/config"), None).unwrap();
        assert_eq!(r.context, "lab-admin@lab");
        assert_eq!(r.server, "https://10.0.0.1:6443");
        assert_eq!(r.token, "s3cret");
        assert_eq!(r.namespace.as_deref(), Some("prod"));
        assert_eq!(r.ca_pem_base64.as_deref(), Some("TFMwdExTMUNSVWRKVGc9PQ=="));
    }

    #[test]
    fn context_flag_overrides_current_context_and_trailing_slash_is_dropped() {
        let r = sample()
            .resolve(Path::new("/x/config"), Some("local"))
            .unwrap();
        assert_eq!(r.server, "http://127.0.0.1:6443");
        assert_eq!(r.token, "t0k");
        assert_eq!(r.namespace, None);
        assert!(r.insecure_skip_tls_verify);
    }

    #[test]
    fn errors_name_the_file_and_the_missing_piece() {
        let home = std::env::var("HOME").unwrap_or_default();
        let path = PathBuf::from(&home).join(".config/herd/config");
        let err = sample().resolve(&path, Some("x")).unwrap_err().to_string();
        if home.is_empty() {
            assert!(err.ends_with("context \"x\" not found"), "{err}");
        } else {
            assert_eq!(err, "~/.config/herd/config: context \"x\" not found");
        }
        let mut cfg = sample();
        cfg.users.retain(|u| u.name != "local-admin");
        let err = cfg.resolve(Path::new("/c"), Some("local")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/c: context \"local\": user \"local-admin\" not found"
        );
        let mut cfg = sample();
        cfg.current_context.clear();
        let err = cfg.resolve(Path::new("/c"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/c: no current-context set: pass --context"
        );
        assert_eq!(
            ConfigError::NoConfig.to_string(),
            "no config: pass --config or set HERD_CONFIG or run herd up"
        );
    }

    #[test]
    fn a_user_without_a_token_is_reported() {
        let mut cfg = sample();
        cfg.contexts[1].context.user = "exec-user".into();
        let err = cfg.resolve(Path::new("/c"), Some("local")).unwrap_err();
        assert!(matches!(err, ConfigError::NoToken { ref name, .. } if name == "exec-user"));
    }

    #[test]
    fn unused_fields_survive_a_round_trip() {
        let cfg = sample();
        let text = yaml_serde::to_string(&cfg).unwrap();
        let again: KubeConfig = yaml_serde::from_str(&text).unwrap();
        assert_eq!(again, cfg);
        assert!(text.contains("client-certificate-data"), "{text}");
        assert!(text.contains("preferences"), "{text}");
        assert!(text.contains("command: aws"), "{text}");
    }

    #[test]
    fn admin_config_is_written_with_mode_0600_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config");
        write_admin_config(&path, "herd", "http://127.0.0.1:6443", "tok", Some(b"PEM")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let r = load(Some(&path), None).unwrap();
        assert_eq!(r.context, "herd");
        assert_eq!(r.server, "http://127.0.0.1:6443");
        assert_eq!(r.token, "tok");
        assert_eq!(r.ca_pem_base64.as_deref(), Some("UEVN"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("apiVersion: v1") && text.contains("kind: Config"),
            "{text}"
        );
        assert!(text.contains("current-context: herd"), "{text}");
    }

    #[test]
    fn merging_keeps_other_clusters_replaces_same_name_and_switches_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, KUBECTL_SAMPLE).unwrap();
        write_admin_config(&path, "pi", "http://10.0.0.9:6443", "a", None).unwrap();
        write_admin_config(&path, "pi", "http://10.0.0.9:7443", "b", None).unwrap();
        let cfg = read(&path).unwrap();
        let names: Vec<_> = cfg.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["lab", "local", "pi"]);
        assert_eq!(cfg.current_context, "pi");
        let r = cfg.resolve(&path, None).unwrap();
        assert_eq!(
            (r.server.as_str(), r.token.as_str()),
            ("http://10.0.0.9:7443", "b")
        );
        let lab = cfg.resolve(&path, Some("lab-admin@lab")).unwrap();
        assert_eq!(lab.token, "s3cret");
        assert!(cfg.extra.contains_key("preferences"));
    }

    #[test]
    fn a_config_that_does_not_parse_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "clusters: [[[").unwrap();
        let err = write_admin_config(&path, "pi", "http://x", "t", None).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "clusters: [[[");
    }

    #[test]
    fn an_explicit_missing_file_names_the_file() {
        let err = load(Some(Path::new("/nonexistent/herd.cfg")), None).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/herd.cfg: "),
            "{err}"
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }
}

//! `herd firstboot`: a board flashed from a herd image (`images/`) is set up from the
//! `herd.toml` the user wrote onto its FAT boot partition, without a keyboard or screen.
//!
//! - `check` validates a file and prints what it sets (secrets hidden);
//! - `prepare` runs early at every boot (herd-firstboot.service, before the network): host
//!   name, Wi-Fi, root's SSH keys;
//! - `run` is the worker service: it waits for a valid file, joins the master, retrying with a
//!   bounded backoff for as long as it takes, then runs the worker exactly like `herd worker`.
//!
//! A bad file is logged once, with the key at fault, and re-read every few seconds until it
//! changes; the `run` service never exits over it (a restart loop would only repeat the message).

pub mod config;
pub mod retry;
pub mod system;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::worker::join;
use config::{BootConfig, ConfigError};
use retry::Failure;

/// Where the image's units read herd.toml: the FAT boot partition, as Debian mounts it.
pub const DEFAULT_CONFIG: &str = "/boot/firmware/herd.toml";

/// How often a missing or bad herd.toml is read again.
const RELOAD: Duration = Duration::from_secs(5);

/// `herd firstboot ACTION`: set a board up from herd.toml on its boot partition.
#[derive(Debug, Clone, Subcommand)]
pub enum FirstbootAction {
    /// Check a herd.toml and print what it sets (secrets hidden)
    Check(CheckArgs),
    /// Apply herd.toml's board settings (host name, Wi-Fi, SSH keys); run before the network
    Prepare(PrepareArgs),
    /// Join the master named in herd.toml (retrying until it answers), then run the worker
    Run(RunArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The file to check
    #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct PrepareArgs {
    /// herd.toml to read
    #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Write under this directory instead of / (the running host name is then left alone)
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// herd.toml to read
    #[arg(value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Worker state directory (images/, containers/, logs/, state/, node.json)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/herd/worker")]
    pub data_dir: PathBuf,
    /// Seconds between heartbeats to the master
    #[arg(long, value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FirstbootError {
    #[error(
        "{path}: no such file: copy herd.toml.example to herd.toml on the boot partition and \
         fill in master and token"
    )]
    NoFile { path: PathBuf },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    System(#[from] system::SystemError),
}

/// Reads and validates herd.toml.
pub fn load(path: &Path) -> Result<BootConfig, FirstbootError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FirstbootError::NoFile {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(FirstbootError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    Ok(config::parse(&path.display().to_string(), &text)?)
}

/// The machine id under `root` (empty when there is none yet).
fn machine_id(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/machine-id")).unwrap_or_default()
}

/// Runs one `herd firstboot` action.
pub async fn main(action: &FirstbootAction) -> anyhow::Result<()> {
    match action {
        FirstbootAction::Check(a) => check(a),
        FirstbootAction::Prepare(a) => prepare(a),
        FirstbootAction::Run(a) => run(a).await,
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let c = load(&args.config)?;
    // Written, not println!: stdout may be a closed pipe and this must not panic over it.
    let _ = std::io::stdout().write_all(summary(&args.config, &c).as_bytes());
    Ok(())
}

/// What `check` prints: every setting, secrets reduced to whether they are set.
pub fn summary(path: &Path, c: &BootConfig) -> String {
    let mut s = format!("{} is valid:\n", path.display());
    s.push_str(&format!("  master     {}\n", c.master));
    s.push_str(&format!(
        "  token      set ({} characters)\n",
        c.token.len()
    ));
    if let Some(h) = &c.ca_hash {
        s.push_str(&format!("  ca_hash    {h}\n"));
    }
    match &c.node_name {
        Some(n) => s.push_str(&format!("  node_name  {n}\n")),
        None => s.push_str("  node_name  herd- and the first 8 hex digits of the machine id\n"),
    }
    if !c.labels.is_empty() {
        s.push_str(&format!("  labels     {}\n", c.label_args().join(",")));
    }
    if let Some(w) = &c.wifi {
        let key = match &w.psk {
            Some(p) if p.len() == 64 => "64-hex-digit key",
            Some(_) => "passphrase",
            None => "open network",
        };
        let country = w.country.as_deref().unwrap_or("not set");
        s.push_str(&format!(
            "  wifi       ssid {:?}, {key}, country {country}\n",
            w.ssid
        ));
    }
    if !c.ssh_authorized_keys.is_empty() {
        s.push_str(&format!(
            "  ssh        {} authorized key(s) for root\n",
            c.ssh_authorized_keys.len()
        ));
    }
    s
}

fn prepare(args: &PrepareArgs) -> anyhow::Result<()> {
    let c = load(&args.config)?;
    let node = c.node_name_or(&machine_id(&args.root));
    let changes = system::apply(&args.root, &c, &node, &args.config)?;
    for ch in &changes {
        match ch {
            system::Change::Written(p) => tracing::info!("wrote {}", p.display()),
            system::Change::Removed(p) => tracing::info!("removed {}", p.display()),
            system::Change::Foreign(p) => tracing::warn!(
                "{} exists and was not written by herd: left as it is (remove it to let \
                 herd.toml manage it)",
                p.display()
            ),
        }
    }
    let n = changes.len();
    tracing::info!(node = %node, changes = n, "board prepared from {}", args.config.display());
    Ok(())
}

async fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = tokio::select! {
        c = load_when_valid(&args.config, RELOAD) => c,
        _ = crate::up::signalled() => return Ok(()),
    };
    // Before any join attempt: a kernel that cannot run containers exits 78 with its fix.
    crate::worker::kernel::check()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let machine_id = machine_id(Path::new("/"));
    let creds = args.data_dir.join("node.json");
    let cfg = tokio::select! {
        c = join_until_accepted(cfg, &args.config, &machine_id, &creds) => c,
        _ = crate::up::signalled() => return Ok(()),
    };
    let defaults = crate::worker::images::gc::Policy::default();
    let worker = crate::cli::WorkerArgs {
        join: cfg.master.clone(),
        token: cfg.token.clone(),
        ca_hash: cfg.ca_hash.clone(),
        data_dir: args.data_dir.clone(),
        node_name: Some(cfg.node_name_or(&machine_id)),
        node_labels: cfg.label_args(),
        heartbeat_seconds: args.heartbeat_seconds,
        // Like the worker unit: an agent restart or upgrade leaves pods running.
        stop_pods_on_exit: false,
        pod_network: "bridge".into(),
        pull: crate::cli::args::PullArgs {
            registries: "/etc/herd/registries.toml".into(),
            ..Default::default()
        },
        image_gc_unused_for: defaults.max_unused,
        image_gc_high_percent: defaults.high_percent,
        image_gc_low_percent: defaults.low_percent,
    };
    crate::up::worker(&worker).await
}

/// Whether credentials from an earlier join for this master and node are on disk (then the
/// worker needs neither the token nor a reachable master to start its pods).
fn joined_before(creds: &Path, master: &str, node: &str) -> bool {
    matches!(join::load(creds), Ok(Some(c)) if c.master == master && c.node_name == node)
}

/// Re-reads herd.toml every `every` until it is valid, logging each distinct problem once.
async fn load_when_valid(path: &Path, every: Duration) -> BootConfig {
    let mut reported: Option<String> = None;
    loop {
        match load(path) {
            Ok(c) => {
                if reported.is_some() {
                    tracing::info!("{} is valid now", path.display());
                }
                return c;
            }
            Err(e) => {
                let msg = e.to_string();
                if reported.as_deref() != Some(msg.as_str()) {
                    tracing::error!("{msg} (waiting for the file to change)");
                    reported = Some(msg);
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Joins unless credentials for this master and node exist, and on failure waits per
/// [`retry`] and tries again, forever. herd.toml is read again before every retry, so a
/// corrected token or address is picked up without a restart. Returns the settings that
/// joined, once the credentials are stored.
async fn join_until_accepted(
    mut cfg: BootConfig,
    config: &Path,
    machine_id: &str,
    creds: &Path,
) -> BootConfig {
    let mut failures: u32 = 0;
    loop {
        let node = cfg.node_name_or(machine_id);
        if joined_before(creds, &cfg.master, &node) {
            return cfg;
        }
        let err = match join::join(
            &cfg.master,
            &cfg.token,
            cfg.ca_hash.as_deref(),
            &node,
            creds,
        )
        .await
        {
            Ok(c) => {
                let (m, n) = (&cfg.master, &c.node_name);
                tracing::info!(node = %n, "joined {m} after {failures} failed attempt(s)");
                return cfg;
            }
            Err(e) => e,
        };
        failures = failures.saturating_add(1);
        let why = match err {
            join::JoinError::Unreachable { .. } => Failure::Unreachable,
            _ => Failure::Refused,
        };
        let wait = retry::jittered(retry::delay(failures, why), getrandom::u64().unwrap_or(0));
        let err = with_causes(&err);
        match why {
            Failure::Unreachable => {
                tracing::warn!("{err}; attempt {failures}, next in {}s", wait.as_secs())
            }
            Failure::Refused => tracing::error!(
                "{err}; check master, token and ca_hash in {} (a token from `herd token create` is \
                 valid for 24 h); next attempt in {}s",
                config.display(),
                wait.as_secs()
            ),
        }
        tokio::time::sleep(wait).await;
        match load(config) {
            Ok(new) if new != cfg => {
                tracing::info!(
                    "{} changed: joining with the new settings",
                    config.display()
                );
                cfg = new;
            }
            Ok(_) => {}
            // Keep trying with the last valid settings; the problem is logged for the user.
            Err(e) => tracing::error!("{e} (still using the settings read before)"),
        }
    }
}

/// An error with its causes, `: `-separated: reqwest's own message omits why a connection
/// failed (refused, timed out, no route), which is what a user debugging a board needs.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_shown_with_their_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let e = FirstbootError::Read {
            path: PathBuf::from("/x"),
            source: io,
        };
        // thiserror already shows the source here: it is not repeated.
        assert_eq!(with_causes(&e), "/x: connection refused");
        let e = anyhow::Error::from(e).context("joining");
        let e: &dyn std::error::Error = e.as_ref();
        assert_eq!(with_causes(e), "joining: /x: connection refused");
    }

    #[test]
    fn a_missing_file_says_what_to_write_where() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(&dir.path().join("herd.toml")).unwrap_err().to_string();
        assert!(e.contains("herd.toml: no such file"), "{e}");
        assert!(e.contains("herd.toml.example"), "{e}");
    }

    #[test]
    fn the_summary_shows_settings_but_not_secrets() {
        let c = config::parse(
            "f",
            "master = \"http://m:6443\"\ntoken = \"sekrit-token\"\nlabels = { zone = \"a\" }\n\
             [wifi]\nssid = \"home\"\npsk = \"sekrit-psk\"\n",
        )
        .unwrap();
        let s = summary(Path::new("/boot/firmware/herd.toml"), &c);
        assert!(s.contains("master     http://m:6443"), "{s}");
        assert!(s.contains("labels     zone=a"), "{s}");
        assert!(s.contains("ssid \"home\", passphrase"), "{s}");
        assert!(!s.contains("sekrit"), "{s}");
    }

    #[test]
    fn earlier_credentials_count_only_for_the_same_master_and_node() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.json");
        assert!(!joined_before(&p, "http://m:6443", "n1"));
        let creds = join::Credentials {
            master: "http://m:6443".into(),
            node_name: "n1".into(),
            mqtt_url: "mqtt://m:1883".into(),
            username: "u".into(),
            password: "p".into(),
            ca_cert: None,
        };
        std::fs::write(&p, serde_json::to_vec(&creds).unwrap()).unwrap();
        assert!(joined_before(&p, "http://m:6443", "n1"));
        assert!(!joined_before(&p, "http://other:6443", "n1"));
        assert!(!joined_before(&p, "http://m:6443", "n2"));
        std::fs::write(&p, b"not json").unwrap();
        assert!(!joined_before(&p, "http://m:6443", "n1"));
    }

    #[tokio::test]
    async fn a_bad_file_is_waited_on_until_it_is_fixed() {
        let every = Duration::from_millis(10);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herd.toml");
        std::fs::write(&path, "master = \"http://m:6443\"\n").unwrap();
        let waiting = tokio::spawn({
            let path = path.clone();
            async move { load_when_valid(&path, every).await }
        });
        tokio::time::sleep(every * 5).await;
        assert!(!waiting.is_finished());
        std::fs::write(&path, "master = \"http://m:6443\"\ntoken = \"t\"\n").unwrap();
        let c = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.token, "t");
    }
}

//! The worker: joins a master over HTTP, then runs the pods the master assigns over MQTT.

pub mod adoption;
pub mod agent;
pub mod images;
pub mod join;
pub mod kernel;
pub mod net;
pub mod platform;
pub mod pods;
pub mod pulling;
pub mod runtime;
pub mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use pods::container::Env;
use pods::manager::Manager;
use runtime::LinuxRuntime;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub data_dir: PathBuf,
    pub join: String,
    pub token: String,
    /// Pins the master's CA for an https `join` URL.
    pub ca_hash: Option<String>,
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    pub heartbeat: Duration,
    pub stop_pods_on_exit: bool,
    /// First restart delay (Kubernetes: 10 s); tests shorten it.
    pub backoff_base: Duration,
    /// How pods are networked (`--pod-network`).
    pub pod_network: net::Mode,
    pub pull: PullOptions,
    /// When unused images are removed from this node.
    pub image_gc: images::gc::Policy,
}

/// How the worker gets images it lacks.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Straight to registries instead of through the master's cache.
    pub direct: bool,
    pub settings: crate::oci::RegistrySettings,
    /// Pretend to be a node of this platform (mixed-fleet tests on one machine).
    pub platform: Option<images::Platform>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--node-name {name:?}: {problem}")]
    NodeName { name: String, problem: String },
    #[error("--node-label {label:?}: {problem}")]
    Label { label: String, problem: String },
    #[error(transparent)]
    Join(#[from] join::JoinError),
    #[error(transparent)]
    Images(#[from] images::ImageError),
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
}

/// Parses `k=v` node labels, validating key and value like Kubernetes.
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>, WorkerError> {
    let mut out = BTreeMap::new();
    for l in labels {
        let (k, v) = l.split_once('=').ok_or_else(|| WorkerError::Label {
            label: l.clone(),
            problem: "expected key=value".into(),
        })?;
        crate::api::validate::validate_label_key(k).map_err(|problem| WorkerError::Label {
            label: l.clone(),
            problem,
        })?;
        crate::api::validate::validate_label_value(v).map_err(|problem| WorkerError::Label {
            label: l.clone(),
            problem,
        })?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Image store root for a worker data dir.
pub fn images_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("images")
}

pub async fn run(cfg: WorkerConfig, shutdown: watch::Receiver<bool>) -> Result<(), WorkerError> {
    crate::api::validate::validate_dns1123_subdomain(&cfg.node_name).map_err(|problem| {
        WorkerError::NodeName {
            name: cfg.node_name.clone(),
            problem,
        }
    })?;
    let dir = &cfg.data_dir;
    for sub in ["containers", "logs", "images", "state"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|source| WorkerError::DataDir {
            path: dir.join(sub),
            source,
        })?;
    }
    let creds_path = dir.join("node.json");
    // With credentials from an earlier join the master need not be reachable to start.
    let creds = match join::load(&creds_path)? {
        Some(c) if c.node_name == cfg.node_name && c.master == cfg.join => c,
        _ => {
            join::join(
                &cfg.join,
                &cfg.token,
                cfg.ca_hash.as_deref(),
                &cfg.node_name,
                &creds_path,
            )
            .await?
        }
    };
    tracing::info!(node = %creds.node_name, broker = %creds.mqtt_url, "joined");
    let mut store = images::ImageStore::open(&images_dir(dir))?;
    if let Some(p) = &cfg.pull.platform {
        platform::set_override(p.clone());
        store = store.with_platform(p.clone());
    }
    let images = Arc::new(store);
    let route = if cfg.pull.direct {
        pulling::Route::Direct
    } else {
        pulling::PullSource::master_route(&creds)
    };
    let pull = Arc::new(pulling::PullSource::new(route, cfg.pull.settings.clone()));
    tracing::info!(from = %pull.describe(), "images are pulled");
    let runtime = Arc::new(LinuxRuntime::new(
        dir.join("state"),
        PathBuf::from("/proc/self/exe"),
    ));
    let (desired_file, persisted) = state::DesiredFile::open(&dir.join("state"));
    if let Some(d) = &persisted {
        tracing::info!(
            pods = d.index.as_ref().map_or(0, |i| i.pods.len()),
            "loaded persisted desired state"
        );
    }
    // Containers of persisted pods are adopted, everything else a previous agent left is
    // removed, before any pod starts.
    let plan = adoption::adopt_or_sweep(&runtime, &images, dir, persisted.as_ref()).await;
    let network = Arc::new(net::Network::new(cfg.pod_network, &creds.node_name, dir));
    {
        // Sandboxes and addresses of pods no longer wanted go; wanted ones are kept for
        // their pods (adopted or restarted) to find.
        let keep: std::collections::HashSet<String> = persisted
            .as_ref()
            .map(|d| d.wanted())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.metadata.uid.clone())
            .collect();
        let n = network.clone();
        let _ = tokio::task::spawn_blocking(move || n.sweep(&keep)).await;
    }
    let (reports_tx, reports_rx) = mpsc::channel(1024);
    let images_store_for_gc = images.clone();
    let mut manager = Manager::new(
        Env {
            runtime,
            images,
            containers_dir: dir.join("containers"),
            logs_dir: dir.join("logs"),
            backoff_base: cfg.backoff_base,
            log_max_bytes: 10 << 20,
            net: network.clone(),
            pull,
        },
        reports_tx,
    );
    manager.adopt(plan.resume);
    tokio::spawn(images::gc::run(
        images_store_for_gc,
        dir.join("state"),
        cfg.image_gc.clone(),
        shutdown.clone(),
    ));
    agent::run(
        agent::AgentConfig {
            creds,
            labels: cfg.labels.clone(),
            heartbeat: cfg.heartbeat,
            stop_pods_on_exit: cfg.stop_pods_on_exit,
            desired: persisted.unwrap_or_default(),
            desired_file,
            net: network.clone(),
        },
        manager,
        reports_rx,
        shutdown,
    )
    .await?;
    if cfg.stop_pods_on_exit {
        // No pod is left to use the bridge, routes or NAT.
        let _ = tokio::task::spawn_blocking(move || network.shutdown()).await;
    }
    Ok(())
}

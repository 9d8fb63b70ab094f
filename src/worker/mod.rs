//! The worker: joins a master over HTTP, then runs the pods the master assigns over MQTT.

pub mod agent;
pub mod images;
pub mod join;
pub mod platform;
pub mod pods;
pub mod runtime;

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
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    pub heartbeat: Duration,
    pub stop_pods_on_exit: bool,
    /// First restart delay (Kubernetes: 10 s); tests shorten it.
    pub backoff_base: Duration,
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
    Url(#[from] crate::util::mqtt_url::UrlError),
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
    let creds = match join::load(&creds_path)? {
        Some(c) if c.node_name == cfg.node_name && c.master == cfg.join => c,
        _ => join::join(&cfg.join, &cfg.token, &cfg.node_name, &creds_path).await?,
    };
    tracing::info!(node = %creds.node_name, broker = %creds.mqtt_url, "joined");
    let images = Arc::new(images::ImageStore::open(&images_dir(dir))?);
    let runtime = Arc::new(LinuxRuntime::new(
        dir.join("state"),
        PathBuf::from("/proc/self/exe"),
    ));
    sweep_leftovers(&runtime, &images, dir).await;
    let (reports_tx, reports_rx) = mpsc::channel(1024);
    let manager = Manager::new(
        Env {
            runtime,
            images,
            containers_dir: dir.join("containers"),
            logs_dir: dir.join("logs"),
            backoff_base: cfg.backoff_base,
            log_max_bytes: 10 << 20,
        },
        reports_tx,
    );
    agent::run(
        agent::AgentConfig {
            creds,
            labels: cfg.labels.clone(),
            heartbeat: cfg.heartbeat,
            stop_pods_on_exit: cfg.stop_pods_on_exit,
        },
        manager,
        reports_rx,
        shutdown,
    )
    .await?;
    Ok(())
}

/// Containers a previous agent left behind (it was killed, or crashed) are stopped and removed
/// before the new agent starts pods: until re-adoption exists, a fresh agent cannot tell their
/// state, and a second copy of a pod must never run beside a stale one.
async fn sweep_leftovers(
    runtime: &Arc<LinuxRuntime>,
    images: &Arc<images::ImageStore>,
    dir: &std::path::Path,
) {
    use runtime::Runtime as _;
    let index = dir.join("state").join(".herd-bundles");
    let ids: Vec<String> = std::fs::read_dir(&index)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for id in &ids {
        tracing::warn!(container = %id, "stopping a container left by a previous agent");
        if let Err(e) = runtime.remove(id).await {
            tracing::warn!(container = %id, error = %e, "leftover container not fully removed");
        }
    }
    let containers = dir.join("containers");
    let pods: Vec<std::path::PathBuf> = std::fs::read_dir(&containers)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for pod_dir in pods {
        let attempts: Vec<std::path::PathBuf> = std::fs::read_dir(&pod_dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for a in attempts {
            if let Err(e) = images.unmount_rootfs(&a) {
                tracing::warn!(dir = %a.display(), error = %e, "leftover rootfs not unmounted");
            }
        }
        if let Some(uid) = pod_dir.file_name().and_then(|n| n.to_str()) {
            let cg = format!("/herd/{uid}");
            if let Err(e) = runtime::cgroups::remove(&cg, Duration::from_secs(5)) {
                tracing::warn!(cgroup = %cg, error = %e, "leftover pod cgroup not removed");
            }
        }
        let _ = std::fs::remove_dir_all(&pod_dir);
    }
    if !ids.is_empty() {
        tracing::info!(count = ids.len(), "leftover containers removed");
    }
}

//! `herd master`, `herd worker` and `herd up` (both in one process): start, print how to use
//! the cluster, run until SIGINT/SIGTERM, stop cleanly.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::cli::args::{LifecycleArgs, TlsArgs};
use crate::cli::{MasterArgs, UpArgs, WorkerArgs};
use crate::master::{self, MasterConfig};
use crate::worker::{self, WorkerConfig};

const HEARTBEAT: Duration = Duration::from_secs(5);

/// Tests shorten the first restart delay with `HERD_RESTART_BACKOFF_BASE_MS`; Kubernetes' 10 s
/// otherwise.
fn backoff_base() -> Duration {
    std::env::var("HERD_RESTART_BACKOFF_BASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// Resolves on SIGINT or SIGTERM (also what `herd firstboot` waits on while it retries).
pub(crate) async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers we can only run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn master_config(
    data_dir: &Path,
    api: &str,
    mqtt: &str,
    broker: &Option<String>,
    adv: &Option<String>,
    admin_conf: &Path,
    lifecycle: &LifecycleArgs,
    cluster_cidr: &str,
) -> anyhow::Result<MasterConfig> {
    Ok(MasterConfig {
        data_dir: data_dir.to_path_buf(),
        api_addr: api.to_string(),
        mqtt_addr: mqtt.to_string(),
        broker: broker.clone(),
        advertise_address: adv.clone(),
        admin_conf: admin_conf.to_path_buf(),
        heartbeat_timeout: Duration::from_secs(lifecycle.node_grace_seconds),
        eviction_grace: Duration::from_secs(lifecycle.eviction_seconds),
        tls: true,
        tls_sans: Vec::new(),
        insecure_registries: Vec::new(),
        registry_tag_ttl: crate::master::registry::DEFAULT_TAG_TTL,
        air_gapped: false,
        pod_net: crate::master::podcidr::Plan::parse(cluster_cidr)?,
    })
}

impl MasterConfig {
    fn with_registry(mut self, r: &crate::cli::args::RegistryArgs) -> MasterConfig {
        self.insecure_registries = r.insecure_registries.clone();
        self.registry_tag_ttl = r.registry_tag_ttl;
        self.air_gapped = r.air_gapped;
        self
    }

    fn with_tls(mut self, tls: &TlsArgs) -> MasterConfig {
        self.tls = !tls.insecure;
        self.tls_sans = tls.tls_sans.clone();
        self
    }
}

fn announce(m: &master::RunningMaster) {
    println!("herd master is up: API {}  MQTT {}", m.api_url, m.mqtt_url);
    println!("admin config: {}", m.admin_conf.display());
    println!("  export HERD_CONFIG={}", m.admin_conf.display());
    println!("join a worker with:");
    println!("  {}", m.join_line());
}

pub async fn master(args: &MasterArgs) -> anyhow::Result<()> {
    use crate::cli::args::MasterAction;
    match &args.action {
        Some(MasterAction::Backup(a)) => {
            master::maintenance::backup(&a.data_dir, &a.file)?;
            println!("state backed up to {}", a.file.display());
            return Ok(());
        }
        Some(MasterAction::Restore(a)) => {
            master::maintenance::restore(&a.data_dir, &a.file)?;
            println!(
                "state restored from {} into {}",
                a.file.display(),
                a.data_dir.display()
            );
            return Ok(());
        }
        None => {}
    }
    let admin_conf = args.data_dir.join("admin.conf");
    let cfg = master_config(
        &args.data_dir,
        &args.api_addr,
        &args.mqtt_addr,
        &args.broker,
        &args.advertise_address,
        &admin_conf,
        &args.lifecycle,
        &args.cluster_cidr,
    )?
    .with_tls(&args.tls)
    .with_registry(&args.registry);
    let m = master::start(cfg).await.context("starting master")?;
    announce(&m);
    signalled().await;
    tracing::info!("shutting down");
    m.shutdown().await;
    Ok(())
}

pub fn pull_options(args: &crate::cli::args::PullArgs) -> anyhow::Result<worker::PullOptions> {
    let settings = crate::oci::RegistrySettings::load(&args.registries)?
        .with_insecure(&args.insecure_registries)?;
    let platform = args
        .platform
        .as_deref()
        .map(crate::worker::images::Platform::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--platform: {e}"))?;
    Ok(worker::PullOptions {
        direct: args.pull_direct,
        settings,
        platform,
    })
}

pub async fn worker(args: &WorkerArgs) -> anyhow::Result<()> {
    // Before joining: a kernel that cannot run containers is reported with its fix at once.
    worker::kernel::check()?;
    let cfg = WorkerConfig {
        data_dir: args.data_dir.clone(),
        join: args.join.clone(),
        token: args.token.clone(),
        ca_hash: args.ca_hash.clone(),
        node_name: args
            .node_name
            .clone()
            .unwrap_or_else(worker::platform::hostname),
        labels: worker::parse_labels(&args.node_labels)?,
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
        // An agent restart (systemd, upgrade) must not touch pods: the next agent adopts them.
        stop_pods_on_exit: args.stop_pods_on_exit,
        backoff_base: backoff_base(),
        pod_network: worker::net::Mode::parse(&args.pod_network),
        pull: pull_options(&args.pull)?,
        image_gc: worker::images::gc::Policy {
            max_unused: args.image_gc_unused_for,
            high_percent: args.image_gc_high_percent,
            low_percent: args.image_gc_low_percent,
            ..Default::default()
        },
    };
    let (tx, rx) = watch::channel(false);
    let mut run = tokio::spawn(worker::run(cfg, rx));
    tokio::select! {
        r = &mut run => return r.context("worker task")?.context("worker"),
        _ = signalled() => {}
    }
    tracing::info!("shutting down");
    tx.send_replace(true);
    // With --stop-pods-on-exit the worker stops its pods (each within its grace period) before
    // returning; otherwise they keep running for the next agent to adopt.
    run.await.context("worker task")?.context("worker")
}

pub async fn up(args: &UpArgs) -> anyhow::Result<()> {
    // Before starting the master: its local worker must be able to run containers.
    worker::kernel::check()?;
    let master_dir = args.data_dir.join("master");
    let admin_conf = args.data_dir.join("admin.conf");
    let cfg = master_config(
        &master_dir,
        &args.api_addr,
        &args.mqtt_addr,
        &args.broker,
        &args.advertise_address,
        &admin_conf,
        &args.lifecycle,
        &args.cluster_cidr,
    )?
    .with_tls(&args.tls)
    .with_registry(&args.registry);
    let m = master::start(cfg).await.context("starting master")?;
    announce(&m);
    let wcfg = WorkerConfig {
        data_dir: args.data_dir.join("worker"),
        join: m.api_url.clone(),
        token: m.join_token.clone(),
        ca_hash: m.ca_hash.clone(),
        node_name: args
            .node_name
            .clone()
            .unwrap_or_else(worker::platform::hostname),
        labels: Default::default(),
        heartbeat: HEARTBEAT,
        stop_pods_on_exit: !args.leave_running,
        backoff_base: backoff_base(),
        pod_network: worker::net::Mode::parse(&args.pod_network),
        // The local worker pulls through its own master's cache, like every other node.
        pull: worker::PullOptions::default(),
        image_gc: Default::default(),
    };
    println!("local worker: node {}", wcfg.node_name);
    let (tx, rx) = watch::channel(false);
    let mut run = tokio::spawn(worker::run(wcfg, rx));
    let early = tokio::select! {
        r = &mut run => Some(r),
        _ = signalled() => None,
    };
    if let Some(r) = early {
        m.shutdown().await;
        return r.context("worker task")?.context("local worker");
    }
    tracing::info!(stop_pods = !args.leave_running, "shutting down");
    tx.send_replace(true);
    let _ = run.await;
    m.shutdown().await;
    Ok(())
}

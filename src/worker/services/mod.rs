//! The worker's service data plane: nftables rules for ClusterIPs and NodePorts (table
//! `ip herd-svc`), the node's DNS responder, and the ingress proxy. All three follow one
//! picture of the cluster's Services and Ingresses (`table::NetTable`), which the agent
//! builds from retained MQTT messages; each change becomes a new `Snapshot`.

pub mod dns;
pub mod ingress;
pub mod nft;
pub mod routes;
pub mod rules;
pub mod table;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::sync::watch;

pub use table::NetTable;

/// Everything the data plane derives from one table version.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub table: NetTable,
    pub routes: routes::Routes,
    pub names: dns::Names,
}

impl Snapshot {
    pub fn of(table: NetTable) -> Snapshot {
        Snapshot {
            routes: routes::build(&table),
            names: dns::names(&table),
            table,
        }
    }

    /// The ruleset text for this picture.
    pub fn ruleset(&self) -> String {
        let services: Vec<_> = self.table.services.values().collect();
        rules::ruleset(&services)
    }
}

/// What this node runs.
#[derive(Debug, Clone, Default)]
pub struct ServicesConfig {
    /// Load the nftables rules. Off when the worker has no pod network (several workers
    /// sharing one network namespace in tests): their rules would fight over one table.
    pub rules: bool,
    /// Addresses the DNS responder listens on besides the node's bridge address.
    pub dns_listen: Vec<SocketAddr>,
    /// Upstream resolvers; None = the `nameserver`s of /etc/resolv.conf.
    pub dns_upstreams: Option<Vec<SocketAddr>>,
    /// Where the ingress proxy listens (only on nodes labelled `herd.io/ingress=true`).
    pub ingress: Option<SocketAddr>,
}

/// The data plane's inputs: the table (from the agent) and, once the pod network knows it,
/// the node's bridge address (DNS listens there on port 53).
pub struct Inputs {
    pub table: watch::Receiver<Arc<NetTable>>,
    pub bridge_ip: watch::Receiver<Option<Ipv4Addr>>,
}

/// Runs the data plane until the task is dropped: snapshots follow the table, rules are
/// reloaded when their text changes, DNS and the ingress proxy read the latest snapshot.
pub async fn run(cfg: ServicesConfig, mut inputs: Inputs) {
    let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
    let mut tasks = Vec::new();
    let upstreams = {
        let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        cfg.dns_upstreams
            .clone()
            .unwrap_or_else(|| dns::upstreams(&conf, &cfg.dns_listen))
    };
    let responder = |ups: Vec<SocketAddr>| dns::Responder {
        snap: snap_rx.clone(),
        upstreams: Arc::new(ups),
    };
    for addr in &cfg.dns_listen {
        match dns::start(*addr, responder(upstreams.clone())).await {
            Ok(t) => {
                tracing::info!(%addr, "dns responder listening");
                tasks.extend(t);
            }
            Err(e) => tracing::warn!(%addr, error = %e, "dns responder cannot listen"),
        }
    }
    if let Some(addr) = cfg.ingress {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, "ingress proxy listening");
                tasks.push(tokio::spawn(ingress::Proxy::new(snap_rx.clone()).serve(l)));
            }
            Err(e) => tracing::warn!(%addr, error = %e, "ingress proxy cannot listen"),
        }
    }
    let mut bridge_dns: Option<(Ipv4Addr, Vec<tokio::task::JoinHandle<()>>)> = None;
    let loader = Arc::new(std::sync::Mutex::new(nft::Loader::default()));
    let mut retry: bool;
    loop {
        retry = false;
        let table = inputs.table.borrow_and_update().clone();
        let snap = Arc::new(Snapshot::of((*table).clone()));
        snap_tx.send_replace(snap.clone());
        if cfg.rules && snap.table.synced() {
            let script = snap.ruleset();
            let loader = loader.clone();
            let res = tokio::task::spawn_blocking(move || {
                loader
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .apply(&script)
            })
            .await;
            match res {
                Ok(Ok(true)) => {
                    tracing::debug!(services = snap.table.services.len(), "service rules loaded")
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "service rules not loaded; retrying");
                    retry = true;
                }
                Err(e) => tracing::warn!(error = %e, "service rules task failed"),
            }
        }
        let want = *inputs.bridge_ip.borrow_and_update();
        if bridge_dns.as_ref().map(|(ip, _)| *ip) != want {
            if let Some((_, old)) = bridge_dns.take() {
                old.iter().for_each(|t| t.abort());
            }
            if let Some(ip) = want {
                let addr = SocketAddr::from((ip, 53));
                let mut skip = cfg.dns_listen.clone();
                skip.push(addr);
                let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
                let ups = cfg
                    .dns_upstreams
                    .clone()
                    .unwrap_or_else(|| dns::upstreams(&conf, &skip));
                match dns::start(addr, responder(ups)).await {
                    Ok(t) => {
                        tracing::info!(%addr, "dns responder listening on the bridge");
                        bridge_dns = Some((ip, t));
                        if cfg.rules {
                            match tokio::task::spawn_blocking(move || nft::ensure_service_route(ip))
                                .await
                            {
                                Ok(Ok(true)) => {
                                    tracing::info!("service range routed through the bridge")
                                }
                                Ok(Ok(false)) => {}
                                Ok(Err(e)) => {
                                    tracing::warn!(error = %e, "service range not routable from the node")
                                }
                                Err(e) => tracing::warn!(error = %e, "service route task failed"),
                            }
                        }
                    }
                    // The bridge may not hold its address yet: try again shortly.
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "dns responder cannot listen on the bridge yet");
                        retry = true;
                    }
                }
            }
        }
        tokio::select! {
            r = inputs.table.changed() => if r.is_err() { break },
            r = inputs.bridge_ip.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)), if retry => {}
        }
    }
    for t in tasks {
        t.abort();
    }
    if let Some((_, t)) = bridge_dns {
        t.iter().for_each(|t| t.abort());
    }
}

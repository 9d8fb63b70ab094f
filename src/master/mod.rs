//! The master: SQLite store (truth), HTTP API, scheduler, controllers, MQTT bus and broker.

pub mod broker;
pub mod bus;
pub mod controllers;
pub mod gate;
pub mod ingest;
pub mod maintenance;
pub mod mosquitto;
pub mod podcidr;
pub mod podops;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::util::fsutil::{random_hex, write_atomic};
use crate::util::time::now_rfc3339;
use store::{Role, Store, TokenCheck};

#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub data_dir: PathBuf,
    pub api_addr: String,
    pub mqtt_addr: String,
    /// External broker URL; `None` runs the embedded broker on `mqtt_addr`.
    pub broker: Option<String>,
    /// Host or IP workers and the CLI should use to reach this master.
    pub advertise_address: Option<String>,
    /// Where to write the kubeconfig-format admin file.
    pub admin_conf: PathBuf,
    /// A node without heartbeats for this long is marked NotReady.
    pub heartbeat_timeout: Duration,
    /// How long pods stay bound to a NotReady node before they are replaced.
    pub eviction_grace: Duration,
    /// HTTPS and MQTTS with the cluster CA (false: plain, `--insecure`).
    pub tls: bool,
    /// Extra names for the server certificate.
    pub tls_sans: Vec<String>,
    /// Pod address plan (`--cluster-cidr`): one subnet of it per node.
    pub pod_net: podcidr::Plan,
    /// `--insecure-registry` hosts (added to registries.toml's).
    pub insecure_registries: Vec<String>,
    /// How long a pulled tag is served before upstream is asked again.
    pub registry_tag_ttl: Duration,
    /// Never fetch from upstream registries: serve pushed and already cached images only.
    pub air_gapped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} address {addr:?}: {problem}")]
    Addr {
        what: &'static str,
        addr: String,
        problem: String,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    #[error(transparent)]
    Maintenance(#[from] maintenance::MaintenanceError),
    #[error("admin config {path}: {message}")]
    AdminConf { path: PathBuf, message: String },
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("image registry: {0}")]
    Registry(#[from] registry::RegistryError),
}

/// A started master; dropping it does not stop it, `shutdown` does.
pub struct RunningMaster {
    /// URL the CLI and workers use (advertised host, or 127.0.0.1 for an unspecified bind).
    pub api_url: String,
    pub api_addr: SocketAddr,
    pub mqtt_url: String,
    pub join_token: String,
    /// `sha256:…` of the cluster CA (None with `--insecure`).
    pub ca_hash: Option<String>,
    pub admin_conf: PathBuf,
    pub store: Arc<Store>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    /// Held while serving: one master per data dir, no restore under a live one.
    _lock: maintenance::DirLock,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningMaster {
    /// The line printed at start that joins a board.
    pub fn join_line(&self) -> String {
        let mut line = format!(
            "herd worker --join {} --token {}",
            self.api_url, self.join_token
        );
        if let Some(h) = &self.ca_hash {
            line.push_str(&format!(" --ca-hash {h}"));
        }
        line
    }

    /// Stops serving and waits for in-flight requests.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        for t in self.tasks {
            t.abort();
        }
    }
}

fn parse_addr(what: &'static str, addr: &str) -> Result<SocketAddr, MasterError> {
    addr.parse()
        .map_err(|e: std::net::AddrParseError| MasterError::Addr {
            what,
            addr: addr.to_string(),
            problem: format!("{e} (expected HOST:PORT with an IP, e.g. 0.0.0.0:6443)"),
        })
}

/// The host to put into URLs for a bound address.
fn url_host(bound: &SocketAddr, advertise: Option<&str>) -> String {
    if let Some(a) = advertise {
        return a.to_string();
    }
    let ip = bound.ip();
    let ip = if ip.is_unspecified() {
        if ip.is_ipv4() {
            "127.0.0.1".parse().unwrap_or(ip)
        } else {
            "::1".parse().unwrap_or(ip)
        }
    } else {
        ip
    };
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        std::net::IpAddr::V4(v4) => v4.to_string(),
    }
}

/// Reads a secret file, or creates it with `make` (mode 0600) if missing or rejected by `ok`.
fn secret_file(
    path: &Path,
    ok: impl Fn(&str) -> bool,
    make: impl FnOnce() -> Result<String, MasterError>,
) -> Result<String, MasterError> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim().to_string();
        if ok(&s) {
            return Ok(s);
        }
    }
    let s = make()?;
    write_atomic(path, format!("{s}\n").as_bytes(), 0o600).map_err(|source| {
        MasterError::DataDir {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(s)
}

pub async fn start(cfg: MasterConfig) -> Result<RunningMaster, MasterError> {
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| MasterError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let lock = maintenance::lock_dir(dir)?;
    let store = Arc::new(Store::open(&dir.join("state.db"))?);

    let mqtt_password = secret_file(
        &dir.join("mqtt-master.secret"),
        |s| s.len() >= 32,
        || Ok(random_hex(24)),
    )?;
    let valid = |role: Role| {
        let store = store.clone();
        move |t: &str| matches!(store.check_token(t), Ok(TokenCheck::Valid(r)) if r == role)
    };
    let admin_token = secret_file(&dir.join("admin.token"), valid(Role::Admin), || {
        Ok(store.create_token(Role::Admin, None, &now_rfc3339())?)
    })?;
    let join_token = secret_file(&dir.join("join.token"), valid(Role::Join), || {
        Ok(store.create_token(Role::Join, Some(server::join_ttl()), &now_rfc3339())?)
    })?;

    let api_addr = parse_addr("api", &cfg.api_addr)?;
    let pki = if cfg.tls {
        let mut extra = cfg.tls_sans.clone();
        extra.extend(cfg.advertise_address.clone());
        Some(crate::pki::ensure(dir, &crate::pki::default_sans(&extra))?)
    } else {
        tracing::warn!(
            "--insecure: plain HTTP and MQTT, tokens and node passwords travel in clear text"
        );
        None
    };
    let acceptor = pki
        .as_ref()
        .map(|p| p.server_config().map(tokio_rustls::TlsAcceptor::from))
        .transpose()?;
    let mut gate_task = None;
    let mut public_mqtt = None;
    let (broker_url, endpoint) = match &cfg.broker {
        Some(url) => {
            crate::util::mqtt_url::parse(url).map_err(|e| MasterError::Addr {
                what: "broker",
                addr: url.clone(),
                problem: e.problem.to_string(),
            })?;
            (
                url.clone(),
                server::BrokerEndpoint::External { url: url.clone() },
            )
        }
        None => {
            // rumqttd listens on loopback only; the LAN sees the gate (TLS + topic ACLs).
            let internal = broker::resolve_port(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            broker::start(internal, store.clone(), mqtt_password.clone())?;
            let public = parse_addr("mqtt", &cfg.mqtt_addr)?;
            let gate_listener =
                tokio::net::TcpListener::bind(public)
                    .await
                    .map_err(|e| MasterError::Addr {
                        what: "mqtt",
                        addr: cfg.mqtt_addr.clone(),
                        problem: e.to_string(),
                    })?;
            let gate_addr = gate_listener.local_addr().map_err(|e| MasterError::Addr {
                what: "mqtt",
                addr: cfg.mqtt_addr.clone(),
                problem: e.to_string(),
            })?;
            let port = gate_addr.port();
            public_mqtt = Some(format!(
                "{}://{}:{port}",
                if cfg.tls { "mqtts" } else { "mqtt" },
                url_host(&gate_addr, cfg.advertise_address.as_deref())
            ));
            gate_task = Some(tokio::spawn(gate::serve(
                gate_listener,
                internal,
                acceptor.clone(),
            )));
            (
                format!("mqtt://127.0.0.1:{}", internal.port()),
                server::BrokerEndpoint::Embedded {
                    port,
                    advertise: cfg.advertise_address.clone(),
                    tls: cfg.tls,
                },
            )
        }
    };

    let (bus, eventloop) = bus::Bus::new(&broker_url, &mqtt_password)?;
    let liveness = Arc::new(ingest::Liveness::default());
    // Nodes known from before a restart start their heartbeat clock now: one that never comes
    // back is marked NotReady after the timeout instead of staying Ready forever.
    for n in store.list::<crate::api::Node>(None)? {
        liveness.beat(&n.metadata.name);
    }
    let (inbox_tx, inbox_rx) = mpsc::channel(1024);
    let mut tasks = vec![
        tokio::spawn(bus.clone().run(eventloop, inbox_tx)),
        tokio::spawn(ingest::run(store.clone(), liveness.clone(), inbox_rx)),
        tokio::spawn(controllers::desired::run(store.clone(), bus.clone())),
        tokio::spawn(controllers::podnet::run(
            store.clone(),
            bus.clone(),
            cfg.pod_net,
        )),
        tokio::spawn(controllers::replicaset::run(store.clone())),
        tokio::spawn(controllers::deployment::run(store.clone())),
        tokio::spawn(controllers::gc::run(store.clone())),
        tokio::spawn(controllers::nodelifecycle::run(
            store.clone(),
            cfg.eviction_grace,
        )),
        tokio::spawn(controllers::nodes::run(
            store.clone(),
            liveness,
            bus.connected(),
            cfg.heartbeat_timeout,
        )),
    ];

    tasks.extend(gate_task);
    let listener =
        tokio::net::TcpListener::bind(api_addr)
            .await
            .map_err(|e| MasterError::Addr {
                what: "api",
                addr: cfg.api_addr.clone(),
                problem: e.to_string(),
            })?;
    let bound = listener.local_addr().map_err(|e| MasterError::Addr {
        what: "api",
        addr: cfg.api_addr.clone(),
        problem: e.to_string(),
    })?;
    let api_url = format!(
        "{}://{}:{}",
        if cfg.tls { "https" } else { "http" },
        url_host(&bound, cfg.advertise_address.as_deref()),
        bound.port()
    );
    let blobs = Arc::new(registry::BlobStore::open(&registry::registry_dir(dir))?);
    tasks.push(tokio::spawn(registry::gc::run(
        blobs.clone(),
        store.clone(),
    )));
    let upstreams =
        registry::config::load(&dir.join(registry::config::FILE), &cfg.insecure_registries)?;
    let registry = Arc::new(registry::Registry::new(
        blobs,
        if cfg.air_gapped {
            Arc::new(registry::NoUpstream)
        } else {
            registry::upstream(&upstreams)
        },
        registry::RegistryOptions {
            tag_ttl: cfg.registry_tag_ttl,
        },
    ));
    let platforms = controllers::imageplatforms::ImagePlatforms::new(Arc::new(
        controllers::imageplatforms::RegistrySource(registry.clone()),
    ));
    tasks.push(tokio::spawn(controllers::scheduling::run(
        store.clone(),
        platforms,
    )));
    let (stop, mut stop_rx) = watch::channel(false);
    let state = server::AppState {
        store: store.clone(),
        bus,
        broker: endpoint,
        ca_pem: pki.as_ref().map(|p| Arc::from(p.ca_pem.as_str())),
        registry,
    };
    let server = tokio::spawn(server::serve(listener, state, acceptor, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));

    crate::cli::kubeconfig::write_admin_config(
        &cfg.admin_conf,
        "herd",
        &api_url,
        &admin_token,
        pki.as_ref().map(|p| p.ca_pem.as_bytes()),
    )
    .map_err(|e| MasterError::AdminConf {
        path: cfg.admin_conf.clone(),
        message: e.to_string(),
    })?;
    tracing::info!(api = %api_url, "master started");
    Ok(RunningMaster {
        api_url,
        api_addr: bound,
        mqtt_url: public_mqtt.unwrap_or(broker_url),
        join_token,
        ca_hash: pki.as_ref().map(crate::pki::Pki::hash),
        admin_conf: cfg.admin_conf.clone(),
        store,
        stop,
        server,
        _lock: lock,
        tasks,
    })
}

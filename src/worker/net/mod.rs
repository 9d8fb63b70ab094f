//! Pod networking on a worker: a sandbox of namespaces per pod, the node bridge, pod IPs,
//! routes to other nodes, NAT and hostPorts.
//!
//! Contracts other parts of herd rely on:
//! - Every pod gets network, IPC and UTS namespaces shared by all its containers, kept by bind
//!   mounts under `<data>/sandboxes/<uid>/{net,ipc,uts}` (see [`sandbox`]); `localhost` works
//!   between the containers of a pod. `hostNetwork: true` pods use the node's network and UTS.
//! - `--pod-network bridge` (default): the node's pod subnet (`spec.podCIDR`, assigned by the
//!   master, learnt from the retained `herd/v1/net/routes` message) has its first host
//!   address on the bridge `herd0`; each pod gets a veth (`hv<uid prefix>`, `hairpin on`) into
//!   it and an address from [`ipam`] (persisted in `<data>/state/ipam.json`), reported as
//!   `status.podIP`. `net.bridge.bridge-nf-call-iptables=1` and `ip_forward=1` are set, so pod
//!   traffic passes netfilter (service rules in table `herd-svc` rely on it).
//! - Routes to other nodes' subnets are host-gw routes with `proto 147` ([`routes::PROTO`]);
//!   herd never touches routes without that mark.
//! - nftables: herd's pod rules live only in table `ip herd-net` (masquerade out of the
//!   cluster CIDR, hostPort DNAT), loaded whole and atomically; tables named `herd-net*` are
//!   this module's.
//! - Pods get `/etc/hosts` (localhost, the pod's IP and hostname) and, on the bridge,
//!   `/etc/resolv.conf` with `nameserver <herd0 address>` (the node's DNS responder),
//!   Kubernetes' search path and `ndots:5`; hostNetwork pods get the node's resolv.conf.
//! - `--pod-network none`: pods get the namespaces (loopback only, no IP), nothing on the
//!   node changes; for several workers sharing one network namespace (tests).

pub mod cmd;
pub mod files;
pub mod ipam;
pub mod nft;
pub mod routes;
pub mod sandbox;

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::api::Pod;
use crate::proto::NetRoutes;
use crate::util::cidr::Ipv4Cidr;
use crate::worker::runtime::PodSandbox;
use ipam::Ipam;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bridge,
    None,
}

impl Mode {
    /// `--pod-network` (clap restricts the values).
    pub fn parse(s: &str) -> Mode {
        if s == "none" {
            Mode::None
        } else {
            Mode::Bridge
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("pod sandbox {dir}: {message}")]
    Sandbox { dir: PathBuf, message: String },
    #[error("pod sandbox {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
}

/// Removes herd's node network from the current network namespace: `herd0`, the `herd-net`
/// table and routes marked `proto 147`. Idempotent; for shutdown and `herd uninstall`.
pub fn remove_node_network() {
    if sandbox::if_index(sandbox::BRIDGE) != 0 {
        if let Err(e) = cmd::run("ip", &["link", "del", sandbox::BRIDGE], None) {
            tracing::warn!(error = %e, "bridge not removed");
        }
    }
    nft::remove();
    if let Err(e) = routes::reconcile(&routes::RouteSet::new()) {
        tracing::warn!(error = %e, "herd routes not removed");
    }
}

/// What this node learnt of the cluster's pod network (persisted in `state/net.json` so pods
/// start after a reboot without the master).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeNet {
    pub pod_cidr: Ipv4Cidr,
    pub cluster_cidr: Ipv4Cidr,
    #[serde(default)]
    pub node_ip: Option<Ipv4Addr>,
}

/// A pod's network, as set up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodNet {
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Option<Ipv4Addr>,
    pub sandbox: PodSandbox,
}

struct Inner {
    ipam: Option<Ipam>,
    /// Bridge subnet configured by this agent.
    bridge: Option<Ipv4Cidr>,
    /// hostPorts per pod uid.
    host_ports: BTreeMap<String, Vec<nft::HostPort>>,
}

/// The worker's pod network (I/O shell around the pure parts). Blocking methods: call them
/// from `spawn_blocking`.
pub struct Network {
    pub mode: Mode,
    node: String,
    sandboxes: PathBuf,
    state_dir: PathBuf,
    net: watch::Sender<Option<NodeNet>>,
    inner: Mutex<Inner>,
}

const NET_FILE: &str = "net.json";
const IPAM_FILE: &str = "ipam.json";

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Network {
    pub fn new(mode: Mode, node: &str, data_dir: &Path) -> Network {
        let state_dir = data_dir.join("state");
        let known: Option<NodeNet> = std::fs::read(state_dir.join(NET_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Network {
            mode,
            node: node.to_string(),
            sandboxes: data_dir.join("sandboxes"),
            state_dir,
            net: watch::channel(known).0,
            inner: Mutex::new(Inner {
                ipam: None,
                bridge: None,
                host_ports: BTreeMap::new(),
            }),
        }
    }

    /// The node network as known now (persisted or from the master).
    pub fn node_net(&self) -> watch::Receiver<Option<NodeNet>> {
        self.net.subscribe()
    }

    /// Applies the master's routes message: this node's subnet (bridge, IPAM), routes to the
    /// other nodes, NAT. Blocking.
    pub fn on_routes(&self, msg: &NetRoutes) {
        let Some(me) = msg.routes.iter().find(|r| r.node == self.node) else {
            tracing::debug!("routes message has no subnet for this node yet");
            return;
        };
        let (Ok(pod_cidr), Ok(cluster_cidr)) = (me.pod_cidr.parse(), msg.cluster_cidr.parse())
        else {
            tracing::warn!(pod_cidr = %me.pod_cidr, cluster = %msg.cluster_cidr, "malformed pod network in routes message");
            return;
        };
        let nn = NodeNet {
            pod_cidr,
            cluster_cidr,
            node_ip: me.node_ip.parse().ok(),
        };
        if self.net.borrow().as_ref() != Some(&nn) {
            tracing::info!(pod_cidr = %nn.pod_cidr, cluster = %nn.cluster_cidr, "pod network of this node");
            let json = serde_json::to_vec(&nn).unwrap_or_default();
            if let Err(e) =
                crate::util::fsutil::write_atomic(&self.state_dir.join(NET_FILE), &json, 0o600)
            {
                tracing::warn!(error = %e, "pod network not persisted");
            }
            self.net.send_replace(Some(nn.clone()));
        }
        if self.mode != Mode::Bridge {
            return;
        }
        if let Err(e) = self.ensure_node(&nn) {
            tracing::warn!(error = %e, "node bridge setup failed");
        }
        match routes::reconcile(&routes::wanted(&self.node, msg)) {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pod routes not reconciled"),
        }
    }

    /// Bridge, IPAM state and the nft table for `nn`. Blocking.
    fn ensure_node(&self, nn: &NodeNet) -> Result<(), NetError> {
        let mut inner = lock(&self.inner);
        if inner.bridge != Some(nn.pod_cidr) {
            sandbox::ensure_bridge(nn.pod_cidr, inner.bridge)?;
            inner.bridge = Some(nn.pod_cidr);
        }
        if inner.ipam.as_ref().map(|i| i.subnet) != Some(nn.pod_cidr) {
            inner.ipam = Some(Ipam::load(&self.state_dir.join(IPAM_FILE), nn.pod_cidr));
        }
        self.load_nft(&inner, nn)
    }

    fn load_nft(&self, inner: &Inner, nn: &NodeNet) -> Result<(), NetError> {
        let ports: Vec<nft::HostPort> = inner.host_ports.values().flatten().cloned().collect();
        nft::apply(&nft::ruleset(nn.pod_cidr, nn.cluster_cidr, &ports))
    }

    /// Sets up (or, after an agent restart, finds) the pod's sandbox and network. In bridge
    /// mode the node's subnet must be known (see `node_net`). Blocking.
    pub fn setup(&self, pod: &Pod) -> Result<PodNet, NetError> {
        let uid = &pod.metadata.uid;
        let host_network = pod.spec.host_network;
        let dir = sandbox::dir(&self.sandboxes, uid);
        std::fs::create_dir_all(&dir).map_err(|source| NetError::Io {
            path: dir.clone(),
            source,
        })?;
        let kinds = sandbox::Kinds {
            net: !host_network,
            uts: !host_network,
        };
        let hostname: String = pod.metadata.name.chars().take(63).collect();
        let complete = kinds
            .names()
            .iter()
            .all(|k| sandbox::is_ns_mount(&dir.join(k)));
        if !complete {
            sandbox::destroy(&dir);
            sandbox::create(&dir, kinds, &hostname)?;
        }
        let nn = self.net.borrow().clone();
        let mut out = PodNet {
            host_ip: nn.as_ref().and_then(|n| n.node_ip),
            ..Default::default()
        };
        let mut sb = PodSandbox {
            net: kinds.net.then(|| dir.join("net")),
            host_network,
            ipc: Some(dir.join("ipc")),
            uts: kinds.uts.then(|| dir.join("uts")),
            files: Vec::new(),
        };
        let bridged = self.mode == Mode::Bridge && !host_network;
        if bridged {
            let Some(nn) = nn.as_ref() else {
                return Err(NetError::Sandbox {
                    dir,
                    message: "the node's pod subnet is not known yet".into(),
                });
            };
            let ip = {
                let mut inner = lock(&self.inner);
                // First pod before any routes message (master away): the node part too.
                if inner.bridge != Some(nn.pod_cidr) {
                    sandbox::ensure_bridge(nn.pod_cidr, inner.bridge)?;
                    inner.bridge = Some(nn.pod_cidr);
                    self.load_nft(&inner, nn)?;
                }
                if inner.ipam.as_ref().map(|i| i.subnet) != Some(nn.pod_cidr) {
                    inner.ipam = Some(Ipam::load(&self.state_dir.join(IPAM_FILE), nn.pod_cidr));
                }
                let ipam = inner.ipam.get_or_insert_with(|| Ipam::new(nn.pod_cidr));
                let had = ipam.pods.contains_key(uid.as_str());
                let ip = ipam.allocate(uid)?;
                if !had {
                    ipam.save(&self.state_dir.join(IPAM_FILE))?;
                }
                ip
            };
            if !complete || sandbox::if_index(&sandbox::host_veth(uid)) == 0 {
                sandbox::plug(uid, &dir.join("net"), ip, nn.pod_cidr)?;
            }
            out.pod_ip = Some(ip);
            self.set_host_ports(pod, ip, nn)?;
        } else if host_network {
            out.pod_ip = out.host_ip;
        }
        // /etc/hosts always; resolv.conf where the pod can reach a nameserver.
        let write = |name: &str, text: &str| -> Result<PathBuf, NetError> {
            let p = dir.join(name);
            crate::util::fsutil::write_replace(&p, text.as_bytes(), 0o644).map_err(|source| {
                NetError::Io {
                    path: p.clone(),
                    source,
                }
            })?;
            Ok(p)
        };
        let hosts = if host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| files::hosts(None, ""))
        } else {
            files::hosts(out.pod_ip, &hostname)
        };
        sb.files
            .push((write("hosts", &hosts)?, "/etc/hosts".into()));
        if bridged {
            if let Some(nn) = nn.as_ref() {
                let text = files::resolv_conf(nn.pod_cidr.gateway(), pod.metadata.ns());
                sb.files
                    .push((write("resolv.conf", &text)?, "/etc/resolv.conf".into()));
            }
        } else if host_network {
            if let Ok(text) = std::fs::read_to_string("/etc/resolv.conf") {
                sb.files
                    .push((write("resolv.conf", &text)?, "/etc/resolv.conf".into()));
            }
        }
        out.sandbox = sb;
        Ok(out)
    }

    fn set_host_ports(&self, pod: &Pod, ip: Ipv4Addr, nn: &NodeNet) -> Result<(), NetError> {
        let ports: Vec<nft::HostPort> = pod
            .spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter())
            .filter_map(|p| {
                Some(nft::HostPort {
                    host_port: u16::try_from(p.host_port?).ok()?,
                    protocol: p.protocol,
                    pod_ip: ip,
                    container_port: u16::try_from(p.container_port).ok()?,
                })
            })
            .collect();
        let mut inner = lock(&self.inner);
        if ports.is_empty() && !inner.host_ports.contains_key(&pod.metadata.uid) {
            return Ok(());
        }
        inner.host_ports.insert(pod.metadata.uid.clone(), ports);
        self.load_nft(&inner, nn)
    }

    /// Removes everything of the pod: veth, namespaces, hostPort rules, its address. Blocking;
    /// idempotent.
    pub fn teardown(&self, uid: &str) {
        let dir = sandbox::dir(&self.sandboxes, uid);
        if self.mode == Mode::Bridge {
            sandbox::unplug(uid);
        }
        sandbox::destroy(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let mut inner = lock(&self.inner);
        if inner.host_ports.remove(uid).is_some() {
            if let Some(nn) = self.net.borrow().as_ref() {
                if let Err(e) = self.load_nft(&inner, nn) {
                    tracing::warn!(error = %e, "hostPort rules not updated");
                }
            }
        }
        self.release_ip(&mut inner, uid);
    }

    fn release_ip(&self, inner: &mut Inner, uid: &str) {
        if inner.ipam.is_none() {
            if let Some(nn) = self.net.borrow().as_ref() {
                inner.ipam = Some(Ipam::load(&self.state_dir.join(IPAM_FILE), nn.pod_cidr));
            }
        }
        if let Some(ipam) = inner.ipam.as_mut() {
            if ipam.release(uid) {
                if let Err(e) = ipam.save(&self.state_dir.join(IPAM_FILE)) {
                    tracing::warn!(error = %e, "ipam state not saved");
                }
            }
        }
    }

    /// After every pod stopped (`--stop-pods-on-exit`, `herd up`): removes what this node's
    /// pod network added (bridge, nft table, herd routes). Blocking.
    pub fn shutdown(&self) {
        if self.mode == Mode::Bridge {
            remove_node_network();
        }
    }

    /// At agent start: removes the sandboxes and addresses of pods not in `keep` (a previous
    /// agent's pods that are no longer wanted). Blocking.
    pub fn sweep(&self, keep: &HashSet<String>) {
        if let Ok(rd) = std::fs::read_dir(&self.sandboxes) {
            for e in rd.flatten() {
                let uid = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&uid) {
                    tracing::info!(%uid, "removing the sandbox of a pod no longer wanted");
                    self.teardown(&uid);
                }
            }
        }
        let mut inner = lock(&self.inner);
        let Some(nn) = self.net.borrow().clone() else {
            return;
        };
        let mut ipam = Ipam::load(&self.state_dir.join(IPAM_FILE), nn.pod_cidr);
        if !ipam.retain(&|u| keep.contains(u)).is_empty() {
            let _ = ipam.save(&self.state_dir.join(IPAM_FILE));
        }
        inner.ipam = Some(ipam);
    }
}

//! The worker's MQTT session: registers the node, heartbeats, receives desired pods (retained),
//! reports observed pods, answers log RPCs. One `select!` loop owns the pod manager, so pod
//! decisions never race each other.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};

use super::join::Credentials;
use super::pods::manager::{Desired, Manager, Report};
use super::services::NetTable;
use super::state::DesiredFile;
use crate::api::Pod;
use crate::proto::{
    self, topics, topics::Topic, DesiredPod, ObservedPod, RpcCall, RpcRequest, RpcResponse,
};
use crate::worker::runtime::Runtime;

pub struct AgentConfig {
    pub creds: Credentials,
    pub labels: BTreeMap<String, String>,
    pub heartbeat: Duration,
    /// On shutdown, stop every pod (else leave containers running).
    pub stop_pods_on_exit: bool,
    /// The desired set persisted by a previous agent (empty if none): run before the broker
    /// answers, replaced piece by piece as retained messages arrive.
    pub desired: Desired,
    /// Where the desired set is persisted whenever it changes.
    pub desired_file: DesiredFile,
    /// Receives the cluster's services and ingresses as they change (for the data plane).
    pub net_table: watch::Sender<Arc<NetTable>>,
    /// Pod networking: fed the master's routes message.
    pub net: Arc<crate::worker::net::Network>,
}

/// Reconnect delays: start small, double, stay short so a node is Ready again within a few
/// seconds of its broker's return (a refused connect to a down broker costs nothing).
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_millis(1600);

/// Random extra delay up to half of `d`, so a fleet does not reconnect in lockstep after a
/// broker restart.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = match getrandom::fill(&mut b) {
        Ok(()) => u16::from_le_bytes(b),
        // No entropy: fall back on the pid, which still differs between boards.
        Err(_) => std::process::id() as u16,
    };
    d / 2 * u32::from(r) / u32::from(u16::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Url(#[from] crate::util::mqtt_url::UrlError),
    #[error("the broker is mqtts:// but node.json holds no CA certificate: join again")]
    NoCa,
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node's MQTT session as the master expects it: client id = node name, its credentials,
/// MQTTS trusting only the CA pinned at join, a retained "offline" Last Will. Shared with the
/// simulated nodes of the autonomy benchmark, so they speak exactly what a worker speaks.
pub fn session_options(creds: &Credentials) -> Result<MqttOptions, AgentError> {
    let node = &creds.node_name;
    let (host, port) = crate::util::mqtt_url::parse(&creds.mqtt_url)?;
    let mut opts = MqttOptions::new(node.clone(), host, port);
    opts.set_credentials(creds.username.clone(), creds.password.clone());
    if crate::util::mqtt_url::is_tls(&creds.mqtt_url) {
        // Without the pinned CA, MQTTS cannot be verified.
        let pem = creds.ca_cert.as_deref().ok_or(AgentError::NoCa)?;
        let der = crate::pki::der_from_pem(pem, std::path::Path::new("node.json"))?;
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(crate::pki::client_config(&der)?),
        ));
    }
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_clean_session(true);
    opts.set_max_packet_size(proto::MAX_PAYLOAD + 4096, proto::MAX_PAYLOAD + 4096);
    opts.set_last_will(LastWill::new(
        topics::online(node),
        "false",
        QoS::AtLeastOnce,
        true,
    ));
    Ok(opts)
}

pub async fn run<R: Runtime>(
    mut cfg: AgentConfig,
    mut manager: Manager<R>,
    mut reports: mpsc::Receiver<Report>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let node = cfg.creds.node_name.clone();
    let opts = session_options(&cfg.creds)?;
    let (host, port) = opts.broker_address();
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    crate::util::mqtt_net::tune(&mut eventloop);
    // The MQTT event loop runs in its own task so it is polled continuously: a `select!` that
    // drops a half-done `poll()` whenever another branch wins delayed publishes until the next
    // one pushed them out (status reports arrived in pairs, tens of ms late).
    let (events_tx, mut events) = mpsc::channel::<Result<Event, String>>(1024);
    let pump = tokio::spawn(pump_events(eventloop, events_tx));

    let mut desired = std::mem::take(&mut cfg.desired);
    // Persisted pods run now, master or not (edge autonomy); running ones were adopted.
    manager.reconcile(&desired);
    // Last status sent per pod uid, resent after a reconnect (the master may have missed it).
    let mut observed: HashMap<String, (String, String, Vec<u8>)> = HashMap::new();
    let running: Shared<HashSet<String>> = Arc::default();
    let cancels: Shared<HashMap<String, watch::Sender<bool>>> = Arc::default();
    let logs_dir = manager.logs_dir();
    let mut heartbeat = tokio::time::interval(cfg.heartbeat);
    let mut connected = false;
    let mut net_table = NetTable::default();
    let (routes_tx, routes_rx) = watch::channel(None);
    let routes_task = tokio::spawn(apply_routes(cfg.net.clone(), routes_rx));

    loop {
        tokio::select! {
            Some(ev) = events.recv() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    tracing::info!(node = %node, "connected to broker");
                    let _ = client.try_subscribe(topics::desired_filter(&node), QoS::AtLeastOnce);
                    let _ = client.try_subscribe(topics::rpc_request(&node), QoS::AtLeastOnce);
                    let _ = client.try_subscribe(topics::net_routes(), QoS::AtLeastOnce);
                    for f in proto::services::filters() {
                        let _ = client.try_subscribe(f, QoS::AtLeastOnce);
                    }
                    let _ = client.try_publish(topics::online(&node), QoS::AtLeastOnce, true, "true");
                    report_all(&client, &node, &host, port, &cfg.labels, &observed);
                }
                Ok(Event::Incoming(Packet::Publish(p))) if proto::services::parse(&p.topic).is_some() => {
                    if net_table.apply(&p.topic, &p.payload) {
                        cfg.net_table.send_replace(Arc::new(net_table.clone()));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topics::net_routes() => {
                    match proto::decode::<proto::NetRoutes>(&p.topic, &p.payload) {
                        Ok(r) => { routes_tx.send_replace(Some(r)); }
                        Err(e) if !p.payload.is_empty() => tracing::warn!(error = %e, "dropping malformed routes message"),
                        Err(_) => {}
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if handle_publish(&node, &p.topic, &p.payload, &mut desired, &client, &logs_dir, &running, &cancels) {
                        tracing::info!(node = %node, "master asked for a resync: reporting every pod");
                        report_all(&client, &node, &host, port, &cfg.labels, &observed);
                        continue;
                    }
                    match cfg.desired_file.save(&desired) {
                        Ok(true) => tracing::debug!("desired state persisted"),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "desired state not persisted; pods keep running"),
                    }
                    manager.reconcile(&desired);
                    if p.topic == topics::desired_index(&node) {
                        collect_claims(&manager, &desired);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        tracing::warn!(error = %e, "broker connection lost; pods keep running");
                        connected = false;
                    }
                }
            },
            Some(r) = reports.recv() => match r {
                Report::Status { pod, status } => {
                    lock(&running).insert(pod.metadata.uid.clone());
                    tracing::debug!(pod = %pod.metadata.name, phase = %status.phase, "publishing observed status");
                    let msg = ObservedPod { v: proto::VERSION, uid: pod.metadata.uid.clone(), generation: pod.metadata.generation, gone: false, status };
                    let payload = proto::encode(&msg);
                    let (ns, name) = (pod.metadata.ns().to_string(), pod.metadata.name.clone());
                    // QoS 0: status is level-triggered (resent after every reconnect), and the broker's
                    // PUBACK would stall its next write to us behind our delayed ACK (see master::bus).
                    let _ = client.try_publish(topics::observed(&node, &ns, &name), QoS::AtMostOnce, false, payload.clone());
                    observed.insert(pod.metadata.uid.clone(), (ns, name, payload));
                }
                Report::Stopped { pod } => {
                    let uid = pod.metadata.uid.clone();
                    lock(&running).remove(&uid);
                    observed.remove(&uid);
                    manager.finished(&uid);
                    let msg = ObservedPod { v: proto::VERSION, uid: uid.clone(), generation: pod.metadata.generation, gone: true, status: Default::default() };
                    let _ = client.try_publish(topics::observed(&node, pod.metadata.ns(), &pod.metadata.name), QoS::AtLeastOnce, false, proto::encode(&msg));
                    manager.reconcile(&desired);
                }
            },
            _ = heartbeat.tick() => {
                if connected {
                    let hb = proto::Heartbeat { v: proto::VERSION, time: crate::util::time::now_rfc3339(), pods_running: manager.running_count() as u32, memory_used_bytes: 0, load1: load1() };
                    let _ = client.try_publish(topics::heartbeat(&node), QoS::AtMostOnce, false, proto::encode(&hb));
                }
            }
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                if cfg.stop_pods_on_exit {
                    tracing::info!("stopping all pods");
                    // Keep the session alive (keepalive, final statuses) while pods stop within
                    // their grace periods, or the broker would fire our Last Will meanwhile.
                    let mut stopping = std::pin::pin!(manager.stop_all());
                    loop {
                        tokio::select! {
                            _ = &mut stopping => break,
                            // Keep draining so the event pump never blocks on a full channel.
                            _ = events.recv() => {},
                            Some(r) = reports.recv() => {
                                if let Report::Status { pod, status } = r {
                                    let msg = ObservedPod { v: proto::VERSION, uid: pod.metadata.uid.clone(), generation: pod.metadata.generation, gone: false, status };
                                    let _ = client.try_publish(topics::observed(&node, pod.metadata.ns(), &pod.metadata.name), QoS::AtMostOnce, false, proto::encode(&msg));
                                }
                            }
                        }
                    }
                }
                // Offline only when the pods went with us. An agent that leaves its pods running
                // is usually restarting (systemctl restart, upgrade): announcing "offline" would
                // turn the node NotReady and start evictions for a sub-second gap. If it stays
                // away, missed heartbeats mark the node NotReady anyway.
                if cfg.stop_pods_on_exit {
                    let _ = client.try_publish(topics::online(&node), QoS::AtLeastOnce, true, "false");
                }
                // Let the eventloop flush the offline message and the disconnect.
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while let Some(Ok(_)) = events.recv().await {}
                }).await;
                pump.abort();
                routes_task.abort();
                return Ok(());
            }
        }
    }
}

/// Deletes claim data the master no longer binds to this node (reclaim policy Delete), in the
/// background; claims of running or wanted pods are never touched.
fn collect_claims<R: Runtime>(manager: &Manager<R>, desired: &Desired) {
    let Some(bound) = desired.index.as_ref().and_then(|i| i.claims.clone()) else {
        return;
    };
    let mut in_use = manager.claims_in_use();
    for p in desired.wanted() {
        in_use.extend(crate::worker::volumes::claim_dirs(p, desired.sources_of(p)));
    }
    let layout = manager.volume_layout();
    tokio::task::spawn_blocking(move || {
        crate::worker::volumes::gc_claims(&layout, &bound, &in_use);
    });
}

/// Applies the latest routes message, one at a time, and again every 30 s so a route or
/// rule removed by hand comes back (level-triggered).
async fn apply_routes(
    net: Arc<crate::worker::net::Network>,
    mut rx: watch::Receiver<Option<proto::NetRoutes>>,
) {
    loop {
        let latest = rx.borrow_and_update().clone();
        if let Some(r) = latest {
            let n = net.clone();
            let _ = tokio::task::spawn_blocking(move || n.on_routes(&r)).await;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// Polls the MQTT event loop forever, reconnecting with backoff and jitter, and hands the
/// agent what it acts on: connection acks, incoming publishes and errors.
async fn pump_events(mut eventloop: rumqttc::EventLoop, tx: mpsc::Sender<Result<Event, String>>) {
    let mut backoff = RECONNECT_MIN;
    let mut session_up = false;
    let mut refusals = RefusalLog::default();
    loop {
        match eventloop.poll().await {
            Ok(ev @ Event::Incoming(Packet::ConnAck(_))) => {
                backoff = RECONNECT_MIN;
                session_up = true;
                refusals = RefusalLog::default();
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            Ok(ev @ Event::Incoming(Packet::Publish(_))) => {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if !session_up && refused_login(&e) {
                    refusals.note(std::time::Instant::now());
                }
                session_up = false;
                if tx.send(Err(e.to_string())).await.is_err() {
                    return;
                }
                // Forever: the pods run on regardless, and the session resyncs on return.
                tokio::time::sleep(backoff + jitter(backoff)).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// A connect the broker ended before its CONNACK: how rumqttd refuses a login (it sends no
/// refusal code), e.g. after `herd node rm` revoked this node's credentials.
fn refused_login(e: &rumqttc::ConnectionError) -> bool {
    matches!(
        e,
        rumqttc::ConnectionError::MqttState(rumqttc::StateError::ConnectionAborted)
            | rumqttc::ConnectionError::ConnectionRefused(_)
    )
}

/// Says (at most once a minute) that the broker refuses this node's login: the agent keeps
/// retrying and the pods keep running, but an operator must re-join the node.
#[derive(Default)]
struct RefusalLog {
    count: u64,
    last: Option<std::time::Instant>,
}

impl RefusalLog {
    fn note(&mut self, now: std::time::Instant) {
        self.count += 1;
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(60))
        {
            return;
        }
        self.last = Some(now);
        tracing::warn!(
            attempts = self.count,
            "mqtt login refused: the broker closed the connection without accepting this \
             node's credentials (was it removed with `herd node rm`?); pods keep running; to \
             re-join, delete node.json in the data dir and start with a new join token"
        );
    }
}

/// Publishes the node's info and the last status of every pod: after a reconnect, or when the
/// master asks (it may have missed reports sent while it was away).
fn report_all(
    client: &AsyncClient,
    node: &str,
    host: &str,
    port: u16,
    labels: &BTreeMap<String, String>,
    observed: &HashMap<String, (String, String, Vec<u8>)>,
) {
    let ip = super::platform::local_ip_towards(host, port);
    let info = proto::NodeInfo {
        v: proto::VERSION,
        node: super::platform::node(node, labels, ip),
    };
    let _ = client.try_publish(
        topics::info(node),
        QoS::AtLeastOnce,
        true,
        proto::encode(&info),
    );
    for (ns, name, payload) in observed.values() {
        let _ = client.try_publish(
            topics::observed(node, ns, name),
            QoS::AtMostOnce,
            false,
            payload.clone(),
        );
    }
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Applies one incoming message; true when it is the master's resync request, which the
/// caller answers (it owns the observed statuses).
#[allow(clippy::too_many_arguments)]
fn handle_publish(
    node: &str,
    topic: &str,
    payload: &[u8],
    desired: &mut Desired,
    client: &AsyncClient,
    logs_dir: &std::path::Path,
    running: &Shared<HashSet<String>>,
    cancels: &Shared<HashMap<String, watch::Sender<bool>>>,
) -> bool {
    let Some(t) = topics::parse(topic) else {
        tracing::warn!(%topic, "dropping message on unknown topic");
        return false;
    };
    match t {
        Topic::DesiredIndex { node: n } if n == node => {
            if payload.is_empty() {
                desired.index = Some(Default::default());
                return false;
            }
            match proto::decode(topic, payload) {
                Ok(idx) => desired.index = Some(idx),
                Err(e) => tracing::warn!(error = %e, "dropping malformed desired index"),
            }
        }
        Topic::Desired { node: n, ns, pod } if n == node => {
            let key = (ns.to_string(), pod.to_string());
            if payload.is_empty() {
                desired.specs.remove(&key);
                desired.sources.remove(&key);
                return false;
            }
            match proto::decode::<DesiredPod>(topic, payload) {
                Ok(d) if d.pod.metadata.ns() == ns && d.pod.metadata.name == pod => {
                    desired.sources.insert(key.clone(), d.sources);
                    desired.specs.insert(key, d.pod);
                }
                Ok(_) => {
                    tracing::warn!(%topic, "dropping desired pod whose name does not match its topic")
                }
                Err(e) => tracing::warn!(error = %e, "dropping malformed desired pod"),
            }
        }
        Topic::RpcRequest { node: n } if n == node => {
            match proto::decode::<RpcRequest>(topic, payload) {
                Ok(RpcRequest {
                    call: RpcCall::Resync,
                    ..
                }) => return true,
                Ok(req) => rpc(node, req, desired, client, logs_dir, running, cancels),
                Err(e) => tracing::warn!(error = %e, "dropping malformed rpc request"),
            }
        }
        _ => tracing::warn!(%topic, "dropping message not meant for this node"),
    }
    false
}

/// The log file of a container's current (or previous) attempt: the highest-numbered one.
fn attempt_log(
    logs_dir: &std::path::Path,
    uid: &str,
    container: &str,
    previous: bool,
) -> Option<PathBuf> {
    let dir = logs_dir.join(uid).join(container);
    let mut attempts: Vec<u32> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    attempts.sort_unstable();
    let pick = if previous {
        attempts.iter().rev().nth(1)
    } else {
        attempts.last()
    };
    pick.map(|a| dir.join(format!("{a}.log")))
}

fn rpc(
    node: &str,
    req: RpcRequest,
    desired: &Desired,
    client: &AsyncClient,
    logs_dir: &std::path::Path,
    running: &Shared<HashSet<String>>,
    cancels: &Shared<HashMap<String, watch::Sender<bool>>>,
) {
    let resp_topic = topics::rpc_response(node, &req.id);
    let reply = |seq: u64, data: String, error: Option<String>, eof: bool| RpcResponse {
        v: proto::VERSION,
        id: req.id.clone(),
        seq,
        data,
        error,
        eof,
    };
    match req.call {
        RpcCall::Cancel { target } => {
            if let Some(tx) = lock(cancels).remove(&target) {
                tx.send_replace(true);
            }
        }
        // Answered by the agent loop, which owns the statuses (see `handle_publish`).
        RpcCall::Resync => {}
        RpcCall::Logs {
            namespace,
            pod,
            uid,
            container,
            tail_lines,
            follow,
            previous,
        } => {
            let known = desired
                .specs
                .get(&(namespace.clone(), pod.clone()))
                .is_some_and(|p: &Pod| p.metadata.uid == uid);
            let path = attempt_log(logs_dir, &uid, &container, previous);
            let Some(path) = path.filter(|_| known || lock(running).contains(&uid)) else {
                let msg = if previous {
                    format!(
                        "previous terminated container \"{container}\" in pod \"{pod}\" not found"
                    )
                } else {
                    format!("container \"{container}\" in pod \"{pod}\" has no logs yet (is it waiting to start?)")
                };
                let _ = client.try_publish(
                    resp_topic,
                    QoS::AtLeastOnce,
                    false,
                    proto::encode(&reply(0, String::new(), Some(msg), true)),
                );
                return;
            };
            let client = client.clone();
            if !follow {
                let resp = match crate::worker::runtime::logs::read_tail(&path, tail_lines) {
                    Ok(text) => reply(0, text, None, true),
                    Err(e) => reply(0, String::new(), Some(e.to_string()), true),
                };
                tokio::spawn(async move {
                    send_chunked(&client, &resp_topic, resp).await;
                });
                return;
            }
            let (cancel_tx, mut cancel_rx) = watch::channel(false);
            lock(cancels).insert(req.id.clone(), cancel_tx);
            let running = running.clone();
            let cancels = cancels.clone();
            let id = req.id.clone();
            tokio::spawn(async move {
                let mut rx = crate::worker::runtime::logs::follow(path, tail_lines);
                let mut seq = 0;
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        chunk = rx.recv() => match chunk {
                            Some(data) => {
                                let r = RpcResponse { v: proto::VERSION, id: id.clone(), seq, data, error: None, eof: false };
                                seq += 1;
                                send_chunked(&client, &resp_topic, r).await;
                            }
                            None => break,
                        },
                        _ = async { let _ = cancel_rx.wait_for(|c| *c).await; } => break,
                        _ = tick.tick() => {
                            // The stream ends with the pod, as kubectl's does with the container.
                            if seq > 0 && !lock(&running).contains(&uid) { break; }
                            if seq == 0 {
                                // First answer even if the log is empty, so the master
                                // knows the stream is alive.
                                let r = RpcResponse { v: proto::VERSION, id: id.clone(), seq, data: String::new(), error: None, eof: false };
                                seq += 1;
                                send_chunked(&client, &resp_topic, r).await;
                            }
                        }
                    }
                }
                lock(&cancels).remove(&id);
                let r = RpcResponse {
                    v: proto::VERSION,
                    id: id.clone(),
                    seq,
                    data: String::new(),
                    error: None,
                    eof: true,
                };
                let _ = client
                    .publish(resp_topic, QoS::AtLeastOnce, false, proto::encode(&r))
                    .await;
            });
        }
    }
}

/// Splits large text into payload-sized pieces (only the last keeps `eof`).
async fn send_chunked(client: &AsyncClient, topic: &str, resp: RpcResponse) {
    const CHUNK: usize = 256 * 1024;
    let RpcResponse {
        v,
        id,
        seq,
        data,
        error,
        eof,
    } = resp;
    let mut pieces: Vec<String> = Vec::new();
    let mut rest = data.as_str();
    while rest.len() > CHUNK {
        let mut cut = CHUNK;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    pieces.push(rest.to_string());
    let n = pieces.len();
    for (i, p) in pieces.into_iter().enumerate() {
        let last = i + 1 == n;
        let r = RpcResponse {
            v,
            id: id.clone(),
            seq: seq + i as u64,
            data: p,
            error: if last { error.clone() } else { None },
            eof: last && eof,
        };
        let _ = client
            .publish(
                topic.to_string(),
                QoS::AtLeastOnce,
                false,
                proto::encode(&r),
            )
            .await;
    }
}

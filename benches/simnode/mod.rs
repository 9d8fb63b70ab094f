//! A simulated herd node for benchmarks: the real protocol without containers, so one bench
//! process can stand in for a fleet.
//!
//! Each node joins through the master's join API with a token (pinning the CA hash over
//! https), opens an MQTT session with the credentials it got (MQTTS with the pinned CA when
//! the URL says so; client id = node name, Last Will `online=false`), and behaves like
//! `worker::agent` on the wire: on every ConnAck it subscribes to its desired topics and its
//! RPC requests, publishes `online` and `info` (retained) and re-sends the last status of every
//! pod; it heartbeats (QoS 0); every pod in its desired index whose spec arrived is reported
//! Running with a Ready=True condition at once; a pod being deleted, or one that left the
//! index, is reported `gone`; `Resync` is answered by re-publishing info and every status; a
//! lost broker is retried with the agent's backoff (200 ms doubling to 1.6 s, plus up to 50 %
//! jitter).
//!
//! The bench steers the fleet through one number, the *round*: every container reports
//! `restartCount = round`, as if each had restarted once per round. A node's info is what
//! `platform::node` says of this machine, as a real worker's, so re-registering after a
//! reconnect changes nothing in the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herd::api::pod::{ContainerState, StateRunning};
use herd::api::{ContainerStatus, Pod, PodPhase, PodStatus};
use herd::proto::{self, topics, topics::Topic, ObservedPod, RpcCall, RpcRequest, RpcResponse};
use herd::worker::pods::manager::Desired;
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_millis(1600);

/// What the bench can read about one node's session.
#[derive(Default)]
pub struct Stats {
    /// ConnAcks received (1 after the first connect).
    pub connects: AtomicU64,
    /// When the last ConnAck arrived.
    pub last_connect: Mutex<Option<Instant>>,
}

/// A pod a node started (its desired spec and the index entry had both arrived).
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub node: String,
    pub pod: String,
}

/// A fleet of simulated nodes running as tokio tasks; dropping it ends every session (the
/// broker then publishes their Last Wills).
pub struct Fleet {
    pub names: Vec<String>,
    pub stats: Vec<Arc<Stats>>,
    /// Every pod start, in order.
    pub arrivals: Arc<Mutex<Vec<Arrival>>>,
    round: watch::Sender<u32>,
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Joins `n` nodes named `{prefix}-{i:03}` (credentials files under `dir`) and starts
    /// their sessions. Returns once every join answered; sessions connect in the background.
    pub async fn join(
        api_url: &str,
        token: &str,
        ca_hash: Option<&str>,
        prefix: &str,
        n: usize,
        dir: &Path,
    ) -> Fleet {
        std::fs::create_dir_all(dir).expect("sim node credentials dir");
        let (round, _) = watch::channel(0u32);
        let mut fleet = Fleet {
            names: Vec::new(),
            stats: Vec::new(),
            arrivals: Arc::default(),
            round,
            tasks: Vec::new(),
        };
        for i in 0..n {
            let name = format!("{prefix}-{i:03}");
            let path = dir.join(format!("{name}.json"));
            let creds = herd::worker::join::join(api_url, token, ca_hash, &name, &path)
                .await
                .unwrap_or_else(|e| panic!("sim node {name}: {e}"));
            let stats = Arc::new(Stats::default());
            let (handle, pump) = start(
                creds,
                fleet.round.subscribe(),
                stats.clone(),
                fleet.arrivals.clone(),
            );
            fleet.tasks.push(handle);
            fleet.tasks.push(pump);
            fleet.names.push(name);
            fleet.stats.push(stats);
        }
        fleet
    }

    /// Sets the round: every pod's restartCount follows.
    pub fn set_round(&self, round: u32) {
        self.round.send_replace(round);
    }

    /// The latest ConnAck over the fleet, if every node has connected at least `connects`
    /// times.
    pub fn all_connected(&self, connects: u64) -> Option<Instant> {
        let mut last = None;
        for s in &self.stats {
            if s.connects.load(Ordering::SeqCst) < connects {
                return None;
            }
            let t = *lock(&s.last_connect);
            last = last.max(t);
        }
        last
    }

    /// Pods started at or after `since`.
    pub fn arrivals_since(&self, since: Instant) -> Vec<Arrival> {
        lock(&self.arrivals)
            .iter()
            .filter(|a| a.at >= since)
            .cloned()
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = getrandom::fill(&mut b).map_or(0, |()| u16::from_le_bytes(b));
    d / 2 * u32::from(r) / u32::from(u16::MAX)
}

fn start(
    creds: herd::worker::join::Credentials,
    round: watch::Receiver<u32>,
    stats: Arc<Stats>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
) -> (JoinHandle<()>, JoinHandle<()>) {
    let node = creds.node_name.clone();
    // Exactly the agent's session: credentials, MQTTS with the pinned CA, Last Will.
    let opts = herd::worker::agent::session_options(&creds).expect("session options from join");
    let (client, mut eventloop) = AsyncClient::new(opts, 4096);
    herd::util::mqtt_net::tune(&mut eventloop);
    let (tx, rx) = mpsc::channel(1024);
    let pump = tokio::spawn(pump(eventloop, tx));
    let sim = SimNode {
        node,
        client,
        round,
        desired: Desired::default(),
        pods: BTreeMap::new(),
        gone_sent: HashSet::new(),
        connected: false,
        stats,
        arrivals,
    };
    (tokio::spawn(sim.run(rx)), pump)
}

/// Polls the event loop continuously (as the agent does), reconnecting with backoff.
async fn pump(mut eventloop: EventLoop, tx: mpsc::Sender<Result<Event, String>>) {
    let mut backoff = RECONNECT_MIN;
    loop {
        match eventloop.poll().await {
            Ok(ev @ Event::Incoming(Packet::ConnAck(_) | Packet::Publish(_))) => {
                if matches!(ev, Event::Incoming(Packet::ConnAck(_))) {
                    backoff = RECONNECT_MIN;
                }
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                if tx.send(Err(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff + jitter(backoff)).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// A pod the node "runs".
struct SimPod {
    ns: String,
    name: String,
    generation: i64,
    /// When the node first started it (RFC 3339): start time and condition transitions.
    started: String,
    /// `(name, image)` of each container.
    containers: Vec<(String, String)>,
}

struct SimNode {
    node: String,
    client: AsyncClient,
    round: watch::Receiver<u32>,
    desired: Desired,
    /// Running pods by uid.
    pods: BTreeMap<String, SimPod>,
    /// Pods being deleted that this node never ran, reported gone once.
    gone_sent: HashSet<String>,
    connected: bool,
    stats: Arc<Stats>,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl SimNode {
    async fn run(mut self, mut events: mpsc::Receiver<Result<Event, String>>) {
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    None => return,
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        self.connected = true;
                        self.stats.connects.fetch_add(1, Ordering::SeqCst);
                        *lock(&self.stats.last_connect) = Some(Instant::now());
                        let _ = self.client.try_subscribe(topics::desired_filter(&self.node), QoS::AtLeastOnce);
                        let _ = self.client.try_subscribe(topics::rpc_request(&self.node), QoS::AtLeastOnce);
                        let _ = self.client.try_publish(topics::online(&self.node), QoS::AtLeastOnce, true, "true");
                        self.report_all();
                    }
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) => self.on_publish(&p.topic, &p.payload),
                    Some(Ok(_)) => {}
                    Some(Err(_)) => self.connected = false,
                },
                _ = heartbeat.tick() => {
                    if self.connected {
                        let hb = proto::Heartbeat {
                            v: proto::VERSION,
                            time: herd::util::time::now_rfc3339(),
                            pods_running: self.pods.len() as u32,
                            memory_used_bytes: 0,
                            load1: 0.0,
                        };
                        let _ = self.client.try_publish(topics::heartbeat(&self.node), QoS::AtMostOnce, false, proto::encode(&hb));
                    }
                }
                r = self.round.changed() => {
                    if r.is_err() {
                        return;
                    }
                    // Every container "restarted": statuses change; sent now if connected, else
                    // on the next ConnAck.
                    if self.connected {
                        self.report_all();
                    }
                }
            }
        }
    }

    fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        match topics::parse(topic) {
            Some(Topic::DesiredIndex { node }) if node == self.node => {
                if payload.is_empty() {
                    self.desired.index = Some(Default::default());
                } else if let Ok(idx) = proto::decode(topic, payload) {
                    self.desired.index = Some(idx);
                }
                self.reconcile();
            }
            Some(Topic::Desired { node, ns, pod }) if node == self.node => {
                let key = (ns.to_string(), pod.to_string());
                if payload.is_empty() {
                    self.desired.specs.remove(&key);
                } else if let Ok(d) = proto::decode::<proto::DesiredPod>(topic, payload) {
                    self.desired.specs.insert(key, d.pod);
                }
                self.reconcile();
            }
            Some(Topic::RpcRequest { node }) if node == self.node => {
                let Ok(req) = proto::decode::<RpcRequest>(topic, payload) else {
                    return;
                };
                match req.call {
                    RpcCall::Resync => self.report_all(),
                    RpcCall::Cancel { .. } => {}
                    RpcCall::Logs { .. } => {
                        let resp = RpcResponse {
                            v: proto::VERSION,
                            id: req.id.clone(),
                            seq: 0,
                            data: String::new(),
                            error: Some("simulated node: no logs".into()),
                            eof: true,
                        };
                        let _ = self.client.try_publish(
                            topics::rpc_response(&self.node, &req.id),
                            QoS::AtLeastOnce,
                            false,
                            proto::encode(&resp),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// Starts what the index wants (status Running at once), reports gone what is being
    /// deleted or left the index. Nothing happens before the first index arrives.
    fn reconcile(&mut self) {
        if self.desired.index.is_none() {
            return;
        }
        let wanted: HashMap<String, Pod> = self
            .desired
            .wanted()
            .into_iter()
            .map(|p| (p.metadata.uid.clone(), p.clone()))
            .collect();
        let left: Vec<String> = self
            .pods
            .keys()
            .filter(|u| !wanted.contains_key(*u))
            .cloned()
            .collect();
        for uid in left {
            if let Some(p) = self.pods.remove(&uid) {
                self.send_gone(&uid, &p.ns, &p.name, p.generation);
            }
        }
        self.gone_sent.retain(|u| wanted.contains_key(u));
        for (uid, pod) in &wanted {
            let (ns, name) = (pod.metadata.ns().to_string(), pod.metadata.name.clone());
            if pod.metadata.deletion_timestamp.is_some() {
                // Stopped at once: no grace to wait out in a simulation.
                if self.pods.remove(uid).is_some() || self.gone_sent.insert(uid.clone()) {
                    self.send_gone(uid, &ns, &name, pod.metadata.generation);
                }
                continue;
            }
            let current = self
                .pods
                .get(uid)
                .is_some_and(|p| p.generation == pod.metadata.generation);
            if current {
                continue;
            }
            let started = match self.pods.get(uid) {
                Some(p) => p.started.clone(),
                None => {
                    lock(&self.arrivals).push(Arrival {
                        at: Instant::now(),
                        node: self.node.clone(),
                        pod: format!("{ns}/{name}"),
                    });
                    herd::util::time::now_rfc3339()
                }
            };
            let sim = SimPod {
                ns,
                name,
                generation: pod.metadata.generation,
                started,
                containers: pod
                    .spec
                    .containers
                    .iter()
                    .map(|c| (c.name.clone(), c.image.clone()))
                    .collect(),
            };
            self.pods.insert(uid.clone(), sim);
            self.send_status(uid);
        }
    }

    /// Sent even while disconnected (queued by the client until the next session), as the agent
    /// does: nothing re-sends a gone report later.
    fn send_gone(&self, uid: &str, ns: &str, name: &str, generation: i64) {
        let msg = ObservedPod {
            v: proto::VERSION,
            uid: uid.to_string(),
            generation,
            gone: true,
            status: Default::default(),
        };
        let _ = self.client.try_publish(
            topics::observed(&self.node, ns, name),
            QoS::AtLeastOnce,
            false,
            proto::encode(&msg),
        );
    }

    /// The status of one running pod: Running, Ready, each container running with
    /// `restartCount = round`.
    fn status(&self, p: &SimPod) -> PodStatus {
        let restarts = *self.round.borrow();
        let container_statuses: Vec<ContainerStatus> = p
            .containers
            .iter()
            .map(|(name, image)| ContainerStatus {
                name: name.clone(),
                state: ContainerState {
                    running: Some(StateRunning {
                        started_at: Some(p.started.clone()),
                    }),
                    ..Default::default()
                },
                ready: true,
                restart_count: restarts,
                image: image.clone(),
                image_id: format!("sim://{image}"),
                container_id: format!("sim://{}/{}/{name}", self.node, p.name),
                started: Some(true),
                ..Default::default()
            })
            .collect();
        let mut conditions = Vec::new();
        herd::worker::pods::phase::conditions(&mut conditions, &container_statuses, &p.started);
        PodStatus {
            phase: PodPhase::Running,
            conditions,
            start_time: Some(p.started.clone()),
            container_statuses,
            ..Default::default()
        }
    }

    fn send_status(&self, uid: &str) {
        let Some(p) = self.pods.get(uid) else { return };
        if !self.connected {
            return;
        }
        let msg = ObservedPod {
            v: proto::VERSION,
            uid: uid.to_string(),
            generation: p.generation,
            gone: false,
            status: self.status(p),
        };
        // QoS 0 as the agent: level-triggered, re-sent after every reconnect and resync.
        let _ = self.client.try_publish(
            topics::observed(&self.node, &p.ns, &p.name),
            QoS::AtMostOnce,
            false,
            proto::encode(&msg),
        );
    }

    /// Info and every pod's status: after a ConnAck, on Resync, and when the round changes.
    fn report_all(&self) {
        if !self.connected {
            return;
        }
        let info = proto::NodeInfo {
            v: proto::VERSION,
            node: herd::worker::platform::node(
                &self.node,
                &BTreeMap::new(),
                Some("127.0.0.1".into()),
            ),
        };
        let _ = self.client.try_publish(
            topics::info(&self.node),
            QoS::AtLeastOnce,
            true,
            proto::encode(&info),
        );
        for uid in self.pods.keys() {
            self.send_status(uid);
        }
    }
}

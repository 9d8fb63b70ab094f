//! Edge autonomy, the performance part (issue #7), as one benchmark run that prints figures
//! (nothing here asserts on time). A real `herd master` process (HTTPS + MQTTS by default,
//! `HERD_AUTONOMY_INSECURE=1` for `--insecure`); the fleet is simulated nodes (`simnode/`: real
//! join, real MQTT protocol, no containers) running as tokio tasks in this process.
//!
//! 1. Broker return, `HERD_AUTONOMY_NODES` (default 50) nodes × `HERD_AUTONOMY_PODS_PER_NODE`
//!    (default 4) pods of one Deployment, for an external mosquitto (killed, down
//!    `HERD_AUTONOMY_OUTAGE_SECS`, default 10, then a fresh one on the same port) and for the
//!    embedded broker (master `kill -9`, same outage, restarted on the same ports and data dir).
//!    During the outage every node bumps its pods' restartCount. From the broker's return:
//!    (a) every node Ready in the API *and* heard from again (one of its pods shows the bumped
//!    count), (b) every pod's restartCount in the API bumped. `HERD_AUTONOMY_RUNS` (default 3)
//!    runs each, median printed.
//! 2. Master `kill -9` and restart with `HERD_AUTONOMY_RESTART_PODS` (default 1000) pods on
//!    `HERD_AUTONOMY_RESTART_NODES` (default 10) nodes: time to the first authenticated GET,
//!    then a scale-up by one replica issued at once, timed until the new pod's spec reaches its
//!    node and until it is Running in the API; the same scale-up before the kill as baseline.
//! 3. SD-card cost: the master's `write_bytes` (`/proc/PID/io`) per idle hour with 10 nodes
//!    (1 s heartbeats) and 100 pods (settle `HERD_AUTONOMY_SETTLE_SECS`, default 20; measure
//!    `HERD_AUTONOMY_IDLE_SECS`, default 60; target ≤ 1 MB/h), and during a rolling update of
//!    those 100 pods.
//!
//! `HERD_AUTONOMY_ONLY=1,3` runs a subset; `HERD_AUTONOMY_KEEP=1` keeps data dirs and logs.
//! Data dirs live in /var/tmp (a real disk, so writes are counted); master logs in /dev/shm
//! (tmpfs: under systemd they are journald's writes, not the master's). Child processes are
//! killed by drop guards, also on panic. Only 127.0.0.1 is used.
//!
//! `CARGO_TARGET_DIR=/var/tmp/herd-target cargo bench --bench autonomy`

#[path = "../tests/common/mod.rs"]
mod common;
mod simnode;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use simnode::Fleet;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free loopback port")
        .port()
}

// ---------------------------------------------------------------------------------------------
// The master process

/// Plain HTTP and MQTT (`--insecure`) instead of the default HTTPS and MQTTS.
fn insecure() -> bool {
    env_num("HERD_AUTONOMY_INSECURE", 0) != 0
}

/// A `herd master` on fixed loopback ports, restartable on the same ports and data dir; killed
/// on drop.
struct Master {
    child: Option<Child>,
    data_dir: PathBuf,
    log: PathBuf,
    api_port: u16,
    mqtt_port: u16,
    broker: Option<String>,
    /// From the join line: API URL, join token, CA hash (none with `--insecure`).
    api_url: String,
    join_token: String,
    ca_hash: Option<String>,
}

impl Master {
    /// Starts it and waits (≤ 30 s) for its join line.
    async fn start(data_dir: &Path, log: &Path, broker: Option<String>) -> Master {
        let mut m = Master {
            child: None,
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            api_port: free_port(),
            mqtt_port: free_port(),
            broker,
            api_url: String::new(),
            join_token: String::new(),
            ca_hash: None,
        };
        m.spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            if let Some(l) = text
                .lines()
                .find(|l| l.trim_start().starts_with("herd worker --join"))
            {
                break l.to_string();
            }
            assert!(Instant::now() < deadline, "master printed no join line");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let arg = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
                .map(|w| w.to_string())
        };
        m.api_url = arg("--join").expect("join URL");
        m.join_token = arg("--token").expect("join token");
        m.ca_hash = arg("--ca-hash");
        m
    }

    /// Spawns the process (same ports and data dir every time); returns when it was spawned.
    fn spawn(&mut self) -> Instant {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("master log");
        let mut cmd = Command::new(common::HERD);
        cmd.args([
            "master",
            "--api-addr",
            &format!("127.0.0.1:{}", self.api_port),
            "--mqtt-addr",
            &format!("127.0.0.1:{}", self.mqtt_port),
            "--data-dir",
        ])
        .arg(&self.data_dir)
        // Pods name images the master would otherwise look up upstream for scheduling.
        .arg("--air-gapped");
        if let Some(b) = &self.broker {
            cmd.args(["--broker", b]);
        }
        if insecure() {
            cmd.arg("--insecure");
        }
        let t = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn herd master");
        self.child = Some(child);
        t
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn secret(&self, file: &str) -> String {
        std::fs::read_to_string(self.data_dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .trim()
            .to_string()
    }

    /// An API client with the admin token, trusting the cluster CA over https.
    fn api(&self) -> Api {
        let ca = self.api_url.starts_with("https://").then(|| {
            std::fs::read_to_string(self.data_dir.join("pki/ca.crt")).expect("pki/ca.crt")
        });
        Api::new(&self.api_url, &self.secret("admin.token"), ca.as_deref())
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("---- master log (last 30 lines) ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// Waits (bounded) until something accepts TCP connections on the port.
async fn wait_listening(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP API

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(base: &str, token: &str, ca_pem: Option<&str>) -> Api {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10));
        if let Some(pem) = ca_pem {
            let der = herd::pki::der_from_pem(pem, Path::new("ca.crt")).expect("CA PEM");
            let tls = herd::pki::client_config(&der).expect("TLS client config");
            b = b.use_preconfigured_tls((*tls).clone());
        }
        Api {
            http: b.build().expect("http client"),
            base: base.to_string(),
            token: token.to_string(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(format!("{path}: {status}: {}", v["message"]))
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn items(&self, path: &str) -> Vec<Value> {
        self.get(path)
            .await
            .ok()
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn deployment(name: &str, replicas: usize) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]
                }
            }
        }
    })
}

/// Reads the Deployment, changes it with `f`, writes it back.
async fn update_deployment(api: &Api, name: &str, f: impl Fn(&mut Value)) {
    let path = format!("{DEPLOYMENTS}/{name}");
    let mut d = api.get(&path).await.expect("get deployment");
    f(&mut d);
    api.call(reqwest::Method::PUT, &path, Some(&d))
        .await
        .expect("update deployment");
}

fn cond_true(obj: &Value, type_: &str) -> bool {
    obj["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
    })
}

/// What the bench checks of one pod.
struct PodView {
    node: Option<String>,
    ready: bool,
    terminating: bool,
    /// Lowest restartCount over its containers (None without container statuses).
    restarts: Option<i64>,
}

fn pod_view(p: &Value) -> PodView {
    PodView {
        node: p["spec"]["nodeName"].as_str().map(str::to_string),
        ready: cond_true(p, "Ready"),
        terminating: !p["metadata"]["deletionTimestamp"].is_null(),
        restarts: p["status"]["containerStatuses"]
            .as_array()
            .filter(|cs| !cs.is_empty())
            .and_then(|cs| {
                cs.iter()
                    .map(|c| c["restartCount"].as_i64())
                    .min()
                    .flatten()
            }),
    }
}

async fn pods_of(api: &Api, app: &str) -> Vec<PodView> {
    api.items(&format!("{PODS}?labelSelector=app%3D{app}"))
        .await
        .iter()
        .map(pod_view)
        .collect()
}

/// `n` pods of `app`, none terminating, all Ready with `restartCount == restarts`.
fn converged(pods: &[PodView], n: usize, restarts: i64) -> bool {
    pods.len() == n
        && pods
            .iter()
            .all(|p| p.ready && !p.terminating && p.node.is_some() && p.restarts == Some(restarts))
}

/// Nodes of the fleet that are Ready in the API.
async fn ready_nodes(api: &Api, fleet: &Fleet) -> Option<BTreeSet<String>> {
    let nodes = api.get("/api/v1/nodes").await.ok()?;
    let names: BTreeSet<&str> = fleet.names.iter().map(String::as_str).collect();
    Some(
        nodes["items"]
            .as_array()?
            .iter()
            .filter(|n| cond_true(n, "Ready"))
            .filter_map(|n| n["metadata"]["name"].as_str())
            .filter(|n| names.contains(n))
            .map(str::to_string)
            .collect(),
    )
}

/// Polls `f` every `every` until it returns Some, at most `timeout` (then panics: not a timing
/// assert, a convergence failure).
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, every: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Temp dirs of one scenario: data on a real disk, logs on tmpfs.
struct Dirs {
    data: tempfile::TempDir,
    logs: tempfile::TempDir,
}

impl Dirs {
    fn new(tag: &str) -> Dirs {
        let mk = |base: &str| {
            let mut d = tempfile::Builder::new()
                .prefix(&format!("herd-autonomy-{tag}-"))
                .tempdir_in(base)
                .expect("temp dir");
            if env_num("HERD_AUTONOMY_KEEP", 0) != 0 {
                eprintln!("keeping {}", d.path().display());
                d.disable_cleanup(true);
            }
            d
        };
        Dirs {
            data: mk("/var/tmp"),
            logs: mk(if Path::new("/dev/shm").is_dir() {
                "/dev/shm"
            } else {
                "/tmp"
            }),
        }
    }
    fn master(&self) -> PathBuf {
        self.data.path().join("master")
    }
    fn log(&self) -> PathBuf {
        self.logs.path().join("master.log")
    }
}

/// A master, a fleet of `nodes` simulated nodes all Ready, and a Deployment `web` of
/// `replicas` pods all Running; prints how long the setup took.
async fn cluster(
    dirs: &Dirs,
    broker: Option<String>,
    nodes: usize,
    replicas: usize,
) -> (Master, Api, Fleet) {
    let master = Master::start(&dirs.master(), &dirs.log(), broker).await;
    let api = master.api();
    let t = Instant::now();
    let fleet = Fleet::join(
        &master.api_url,
        &master.join_token,
        master.ca_hash.as_deref(),
        "sim",
        nodes,
        &dirs.data.path().join("sim"),
    )
    .await;
    wait_for(
        &format!("{nodes} nodes Ready"),
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async { ready_nodes(&api, &fleet).await.filter(|r| r.len() == nodes) },
    )
    .await;
    let joined = t.elapsed();
    let t = Instant::now();
    api.call(
        reqwest::Method::POST,
        DEPLOYMENTS,
        Some(&deployment("web", replicas)),
    )
    .await
    .expect("create deployment");
    let pods = wait_for(
        &format!("{replicas} pods Running"),
        Duration::from_secs(600),
        Duration::from_millis(500),
        || async {
            let pods = pods_of(&api, "web").await;
            converged(&pods, replicas, 0).then_some(pods)
        },
    )
    .await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        *per_node
            .entry(p.node.clone().unwrap_or_default())
            .or_default() += 1;
    }
    println!(
        "  setup: {nodes} nodes joined and Ready in {}; {replicas} pods Running in {} \
         ({}–{} per node)",
        secs(joined),
        secs(t.elapsed()),
        per_node.values().min().unwrap_or(&0),
        per_node.values().max().unwrap_or(&0),
    );
    (master, api, fleet)
}

// ---------------------------------------------------------------------------------------------
// 1. Broker return

#[derive(Clone, Copy)]
struct BrokerReturn {
    /// Broker process start → accepting connections (embedded: the master's restart).
    broker_start: Duration,
    /// Broker return → the master's own MQTT session is up (from its log).
    master_session: Duration,
    /// Broker return → every sim node has a new session.
    sessions: Duration,
    /// Broker return → every node Ready in the API and heard from since the return.
    nodes_ready: Duration,
    /// Broker return → every pod Ready with the bumped restartCount in the API.
    status: Duration,
    /// Polls (after the return) that saw a node not Ready.
    not_ready_polls: usize,
}

async fn broker_return(
    external: bool,
    nodes: usize,
    per_node: usize,
    outage: Duration,
) -> BrokerReturn {
    let dirs = Dirs::new(if external { "mosquitto" } else { "embedded" });
    let mut mosquitto = external.then(common::Mosquitto::start);
    let replicas = nodes * per_node;
    let (mut master, api, fleet) = cluster(
        &dirs,
        mosquitto.as_ref().map(common::Mosquitto::url),
        nodes,
        replicas,
    )
    .await;

    let down = Instant::now();
    match &mut mosquitto {
        Some(m) => m.stop(),
        None => master.kill9(),
    }
    // Every pod's container "restarts" while the broker is away: reported on reconnect.
    tokio::time::sleep(Duration::from_secs(1).min(outage / 2)).await;
    fleet.set_round(1);
    tokio::time::sleep_until((down + outage).into()).await;
    let back_wall = SystemTime::now();
    let (back, broker_start) = match &mut mosquitto {
        Some(m) => {
            let t = Instant::now();
            m.restart();
            (Instant::now(), t.elapsed())
        }
        None => {
            let t = master.spawn();
            wait_listening(master.mqtt_port, Duration::from_secs(30)).await;
            (Instant::now(), t.elapsed())
        }
    };

    // (a) every node Ready in the API and heard from since the return (a status with the
    //     bumped restartCount of one of its pods was ingested: the master knows it is back);
    // (b) every pod's status in the API shows the bumped restartCount.
    let mut nodes_ready = None;
    let mut status = None;
    let mut not_ready_polls = 0;
    let deadline = back + Duration::from_secs(300);
    while nodes_ready.is_none() || status.is_none() {
        assert!(
            Instant::now() < deadline,
            "no convergence 300 s after the broker's return (nodes {nodes_ready:?}, status {status:?})"
        );
        let t = Instant::now();
        let (ready, pods) = tokio::join!(ready_nodes(&api, &fleet), pods_of(&api, "web"));
        if let Some(ready) = ready {
            if ready.len() < nodes {
                not_ready_polls += 1;
            }
            let heard: BTreeSet<&str> = pods
                .iter()
                .filter(|p| p.restarts == Some(1))
                .filter_map(|p| p.node.as_deref())
                .collect();
            let with_pods: BTreeSet<&str> = pods.iter().filter_map(|p| p.node.as_deref()).collect();
            let all_back = ready.len() == nodes
                && ready
                    .iter()
                    .all(|n| heard.contains(n.as_str()) || !with_pods.contains(n.as_str()));
            if nodes_ready.is_none() && all_back {
                nodes_ready = Some(t - back);
            }
        }
        if status.is_none() && converged(&pods, replicas, 1) {
            status = Some(t - back);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sessions = fleet
        .all_connected(2)
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(back));
    drop(fleet);
    let master_session = log_time_after(&dirs.log(), "connected to mqtt broker", back_wall)
        .and_then(|t| t.duration_since(back_wall).ok())
        .unwrap_or_default();
    BrokerReturn {
        broker_start,
        master_session,
        sessions,
        nodes_ready: nodes_ready.unwrap_or_default(),
        status: status.unwrap_or_default(),
        not_ready_polls,
    }
}

async fn scenario_broker_return() {
    let nodes = env_num("HERD_AUTONOMY_NODES", 50) as usize;
    let per_node = env_num("HERD_AUTONOMY_PODS_PER_NODE", 4) as usize;
    let outage = Duration::from_secs(env_num("HERD_AUTONOMY_OUTAGE_SECS", 10));
    let runs = env_num("HERD_AUTONOMY_RUNS", 3).max(1) as usize;
    for external in [true, false] {
        let what = if external {
            "external mosquitto, killed and restarted fresh (retained store lost)"
        } else {
            "embedded broker, master kill -9 and restart"
        };
        println!(
            "\n1. broker return: {nodes} nodes, {} pods, {} s outage — {what}",
            nodes * per_node,
            outage.as_secs(),
        );
        let mut all = Vec::new();
        for i in 0..runs {
            println!("  run {} (load {})", i + 1, loadavg());
            let r = broker_return(external, nodes, per_node, outage).await;
            println!(
                "    broker up {} after its start; after the return: master session {}, \
                 every node reconnected {}, every node Ready and heard from {} \
                 ({} polls saw a node not Ready), every pod's status converged {}",
                secs(r.broker_start),
                secs(r.master_session),
                secs(r.sessions),
                secs(r.nodes_ready),
                r.not_ready_polls,
                secs(r.status),
            );
            all.push(r);
        }
        let med = |f: fn(&BrokerReturn) -> Duration| {
            let mut v: Vec<Duration> = all.iter().map(f).collect();
            v.sort();
            v[v.len() / 2]
        };
        println!(
            "  median of {runs}: return → every node Ready (API) {}; → every pod's status \
             converged (API) {}  [master session {}, nodes reconnected {}]",
            secs(med(|r| r.nodes_ready)),
            secs(med(|r| r.status)),
            secs(med(|r| r.master_session)),
            secs(med(|r| r.sessions)),
        );
    }
}

/// The time of the first line of the master's log that contains `needle` and was logged at or
/// after `after` (tracing's default RFC 3339 timestamps, microseconds).
fn log_time_after(log: &Path, needle: &str, after: SystemTime) -> Option<SystemTime> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let ts = l.split_whitespace().next()?;
            let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
            Some(SystemTime::from(t.with_timezone(&chrono::Utc)))
        })
        .find(|t| *t >= after)
}

// ---------------------------------------------------------------------------------------------
// 2. Master restart with many pods

/// One scale-up by a replica, timed: PUT answered, the new pod's spec on a node (the
/// ReplicaSet controller created it, the scheduler bound it, the desired publisher sent it),
/// the new pod Running and Ready in the API (its status came back), every pod Ready.
struct ScaleUp {
    accepted: Duration,
    on_node: Duration,
    node: String,
    running: Duration,
    all_ready: Duration,
}

async fn scale_up(api: &Api, fleet: &Fleet, to: usize) -> ScaleUp {
    let scale = Instant::now();
    update_deployment(api, "web", |d| d["spec"]["replicas"] = json!(to)).await;
    let accepted = scale.elapsed();
    let arrival = wait_for(
        "the scaled-up pod on a node",
        Duration::from_secs(120),
        Duration::from_millis(2),
        || async { fleet.arrivals_since(scale).into_iter().next() },
    )
    .await;
    let name = arrival.pod.rsplit('/').next().unwrap_or("").to_string();
    wait_for(
        "the scaled-up pod Running",
        Duration::from_secs(120),
        Duration::from_millis(5),
        || async {
            let p = api.get(&format!("{PODS}/{name}")).await.ok()?;
            (cond_true(&p, "Ready") && p["status"]["phase"] == "Running").then_some(())
        },
    )
    .await;
    let running = scale.elapsed();
    wait_for(
        "every pod Running",
        Duration::from_secs(300),
        Duration::from_millis(100),
        || async { converged(&pods_of(api, "web").await, to, 0).then_some(()) },
    )
    .await;
    ScaleUp {
        accepted,
        on_node: arrival.at - scale,
        node: arrival.node,
        running,
        all_ready: scale.elapsed(),
    }
}

fn print_scale_up(s: &ScaleUp) {
    println!(
        "    PUT answered {}; new pod created, bound, its spec on {} {}; Running + Ready in the \
         API {}; every pod Ready {}",
        secs(s.accepted),
        s.node,
        secs(s.on_node),
        secs(s.running),
        secs(s.all_ready),
    );
}

async fn scenario_master_restart() {
    let nodes = env_num("HERD_AUTONOMY_RESTART_NODES", 10) as usize;
    let replicas = env_num("HERD_AUTONOMY_RESTART_PODS", 1000) as usize;
    println!(
        "\n2. master kill -9 and restart with {replicas} pods on {nodes} nodes (load {})",
        loadavg()
    );
    let dirs = Dirs::new("restart");
    let (mut master, api, fleet) = cluster(&dirs, None, nodes, replicas).await;
    let db = std::fs::metadata(dirs.master().join("state.db")).map_or(0, |m| m.len());
    let wal = std::fs::metadata(dirs.master().join("state.db-wal")).map_or(0, |m| m.len());
    println!(
        "  store: state.db {:.1} MB, WAL {:.1} MB",
        db as f64 / 1e6,
        wal as f64 / 1e6
    );

    // Baseline: the same scale-up on a master that has been running all along.
    let base = scale_up(&api, &fleet, replicas + 1).await;
    update_deployment(&api, "web", |d| d["spec"]["replicas"] = json!(replicas)).await;
    wait_for(
        "the scale-down",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async { converged(&pods_of(&api, "web").await, replicas, 0).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    master.kill9();
    let spawned = master.spawn();
    // First successful authenticated GET.
    loop {
        if api.get("/api/v1/nodes").await.is_ok() {
            break;
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(60),
            "API did not come back"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let api_up = spawned.elapsed();
    let after = scale_up(&api, &fleet, replicas + 1).await;
    let sessions = wait_for(
        "every sim node reconnected",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || async { fleet.all_connected(2) },
    )
    .await
    .saturating_duration_since(spawned);
    println!(
        "  spawn → API serving (first authenticated GET): {}",
        secs(api_up)
    );
    println!(
        "  spawn → every sim node reconnected:            {}",
        secs(sessions)
    );
    println!(
        "  scale {replicas}→{} issued as soon as the API answered:",
        replicas + 1
    );
    print_scale_up(&after);
    println!("  baseline, the same scale-up before the kill (master up for a while):");
    print_scale_up(&base);
}

// ---------------------------------------------------------------------------------------------
// 3. SD-card cost

#[derive(Clone, Copy, Default)]
struct Io {
    write_bytes: u64,
    cancelled: u64,
    wchar: u64,
}

fn io(pid: i32) -> Io {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |k: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Io {
        write_bytes: field("write_bytes:"),
        cancelled: field("cancelled_write_bytes:"),
        wchar: field("wchar:"),
    }
}

/// The highest resourceVersion among the objects that exist: every store write takes the next
/// one, so its growth counts writes (deleted objects' versions included, as long as something
/// written later still exists).
async fn max_rv(api: &Api) -> i64 {
    let mut max = 0;
    for path in [
        "/api/v1/nodes",
        "/api/v1/pods",
        "/apis/apps/v1/replicasets",
        "/apis/apps/v1/deployments",
    ] {
        for o in api.items(path).await {
            let rv = o["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            max = max.max(rv);
        }
    }
    max
}

fn kb(b: u64) -> String {
    format!("{:.1} KB", b as f64 / 1024.0)
}

async fn scenario_sd_card() {
    let nodes = 10;
    let replicas = 100;
    let settle = Duration::from_secs(env_num("HERD_AUTONOMY_SETTLE_SECS", 20));
    let idle = Duration::from_secs(env_num("HERD_AUTONOMY_IDLE_SECS", 60).max(1));
    println!(
        "\n3. SD-card cost: master bytes written, {nodes} nodes (1 s heartbeats), {replicas} pods \
         (load {})",
        loadavg()
    );
    let dirs = Dirs::new("sdcard");
    let (master, api, fleet) = cluster(&dirs, None, nodes, replicas).await;
    let pid = master.pid();
    tokio::time::sleep(settle).await;
    let rv0 = max_rv(&api).await;
    let a = io(pid);
    tokio::time::sleep(idle).await;
    let b = io(pid);
    let idle_writes = max_rv(&api).await - rv0;
    let per_hour = |bytes: u64| bytes as f64 * 3600.0 / idle.as_secs_f64();
    let wb = b.write_bytes.saturating_sub(a.write_bytes);
    println!(
        "  idle {} s (after {} s settling): write_bytes {} → {:.1} KB/h (target ≤ 1024 KB/h: {}); \
         wchar {:.1} KB/h; store writes {idle_writes}",
        idle.as_secs(),
        settle.as_secs(),
        kb(wb),
        per_hour(wb) / 1024.0,
        if per_hour(wb) <= 1024.0 * 1024.0 {
            "met"
        } else {
            "MISSED"
        },
        per_hour(b.wchar.saturating_sub(a.wchar)) / 1024.0,
    );

    // Rolling update, as `kubectl rollout restart` does it.
    let log0 = std::fs::metadata(dirs.log()).map_or(0, |m| m.len());
    let rv0 = max_rv(&api).await;
    let a = io(pid);
    let t = Instant::now();
    update_deployment(&api, "web", |d| {
        d["spec"]["template"]["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/restartedAt": herd::util::time::now_rfc3339()});
    })
    .await;
    wait_for(
        "the rollout to complete",
        Duration::from_secs(600),
        Duration::from_millis(100),
        || async {
            let d = api.get(&format!("{DEPLOYMENTS}/web")).await.ok()?;
            let s = &d["status"];
            let n = replicas as i64;
            let done = s["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64()
                && s["updatedReplicas"].as_i64() == Some(n)
                && s["availableReplicas"].as_i64() == Some(n)
                && s["replicas"].as_i64() == Some(n);
            if !done {
                return None;
            }
            let pods = pods_of(&api, "web").await;
            converged(&pods, replicas, 0).then_some(())
        },
    )
    .await;
    let took = t.elapsed();
    let b = io(pid);
    let writes = max_rv(&api).await - rv0;
    let log1 = std::fs::metadata(dirs.log()).map_or(0, |m| m.len());
    let wb = b.write_bytes.saturating_sub(a.write_bytes);
    println!(
        "  rolling update of {replicas} pods: {}; write_bytes {} ({:.1} KB per pod replaced; \
         cancelled {}); ~{writes} store writes (~{:.1} KB each); wchar {}",
        secs(took),
        kb(wb),
        wb as f64 / 1024.0 / replicas as f64,
        kb(b.cancelled.saturating_sub(a.cancelled)),
        wb as f64 / 1024.0 / writes.max(1) as f64,
        kb(b.wchar.saturating_sub(a.wchar)),
    );
    println!(
        "  (the master's log grew {} meanwhile, on tmpfs, not counted: under systemd it is \
         journald's write)",
        kb(log1.saturating_sub(log0)),
    );
    let arrivals = fleet.arrivals_since(t).len();
    println!("  ({arrivals} new pods started on the sim nodes during the rollout)");
}

fn main() {
    let only: Vec<u32> = std::env::var("HERD_AUTONOMY_ONLY")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3]);
    // reqwest's rustls needs a process-wide provider, as in herd's own main.
    herd::pki::install_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        println!(
            "autonomy bench: herd {} ({}), {}, {} cpus, load {}",
            env!("CARGO_PKG_VERSION"),
            common::HERD,
            if insecure() {
                "--insecure (HTTP, MQTT)"
            } else {
                "TLS (HTTPS, MQTTS)"
            },
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            loadavg()
        );
        if only.contains(&1) {
            scenario_broker_return().await;
        }
        if only.contains(&2) {
            scenario_master_restart().await;
        }
        if only.contains(&3) {
            scenario_sd_card().await;
        }
    });
}

//! What TLS costs (issue #6: "TLS must not cost the Pi"). Two masters in one run, one with
//! TLS (the default) and one `--insecure`, both on 127.0.0.1; the same clients against each:
//!
//! 1. API request latency over a kept-alive connection (`GET /version`), median and p90;
//! 2. MQTT round trip of a 100-byte QoS 0 message through the gate and broker (publish →
//!    the same client receives it), median and p90;
//! 3. a request on a fresh connection each time (TCP, plus the TLS handshake);
//! 4. a whole worker join (with TLS: fetch the CA, check its pin, then join).
//!
//! Prints each figure and the TLS/plain ratio (target ≤ 1.3× for small messages). No
//! asserts. `CARGO_TARGET_DIR=/var/tmp/herd-target cargo bench --bench tls`
//! (`HERD_TLS_N`, default 400).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

const HERD: &str = env!("CARGO_BIN_EXE_herd");

struct Master {
    child: Child,
    dir: PathBuf,
    api: String,
    mqtt_port: u16,
    token: String,
    ca_hash: Option<String>,
    _tmp: tempfile::TempDir,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start(insecure: bool) -> Master {
    let tmp = tempfile::Builder::new()
        .prefix("herd-tls-bench-")
        .tempdir_in("/var/tmp")
        .expect("tempdir");
    let dir = tmp.path().join("master");
    let mqtt_port = free_port();
    let mut cmd = Command::new(HERD);
    cmd.args(["master", "--api-addr", "127.0.0.1:0", "--mqtt-addr"])
        .arg(format!("127.0.0.1:{mqtt_port}"))
        .arg("--data-dir")
        .arg(&dir);
    if insecure {
        cmd.arg("--insecure");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn herd master");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let join = loop {
        match lines.next() {
            Some(Ok(l)) if l.trim_start().starts_with("herd worker --join") => break l,
            Some(_) => continue,
            None => panic!("master exited without a join line"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let parts: Vec<&str> = join.split_whitespace().collect();
    Master {
        child,
        dir,
        api: parts[3].to_string(),
        mqtt_port,
        token: parts[5].to_string(),
        ca_hash: parts.get(7).map(|s| s.to_string()),
        _tmp: tmp,
    }
}

fn ca_der(dir: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(dir.join("pki/ca.crt")).expect("ca.crt");
    herd::pki::der_from_pem(&pem, Path::new("ca.crt")).expect("CA pem")
}

fn http(m: &Master, keep_alive: bool) -> reqwest::Client {
    herd::pki::install_provider();
    let mut b = reqwest::Client::builder();
    if m.ca_hash.is_some() {
        let cfg = herd::pki::client_config(&ca_der(&m.dir)).expect("client config");
        b = b.use_preconfigured_tls((*cfg).clone());
    }
    if !keep_alive {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().expect("reqwest client")
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.9))
}

async fn api_latency(m: &Master, n: usize, keep_alive: bool) -> (Duration, Duration) {
    let client = http(m, keep_alive);
    let url = format!("{}/version", m.api);
    let mut v = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let t = Instant::now();
        let r = client.get(&url).send().await.expect("GET /version");
        let _ = r.bytes().await;
        if i >= 10 {
            v.push(t.elapsed());
        }
    }
    stats(v)
}

async fn mqtt_round_trip(m: &Master, n: usize) -> (Duration, Duration) {
    let password = std::fs::read_to_string(m.dir.join("mqtt-master.secret")).expect("secret");
    let mut opts = MqttOptions::new("bench-rtt", "127.0.0.1", m.mqtt_port);
    opts.set_credentials("herd-master", password.trim());
    opts.set_keep_alive(Duration::from_secs(30));
    if m.ca_hash.is_some() {
        let cfg = herd::pki::client_config(&ca_der(&m.dir)).expect("client config");
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(cfg)));
    }
    let (client, mut ev) = AsyncClient::new(opts, 64);
    let topic = "bench/rtt";
    loop {
        if let Event::Incoming(Packet::ConnAck(_)) = ev.poll().await.expect("connect") {
            break;
        }
    }
    client
        .subscribe(topic, QoS::AtMostOnce)
        .await
        .expect("subscribe");
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = ev.poll().await.expect("suback") {
            break;
        }
    }
    let payload = vec![b'x'; 100];
    let mut v = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let t = Instant::now();
        client
            .publish(topic, QoS::AtMostOnce, false, payload.clone())
            .await
            .expect("publish");
        loop {
            if let Event::Incoming(Packet::Publish(_)) = ev.poll().await.expect("poll") {
                break;
            }
        }
        if i >= 10 {
            v.push(t.elapsed());
        }
    }
    stats(v)
}

async fn join_cost(m: &Master, n: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let path = dir.path().join(format!("node-{i}.json"));
        let t = Instant::now();
        herd::worker::join::join(
            &m.api,
            &m.token,
            m.ca_hash.as_deref(),
            &format!("bench-{i}"),
            &path,
        )
        .await
        .expect("join");
        v.push(t.elapsed());
    }
    stats(v)
}

fn row(what: &str, tls: (Duration, Duration), plain: (Duration, Duration)) {
    println!(
        "{what:<44} TLS p50 {:>9.3?} p90 {:>9.3?} | plain p50 {:>9.3?} p90 {:>9.3?} | ratio {:.2}x",
        tls.0,
        tls.1,
        plain.0,
        plain.1,
        tls.0.as_secs_f64() / plain.0.as_secs_f64().max(1e-9)
    );
}

fn main() {
    let n: usize = std::env::var("HERD_TLS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let tls = start(false);
    let plain = start(true);
    assert!(tls.api.starts_with("https://") && plain.api.starts_with("http://"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("TLS vs plain, 127.0.0.1, n={n} (after 10 warm-up rounds)");
        row(
            "API GET /version, kept-alive connection",
            api_latency(&tls, n, true).await,
            api_latency(&plain, n, true).await,
        );
        row(
            "MQTT 100 B round trip via the gate",
            mqtt_round_trip(&tls, n).await,
            mqtt_round_trip(&plain, n).await,
        );
        row(
            "API GET /version, new connection each",
            api_latency(&tls, n / 4, false).await,
            api_latency(&plain, n / 4, false).await,
        );
        row(
            "worker join (TLS: CA fetch + pin check)",
            join_cost(&tls, 20).await,
            join_cost(&plain, 20).await,
        );
    });
}

//! Service data plane figures on a real kernel, in namespaces this bench creates (a node with
//! a `herd0` bridge, three pod namespaces on it; nothing leaves them):
//! - ruleset generation and `nft -f` load time for many services;
//! - endpoint change → traffic shift: the time from loading a ruleset that moves a
//!   ClusterIP to another backend until a client in a pod gets its first answer from it;
//! - request throughput (a new TCP connection per request, Rust client and server in pod
//!   namespaces) to the pod IP directly and through the ClusterIP, and their ratio.
//!
//! Run: `cargo bench --bench services` (root). Prints figures; asserts nothing on time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use herd::api::service::Protocol;
use herd::proto::services::{Backend, PortState, ServiceState};
use herd::worker::services::{nft, rules};

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Net {
    prefix: String,
}

const PODS: [&str; 3] = ["p1", "p2", "p3"];

impl Net {
    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in ["node", "p1", "p2", "p3"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
    }
}

fn setup() -> Net {
    let net = Net {
        prefix: format!("hsb{}", std::process::id()),
    };
    for n in ["node", "p1", "p2", "p3"] {
        sh(&["ip", "netns", "add", &net.ns(n)]);
    }
    let node = net.ns("node");
    let ipn = |args: &[&str]| {
        let mut a = vec!["ip", "-n", node.as_str()];
        a.extend_from_slice(args);
        sh(&a);
    };
    ipn(&["link", "add", "herd0", "type", "bridge"]);
    ipn(&["addr", "add", "10.88.1.1/24", "dev", "herd0"]);
    ipn(&["link", "set", "herd0", "up"]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &node,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &node,
        "sysctl",
        "-qw",
        "net.bridge.bridge-nf-call-iptables=1",
    ]);
    for (i, p) in PODS.iter().enumerate() {
        let pns = net.ns(p);
        let hif = format!("hv{p}");
        ipn(&[
            "link", "add", &hif, "type", "veth", "peer", "name", "eth0", "netns", &pns,
        ]);
        ipn(&["link", "set", &hif, "master", "herd0"]);
        ipn(&["link", "set", &hif, "up"]);
        let addr = format!("10.88.1.{}/24", i + 2);
        sh(&["ip", "-n", &pns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", &pns, "addr", "add", &addr, "dev", "eth0"]);
        sh(&["ip", "-n", &pns, "link", "set", "eth0", "up"]);
        sh(&[
            "ip",
            "-n",
            &pns,
            "route",
            "add",
            "default",
            "via",
            "10.88.1.1",
        ]);
    }
    net
}

fn enter(net: &Net, ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{}", net.ns(ns))).expect("netns");
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A tiny HTTP/1.0 server in pod `ns` answering `body` (detached: the process exit ends it).
fn serve(net: &Net, ns: &str, ip: &str, body: &'static str) {
    let path = format!("/run/netns/{}", net.ns(ns));
    let addr: SocketAddr = format!("{ip}:8080").parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(path).expect("netns");
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = TcpListener::bind(addr).expect("bind");
        let _ = tx.send(());
        let reply = format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 512];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(reply.as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server up");
}

/// One request on a new connection; the body.
fn get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn service(i: usize, backends: &[&str]) -> ServiceState {
    ServiceState {
        v: 1,
        namespace: "default".into(),
        name: format!("svc{i}"),
        cluster_ip: Some(
            format!("10.89.{}.{}", i / 250, i % 250 + 1)
                .parse()
                .unwrap(),
        ),
        headless: false,
        ports: vec![PortState {
            name: String::new(),
            protocol: Protocol::TCP,
            port: 80,
            node_port: Some(30000 + i as u16),
            endpoints: backends
                .iter()
                .map(|b| Backend {
                    ip: b.parse().unwrap(),
                    port: 8080,
                })
                .collect(),
        }],
        ready: vec![],
    }
}

fn load(net: &Net, loader: &mut nft::Loader, script: &str) -> Duration {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(net, "node");
            let t = Instant::now();
            loader.apply(script).expect("nft load");
            t.elapsed()
        })
        .join()
        .expect("loader")
    })
}

/// Requests per second over `secs` from `threads` clients in pod p1 to `addr`, and the
/// number of failed requests.
fn throughput(net: &Net, addr: SocketAddr, threads: usize, secs: f64) -> (f64, usize) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (total, failed) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    enter(net, "p1");
                    let (mut n, mut f) = (0, 0);
                    while Instant::now() < end {
                        if get(addr).is_some() {
                            n += 1;
                        } else {
                            f += 1;
                        }
                    }
                    (n, f)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or((0, 0)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    (total as f64 / secs, failed)
}

fn main() {
    // `cargo bench` passes --bench; a filter that names another bench skips this one.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"services".contains(a.as_str()))
    {
        return;
    }
    let net = setup();
    serve(&net, "p2", "10.88.1.3", "b1");
    serve(&net, "p3", "10.88.1.4", "b2");
    let mut loader = nft::Loader::default();

    // Ruleset size: generation and load time.
    for n in [10, 100, 500] {
        let svcs: Vec<ServiceState> = (0..n)
            .map(|i| service(i, &["10.88.1.3", "10.88.1.4"]))
            .collect();
        let refs: Vec<&ServiceState> = svcs.iter().collect();
        let t = Instant::now();
        let script = rules::ruleset(&refs);
        let gen = t.elapsed();
        let took = load(&net, &mut loader, &script);
        println!(
            "ruleset: {n} services x 2 endpoints: {} bytes, generated in {gen:?}, nft -f load {took:?}",
            script.len()
        );
    }

    // Endpoint change -> traffic shift, 10 rounds, alternating backends.
    let vip: SocketAddr = "10.89.0.1:80".parse().unwrap();
    let mut shifts = Vec::new();
    for round in 0..10 {
        let (from, to, want) = if round % 2 == 0 {
            ("10.88.1.3", "10.88.1.4", "b2")
        } else {
            ("10.88.1.4", "10.88.1.3", "b1")
        };
        load(&net, &mut loader, &rules::ruleset(&[&service(0, &[from])]));
        let net = &net;
        let loader = &mut loader;
        let shift = std::thread::scope(|s| {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<Instant>();
            let watcher = s.spawn(move || {
                enter(net, "p1");
                // The old backend answers first; then time from the reload to the new one.
                while get(vip).as_deref() == Some(want) {}
                let _ = ready_tx.send(());
                let t0 = go_rx.recv().ok()?;
                let deadline = t0 + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if get(vip).as_deref() == Some(want) {
                        return Some(t0.elapsed());
                    }
                }
                None
            });
            ready_rx.recv().expect("watcher ready");
            let t0 = Instant::now();
            let script = rules::ruleset(&[&service(0, &[to])]);
            let _ = go_tx.send(t0);
            load(net, loader, &script);
            watcher.join().expect("watcher")
        });
        if let Some(d) = shift {
            shifts.push(d);
        }
    }
    shifts.sort();
    if !shifts.is_empty() {
        println!(
            "endpoint change -> traffic shift (data plane: generate + nft -f + first new-connection answer), {} rounds: min {:?} median {:?} max {:?}",
            shifts.len(),
            shifts[0],
            shifts[shifts.len() / 2],
            shifts[shifts.len() - 1]
        );
    }

    // Throughput: direct pod IP vs ClusterIP (one backend, so the same server either way).
    load(
        &net,
        &mut loader,
        &rules::ruleset(&[&service(0, &["10.88.1.3"])]),
    );
    let direct: SocketAddr = "10.88.1.3:8080".parse().unwrap();
    for threads in [1, 4] {
        let (d, df) = throughput(&net, direct, threads, 3.0);
        let (v, vf) = throughput(&net, vip, threads, 3.0);
        println!(
            "throughput, new connection per request, {threads} client thread(s): pod IP {d:.0} req/s ({df} failed), ClusterIP {v:.0} req/s ({vf} failed), ratio {:.2}",
            v / d
        );
    }
    drop(net);
}

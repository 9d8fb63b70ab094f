//! Pod network setup time: sandbox namespaces (net, ipc, uts bind mounts), veth into herd0,
//! IP from the persisted IPAM, the pod's address and default route, /etc/hosts and
//! resolv.conf — everything `Network::setup` does for a new pod — and its teardown; plus one
//! reconcile of host-gw routes to 10 other nodes. Needs root. The whole process runs in a
//! network namespace of its own (made before any thread exists), so the host's links, routes
//! and nft tables are never touched. `HERD_BENCH_N` sets the pod count (default 50).
//! Target: median setup ≤ 20 ms.

use std::time::{Duration, Instant};

use herd::api::Pod;
use herd::proto::{NetRoutes, NodeRoute};
use herd::worker::net::{Mode, Network};

fn pct(v: &mut [Duration], p: usize) -> Duration {
    v.sort();
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sh(cmd: &str) {
    let st = std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .expect("sh");
    assert!(st.success(), "{cmd}");
}

fn main() {
    // A private network namespace for the whole bench; threads made later inherit it.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let n: usize = std::env::var("HERD_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    // A "LAN" interface so other nodes' addresses are reachable gateways.
    sh(
        "ip link set lo up && ip link add lan0 type veth peer name lan1 && \
        ip addr add 10.99.0.254/24 dev lan0 && ip link set lan0 up && ip link set lan1 up",
    );
    let dir = tempfile::Builder::new()
        .prefix("herd-bench-net-")
        .tempdir()
        .expect("tempdir");
    std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
    let net = Network::new(Mode::Bridge, "bench", dir.path());
    let mut routes = vec![NodeRoute {
        node: "bench".into(),
        node_ip: "10.99.0.254".into(),
        pod_cidr: "10.88.0.0/24".into(),
    }];
    for i in 1..=10 {
        routes.push(NodeRoute {
            node: format!("peer{i}"),
            node_ip: format!("10.99.0.{i}"),
            pod_cidr: format!("10.88.{i}.0/24"),
        });
    }
    let msg = NetRoutes {
        v: 1,
        cluster_cidr: "10.88.0.0/16".into(),
        routes,
    };
    let t0 = Instant::now();
    net.on_routes(&msg);
    let first = t0.elapsed();
    let t0 = Instant::now();
    net.on_routes(&msg);
    let again = t0.elapsed();

    let (mut setup, mut teardown) = (Vec::new(), Vec::new());
    for i in 0..n {
        let mut pod = Pod::default();
        pod.metadata.name = format!("bench-{i}");
        pod.metadata.namespace = Some("default".into());
        pod.metadata.uid = format!("{i:08x}-0000-4000-8000-000000000000");
        let t0 = Instant::now();
        let pn = net.setup(&pod).expect("pod network setup");
        setup.push(t0.elapsed());
        assert!(pn.pod_ip.is_some());
        let t0 = Instant::now();
        net.teardown(&pod.metadata.uid);
        teardown.push(t0.elapsed());
    }
    herd::worker::net::nft::remove();
    println!(
        "node network (bridge, nft table, 10 host-gw routes) first apply: {:.1} ms, unchanged re-apply: {:.1} ms",
        ms(first),
        ms(again)
    );
    println!(
        "pod network setup (netns+ipc+uts, veth, IP, route, hosts/resolv.conf), {n} pods: median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(pct(&mut setup, 50)),
        ms(pct(&mut setup, 90)),
        ms(pct(&mut setup, 100))
    );
    println!(
        "pod network teardown: median {:.1} ms, p90 {:.1} ms",
        ms(pct(&mut teardown, 50)),
        ms(pct(&mut teardown, 90))
    );
}

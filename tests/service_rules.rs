//! The service ruleset for real, without the rest of herd: a node namespace with a `herd0`
//! bridge, two pod namespaces on it running busybox httpd, a LAN client namespace; the
//! ruleset herd generates is loaded by herd's loader inside the node namespace, then traffic
//! goes to the ClusterIP (from a pod, from the pod itself through hairpin, from the node) and
//! to the NodePort (from the LAN client). Everything is removed on exit, also on failure.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herd::api::service::Protocol;
use herd::proto::services::{Backend, PortState, ServiceState};
use herd::worker::services::{nft, rules};

fn sh(args: &[&str]) -> String {
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
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn try_sh(args: &[&str]) -> Option<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Namespaces and processes of one run; removed on drop.
struct Net {
    prefix: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Net {
    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }
    fn exec(&self, ns: &str, args: &[&str]) -> Option<String> {
        let mut a = vec!["ip", "netns", "exec"];
        let ns = self.ns(ns);
        a.push(&ns);
        a.extend_from_slice(args);
        try_sh(&a)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["node", "p1", "p2", "client"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
    }
}

/// Removes namespaces of earlier runs whose process is gone.
fn remove_stale() {
    let Ok(rd) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("hsv")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

fn setup() -> Net {
    remove_stale();
    let net = Net {
        prefix: format!("hsv{}", std::process::id()),
        children: Vec::new(),
        dir: tempfile::tempdir().expect("tempdir"),
    };
    for n in ["node", "p1", "p2", "client"] {
        sh(&["ip", "netns", "add", &net.ns(n)]);
    }
    let node = net.ns("node");
    let ipn = |args: &[&str]| {
        let mut a = vec!["ip", "-n", node.as_str()];
        a.extend_from_slice(args);
        sh(&a);
    };
    ipn(&["link", "set", "lo", "up"]);
    ipn(&["link", "add", "herd0", "type", "bridge"]);
    ipn(&["addr", "add", "10.88.1.1/24", "dev", "herd0"]);
    ipn(&["link", "set", "herd0", "up"]);
    // What the pod network sets: forwarding, and bridged pod traffic through netfilter.
    net.exec("node", &["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .expect("ip_forward");
    net.exec(
        "node",
        &["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"],
    )
    .expect("br_netfilter");
    for (i, p) in ["p1", "p2"].iter().enumerate() {
        let pns = net.ns(p);
        let host_if = format!("hv{p}");
        ipn(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &pns,
        ]);
        ipn(&["link", "set", &host_if, "master", "herd0"]);
        ipn(&[
            "link",
            "set",
            &host_if,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ]);
        ipn(&["link", "set", &host_if, "up"]);
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
    // The LAN side: the client reaches only the node's LAN address.
    let cns = net.ns("client");
    ipn(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &cns,
    ]);
    ipn(&["addr", "add", "10.77.9.1/24", "dev", "eth0"]);
    ipn(&["link", "set", "eth0", "up"]);
    sh(&[
        "ip",
        "-n",
        &cns,
        "addr",
        "add",
        "10.77.9.2/24",
        "dev",
        "eth0",
    ]);
    sh(&["ip", "-n", &cns, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", &cns, "link", "set", "lo", "up"]);
    // The node itself reaches the service range through the bridge (NOTES.md).
    ipn(&["route", "add", "10.89.0.0/16", "dev", "herd0"]);
    net
}

fn serve(net: &mut Net, pod: &str) {
    let www = net.dir.path().join(pod);
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), format!("{pod}\n")).expect("index");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.ns(pod),
            "busybox",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
        ])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("httpd");
    net.children.push(child);
}

fn service(name: &str, vip: &str, backends: &[&str], node_port: Option<u16>) -> ServiceState {
    ServiceState {
        v: 1,
        namespace: "default".into(),
        name: name.into(),
        cluster_ip: Some(vip.parse().unwrap()),
        headless: false,
        ports: vec![PortState {
            name: String::new(),
            protocol: Protocol::TCP,
            port: 80,
            node_port,
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

/// Runs herd's loader in the node namespace (on a thread that entered it: `nft` inherits it).
fn load_in(net: &Net, loader: &mut nft::Loader, script: String) -> bool {
    let path = format!("/run/netns/{}", net.ns("node"));
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path).expect("netns file");
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            loader.apply(&script).expect("nft load")
        })
        .join()
        .expect("loader thread")
    })
}

fn get(net: &Net, from: &str, url: &str) -> Option<String> {
    // curl, not busybox wget: Debian's static busybox wget segfaults outside its own rootfs.
    net.exec(from, &["curl", "-s", "-m", "2", url])
        .map(|s| s.trim().to_string())
}

#[test]
fn cluster_ips_node_ports_and_hairpin_work_through_the_loaded_rules() {
    let mut net = setup();
    serve(&mut net, "p1");
    serve(&mut net, "p2");
    // Both servers up (direct pod addresses) before any service test.
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&net, "p1", "http://10.88.1.3:8080/").is_none()
        || get(&net, "p2", "http://10.88.1.2:8080/").is_none()
    {
        assert!(Instant::now() < deadline, "httpd did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }

    let web = service(
        "web",
        "10.89.0.10",
        &["10.88.1.2", "10.88.1.3"],
        Some(30080),
    );
    let selfie = service("selfie", "10.89.0.11", &["10.88.1.2"], None);
    let empty = service("empty", "10.89.0.12", &[], None);
    let mut loader = nft::Loader::default();
    let script = rules::ruleset(&[&web, &selfie, &empty]);
    assert!(load_in(&net, &mut loader, script.clone()));
    // Idempotent: the same text is not loaded again.
    assert!(!load_in(&net, &mut loader, script));
    let listed = net
        .exec("node", &["nft", "list", "table", "ip", "herd-svc"])
        .expect("table listed");
    assert!(listed.contains("numgen random mod 2"), "{listed}");

    // From a pod: both backends answer through the VIP, p1 included (hairpin).
    let seen: BTreeSet<String> = (0..40)
        .filter_map(|_| get(&net, "p1", "http://10.89.0.10/"))
        .collect();
    assert_eq!(seen, ["p1".to_string(), "p2".to_string()].into(), "from p1");
    // A pod reaching itself as the only endpoint.
    assert_eq!(get(&net, "p1", "http://10.89.0.11/").as_deref(), Some("p1"));
    // The node itself (output hook).
    let from_node: BTreeSet<String> = (0..40)
        .filter_map(|_| get(&net, "node", "http://10.89.0.10/"))
        .collect();
    assert_eq!(from_node.len(), 2, "from the node: {from_node:?}");
    // The LAN client on the node's address (NodePort, masqueraded back through the node).
    let from_lan: BTreeSet<String> = (0..40)
        .filter_map(|_| get(&net, "client", "http://10.77.9.1:30080/"))
        .collect();
    assert_eq!(from_lan.len(), 2, "from the LAN: {from_lan:?}");
    // No endpoints: refused at once rather than left to time out.
    let t = Instant::now();
    assert_eq!(get(&net, "p2", "http://10.89.0.12/"), None);
    println!("no-endpoints refusal took {:?}", t.elapsed());

    // An endpoint change reloads the table; traffic follows.
    let web = service("web", "10.89.0.10", &["10.88.1.3"], Some(30080));
    assert!(load_in(&net, &mut loader, rules::ruleset(&[&web])));
    let after: BTreeSet<String> = (0..20)
        .filter_map(|_| get(&net, "p1", "http://10.89.0.10/"))
        .collect();
    assert_eq!(after, ["p2".to_string()].into());
    // Removing everything leaves no table behind.
    assert!(load_in(&net, &mut loader, rules::teardown()));
    assert!(net
        .exec("node", &["nft", "list", "table", "ip", "herd-svc"])
        .is_none());
}

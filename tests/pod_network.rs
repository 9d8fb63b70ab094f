//! Pod networking on real processes in a LAN of network namespaces (master on "m", workers
//! on "w1", "w2", … each in its own namespace with its own herd0): pod-to-pod TCP across and
//! within nodes, localhost between the containers of a pod, routes that follow nodes joining
//! and leaving, IP addresses that survive an agent restart, hostPort, hostNetwork,
//! masquerade, and cleanup when a pod goes. Init containers run in the host-netns cluster
//! (pod network `none`), where their sandboxes are exercised too.

mod common;

use std::process::Command;
use std::time::Duration;

use common::netns::Topology;
use common::Cluster;

const T: Duration = Duration::from_secs(60);

/// Runs `argv` in the network namespace `ns` (only the network namespace).
fn in_ns(ns: &str, argv: &[&str]) -> (bool, String) {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .args(argv)
        .output()
        .expect("nsenter");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn apply(c: &Cluster, yaml: &str) {
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(yaml));
    assert!(ok, "apply: {out}{err}");
}

/// A busybox httpd serving `text` on `port`, bound to `node`.
fn web(name: &str, node: &str, port: u16, text: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox
    command: [\"sh\", \"-c\", \"mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {port} -h /www\"]
{extra}"
    )
}

fn pod_ip(c: &Cluster, name: &str) -> Option<String> {
    let p = c.pod(name)?;
    (p["status"]["phase"] == "Running").then_some(())?;
    p["status"]["podIP"].as_str().map(str::to_string)
}

fn wait_ip(c: &Cluster, name: &str) -> String {
    c.wait(&format!("pod {name} running with an IP"), T, || {
        pod_ip(c, name)
    })
}

fn pod_cidr(c: &Cluster, node: &str) -> String {
    c.wait(&format!("node {node} podCIDR"), T, || {
        c.get_json(&["get", "node", node])?["spec"]["podCIDR"]
            .as_str()
            .map(str::to_string)
    })
}

fn herd_routes(ns: &str) -> String {
    in_ns(ns, &["ip", "route", "show", "proto", "147"]).1
}

/// An HTTP GET with busybox `nc` (Debian's static busybox `wget` segfaults), for a pod's
/// shell inside a YAML double-quoted string: `{GET} IP PORT`.
const GET: &str = "printf 'GET / HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc -w 2";

/// An HTTP GET from a node's namespace (the host's busybox), a few tries; the body.
fn fetch(ns: &str, ip: &str, port: u16) -> Option<String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {ip} {port}");
    for _ in 0..20 {
        let (ok, out) = in_ns(ns, &["sh", "-c", &script]);
        if ok && out.contains("200 OK") {
            return out.split("\r\n\r\n").nth(1).map(str::to_string);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

#[test]
fn pods_reach_each_other_across_and_within_nodes_and_over_localhost() {
    let net = Topology::new(&["m", "w1", "w2"]);
    let c = Cluster::start_in(&net, 2);
    c.wait_nodes_ready();
    let (c1, c2) = (pod_cidr(&c, "w1"), pod_cidr(&c, "w2"));
    assert_ne!(c1, c2, "nodes share a pod subnet");
    apply(&c, &web("web1", "w1", 8080, "hello-one", ""));
    apply(&c, &web("web2", "w2", 8080, "hello-two", ""));
    let (ip1, ip2) = (wait_ip(&c, "web1"), wait_ip(&c, "web2"));
    assert_ne!(ip1, ip2);
    // Each node routes to the other's subnet through its LAN address.
    let r1 = herd_routes(&net.ns("w1"));
    assert!(r1.contains(&format!("{c2} via {}", net.ip("w2"))), "{r1}");
    let bridge = in_ns(&net.ns("w1"), &["ip", "-br", "addr", "show", "herd0"]).1;
    let gw1 = c1.replace(".0/24", ".1/24");
    assert!(bridge.contains(&gw1), "herd0 of w1: {bridge}");

    // A client pod on w2 fetches from the pod on w1 (across nodes) and the one on w2 (same
    // node), by pod IP; and from the node namespace of w2 to the pod on w1.
    apply(
        &c,
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: w2
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"for i in $(seq 40); do {GET} {ip1} 8080 | grep hello && {GET} {ip2} 8080 | grep hello && cat /etc/resolv.conf /etc/hosts && exit 0; sleep 0.25; done; exit 1\"]
"
        ),
    );
    c.wait("client succeeded", T, || {
        let p = c.pod("client")?;
        if p["status"]["phase"] == "Failed" {
            let (_, logs, _) = c.herd(&["logs", "client"], None);
            for ns in [net.ns("w1"), net.ns("w2")] {
                for cmd in [
                    &["ip", "addr"][..],
                    &["ip", "route"],
                    &["bridge", "link"],
                    &["nft", "list", "ruleset"],
                ] {
                    eprintln!("{ns} {cmd:?}: {}", in_ns(&ns, cmd).1);
                }
            }
            panic!("client failed: {logs}");
        }
        (p["status"]["phase"] == "Succeeded").then_some(())
    });
    let (ok, logs, err) = c.herd(&["logs", "client"], None);
    assert!(ok, "{err}");
    assert!(
        logs.contains("hello-one") && logs.contains("hello-two"),
        "{logs}"
    );
    let gw2 = c2.replace(".0/24", ".1");
    assert!(logs.contains(&format!("nameserver {gw2}")), "{logs}");
    assert!(logs.contains("search default.svc.cluster.local svc.cluster.local cluster.local"));
    assert!(logs.contains("options ndots:5"), "{logs}");
    assert!(
        logs.contains("client"),
        "pod hostname in /etc/hosts: {logs}"
    );
    let from_node = fetch(&net.ns("w2"), &ip1, 8080);
    assert_eq!(from_node.as_deref().map(str::trim), Some("hello-one"));

    // Two containers of one pod talk over localhost and share the hostname.
    apply(
        &c,
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: duo
spec:
  nodeName: w1
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: busybox
    command: [\"sh\", \"-c\", \"mkdir -p /www && echo from-the-sidecar > /www/index.html && exec httpd -f -p 9090 -h /www\"]
  - name: client
    image: busybox
    command: [\"sh\", \"-c\", \"for i in $(seq 40); do {GET} localhost 9090 | grep sidecar && hostname && exec sleep 600; sleep 0.25; done; exit 1\"]
"
        ),
    );
    c.wait("duo's client read from localhost", T, || {
        let (_, logs, _) = c.herd(&["logs", "duo", "-c", "client"], None);
        logs.contains("from-the-sidecar").then_some(logs)
    });
    let (_, logs, _) = c.herd(&["logs", "duo", "-c", "client"], None);
    assert!(logs.contains("duo"), "shared UTS hostname: {logs}");
    for p in ["web1", "web2", "client", "duo"] {
        assert!(c.herd(&["delete", "pod", p], None).0);
    }
}

#[test]
fn routes_follow_nodes_joining_and_leaving() {
    let net = Topology::new(&["m", "w1", "w2", "w3"]);
    let mut c = Cluster::start_in(&net, 2);
    c.wait_nodes_ready();
    let c2 = pod_cidr(&c, "w2");
    let w1 = net.ns("w1");
    c.wait("w1 routes to w2's pods", T, || {
        herd_routes(&w1)
            .contains(&format!("{c2} via {}", net.ip("w2")))
            .then_some(())
    });
    c.add_worker_in(&net, "w3");
    let c3 = pod_cidr(&c, "w3");
    c.wait("w1 routes to the new node w3", T, || {
        herd_routes(&w1)
            .contains(&format!("{c3} via {}", net.ip("w3")))
            .then_some(())
    });
    // A route someone else made (no proto 147) is never touched by herd.
    let (ok, out) = in_ns(
        &w1,
        &["ip", "route", "add", "10.99.0.0/24", "via", &net.ip("w2")],
    );
    assert!(ok, "{out}");
    c.worker("w2").child.kill().expect("stop w2");
    let (ok, out, err) = c.herd(&["node", "rm", "w2"], None);
    assert!(ok, "node rm: {out}{err}");
    c.wait("w2's route is gone from w1", T, || {
        let r = herd_routes(&w1);
        (!r.contains(&c2)).then_some(())
    });
    let r = herd_routes(&w1);
    assert!(r.contains(&c3), "w3's route stays: {r}");
    let all = in_ns(&w1, &["ip", "route"]).1;
    assert!(all.contains("10.99.0.0/24"), "foreign route kept: {all}");
    // The freed subnet is handed to the next node; no two nodes share one.
    let nodes = c.get_json(&["get", "nodes"]).expect("nodes");
    let cidrs: Vec<&str> = nodes["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|n| n["spec"]["podCIDR"].as_str())
        .collect();
    let mut dedup = cidrs.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(cidrs.len(), dedup.len(), "{cidrs:?}");
    let (_, yaml, _) = c.herd(&["get", "node", "w1", "-o", "yaml"], None);
    assert!(yaml.contains("podCIDR:"), "{yaml}");
}

#[test]
fn pod_ips_survive_an_agent_restart_and_everything_goes_with_the_pod() {
    let net = Topology::new(&["m", "w1"]);
    let mut c = Cluster::start_in(&net, 1);
    c.wait_nodes_ready();
    let w1 = net.ns("w1");
    // hostPort, masquerade to a LAN address outside the cluster CIDR (the master's API).
    let ports = "    ports:\n    - {containerPort: 8080, hostPort: 30080}\n";
    apply(&c, &web("keep", "w1", 8080, "kept", ports));
    let ip = wait_ip(&c, "keep");
    let uid = c.pod("keep").expect("pod")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    assert_eq!(
        fetch(&w1, &net.ip("w1"), 30080).as_deref().map(str::trim),
        Some("kept"),
        "hostPort"
    );
    apply(
        &c,
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: out
spec:
  nodeName: w1
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"for i in $(seq 20); do nc -w 2 {m} 6443 </dev/null && exit 0; sleep 0.25; done; exit 1\"]
",
            m = net.ip("m")
        ),
    );
    c.wait("pod reached the LAN through masquerade", T, || {
        let p = c.pod("out")?;
        assert_ne!(p["status"]["phase"], "Failed", "{p}");
        (p["status"]["phase"] == "Succeeded").then_some(())
    });

    // A pod reaching its own hostPort through the node's address (hairpin).
    apply(
        &c,
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: selfie
spec:
  nodeName: w1
  terminationGracePeriodSeconds: 1
  containers:
  - name: server
    image: busybox
    command: [\"sh\", \"-c\", \"mkdir -p /www && echo self-hairpin > /www/index.html && exec httpd -f -p 8081 -h /www\"]
    ports:
    - {{containerPort: 8081, hostPort: 30081}}
  - name: client
    image: busybox
    command: [\"sh\", \"-c\", \"for i in $(seq 40); do {GET} {node} 30081 | grep self-hairpin && exec sleep 600; sleep 0.25; done; exit 1\"]
",
            node = net.ip("w1")
        ),
    );
    c.wait("a pod reached itself through its hostPort", T, || {
        let (_, logs, _) = c.herd(&["logs", "selfie", "-c", "client"], None);
        logs.contains("self-hairpin").then_some(())
    });
    assert!(c.herd(&["delete", "pod", "selfie"], None).0);

    c.restart_worker("w1");
    c.wait("w1 back", T, || c.node_ready("w1").filter(|r| *r));
    // Let the new agent adopt and report.
    std::thread::sleep(Duration::from_secs(3));
    let p = c.pod("keep").expect("pod");
    assert_eq!(p["status"]["podIP"].as_str(), Some(ip.as_str()), "{p}");
    assert_eq!(
        p["status"]["containerStatuses"][0]["restartCount"], 0,
        "{p}"
    );
    assert_eq!(
        fetch(&w1, &ip, 8080).as_deref().map(str::trim),
        Some("kept"),
        "the adopted pod still answers on its IP"
    );
    apply(&c, &web("fresh", "w1", 8080, "fresh", ""));
    let ip2 = wait_ip(&c, "fresh");
    assert_ne!(ip, ip2, "a new pod got the address of a live one");

    // hostNetwork: the node's address, no veth.
    apply(
        &c,
        "apiVersion: v1
kind: Pod
metadata:
  name: hostnet
spec:
  nodeName: w1
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [\"sleep\", \"600\"]
",
    );
    assert_eq!(wait_ip(&c, "hostnet"), net.ip("w1"));

    // Deleting a pod removes its veth, sandbox, address and hostPort rule.
    let data = c.worker("w1").data_dir.clone();
    let veth = format!(
        "hv{}",
        uid.chars()
            .filter(|ch| ch.is_ascii_alphanumeric())
            .take(12)
            .collect::<String>()
    );
    let port = in_ns(&w1, &["bridge", "-d", "link", "show", "dev", &veth]).1;
    assert!(
        port.contains("master herd0") && port.contains("hairpin on"),
        "{port}"
    );
    let sysctl = in_ns(
        &w1,
        &[
            "cat",
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
            "/proc/sys/net/ipv4/ip_forward",
        ],
    )
    .1;
    assert_eq!(sysctl.split_whitespace().collect::<Vec<_>>(), ["1", "1"]);
    assert!(in_ns(&w1, &["nft", "list", "table", "ip", "herd-net"])
        .1
        .contains("30080"));
    assert!(c.herd(&["delete", "pod", "keep"], None).0);
    c.wait("keep gone", T, || c.pod("keep").is_none().then_some(()));
    c.wait("veth gone", T, || {
        (!in_ns(&w1, &["ip", "link", "show", &veth]).0).then_some(())
    });
    assert!(!data.join("sandboxes").join(&uid).exists());
    let ipam = std::fs::read_to_string(data.join("state/ipam.json")).expect("ipam");
    assert!(!ipam.contains(&uid), "{ipam}");
    assert!(!in_ns(&w1, &["nft", "list", "table", "ip", "herd-net"])
        .1
        .contains("30080"));
    for p in ["fresh", "hostnet", "out"] {
        assert!(c.herd(&["delete", "pod", p], None).0);
    }
}

#[test]
fn init_containers_run_in_order_and_a_failing_one_blocks_the_app() {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    apply(
        &c,
        "apiVersion: v1
kind: Pod
metadata:
  name: ordered
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: first
    image: busybox
    command: [\"sh\", \"-c\", \"echo first; sleep 1\"]
  - name: second
    image: busybox
    command: [\"sh\", \"-c\", \"echo second\"]
  containers:
  - name: app
    image: busybox
    command: [\"sh\", \"-c\", \"echo app; exec sleep 600\"]
",
    );
    let p = c.wait("ordered running", T, || {
        let p = c.pod("ordered")?;
        (p["status"]["phase"] == "Running").then_some(p)
    });
    let inits = p["status"]["initContainerStatuses"]
        .as_array()
        .expect("init statuses");
    assert_eq!(inits.len(), 2);
    let t = |i: usize, k: &str| {
        inits[i]["state"]["terminated"][k]
            .as_str()
            .unwrap_or_else(|| panic!("{i} {k}: {p}"))
            .to_string()
    };
    assert_eq!(inits[0]["state"]["terminated"]["exitCode"], 0);
    assert!(
        t(1, "startedAt") >= t(0, "finishedAt"),
        "second began before first ended: {p}"
    );
    let app_started = p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        .as_str()
        .expect("app running")
        .to_string();
    assert!(app_started >= t(1, "finishedAt"), "{p}");
    let init = p["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Initialized")
        .expect("Initialized")
        .clone();
    assert_eq!(init["status"], "True");
    let (ok, logs, _) = c.herd(&["logs", "ordered", "-c", "first"], None);
    assert!(ok && logs.contains("first"), "{logs}");

    for (name, policy, want) in [
        ("broken-never", "Never", "Init:Error"),
        ("broken-always", "Always", "Init:CrashLoopBackOff"),
    ] {
        apply(
            &c,
            &format!(
                "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: fails
    image: busybox
    command: [\"sh\", \"-c\", \"exit 3\"]
  containers:
  - name: app
    image: busybox
    command: [\"sh\", \"-c\", \"echo app-ran; exec sleep 600\"]
"
            ),
        );
        c.wait(&format!("{name} shows {want}"), T, || {
            let (_, out, _) = c.herd(&["get", "pod", name], None);
            out.contains(want).then_some(())
        });
        let p = c.pod(name).expect("pod");
        let apps = p["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            apps.iter().all(|a| a["state"]["running"].is_null()),
            "the app started despite a failed init container: {p}"
        );
        let init = p["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Initialized")
            .expect("Initialized")
            .clone();
        assert_eq!(init["status"], "False", "{p}");
        if policy == "Never" {
            assert_eq!(p["status"]["phase"], "Failed", "{p}");
        } else {
            assert!(p["status"]["initContainerStatuses"][0]["restartCount"].as_u64() >= Some(1));
        }
    }
    for p in ["ordered", "broken-never", "broken-always"] {
        assert!(c.herd(&["delete", "pod", p], None).0);
    }
}

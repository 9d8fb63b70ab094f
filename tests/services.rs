//! Services end to end on three worker nodes, each in its own network namespace with the
//! bridge pod network: ClusterIP load balancing across nodes, hairpin, DNS from a pod,
//! NodePort on every node from a LAN client, Ingress by host from the LAN client, and
//! endpoints following readiness (measured and printed, not asserted on time).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::Topology;
use common::{is_ready, pods_of, Cluster};

/// httpd on 8080 serving the pod's hostname; `/ready.html` backs the readiness probe and the
/// CGI `/cgi-bin/unready` removes it (how the test makes one pod fail readiness).
fn web(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{matchLabels: {{app: {name}}}}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: httpd
        image: busybox
        ports:
        - {{name: http, containerPort: 8080}}
        command:
        - sh
        - -c
        - |
          mkdir -p /www/cgi-bin
          hostname > /www/index.html
          echo ok > /www/ready.html
          printf '#!/bin/sh\nrm -f /www/ready.html\necho Content-Type: text/plain\necho\necho unready\n' > /www/cgi-bin/unready
          chmod +x /www/cgi-bin/unready
          exec httpd -f -p 8080 -h /www
        readinessProbe:
          httpGet: {{path: /ready.html, port: http}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: NodePort
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
"#
    )
}

/// A pod that serves its hostname, reaches itself through its Service `selfie` (hairpin; not
/// named like the pod, whose own name /etc/hosts maps to its address), then
/// sends 60 requests to `web` by its short name (DNS through the search path) and looks the
/// full name up; everything goes to its log.
const CLIENT: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: selfie
spec:
  selector: {app: client}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  labels: {app: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command:
    - sh
    - -c
    - |
      mkdir -p /www; hostname > /www/index.html; httpd -p 8080 -h /www
      for i in $(seq 30); do
        r=$(timeout 3 wget -q -O - http://selfie/ 2>/dev/null) && { echo "SELF $r"; break; }
        sleep 1
      done
      for i in $(seq 60); do
        r=$(timeout 3 wget -q -O - http://web/ 2>/dev/null) || r=FAIL
        echo "WEB $r"
      done
      nslookup web.default.svc.cluster.local 2>&1 | sed 's/^/DNS /'
      echo DONE
      exec sleep 3600
"#;

const INGRESS: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: site
spec:
  rules:
  - host: a.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: site-a, port: {number: 80}}}}
  - host: b.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: site-b, port: {name: http}}}}
"#;

fn curl(topo: &Topology, from: &str, args: &[&str]) -> Option<String> {
    let ns = topo.ns(from);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "curl", "-s", "-f", "-m", "3"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn pod_ips(c: &Cluster, app: &str) -> BTreeMap<String, String> {
    pods_of(c, app)
        .iter()
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                // herd serializes `podIp` today (Kubernetes: `podIP`); accept both.
                p["status"]["podIP"]
                    .as_str()
                    .or(p["status"]["podIp"].as_str())?
                    .to_string(),
            ))
        })
        .collect()
}

#[test]
fn cluster_ip_dns_node_port_ingress_and_readiness_across_three_nodes() {
    let topo = Topology::new(&["m", "w1", "w2", "w3", "client"]);
    let c = Cluster::start_in_labelled(&topo, &[&["herd.io/ingress=true"], &[], &[]]);
    c.wait_nodes_ready();

    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&web("web", 3)));
    assert!(ok, "{out} {err}");
    let mut last_print = Instant::now();
    let pods = c.wait(
        "3 ready web pods with IPs",
        Duration::from_secs(120),
        || {
            let ready = pods_of(&c, "web").iter().filter(|p| is_ready(p)).count();
            let ips = pod_ips(&c, "web");
            if last_print.elapsed() > Duration::from_secs(20) {
                last_print = Instant::now();
                for p in pods_of(&c, "web") {
                    eprintln!("waiting: {} {}", p["metadata"]["name"], p["status"]);
                }
            }
            (ready == 3 && ips.len() == 3).then_some(ips)
        },
    );
    let nodes: BTreeSet<String> = pods_of(&c, "web")
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
        .collect();
    assert_eq!(nodes.len(), 3, "one replica per node: {nodes:?}");

    // The API: an address from the service range, a NodePort, three ready endpoints.
    let svc = c.get_json(&["get", "svc", "web"]).expect("service");
    let vip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(vip.starts_with("10.89."), "{vip}");
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort");
    let (ok, table, _) = c.herd(&["get", "svc"], None);
    assert!(ok);
    assert!(
        table.contains("NodePort") && table.contains(&format!("80:{node_port}/TCP")),
        "{table}"
    );
    c.wait("3 ready endpoints", Duration::from_secs(30), || {
        let e = c.get_json(&["get", "endpoints", "web"])?;
        let n = e["subsets"]
            .as_array()?
            .iter()
            .map(|s| s["addresses"].as_array().map_or(0, |a| a.len()))
            .sum::<usize>();
        (n == 3).then_some(())
    });

    // From a pod: 60 requests by name reach all three backends; the pod reaches itself.
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(CLIENT));
    assert!(ok, "{out} {err}");
    let log = c.wait("the client pod's run", Duration::from_secs(180), || {
        let (ok, log, _) = c.herd(&["logs", "client"], None);
        (ok && log.contains("DONE")).then_some(log)
    });
    let web_hits: Vec<&str> = log.lines().filter_map(|l| l.strip_prefix("WEB ")).collect();
    let by_pod: BTreeMap<&str, usize> = web_hits.iter().fold(BTreeMap::new(), |mut m, h| {
        *m.entry(*h).or_insert(0) += 1;
        m
    });
    println!("60 requests from a pod to web by name: {by_pod:?}");
    assert_eq!(web_hits.len(), 60, "{log}");
    for name in pods.keys() {
        assert!(
            by_pod.contains_key(name.as_str()),
            "{name} never answered: {by_pod:?}"
        );
    }
    assert!(!by_pod.contains_key("FAIL"), "{by_pod:?}");
    assert!(
        log.contains("SELF client"),
        "hairpin through the pod's own service: {log}"
    );
    assert!(
        log.contains(&format!("DNS Address: {vip}"))
            || log.contains(&format!("DNS Address 1: {vip}"))
            || log
                .lines()
                .any(|l| l.starts_with("DNS") && l.contains(&vip)),
        "{log}"
    );

    // The node itself reaches the ClusterIP (output hook; a node without a default route
    // gets a route for the service range through its bridge).
    let from_node: BTreeSet<String> = (0..30)
        .filter_map(|_| curl(&topo, "w2", &[&format!("http://{vip}/")]))
        .collect();
    println!("ClusterIP from node w2: {from_node:?}");
    assert_eq!(from_node.len(), 3, "{from_node:?}");

    // NodePort on every node's address, from the LAN client.
    for w in ["w1", "w2", "w3"] {
        let url = format!("http://{}:{node_port}/", topo.ip(w));
        let seen: BTreeSet<String> = (0..30)
            .filter_map(|_| curl(&topo, "client", &[&url]))
            .collect();
        println!("NodePort via {w}: {seen:?}");
        assert!(!seen.is_empty(), "NodePort unreachable via {w}");
        assert!(seen.iter().all(|s| pods.contains_key(s)), "{seen:?}");
    }

    // Ingress on w1 routes two hosts to two services.
    for (name, manifest) in [("site-a", web("site-a", 1)), ("site-b", web("site-b", 1))] {
        let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&manifest));
        assert!(ok, "{name}: {out} {err}");
    }
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(INGRESS));
    assert!(ok, "{out} {err}");
    let w1 = topo.ip("w1");
    for host in ["a", "b"] {
        let got = c.wait(
            &format!("ingress for {host}.example"),
            Duration::from_secs(120),
            || {
                curl(
                    &topo,
                    "client",
                    &[
                        "-H",
                        &format!("Host: {host}.example"),
                        &format!("http://{w1}/"),
                    ],
                )
            },
        );
        assert!(
            got.starts_with(&format!("site-{host}-")),
            "{host}.example -> {got}"
        );
    }
    let status = Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.ns("client"),
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "3",
            "-H",
            "Host: nope.example",
        ])
        .arg(format!("http://{w1}/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "404");

    // Readiness: one web pod fails its probe; how long until the NodePort stops reaching it.
    let (victim, victim_ip) = pods
        .iter()
        .next()
        .map(|(n, i)| (n.clone(), i.clone()))
        .unwrap();
    let client_ns = topo.ns("client");
    let ok = Command::new("ip")
        .args(["-n", &client_ns, "route", "add", "10.88.0.0/16", "via", &w1])
        .status()
        .expect("ip route");
    assert!(ok.success());
    let url = format!("http://{w1}:{node_port}/");
    let t0 = Instant::now();
    let unready = curl(
        &topo,
        "client",
        &[&format!("http://{victim_ip}:8080/cgi-bin/unready")],
    );
    assert_eq!(unready.as_deref(), Some("unready"));
    let (in_api, last_seen) = std::thread::scope(|s| {
        // When the API's Endpoints move the victim to notReadyAddresses ...
        let api = s.spawn(|| {
            while t0.elapsed() < Duration::from_secs(15) {
                let e = c.get_json(&["get", "endpoints", "web"]);
                let moved = e
                    .as_ref()
                    .and_then(|e| e["subsets"].as_array())
                    .is_some_and(|ss| {
                        ss.iter().any(|s| {
                            s["notReadyAddresses"]
                                .as_array()
                                .is_some_and(|a| a.iter().any(|x| x["ip"] == victim_ip.as_str()))
                        })
                    });
                if moved {
                    return Some(t0.elapsed());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        });
        // ... and the last time the victim answered through the NodePort.
        let mut last_seen = Duration::ZERO;
        while t0.elapsed() < Duration::from_secs(15) {
            if curl(&topo, "client", &[&url]).as_deref() == Some(victim.as_str()) {
                last_seen = t0.elapsed();
            } else if t0.elapsed() > last_seen + Duration::from_secs(3) {
                break;
            }
        }
        (api.join().expect("api poller"), last_seen)
    });
    println!(
        "readiness: probe target removed at 0; Endpoints showed {victim} not ready after {in_api:?}; \
         it last answered through the NodePort after {last_seen:?} (probe period 1 s)"
    );
    assert!(
        in_api.is_some(),
        "the Endpoints never showed {victim} as not ready"
    );
    assert!(
        last_seen < Duration::from_secs(10),
        "{victim} stayed in rotation"
    );
    let after: BTreeSet<String> = (0..30)
        .filter_map(|_| curl(&topo, "client", &[&url]))
        .collect();
    assert!(!after.contains(&victim) && after.len() == 2, "{after:?}");
    let e = c.get_json(&["get", "endpoints", "web"]).expect("endpoints");
    assert!(e.to_string().contains("notReadyAddresses"), "{e}");

    // describe shows the endpoints; delete removes the service and, with it, its Endpoints.
    let (ok, text, _) = c.herd(&["describe", "svc", "web"], None);
    assert!(
        ok && text.contains("NodePort") && text.contains("NotReady"),
        "{text}"
    );
    let (ok, out, err) = c.herd(&["delete", "svc", "selfie"], None);
    assert!(ok, "{out} {err}");
    c.wait(
        "selfie's Endpoints removed",
        Duration::from_secs(30),
        || {
            c.get_json(&["get", "endpoints", "selfie"])
                .is_none()
                .then_some(())
        },
    );
}

//! Worker kill → all replacement pods Ready (issue: "Workloads that heal themselves").
//! Three workers on 127.0.0.1, a Deployment of 6 replicas, `kill -9` of one worker, time until
//! 6 replicas are Ready again on the other two. Default eviction grace (5 s). Prints each run
//! and the median. Run: `cargo bench --bench failover` (HERD_FAILOVER_RUNS, default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Cluster;

fn ready_by_node(c: &Cluster) -> BTreeMap<String, usize> {
    common::ready_by_node(c, "web")
}

const DEPLOY: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 6
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sleep, \"600\"]
";

fn one_run() -> Duration {
    let mut c = Cluster::start(&[&[], &[], &[]]);
    c.wait_nodes_ready();
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(DEPLOY));
    assert!(ok, "apply: {out} {err}");
    c.wait("6 ready", Duration::from_secs(120), || {
        (ready_by_node(&c).values().sum::<usize>() == 6).then_some(())
    });
    let w = c.worker("w1");
    let _ = w.child.kill();
    let _ = w.child.wait();
    let killed = Instant::now();
    loop {
        let m = ready_by_node(&c);
        if m.values().sum::<usize>() == 6 && !m.contains_key("w1") {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "no recovery: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    killed.elapsed()
}

fn main() {
    let runs: usize = std::env::var("HERD_FAILOVER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut times: Vec<Duration> = (0..runs)
        .map(|i| {
            let t = one_run();
            println!(
                "run {}: worker kill -> 6/6 replicas Ready in {:.2} s",
                i + 1,
                t.as_secs_f64()
            );
            t
        })
        .collect();
    times.sort();
    println!(
        "failover median of {runs}: {:.2} s (target <= 10 s; eviction grace 5 s)",
        times[times.len() / 2].as_secs_f64()
    );
}

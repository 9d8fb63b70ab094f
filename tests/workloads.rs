//! Deployments on real workers: spreading, replacement after a worker dies, stale containers
//! stopped when it returns, rolling updates gated by readiness, rollback, drain.

mod common;

use std::time::{Duration, Instant};

use common::{is_ready, pods_of, ready_by_node, Cluster};

fn deployment(
    name: &str,
    replicas: u32,
    image: &str,
    extra_container: &str,
    strategy: &str,
) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
{strategy}  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        command: [\"sh\", \"-c\", \"touch /tmp/ready; exec sleep 600\"]
{extra_container}"
    )
}

#[test]
fn six_replicas_spread_two_per_node_and_are_replaced_when_a_worker_dies() {
    let mut c = Cluster::start(&[&[], &[], &[]]);
    c.wait_nodes_ready();
    let (ok, out, err) = c.herd(
        &["apply", "-f", "-"],
        Some(&deployment("web", 6, "busybox", "", "")),
    );
    assert!(ok, "{out} {err}");
    let spread = c.wait("6 ready replicas", Duration::from_secs(90), || {
        let m = ready_by_node(&c, "web");
        (m.values().sum::<usize>() == 6).then_some(m)
    });
    assert_eq!(
        spread.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{spread:?}"
    );

    let w1_shims = common::shim_pids(&c.workers[0].data_dir);
    assert_eq!(w1_shims.len(), 2, "w1 runs two containers");
    {
        let w = c.worker("w1");
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    let killed = Instant::now();
    let m = c.wait(
        "6 ready replicas without w1",
        Duration::from_secs(60),
        || {
            let m = ready_by_node(&c, "web");
            (m.values().sum::<usize>() == 6 && !m.contains_key("w1")).then_some(m)
        },
    );
    eprintln!(
        "worker kill -> all 6 replicas Ready again: {:?} ({m:?})",
        killed.elapsed()
    );
    // The killed agent's containers are still running (nobody stopped them) ...
    assert!(w1_shims
        .iter()
        .all(|p| std::path::Path::new(&format!("/proc/{p}")).exists()));
    // ... until the worker comes back and finds them stale.
    c.restart_worker("w1");
    c.wait_nodes_ready();
    c.wait(
        "stale containers on w1 stopped",
        Duration::from_secs(30),
        || {
            w1_shims
                .iter()
                .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
                .then_some(())
        },
    );
    assert_eq!(ready_by_node(&c, "web").values().sum::<usize>(), 6);
    let (ok, out, err) = c.herd(&["delete", "deploy", "web"], None);
    assert!(ok, "{out} {err}");
    c.wait("pods garbage-collected", Duration::from_secs(60), || {
        pods_of(&c, "web").is_empty().then_some(())
    });
}

#[test]
fn a_rolling_update_keeps_enough_ready_replicas_and_undo_returns_to_the_old_image() {
    let c = Cluster::start(&[&[], &[]]);
    c.wait_nodes_ready();
    // A second tag of the same image stands in for "image B".
    for w in &c.workers {
        let out = std::process::Command::new(common::HERD)
            .args(["image", "import"])
            .arg(&c.image)
            .args(["--tag", "busybox:b", "--data-dir"])
            .arg(&w.data_dir)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let probe = "        readinessProbe:
          exec:
            command: [\"test\", \"-f\", \"/tmp/ready\"]
          periodSeconds: 1
";
    let strategy = "  strategy:
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 1
";
    let manifest = |image: &str| deployment("roll", 4, image, probe, strategy);
    assert!(c.herd(&["apply", "-f", "-"], Some(&manifest("busybox"))).0);
    c.wait("4 ready", Duration::from_secs(90), || {
        (pods_of(&c, "roll").iter().filter(|p| is_ready(p)).count() == 4).then_some(())
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let min_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let watcher = {
        let (stop, min_seen) = (stop.clone(), min_seen.clone());
        let config = c.config();
        std::thread::spawn(move || {
            let mut samples = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && samples < 3000 {
                let out = std::process::Command::new(common::HERD)
                    .arg("--config")
                    .arg(&config)
                    .args(["get", "pods", "-l", "app=roll", "-o", "json"])
                    .output();
                if let Ok(out) = out {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                        let n = v["items"]
                            .as_array()
                            .map_or(0, |a| a.iter().filter(|p| is_ready(p)).count());
                        if n < 3 {
                            let desc: Vec<String> = v["items"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|p| {
                                    format!(
                                        "{}:{}:{}:{}",
                                        p["metadata"]["name"],
                                        p["status"]["phase"],
                                        is_ready(p),
                                        p["metadata"]["deletionTimestamp"]
                                    )
                                })
                                .collect();
                            eprintln!("only {n} ready: {desc:?}");
                        }
                        min_seen.fetch_min(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let (ok, out, err) = c.herd(&["set", "image", "deploy/roll", "main=busybox:b"], None);
    assert!(ok, "{out} {err}");
    let (ok, out, err) = c.herd(
        &["rollout", "status", "deploy/roll", "--timeout", "120s"],
        None,
    );
    assert!(ok, "rollout status: {out} {err}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    let min = min_seen.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        min >= 3,
        "saw only {min} ready pods during the rollout (replicas 4, maxUnavailable 1)"
    );
    let images: Vec<String> = pods_of(&c, "roll")
        .iter()
        .filter(|p| is_ready(p))
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(images.iter().all(|i| i == "busybox:b"), "{images:?}");

    let (ok, out, err) = c.herd(&["rollout", "undo", "deploy/roll"], None);
    assert!(ok, "undo: {out} {err}");
    let (ok, out, err) = c.herd(
        &["rollout", "status", "deploy/roll", "--timeout", "120s"],
        None,
    );
    assert!(ok, "rollout status after undo: {out} {err}");
    let d = c.get_json(&["get", "deploy", "roll"]).unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert!(c.herd(&["delete", "deploy", "roll"], None).0);
}

#[test]
fn drain_moves_pods_away_and_leaves_the_node_unschedulable() {
    let c = Cluster::start(&[&[], &[]]);
    c.wait_nodes_ready();
    assert!(
        c.herd(
            &["apply", "-f", "-"],
            Some(&deployment("d", 4, "busybox", "", ""))
        )
        .0
    );
    c.wait("4 ready", Duration::from_secs(90), || {
        (ready_by_node(&c, "d").values().sum::<usize>() == 4).then_some(())
    });
    let (ok, out, err) = c.herd(&["drain", "w1", "--timeout", "120s"], None);
    assert!(ok, "drain: {out} {err}");
    let m = c.wait("4 ready on w2", Duration::from_secs(60), || {
        let m = ready_by_node(&c, "d");
        (m.get("w2") == Some(&4)).then_some(m)
    });
    assert!(!m.contains_key("w1"));
    let n = c.get_json(&["get", "node", "w1"]).unwrap();
    assert_eq!(n["spec"]["unschedulable"], true);
    let (ok, _, _) = c.herd(&["uncordon", "w1"], None);
    assert!(ok);
    assert!(c.herd(&["delete", "deploy", "d"], None).0);
}

/// Issue #7: `kill -9` of the master in the middle of a rolling update. After the restart the
/// rollout resumes and completes, never beyond its limits (maxSurge 1, maxUnavailable 0), and
/// no pod of the new revision is created twice.
#[test]
fn a_master_killed_mid_rollout_resumes_it_within_its_limits_without_double_creating() {
    let mut c = Cluster::start(&[&[], &[]]);
    c.wait_nodes_ready();
    let extra = |v: &str| {
        format!(
            "        env: [{{name: REVISION, value: \"{v}\"}}]
        readinessProbe:
          exec:
            command: [\"test\", \"-f\", \"/tmp/ready\"]
          initialDelaySeconds: 2
          periodSeconds: 1
"
        )
    };
    let strategy = "  strategy:
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
";
    let manifest = |v: &str| deployment("mid", 4, "busybox", &extra(v), strategy);
    assert!(c.herd(&["apply", "-f", "-"], Some(&manifest("1"))).0);
    c.wait("4 ready", Duration::from_secs(90), || {
        (pods_of(&c, "mid").iter().filter(|p| is_ready(p)).count() == 4).then_some(())
    });
    let old_hash = pods_of(&c, "mid")[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("pod-template-hash")
        .to_string();

    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&manifest("2")));
    assert!(ok, "{out} {err}");
    let mut new_names = std::collections::BTreeSet::new();
    let check = |c: &Cluster, new_names: &mut std::collections::BTreeSet<String>| {
        let pods = pods_of(c, "mid");
        let live: Vec<&serde_json::Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        assert!(
            live.len() <= 5,
            "more than replicas+maxSurge pods: {}",
            live.len()
        );
        let ready = live.iter().filter(|p| is_ready(p)).count();
        assert!(
            ready >= 4,
            "fewer than replicas-maxUnavailable ready: {ready}"
        );
        for p in &pods {
            if p["metadata"]["labels"]["pod-template-hash"] != old_hash.as_str() {
                new_names.insert(p["metadata"]["name"].as_str().unwrap_or("").to_string());
            }
        }
    };
    // Kill it once the first pod of the new revision exists (the rollout is under way).
    c.wait("rollout under way", Duration::from_secs(30), || {
        check(&c, &mut new_names);
        (!new_names.is_empty()).then_some(())
    });
    c.kill_master();
    std::thread::sleep(Duration::from_secs(2));
    c.restart_master();
    let done = Instant::now();
    loop {
        check(&c, &mut new_names);
        let pods = pods_of(&c, "mid");
        let finished = pods.len() == 4
            && pods.iter().all(|p| {
                is_ready(p) && p["metadata"]["labels"]["pod-template-hash"] != old_hash.as_str()
            });
        if finished {
            break;
        }
        assert!(
            done.elapsed() < Duration::from_secs(120),
            "rollout did not complete after the master's restart: {:?}",
            pods.iter()
                .map(|p| (&p["metadata"]["name"], is_ready(p)))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        new_names.len(),
        4,
        "pods of the new revision created: {new_names:?} (a restart must not double-create)"
    );
    let rs = c.get_json(&["get", "replicasets"]).expect("replicasets");
    let n_rs = rs["items"].as_array().map_or(0, |a| a.len());
    assert_eq!(n_rs, 2, "one ReplicaSet per revision: {rs}");
    let (ok, out, err) = c.herd(
        &["rollout", "status", "deploy/mid", "--timeout", "30s"],
        None,
    );
    assert!(ok, "rollout status: {out} {err}");
    assert!(c.herd(&["delete", "deploy", "mid"], None).0);
}

//! End to end with real parts: a master and two workers as separate processes on 127.0.0.1,
//! real containers through libcontainer, the CLI as a subprocess.

mod common;

use std::time::{Duration, Instant};

use common::{cgroup_dirs, Cluster};

fn pod_yaml(name: &str, extra_spec: &str, cmd: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{extra_spec}  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"{cmd}\"]
    resources:
      limits:
        memory: 64Mi
"
    )
}

fn phase(c: &Cluster, pod: &str) -> Option<String> {
    c.pod(pod)?["status"]["phase"].as_str().map(str::to_string)
}

fn host_pid_of(c: &Cluster, pod: &str) -> (i32, String) {
    let p = c.pod(pod).expect("pod exists");
    let uid = p["metadata"]["uid"].as_str().expect("uid").to_string();
    let cid = p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .expect("containerID")
        .trim_start_matches("herd://")
        .to_string();
    let rel = format!("herd/{uid}/{cid}");
    for d in cgroup_dirs(&rel) {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            if let Some(pid) = s.lines().filter_map(|l| l.trim().parse::<i32>().ok()).min() {
                return (pid, rel);
            }
        }
    }
    panic!("no process found in cgroup {rel}");
}

fn memory_limit(rel: &str) -> Option<u64> {
    for d in cgroup_dirs(rel) {
        for f in ["memory.limit_in_bytes", "memory.max"] {
            if let Ok(s) = std::fs::read_to_string(d.join(f)) {
                return s.trim().parse().ok();
            }
        }
    }
    None
}

#[test]
fn a_pod_lands_on_its_selected_node_runs_isolated_logs_and_is_removed_completely() {
    let c = Cluster::start(&[&[], &["disk=ssd"]]);
    c.wait_nodes_ready();
    let yaml = pod_yaml(
        "hello",
        "  nodeSelector:\n    disk: ssd\n",
        "echo hello-from-herd; sleep 600",
    );
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&yaml));
    assert!(ok, "apply failed: {out} {err}");
    assert!(out.contains("pod/hello created"), "{out}");
    c.wait("pod Running", Duration::from_secs(60), || {
        phase(&c, "hello").filter(|p| p == "Running")
    });
    let p = c.pod("hello").unwrap();
    assert_eq!(
        p["spec"]["nodeName"], "w2",
        "nodeSelector disk=ssd must pick w2"
    );

    let (pid, cg) = host_pid_of(&c, "hello");
    for ns in ["pid", "mnt"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let ctr = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(host, ctr, "container must have its own {ns} namespace");
    }
    assert_eq!(
        memory_limit(&cg),
        Some(64 << 20),
        "memory limit in cgroup {cg}"
    );

    let logs = c.wait("logs", Duration::from_secs(20), || {
        let (ok, out, _) = c.herd(&["logs", "hello"], None);
        (ok && out.contains("hello-from-herd")).then_some(out)
    });
    assert!(logs.contains("hello-from-herd"));

    let (ok, out, err) = c.herd(&["get", "pods", "-o", "wide"], None);
    assert!(
        ok && out.contains("hello") && out.contains("w2"),
        "{out} {err}"
    );

    let (ok, out, err) = c.herd(&["delete", "pod", "hello", "--grace-period", "2"], None);
    assert!(ok, "delete: {out} {err}");
    assert!(
        c.pod("hello").is_none(),
        "pod still present after delete returned"
    );
    let gone = |pid: i32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    c.wait("container process gone", Duration::from_secs(10), || {
        gone(pid).then_some(())
    });
    c.wait("cgroup removed", Duration::from_secs(10), || {
        cgroup_dirs(&cg).is_empty().then_some(())
    });
    let w2 = c.workers[1].data_dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&w2), "mounts left under {w2}");
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let left = std::fs::read_dir(c.workers[1].data_dir.join("containers").join(uid))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "container dirs (rootfs) left behind");
}

#[test]
fn exit_codes_are_reported_and_crashing_containers_restart_with_growing_counts() {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let once = pod_yaml("once", "  restartPolicy: Never\n", "echo bye; exit 3");
    let crash = pod_yaml("crash", "", "exit 1");
    assert!(
        c.herd(&["apply", "-f", "-"], Some(&format!("{once}---\n{crash}")))
            .0
    );
    let p = c.wait("pod once Failed", Duration::from_secs(60), || {
        c.pod("once").filter(|p| p["status"]["phase"] == "Failed")
    });
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    // Backoff base is 300 ms in tests: restarts at +0.3 s, +0.6 s, +1.2 s...
    let p = c.wait("crash restarted twice", Duration::from_secs(60), || {
        c.pod("crash")
            .filter(|p| p["status"]["containerStatuses"][0]["restartCount"].as_u64() >= Some(2))
    });
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    let (_, table, _) = c.herd(&["get", "pods"], None);
    assert!(table.contains("crash"), "{table}");
    let first = cs["restartCount"].as_u64().unwrap();
    let later = c.wait("restartCount grows", Duration::from_secs(60), || {
        let n = c.pod("crash")?["status"]["containerStatuses"][0]["restartCount"].as_u64()?;
        (n > first).then_some(n)
    });
    assert!(later > first);
    for pod in ["once", "crash"] {
        assert!(
            c.herd(&["delete", "pod", pod, "--grace-period", "1"], None)
                .0
        );
    }
}

#[test]
fn a_killed_worker_turns_not_ready_within_two_seconds_through_its_last_will() {
    let mut c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let w = c.worker("w1");
    let _ = w.child.kill();
    let _ = w.child.wait();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(2);
    let mut not_ready = false;
    while Instant::now() < deadline {
        if c.node_ready("w1") == Some(false) {
            not_ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("NotReady after {:?}", killed.elapsed());
    assert!(not_ready, "node w1 still Ready 2 s after kill -9");
}

#[test]
fn malformed_mqtt_payloads_are_dropped_and_the_cluster_keeps_working() {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let password = std::fs::read_to_string(c.master.data_dir.join("mqtt-master.secret")).unwrap();
    let endpoint = c.mosquitto_args();
    let garbage: &[(&str, &[u8])] = &[
        ("herd/v1/nodes/w1/info", b"{not json"),
        ("herd/v1/nodes/w1/heartbeat", b"[1,2,3]"),
        ("herd/v1/nodes/w1/observed/default/x", b"\xff\xfe\x00"),
        ("herd/v1/nodes/w1/online", b"perhaps"),
        (
            "herd/v1/nodes/w1/desired/default/evil",
            b"{\"v\":1,\"pod\":42}",
        ),
        ("herd/v1/nodes/w1/desired", b"{\"v\":99}"),
        (
            "herd/v1/nodes/w1/rpc/req",
            b"{\"v\":1,\"id\":\"x\",\"call\":{\"kind\":\"nope\"}}",
        ),
        ("herd/v1/nodes/w1/rpc/resp/zzz", b"null"),
    ];
    for (topic, payload) in garbage {
        let st = std::process::Command::new("mosquitto_pub")
            .args(&endpoint)
            .args([
                "-u",
                "herd-master",
                "-P",
                password.trim(),
                "-i",
                "herd-it-fuzzer",
                "-t",
                topic,
                "-s",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                use std::io::Write;
                ch.stdin.take().unwrap().write_all(payload)?;
                ch.wait()
            })
            .expect("mosquitto_pub (apt-get install mosquitto-clients)");
        assert!(st.success(), "mosquitto_pub to {topic} failed");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.master.data_dir.exists());
    let yaml = pod_yaml("after", "", "echo still-alive; sleep 600");
    assert!(c.herd(&["apply", "-f", "-"], Some(&yaml)).0);
    c.wait("pod Running after garbage", Duration::from_secs(60), || {
        phase(&c, "after").filter(|p| p == "Running")
    });
    assert!(
        c.herd(&["delete", "pod", "after", "--grace-period", "1"], None)
            .0
    );
}

#[test]
fn an_external_mosquitto_broker_carries_the_cluster() {
    let broker = common::Mosquitto::start();
    let c = Cluster::start_with(&[&[]], Some(&broker.url()));
    c.wait_nodes_ready();
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.workers[0].data_dir.join("node.json")).unwrap())
            .unwrap();
    assert_eq!(
        creds["mqttUrl"],
        broker.url(),
        "workers must be told the external broker"
    );
    let yaml = pod_yaml("ext", "", "echo via-mosquitto; sleep 600");
    assert!(c.herd(&["apply", "-f", "-"], Some(&yaml)).0);
    c.wait("pod Running via mosquitto", Duration::from_secs(60), || {
        phase(&c, "ext").filter(|p| p == "Running")
    });
    let out = c.wait("logs via mosquitto", Duration::from_secs(20), || {
        let (ok, out, _) = c.herd(&["logs", "ext"], None);
        (ok && out.contains("via-mosquitto")).then_some(out)
    });
    assert!(out.contains("via-mosquitto"));
    assert!(
        c.herd(&["delete", "pod", "ext", "--grace-period", "1"], None)
            .0
    );
}

#[test]
fn a_worker_agent_stopped_with_sigterm_leaves_its_node_ready_for_the_restart() {
    let mut c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let w = c.worker("w1");
    let pid = nix::unistd::Pid::from_raw(w.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = w.child.wait();
    // A restart (systemctl restart, upgrade) must not flap the node: no "offline" message;
    // only missed heartbeats (15 s by default) would mark it NotReady.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(c.node_ready("w1"), Some(true));
    c.restart_worker("w1");
    c.wait_nodes_ready();
}

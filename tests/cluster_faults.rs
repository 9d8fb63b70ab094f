//! Faults against a real cluster: master crash, unschedulable pods, image import while the
//! worker runs. Hostile input (HTTP bodies among it) is the table in `tests/hostile.rs`.

mod common;

use std::time::Duration;

use common::Cluster;

fn sleeper(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{extra_spec}  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [\"sleep\", \"600\"]
"
    )
}

fn running(c: &Cluster, name: &str) -> Option<serde_json::Value> {
    c.pod(name).filter(|p| p["status"]["phase"] == "Running")
}

#[test]
fn a_master_killed_mid_flight_loses_nothing_and_running_containers_keep_running() {
    let mut c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    assert!(
        c.herd(&["apply", "-f", "-"], Some(&sleeper("before", "")))
            .0
    );
    let p = c.wait("pod before Running", Duration::from_secs(60), || {
        running(&c, "before")
    });
    let cid = p["status"]["containerStatuses"][0]["containerID"].clone();

    c.crash_and_restart_master();
    c.wait_nodes_ready();
    // The acknowledged pod survived, its container was not restarted.
    let p = c.wait(
        "pod before Running after restart",
        Duration::from_secs(30),
        || running(&c, "before"),
    );
    assert_eq!(p["status"]["containerStatuses"][0]["containerID"], cid);
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    // The cluster converges on new work.
    assert!(c.herd(&["apply", "-f", "-"], Some(&sleeper("after", ""))).0);
    c.wait("pod after Running", Duration::from_secs(60), || {
        running(&c, "after")
    });
    for name in ["before", "after"] {
        let (ok, out, err) = c.herd(&["delete", "pod", name], None);
        assert!(ok, "delete {name}: {out} {err}");
    }
}

#[test]
fn a_pod_that_fits_nowhere_stays_pending_with_the_reason() {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let spec = "  nodeSelector:\n    disk: ssd\n";
    assert!(
        c.herd(&["apply", "-f", "-"], Some(&sleeper("nowhere", spec)))
            .0
    );
    let p = c.wait("PodScheduled=False", Duration::from_secs(20), || {
        let p = c.pod("nowhere")?;
        let conds = p["status"]["conditions"].as_array()?.clone();
        conds
            .into_iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
            .map(|cond| (p.clone(), cond))
    });
    assert_eq!(p.0["status"]["phase"], "Pending");
    assert_eq!(p.1["reason"], "Unschedulable");
    assert_eq!(
        p.1["message"],
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    );
    assert!(c.herd(&["delete", "pod", "nowhere"], None).0);
}

#[test]
fn an_image_imported_while_the_worker_runs_is_usable_at_once() {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let out = std::process::Command::new(common::HERD)
        .args(["image", "import"])
        .arg(&c.image)
        .args(["--tag", "tools/shell:v2", "--data-dir"])
        .arg(&c.workers[0].data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = sleeper("tagged", "").replace("image: busybox", "image: tools/shell:v2");
    assert!(c.herd(&["apply", "-f", "-"], Some(&yaml)).0);
    let p = c.wait("tagged pod Running", Duration::from_secs(60), || {
        running(&c, "tagged")
    });
    assert!(p["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(c.herd(&["delete", "pod", "tagged"], None).0);
}

#[test]
fn a_master_killed_while_200_pods_are_applied_keeps_every_acknowledged_pod_once() {
    // Two workers: room for all 200 pods (110 pods per node, as the kubelet's default).
    let mut c = Cluster::start(&[&[], &[]]);
    c.wait_nodes_ready();
    let config = c.config();
    let acked_so_far = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = acked_so_far.clone();
    // The client applies 200 pods one by one and records which applies the API acknowledged.
    let client = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..200 {
            let name = format!("p{i:03}");
            let yaml = sleeper(&name, "").replace("\"600\"", "\"3600\"");
            let out = std::process::Command::new(common::HERD)
                .arg("--config")
                .arg(&config)
                .args(["apply", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .and_then(|mut ch| {
                    use std::io::Write;
                    ch.stdin.take().unwrap().write_all(yaml.as_bytes())?;
                    ch.wait_with_output()
                });
            if let Ok(o) = out {
                if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("created") {
                    acked.push(name);
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        acked
    });
    // Kill -9 the master once some applies went through, restart it a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked_so_far.load(std::sync::atomic::Ordering::Relaxed) < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "no applies acknowledged"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    c.kill_master();
    std::thread::sleep(Duration::from_millis(500));
    c.restart_master();
    let acked = client.join().expect("client thread");
    assert!(
        acked.len() < 200,
        "the kill should have failed some applies"
    );
    assert!(acked.len() >= 40);
    let items = c.get_json(&["get", "pods"]).unwrap()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = items
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    let unique: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "a pod exists twice");
    for a in &acked {
        assert!(names.contains(a), "acknowledged pod {a} lost in the crash");
    }
    // The cluster converges: every stored pod is bound and running.
    let total = names.len();
    c.wait(
        "all pods Running after the crash",
        Duration::from_secs(120),
        || {
            let items = c.get_json(&["get", "pods"])?["items"].as_array()?.clone();
            let running = items
                .iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count();
            (running == total).then_some(())
        },
    );
    eprintln!(
        "{} of 200 applies acknowledged; all {total} stored pods Running",
        acked.len()
    );
}

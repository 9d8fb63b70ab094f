//! Images across a cluster: workers pulling through the master's cache from a real registry
//! (each blob crosses once, progress shows on the pod), an image pushed to the master running
//! with no registry at all, and platform-aware scheduling in a fleet of declared platforms.

mod common;

use std::time::{Duration, Instant};

use common::registry::{busybox_archive, foreign_busybox, layer_digests, runnable_image, Registry};
use common::Cluster;

fn pinned_pod(name: &str, node: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeSelector:\n    \
         kubernetes.io/hostname: {node}\n  containers:\n  - name: c\n    image: {image}\n    \
         command: [sleep, \"3600\"]\n"
    )
}

fn running(c: &Cluster, pod: &str) -> bool {
    c.pod(pod)
        .and_then(|p| p["status"]["phase"].as_str().map(|s| s == "Running"))
        .unwrap_or(false)
}

#[test]
fn workers_pull_through_the_master_once_per_blob_with_progress_on_the_pod() {
    let reg = Registry::start();
    let c = Cluster::start_pulling(&[&[], &[]]);
    c.wait_nodes_ready();
    runnable_image(c.tmp.path(), &reg, "app:1", 3);
    let image = format!("{}/app:1", reg.host());
    let (ok, _, err) = c.herd(&["apply", "-f", "-"], Some(&pinned_pod("p1", "w1", &image)));
    assert!(ok, "apply p1: {err}");
    // Watch the pod closely: the pull shows as waiting/Pulling with a percentage.
    let mut progress = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !running(&c, "p1") {
        if Instant::now() > deadline {
            c.dump_logs();
            panic!("pod not running: {:?}", c.pod("p1"));
        }
        for pod in ["p1"] {
            if let Some(w) = c
                .pod(pod)
                .map(|p| p["status"]["containerStatuses"][0]["state"]["waiting"].clone())
            {
                if w["reason"] == "Pulling" {
                    progress.push(w["message"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        progress
            .iter()
            .any(|m| m.contains('%') && m.contains("app:1")),
        "no Pulling progress seen on the pod: {progress:?}"
    );
    // The second node, with `apply --wait`: it returns once the pod is ready.
    let (ok, out, err) = c.herd(
        &["apply", "--wait", "--timeout", "120s", "-f", "-"],
        Some(&pinned_pod("p2", "w2", &image)),
    );
    assert!(ok, "apply --wait p2: {out} {err}");
    assert!(
        out.contains("pod/p2 created") && out.contains("pod/p2 ready"),
        "{out}"
    );
    assert!(running(&c, "p2"));
    // Two nodes pulled; the registry served each blob to the master once.
    for d in layer_digests(&reg, "app:1") {
        assert_eq!(
            reg.blob_gets(&d),
            1,
            "blob {d} fetched {} times",
            reg.blob_gets(&d)
        );
    }
}

#[test]
fn an_image_pushed_to_the_master_runs_with_no_registry() {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let tar = busybox_archive(
        c.tmp.path(),
        std::path::Path::new("/bin/busybox"),
        "amd64",
        "pushed/app:1",
    );
    let (ok, out, err) = c.herd(&["image", "push", tar.to_str().expect("utf8")], None);
    assert!(ok, "push: {out} {err}");
    let (ok, _, err) = c.herd(
        &["apply", "-f", "-"],
        Some(&pinned_pod("air", "w1", "pushed/app:1")),
    );
    assert!(ok, "apply: {err}");
    c.wait("pushed image running", Duration::from_secs(60), || {
        running(&c, "air").then_some(())
    });
    let img = c.pod("air").expect("pod")["status"]["containerStatuses"][0]["imageID"].clone();
    assert!(
        img.as_str().is_some_and(|s| s.contains("sha256:")),
        "imageID {img}"
    );
}

#[test]
fn the_scheduler_keeps_pods_off_boards_their_image_has_no_variant_for() {
    let reg = Registry::start();
    let c = Cluster::start_pulling(&[
        &["--platform=linux/amd64"],
        &["--platform=linux/arm64/v8"],
        &["--platform=linux/arm/v7"],
    ]);
    c.wait_nodes_ready();
    for (tag, plat, bin) in [
        ("amd64", "amd64", std::path::PathBuf::from("/bin/busybox")),
        ("arm64", "arm64", foreign_busybox("arm64")),
    ] {
        let tar = busybox_archive(c.tmp.path(), &bin, plat, &format!("mixed:{tag}"));
        reg.push_archive(&tar, &format!("mixed:{tag}"));
    }
    reg.push_index(
        "mixed",
        "1",
        &[("amd64", "linux/amd64"), ("arm64", "linux/arm64")],
    );
    let image = format!("{}/mixed:1", reg.host());
    let deploy = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: mixed\nspec:\n  replicas: 6\n  \
         selector:\n    matchLabels:\n      app: mixed\n  template:\n    metadata:\n      labels:\n        \
         app: mixed\n    spec:\n      containers:\n      - name: c\n        image: {image}\n        \
         command: [sleep, \"3600\"]\n"
    );
    let (ok, _, err) = c.herd(&["apply", "-f", "-"], Some(&deploy));
    assert!(ok, "apply: {err}");
    let nodes = c.wait("6 replicas bound", Duration::from_secs(60), || {
        let pods = common::pods_of(&c, "mixed");
        let nodes: Vec<String> = pods
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
            .collect();
        (nodes.len() == 6).then_some(nodes)
    });
    assert!(
        !nodes.iter().any(|n| n == "w3"),
        "a pod landed on the arm/v7 node: {nodes:?}"
    );
    assert!(
        nodes.iter().any(|n| n == "w1") && nodes.iter().any(|n| n == "w2"),
        "{nodes:?}"
    );
    // Forced onto the v7 board, the pod stays Pending and says why.
    let (ok, _, err) = c.herd(&["apply", "-f", "-"], Some(&pinned_pod("v7", "w3", &image)));
    assert!(ok, "apply: {err}");
    let message = c.wait("v7 pod unschedulable", Duration::from_secs(30), || {
        let p = c.pod("v7")?;
        let cond = p["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?
            .clone();
        cond["message"].as_str().map(str::to_owned)
    });
    assert!(
        message.contains("linux/arm/v7")
            && message.contains("image offers linux/amd64, linux/arm64"),
        "{message}"
    );
    assert!(c.pod("v7").expect("pod")["spec"]["nodeName"].is_null());
}

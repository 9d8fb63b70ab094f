//! Edge autonomy on real processes: agent restarts re-adopt running containers, pods keep
//! running and restarting while the master (and its embedded broker) is down, and a rebooted
//! worker starts its pods from persisted desired state before the master returns.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{alive, container_pids, is_ready, pods_of, shim_pids, Cluster};
use nix::sys::signal::Signal;

fn deployment(name: &str, replicas: u32) -> String {
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
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [\"sh\", \"-c\", \"echo hello-from-$HOSTNAME; exec sleep 600\"]
"
    )
}

const CRASHER: &str = "apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"echo boom; exit 1\"]
";

/// Names of the app's pods and their containers' restart counts, once all `n` are Ready.
fn ready_pods(c: &Cluster, app: &str, n: usize) -> Option<BTreeMap<String, i64>> {
    let pods = pods_of(c, app);
    if pods.len() != n || !pods.iter().all(is_ready) {
        return None;
    }
    Some(
        pods.iter()
            .map(|p| {
                let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
                let restarts = p["status"]["containerStatuses"][0]["restartCount"]
                    .as_i64()
                    .unwrap_or(-1);
                (name, restarts)
            })
            .collect(),
    )
}

fn log_count(c: &Cluster, worker: &str, needle: &str) -> usize {
    std::fs::read_to_string(c.tmp.path().join(format!("{worker}.log")))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// Stops the worker agent with `sig` and waits for it to exit (its containers stay).
fn stop_agent(c: &mut Cluster, name: &str, sig: Signal) {
    let w = c.worker(name);
    let pid = nix::unistd::Pid::from_raw(w.child.id() as i32);
    let _ = nix::sys::signal::kill(pid, sig);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = w.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("worker {name} did not exit after {sig}");
}

/// The highest attempt number that left a log for the pod's container on the worker.
fn latest_attempt(dir: &Path, uid: &str, container: &str) -> u32 {
    std::fs::read_dir(dir.join("logs").join(uid).join(container))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".log")?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn ten_agent_restarts_in_a_row_re_adopt_running_containers_without_restarting_them() {
    let mut c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&deployment("web", 3)));
    assert!(ok, "{out} {err}");
    let before = c.wait("3 ready replicas", Duration::from_secs(40), || {
        ready_pods(&c, "web", 3)
    });
    let dir = c.workers[0].data_dir.clone();
    let pids = c.wait("3 containers recorded", Duration::from_secs(10), || {
        let p = container_pids(&dir);
        (p.len() == 3).then_some(p)
    });
    let shims = shim_pids(&dir);
    assert_eq!(shims.len(), 3, "one shim per container: {shims:?}");

    let started = Instant::now();
    for round in 0..10 {
        let sig = if round % 2 == 0 {
            Signal::SIGTERM
        } else {
            Signal::SIGKILL
        };
        stop_agent(&mut c, "w1", sig);
        // Nothing touched the containers while no agent ran.
        assert_eq!(
            container_pids(&dir),
            pids,
            "round {round} ({sig}): agent exit"
        );
        c.restart_worker("w1");
        let want = 3 * (round + 1);
        c.wait(
            &format!("round {round}: 3 containers re-adopted"),
            Duration::from_secs(15),
            || (log_count(&c, "w1", "re-adopted running container") >= want).then_some(()),
        );
        assert_eq!(
            container_pids(&dir),
            pids,
            "round {round} ({sig}): re-adoption"
        );
        assert_eq!(shim_pids(&dir), shims, "round {round}: no duplicate shims");
    }
    eprintln!("10 agent restarts took {:?}", started.elapsed());
    c.wait_nodes_ready();
    let after = c.wait(
        "3 ready replicas after the restarts",
        Duration::from_secs(20),
        || ready_pods(&c, "web", 3),
    );
    assert_eq!(after, before, "same pods, same restart counts");
    assert!(after.values().all(|r| *r == 0), "{after:?}");
    assert_eq!(container_pids(&dir), pids);
    assert_eq!(shim_pids(&dir), shims);
    let name = after.keys().next().cloned().unwrap_or_default();
    let (ok, out, err) = c.herd(&["logs", &name], None);
    assert!(ok, "{out} {err}");
    assert!(out.contains(&format!("hello-from-{name}")), "{out:?}");
}

/// The outage the issue describes, for either broker mode: the broker goes away for
/// `OUTAGE` (embedded: the master with it; external: mosquitto alone, losing its retained
/// store), containers keep running with the same pids, a crashing one keeps restarting, and
/// after the broker's return the node is Ready within 5 s and status catches up.
const OUTAGE: Duration = Duration::from_secs(30);

fn broker_outage(
    c: &mut Cluster,
    stop: &mut dyn FnMut(&mut Cluster),
    start: &mut dyn FnMut(&mut Cluster),
) {
    c.wait_nodes_ready();
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&deployment("web", 2)));
    assert!(ok, "{out} {err}");
    c.wait("2 ready replicas", Duration::from_secs(40), || {
        ready_pods(c, "web", 2)
    });
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(CRASHER));
    assert!(ok, "{out} {err}");
    let (uid, restarts) = c.wait("crash restarted once", Duration::from_secs(30), || {
        let p = c.pod("crash")?;
        let r = p["status"]["containerStatuses"][0]["restartCount"].as_i64()?;
        let uid = p["metadata"]["uid"].as_str()?.to_string();
        (r >= 1).then_some((uid, r))
    });
    let dir = c.workers[0].data_dir.clone();
    let sleepers: BTreeMap<String, i32> = container_pids(&dir)
        .into_iter()
        .filter(|(id, _)| !id.starts_with(&uid.replace('-', "")[..12]))
        .collect();
    assert_eq!(sleepers.len(), 2, "{sleepers:?}");
    let attempt_before = latest_attempt(&dir, &uid, "main");

    stop(c);
    let down = Instant::now();
    let mut attempt_during = attempt_before;
    while down.elapsed() < OUTAGE {
        let now = container_pids(&dir);
        for (id, pid) in &sleepers {
            assert_eq!(now.get(id), Some(pid), "sleeper {id} kept running");
        }
        attempt_during = latest_attempt(&dir, &uid, "main");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        attempt_during >= attempt_before + 2,
        "the crashing container kept restarting with no broker: attempt {attempt_before} -> {attempt_during}"
    );

    let connects = log_count(c, "w1", "connected to broker");
    start(c);
    let back = Instant::now();
    // The node's row may still say Ready (the master does not judge nodes while it hears
    // nobody), so Ready alone proves nothing: the worker's session must be back too.
    let ready_in = c.wait(
        "worker reconnected and node Ready after the broker's return",
        Duration::from_secs(5),
        || {
            (log_count(c, "w1", "connected to broker") > connects
                && c.node_ready("w1") == Some(true))
            .then(|| back.elapsed())
        },
    );
    eprintln!("worker reconnected, node Ready {ready_in:?} after the broker's return");
    let caught_up = c.wait(
        "crash restartCount caught up",
        Duration::from_secs(15),
        || {
            let r = c.pod("crash")?["status"]["containerStatuses"][0]["restartCount"].as_i64()?;
            (r >= restarts + 2).then_some(r)
        },
    );
    eprintln!("crash restartCount {restarts} -> {caught_up}");
    c.wait("2 ready replicas", Duration::from_secs(15), || {
        ready_pods(c, "web", 2)
    });
    let now = container_pids(&dir);
    for (id, pid) in &sleepers {
        assert_eq!(
            now.get(id),
            Some(pid),
            "sleeper {id} still the same process"
        );
    }
    // Nothing was evicted or recreated over the outage.
    assert_eq!(pods_of(c, "web").len(), 2);
    assert!(
        c.herd(&["delete", "pod", "crash", "--grace-period", "1"], None)
            .0
    );
}

#[test]
fn pods_keep_running_and_restarting_while_the_master_and_its_broker_are_down() {
    let mut c = Cluster::start(&[&[]]);
    broker_outage(&mut c, &mut |c| c.kill_master(), &mut |c| {
        c.restart_master()
    });
}

#[test]
fn an_external_broker_restart_loses_nothing_and_the_master_rebuilds_its_retained_store() {
    let broker = std::cell::RefCell::new(common::Mosquitto::start());
    let url = broker.borrow().url();
    let mut c = Cluster::start_with(&[&[]], Some(&url));
    broker_outage(&mut c, &mut |_| broker.borrow_mut().stop(), &mut |_| {
        broker.borrow_mut().restart()
    });
    // The restarted broker knew nothing; what a fresh subscriber now reads retained was
    // republished by the master.
    let out = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.borrow().port.to_string()])
        .args([
            "-t",
            "herd/v1/nodes/w1/desired/#",
            "-t",
            "herd/v1/nodes/w1/desired",
        ])
        .args(["-v", "-W", "3"])
        .output()
        .expect("mosquitto_sub (apt-get install mosquitto-clients)");
    let text = String::from_utf8_lossy(&out.stdout);
    let pods = text
        .lines()
        .filter(|l| l.starts_with("herd/v1/nodes/w1/desired/default/web-"))
        .count();
    assert_eq!(
        pods, 2,
        "retained desired pods after the broker lost its store:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("herd/v1/nodes/w1/desired ")),
        "retained desired index missing:\n{text}"
    );
}

#[test]
fn a_rebooted_worker_starts_its_pods_from_persisted_state_before_the_master_returns() {
    let mut c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&deployment("web", 2)));
    assert!(ok, "{out} {err}");
    let before = c.wait("2 ready replicas", Duration::from_secs(40), || {
        ready_pods(&c, "web", 2)
    });
    let dir = c.workers[0].data_dir.clone();
    assert!(dir.join("state").join("desired.json").exists());
    let old = container_pids(&dir);
    assert_eq!(old.len(), 2, "{old:?}");

    // "Reboot": agent, shims and containers gone, mounts and cgroups too; the master is down.
    stop_agent(&mut c, "w1", Signal::SIGKILL);
    common::scrub(&dir);
    c.wait("shims and containers dead", Duration::from_secs(10), || {
        (shim_pids(&dir).iter().all(|p| !alive(*p)) && old.values().all(|p| !alive(*p)))
            .then_some(())
    });
    c.kill_master();

    let booted = Instant::now();
    c.restart_worker("w1");
    let new = c.wait(
        "2 containers started with no master",
        Duration::from_secs(20),
        || {
            let p = container_pids(&dir);
            (p.len() == 2).then_some(p)
        },
    );
    eprintln!(
        "pods running {:?} after the worker started alone",
        booted.elapsed()
    );
    assert!(new.values().all(|p| !old.values().any(|o| o == p)));
    assert_eq!(shim_pids(&dir).len(), 2);

    c.restart_master();
    c.wait_nodes_ready();
    let after = c.wait(
        "the same 2 replicas Ready after the master's return",
        Duration::from_secs(20),
        || ready_pods(&c, "web", 2).filter(|m| m.keys().eq(before.keys())),
    );
    eprintln!("after reboot: {after:?}");
    assert_eq!(container_pids(&dir), new, "converging restarted nothing");
    assert_eq!(shim_pids(&dir).len(), 2, "no duplicate containers");
}

#[test]
fn a_pod_deleted_while_its_agent_restarts_is_still_reported_gone() {
    let mut c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    // `sh` ignores SIGTERM as PID 1 with a trap: the delete waits out its 30 s grace.
    let yaml = "apiVersion: v1
kind: Pod
metadata:
  name: slow
spec:
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"trap '' TERM; sleep 600\"]
";
    assert!(c.herd(&["apply", "-f", "-"], Some(yaml)).0);
    c.wait("pod Running", Duration::from_secs(60), || {
        c.pod("slow").filter(|p| p["status"]["phase"] == "Running")
    });
    let (ok, out, err) = c.herd(&["delete", "pod", "slow", "--wait=false"], None);
    assert!(ok, "{out} {err}");
    // The agent dies mid-grace (once it has acted on the delete) and comes straight back.
    c.wait(
        "worker began the graceful stop",
        Duration::from_secs(20),
        || (log_count(&c, "w1", "stopping pod") >= 1).then_some(()),
    );
    let w = c.worker("w1");
    let _ = w.child.kill();
    let _ = w.child.wait();
    c.restart_worker("w1");
    c.wait(
        "deleted pod gone after the agent restart",
        Duration::from_secs(20),
        || c.pod("slow").is_none().then_some(()),
    );
}

/// Issue #7: one node's cable is cut for 20 s in a LAN of network namespaces (master, w1,
/// w2). Its containers keep running meanwhile, the master replaces its pods on w2, and once
/// the cable is back the node is Ready again and stops its stale copies by itself: no
/// duplicate replicas, no manual step.
#[test]
fn a_partitioned_node_heals_by_itself_and_stops_the_copies_replaced_meanwhile() {
    let net = common::netns::Topology::new(&["m", "w1", "w2"]);
    let c = Cluster::start_in(&net, 2);
    c.wait_nodes_ready();
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&deployment("part", 4)));
    assert!(ok, "{out} {err}");
    c.wait(
        "4 ready replicas on both nodes",
        Duration::from_secs(60),
        || {
            let by_node = common::ready_by_node(&c, "part");
            (by_node.values().sum::<usize>() == 4 && by_node.get("w1").is_some_and(|n| *n > 0))
                .then_some(())
        },
    );
    let w1_dir = c.workers[0].data_dir.clone();
    let w2_dir = c.workers[1].data_dir.clone();
    let on_w1 = container_pids(&w1_dir);
    assert!(!on_w1.is_empty());

    net.link("w1", false);
    let cut = Instant::now();
    let replaced_in = c.wait(
        "w1's pods replaced on w2 during the partition",
        Duration::from_secs(40),
        || {
            let by_node = common::ready_by_node(&c, "part");
            (by_node.get("w2") == Some(&4) && by_node.len() == 1).then(|| cut.elapsed())
        },
    );
    eprintln!("replaced on w2 {replaced_in:?} after the cut");
    assert_eq!(c.node_ready("w1"), Some(false));
    // Autonomy: the cut-off node runs on, unaware.
    for (id, pid) in &on_w1 {
        assert_eq!(
            container_pids(&w1_dir).get(id),
            Some(pid),
            "{id} kept running on w1"
        );
    }
    let partition = Duration::from_secs(20);
    if let Some(rest) = partition.checked_sub(cut.elapsed()) {
        std::thread::sleep(rest);
    }

    net.link("w1", true);
    let healed = Instant::now();
    let converged_in = c.wait(
        "w1 Ready again with its stale copies stopped",
        Duration::from_secs(40),
        || {
            (c.node_ready("w1") == Some(true) && container_pids(&w1_dir).is_empty())
                .then(|| healed.elapsed())
        },
    );
    eprintln!("healed and converged {converged_in:?} after the cable came back");
    let pods = pods_of(&c, "part");
    assert_eq!(pods.len(), 4, "no duplicate replicas after healing");
    assert!(pods.iter().all(is_ready));
    assert_eq!(
        container_pids(&w2_dir).len(),
        4,
        "exactly the 4 replicas run, all on w2"
    );
    assert!(c.herd(&["delete", "deploy", "part"], None).0);
}

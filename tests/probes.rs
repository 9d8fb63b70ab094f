//! Probes end to end: a real master and worker, busybox containers, the CLI. Liveness kills and
//! restarts, readiness drives the pod's Ready condition, httpGet and tcpSocket connect inside
//! the container's network namespace.

mod common;

use std::time::Duration;

use common::Cluster;
use serde_json::Value;

fn cluster() -> Cluster {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    c
}

fn apply(c: &Cluster, yaml: &str) {
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(yaml));
    assert!(ok, "apply failed: {out} {err}");
}

fn container(c: &Cluster, pod: &str, name: &str) -> Option<Value> {
    let p = c.pod(pod)?;
    p["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
}

fn condition(c: &Cluster, pod: &str, type_: &str) -> Option<String> {
    let p = c.pod(pod)?;
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|s| s["type"] == type_)
        .and_then(|s| s["status"].as_str())
        .map(str::to_string)
}

fn phase(c: &Cluster, pod: &str) -> Option<String> {
    c.pod(pod)?["status"]["phase"].as_str().map(str::to_string)
}

#[test]
fn a_failing_liveness_probe_restarts_the_container_and_the_pod_runs_again() {
    let c = cluster();
    apply(
        &c,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; exec sleep 600"]
    livenessProbe:
      exec:
        command: ["test", "-f", "/tmp/healthy"]
      periodSeconds: 1
      failureThreshold: 2
      terminationGracePeriodSeconds: 1
"#,
    );
    let status = c.wait(
        "a restart after the liveness probe failed",
        Duration::from_secs(60),
        || {
            container(&c, "live", "main")
                .filter(|s| s["restartCount"].as_u64().unwrap_or(0) >= 1)
                .filter(|s| s["lastState"]["terminated"].is_object())
        },
    );
    let last = &status["lastState"]["terminated"];
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Liveness probe failed")),
        "{status}"
    );
    // SIGKILLed after the probe's 1 s grace (sleep ignores SIGTERM as pid 1): the exit reason
    // stays the exit's own.
    assert_eq!(last["reason"], "Error", "{status}");
    c.wait(
        "the container running again",
        Duration::from_secs(30),
        || {
            container(&c, "live", "main")
                .filter(|s| s["state"]["running"].is_object())
                .filter(|s| s["restartCount"].as_u64().unwrap_or(0) >= 1)
        },
    );
    assert_eq!(phase(&c, "live").as_deref(), Some("Running"));
}

#[test]
fn a_readiness_probe_turns_the_pod_ready_and_unready_as_its_file_comes_and_goes() {
    let c = cluster();
    apply(
        &c,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: ready
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "sleep 5; touch /tmp/ready; sleep 8; rm /tmp/ready; exec sleep 600"]
    readinessProbe:
      exec:
        command: ["test", "-f", "/tmp/ready"]
      periodSeconds: 1
"#,
    );
    let first = c.wait("the container running", Duration::from_secs(60), || {
        container(&c, "ready", "main").filter(|s| s["state"]["running"].is_object())
    });
    assert_eq!(
        first["ready"], false,
        "ready before its probe passed: {first}"
    );
    assert_eq!(first["started"], true, "{first}");
    assert_eq!(condition(&c, "ready", "Ready").as_deref(), Some("False"));
    c.wait("Ready=True", Duration::from_secs(30), || {
        (condition(&c, "ready", "Ready").as_deref() == Some("True")).then_some(())
    });
    assert_eq!(container(&c, "ready", "main").unwrap()["ready"], true);
    c.wait("Ready=False again", Duration::from_secs(30), || {
        (condition(&c, "ready", "Ready").as_deref() == Some("False")).then_some(())
    });
    let s = container(&c, "ready", "main").unwrap();
    assert_eq!(s["ready"], false, "{s}");
    assert_eq!(
        s["restartCount"], 0,
        "readiness never restarts a container: {s}"
    );
    assert_eq!(phase(&c, "ready").as_deref(), Some("Running"));
}

#[test]
fn http_and_tcp_probes_connect_inside_the_container() {
    let c = cluster();
    apply(
        &c,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: net
spec:
  containers:
  - name: web
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports:
    - name: http
      containerPort: 8080
    startupProbe:
      tcpSocket:
        port: http
      periodSeconds: 1
      failureThreshold: 30
    readinessProbe:
      httpGet:
        path: /index.html
        port: http
        httpHeaders:
        - name: X-Probe
          value: herd
      periodSeconds: 1
  - name: closed
    image: busybox
    command: ["sleep", "600"]
    readinessProbe:
      tcpSocket:
        port: 8081
      periodSeconds: 1
"#,
    );
    c.wait("web ready through httpGet", Duration::from_secs(60), || {
        container(&c, "net", "web").filter(|s| s["ready"] == true)
    });
    let web = container(&c, "net", "web").unwrap();
    assert_eq!(web["started"], true, "{web}");
    // Several periods later the closed port still keeps its container, and so the pod, unready.
    std::thread::sleep(Duration::from_secs(3));
    let closed = container(&c, "net", "closed").unwrap();
    assert!(closed["state"]["running"].is_object(), "{closed}");
    assert_eq!(closed["ready"], false, "{closed}");
    assert_eq!(closed["restartCount"], 0, "{closed}");
    let pod = c.pod("net").unwrap();
    let ready = pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|s| s["type"] == "Ready").cloned())
        .unwrap_or_default();
    assert_eq!(ready["status"], "False", "{pod}");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("closed") && !m.contains("web")),
        "{ready}"
    );
    assert_eq!(container(&c, "net", "web").unwrap()["ready"], true);
}

//! `securityContext` end to end: from a manifest through the master and MQTT to a real
//! container on a worker (master and worker as separate processes on 127.0.0.1, the CLI as a
//! subprocess). The runtime tests check each setting's effect in depth; this checks that the
//! settings arrive, that `runAsNonRoot` refuses a root image with the kubelet's reason, and
//! that `describe` flags a privileged container.

mod common;

use std::time::Duration;

use common::Cluster;

fn pod(name: &str, pod_security: &str, container_security: &str, cmd: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
{pod_security}  containers:
  - name: main
    image: busybox
    command: [\"sh\", \"-c\", \"{cmd}\"]
{container_security}"
    )
}

#[test]
fn security_contexts_reach_the_container_and_root_is_refused_under_run_as_non_root() {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();

    // Rejected at apply, with the field's path.
    let bad = pod(
        "bad",
        "",
        "    securityContext:\n      runAsUser: -1\n      capabilities: {add: [NET_ADMN]}\n",
        "true",
    );
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&bad));
    assert!(!ok, "{out}");
    assert!(
        err.contains("spec.containers[0].securityContext.runAsUser: must be >= 0, got -1"),
        "{err}"
    );
    assert!(
        err.contains("spec.containers[0].securityContext.capabilities.add[0]: unknown capability"),
        "{err}"
    );

    // The busybox image has no USER: it would run as root.
    let nonroot = pod(
        "nonroot",
        "  securityContext:\n    runAsNonRoot: true\n",
        "",
        "sleep 600",
    );
    let hardened = pod(
        "hardened",
        "  securityContext:\n    runAsUser: 1000\n    runAsGroup: 3000\n    fsGroup: 2000\n",
        "    securityContext:\n      readOnlyRootFilesystem: true\n      allowPrivilegeEscalation: false\n      capabilities: {drop: [ALL]}\n",
        "id -u; id -G; grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; touch /x || echo read-only; sleep 600",
    );
    let privileged = pod(
        "privileged",
        "",
        "    securityContext:\n      privileged: true\n",
        "grep -E '^Seccomp:' /proc/self/status; sleep 600",
    );
    let all = format!("{nonroot}---\n{hardened}---\n{privileged}");
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(&all));
    assert!(ok, "{out} {err}");

    let waiting = c.wait("nonroot refused", Duration::from_secs(60), || {
        let p = c.pod("nonroot")?;
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("container has runAsNonRoot and image will run as root"),
        "{waiting}"
    );

    let logs = c.wait("hardened logs", Duration::from_secs(60), || {
        let (ok, out, _) = c.herd(&["logs", "hardened"], None);
        (ok && out.contains("read-only")).then_some(out)
    });
    let lines: Vec<&str> = logs.lines().collect();
    assert_eq!(lines[0], "1000", "{logs}");
    assert!(
        lines[1].split_whitespace().collect::<Vec<_>>() == ["3000", "2000"],
        "{logs}"
    );
    assert!(logs.contains("CapEff:\t0000000000000000"), "{logs}");
    assert!(logs.contains("Seccomp:\t2"), "{logs}");
    assert!(logs.contains("NoNewPrivs:\t1"), "{logs}");

    let logs = c.wait("privileged logs", Duration::from_secs(60), || {
        let (ok, out, _) = c.herd(&["logs", "privileged"], None);
        (ok && out.contains("Seccomp")).then_some(out)
    });
    assert!(logs.contains("Seccomp:\t0"), "{logs}");
    let (ok, out, err) = c.herd(&["describe", "pod", "privileged"], None);
    assert!(ok, "{err}");
    assert!(out.contains("Privileged:     true"), "{out}");
    let (_, out, _) = c.herd(&["describe", "pod", "hardened"], None);
    assert!(!out.contains("Privileged"), "{out}");

    for name in ["nonroot", "hardened", "privileged"] {
        let (ok, out, err) = c.herd(&["delete", "pod", name, "--grace-period", "1"], None);
        assert!(ok, "delete {name}: {out} {err}");
    }
}

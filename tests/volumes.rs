//! Pod volumes end to end: a master and real workers, real containers. What a container sees
//! is read through `/proc/<pid>/root` and `/proc/<pid>/mounts` of its process (its own mount
//! namespace), what is left on the node through the worker's data dir and our mountinfo.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{cgroup_dirs, Cluster};

/// The first process of container `index` of `pod`.
fn pid_of(c: &Cluster, pod: &str, index: usize) -> i32 {
    c.wait(
        &format!("process of {pod} container {index}"),
        Duration::from_secs(30),
        || {
            let p = c.pod(pod)?;
            let uid = p["metadata"]["uid"].as_str()?.to_string();
            let cid = p["status"]["containerStatuses"][index]["containerID"]
                .as_str()?
                .trim_start_matches("herd://")
                .to_string();
            p["status"]["containerStatuses"][index]["state"]["running"].as_object()?;
            let rel = format!("herd/{uid}/{cid}");
            cgroup_dirs(&rel).iter().find_map(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .ok()?
                    .lines()
                    .filter_map(|l| l.trim().parse::<i32>().ok())
                    .min()
            })
        },
    )
}

/// A path inside the container of `pid`.
fn inside(pid: i32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

fn mounts_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/mounts")).unwrap_or_default()
}

fn apply(c: &Cluster, yaml: &str) {
    let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(yaml));
    assert!(ok, "apply failed: {out} {err}\n{yaml}");
}

fn uid_of(c: &Cluster, pod: &str) -> String {
    c.pod(pod).expect("pod")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string()
}

/// Deletes a pod and waits until the API no longer has it.
fn delete_pod(c: &Cluster, pod: &str) {
    let (ok, out, err) = c.herd(&["delete", "pod", pod, "--grace-period", "1"], None);
    assert!(ok, "delete {pod}: {out} {err}");
    c.wait(&format!("{pod} gone"), Duration::from_secs(30), || {
        c.pod(pod).is_none().then_some(())
    });
}

fn mounted_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&d))
        .collect()
}

#[test]
fn empty_dirs_are_shared_memory_ones_are_sized_tmpfs_host_paths_bind_read_only_holds_and_a_delete_leaves_nothing(
) {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    let host = c.tmp.path().join("host-share");
    let host_ro = c.tmp.path().join("host-ro");
    std::fs::create_dir_all(&host_ro).unwrap();
    std::fs::write(host_ro.join("motd"), "from-the-host").unwrap();
    let yaml = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: vols
spec:
  volumes:
  - name: shared
    emptyDir: {{}}
  - name: mem
    emptyDir: {{medium: Memory, sizeLimit: 8Mi}}
  - name: host
    hostPath: {{path: {host}, type: DirectoryOrCreate}}
  - name: hostro
    hostPath: {{path: {host_ro}, type: Directory}}
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, 'echo hello-shared > /shared/msg; echo from-pod > /host/out; sleep 600']
    volumeMounts:
    - {{name: shared, mountPath: /shared}}
    - {{name: host, mountPath: /host}}
  - name: reader
    image: busybox
    command: [sh, -c, 'while [ ! -f /data/msg ]; do sleep 0.1; done; cat /data/msg; cat /ro/motd; if touch /ro/x 2>/dev/null; then echo ro-broken; else echo ro-holds; fi; echo sub > /data/sub/f; sleep 600']
    volumeMounts:
    - {{name: shared, mountPath: /data}}
    - {{name: shared, mountPath: /data/sub, subPath: nested/dir}}
    - {{name: mem, mountPath: /mem}}
    - {{name: hostro, mountPath: /ro, readOnly: true}}
",
        host = host.display(),
        host_ro = host_ro.display()
    );
    apply(&c, &yaml);
    let logs = c.wait("reader logs", Duration::from_secs(60), || {
        let (ok, out, _) = c.herd(&["logs", "vols", "-c", "reader"], None);
        (ok && out.contains("ro-")).then_some(out)
    });
    assert!(logs.contains("hello-shared"), "emptyDir not shared: {logs}");
    assert!(logs.contains("from-the-host"), "hostPath not bound: {logs}");
    assert!(
        logs.contains("ro-holds"),
        "readOnly mount was writable: {logs}"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "from-pod\n"
    );
    assert!(!host_ro.join("x").exists());

    let reader = pid_of(&c, "vols", 1);
    let mounts = mounts_of(reader);
    let mem = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/mem"))
        .unwrap_or_else(|| panic!("/mem not mounted in the container: {mounts}"));
    assert!(mem.starts_with("tmpfs /mem tmpfs "), "{mem}");
    assert!(mem.contains("size=8192k"), "{mem}");
    let ro = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/ro"))
        .expect("/ro mounted");
    assert!(
        ro.split(' ').nth(3).unwrap().split(',').any(|o| o == "ro"),
        "{ro}"
    );
    // subPath: a dir created inside the volume, seen by the writer's view of the same volume.
    let writer = pid_of(&c, "vols", 0);
    c.wait("subPath write", Duration::from_secs(10), || {
        std::fs::read_to_string(inside(writer, "/shared/nested/dir/f"))
            .ok()
            .filter(|s| s == "sub\n")
    });

    let uid = uid_of(&c, "vols");
    let w = &c.workers[0].data_dir;
    let pod_vols = w.join("volumes/pods").join(&uid);
    assert!(pod_vols.join("shared/msg").exists());
    assert_eq!(mounted_under(&pod_vols).len(), 1, "one tmpfs (mem)");
    delete_pod(&c, "vols");
    c.wait("volumes removed", Duration::from_secs(20), || {
        (!pod_vols.exists()).then_some(())
    });
    assert_eq!(
        mounted_under(w),
        Vec::<String>::new(),
        "mounts left under {}",
        w.display()
    );
    // The host's data is the host's: a hostPath survives the pod.
    assert!(host.join("out").exists());
}

fn pod_with_config(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  securityContext: {{runAsUser: 1000, fsGroup: 2000}}
  volumes:
  - name: cfg
    configMap: {{name: app}}
  - name: sec
    secret:
      secretName: db
      defaultMode: 0400
      items:
      - {{key: password, path: creds/password}}
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'cat /secret/creds/password; echo; sleep 600']
    volumeMounts:
    - {{name: cfg, mountPath: /etc/app}}
    - {{name: sec, mountPath: /secret}}
{extra}"
    )
}

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  mode: VALUE
";

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: hunter2
  unused: x
";

#[test]
fn a_missing_configmap_blocks_start_until_created_updates_reach_the_file_and_secrets_are_projected_on_tmpfs(
) {
    let c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    apply(&c, &pod_with_config("cfg", ""));
    let msg = c.wait(
        "CreateContainerConfigError",
        Duration::from_secs(60),
        || {
            let p = c.pod("cfg")?;
            let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
            (w["reason"] == "CreateContainerConfigError")
                .then(|| w["message"].as_str().unwrap_or_default().to_string())
        },
    );
    assert!(
        msg.contains("configmap \"app\" not found") || msg.contains("secret \"db\" not found"),
        "{msg}"
    );
    apply(&c, SECRET);
    c.wait(
        "waiting on the configmap only",
        Duration::from_secs(30),
        || {
            let p = c.pod("cfg")?;
            let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
            w["message"]
                .as_str()?
                .contains("configmap \"app\" not found")
                .then_some(())
        },
    );
    apply(&c, &CONFIGMAP.replace("VALUE", "one"));
    let pid = pid_of(&c, "cfg", 0);
    assert_eq!(
        std::fs::read_to_string(inside(pid, "/etc/app/mode")).unwrap(),
        "one"
    );
    let secret = inside(pid, "/secret/creds/password");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "hunter2");
    // defaultMode 0400, plus group read for the pod's fsGroup, as in Kubernetes: the
    // container's non-root user reads it through the group.
    let meta = std::fs::metadata(&secret).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o440);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 2000);
    let logs = c.wait("secret read by uid 1000", Duration::from_secs(20), || {
        let (ok, out, _) = c.herd(&["logs", "cfg"], None);
        (ok && !out.is_empty()).then_some(out)
    });
    assert!(logs.contains("hunter2"), "{logs}");
    assert!(!inside(pid, "/secret/unused").exists(), "only listed items");
    let mounts = mounts_of(pid);
    let line = |p: &str| {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(p))
            .unwrap_or_else(|| panic!("{p} not mounted: {mounts}"))
            .to_string()
    };
    assert!(
        line("/secret").starts_with("tmpfs /secret tmpfs ro,"),
        "{}",
        line("/secret")
    );
    assert!(line("/etc/app")
        .split(' ')
        .nth(3)
        .unwrap()
        .starts_with("ro,"));

    // An update reaches the running container's file, atomically through `..data`.
    let t_apply = Instant::now();
    apply(&c, &CONFIGMAP.replace("VALUE", "two"));
    let t0 = Instant::now();
    // Polled every 2 ms (bounded) so the measurement is finer than `Cluster::wait`'s 200 ms.
    let deadline = t0 + Duration::from_secs(30);
    loop {
        if std::fs::read_to_string(inside(pid, "/etc/app/mode")).is_ok_and(|s| s == "two") {
            break;
        }
        if Instant::now() > deadline {
            c.dump_logs();
            panic!("configmap update did not reach the container within 30s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!(
        "MEASURED configmap update propagation: {:?} after `herd apply` returned ({:?} including the apply)",
        t0.elapsed(),
        t_apply.elapsed()
    );
    assert_eq!(
        pid_of(&c, "cfg", 0),
        pid,
        "an update must not restart the container"
    );

    // Immutable ConfigMaps keep their data.
    let frozen = "apiVersion: v1
kind: ConfigMap
metadata:
  name: frozen
immutable: true
data:
  a: '1'
";
    apply(&c, frozen);
    let (ok, _, err) = c.herd(&["apply", "-f", "-"], Some(&frozen.replace("'1'", "'2'")));
    assert!(!ok && err.contains("immutable"), "{err}");
    let (ok, out, _) = c.herd(&["get", "cm"], None);
    assert!(ok && out.contains("app") && out.contains("frozen"), "{out}");
    let (ok, out, _) = c.herd(&["describe", "configmap", "app"], None);
    assert!(ok && out.contains("two"), "{out}");

    let uid = uid_of(&c, "cfg");
    delete_pod(&c, "cfg");
    let w = &c.workers[0].data_dir;
    c.wait("volumes removed", Duration::from_secs(20), || {
        (!w.join("volumes/pods").join(&uid).exists()).then_some(())
    });
    assert_eq!(mounted_under(w), Vec::<String>::new());
}

#[test]
fn claim_data_survives_pod_delete_and_recreate_on_its_node_and_goes_with_the_claim() {
    // w2 carries the label the second pod prefers: without the claim it would go there.
    let c = Cluster::start(&[&["disk=one"], &["prefer=yes"]]);
    c.wait_nodes_ready();
    apply(
        &c,
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 64Mi
",
    );
    let claim = c.get_json(&["get", "pvc", "data"]).expect("claim");
    assert_eq!(
        claim["status"]["phase"].as_str().unwrap_or("Pending"),
        "Pending"
    );
    let pod = |name: &str, spec: &str, cmd: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{spec}  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: data}}
  containers:
  - name: main
    image: busybox
    command: [sh, -c, '{cmd}']
    volumeMounts:
    - {{name: data, mountPath: /data}}
"
        )
    };
    apply(
        &c,
        &pod(
            "first",
            "  nodeSelector: {disk: one}\n",
            "echo persisted > /data/file; sleep 600",
        ),
    );
    c.wait("claim bound to w1", Duration::from_secs(60), || {
        let cl = c.get_json(&["get", "pvc", "data"])?;
        (cl["status"]["phase"] == "Bound"
            && cl["metadata"]["annotations"]["volume.kubernetes.io/selected-node"] == "w1")
            .then_some(())
    });
    let claim_uid = c.get_json(&["get", "pvc", "data"]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = c.workers[0]
        .data_dir
        .join("volumes/pvc")
        .join(format!("default-data-{claim_uid}"));
    c.wait("data written", Duration::from_secs(60), || {
        std::fs::read_to_string(dir.join("file"))
            .ok()
            .filter(|s| s == "persisted\n")
    });
    let (ok, out, _) = c.herd(&["get", "pvc"], None);
    assert!(ok && out.contains("Bound") && out.contains("w1"), "{out}");
    let (ok, _, err) = c.herd(&["delete", "pvc", "data"], None);
    assert!(!ok && err.contains("in use by pod(s) first"), "{err}");

    delete_pod(&c, "first");
    assert!(dir.join("file").exists(), "data must survive the pod");
    let prefer = "  affinity:
    nodeAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        preference:
          matchExpressions:
          - {key: prefer, operator: In, values: [\"yes\"]}
";
    apply(&c, &pod("second", prefer, "cat /data/file; sleep 600"));
    let logs = c.wait("second reads the data", Duration::from_secs(60), || {
        let (ok, out, _) = c.herd(&["logs", "second"], None);
        (ok && out.contains("persisted")).then_some(out)
    });
    assert!(logs.contains("persisted"));
    assert_eq!(c.pod("second").unwrap()["spec"]["nodeName"], "w1");
    // A control pod with the same preference and no claim goes to w2: the preference is real.
    apply(
        &c,
        &format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: control
spec:
{prefer}  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'sleep 600']
"
        ),
    );
    c.wait("control scheduled", Duration::from_secs(30), || {
        c.pod("control")?["spec"]["nodeName"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(c.pod("control").unwrap()["spec"]["nodeName"], "w2");

    delete_pod(&c, "second");
    let (ok, out, err) = c.herd(&["delete", "pvc", "data"], None);
    assert!(ok, "delete claim: {out} {err}");
    c.wait(
        "claim data removed on the node",
        Duration::from_secs(30),
        || (!dir.exists()).then_some(()),
    );
}

#[test]
fn an_agent_restart_keeps_volumes_mounted_and_filled_and_updates_still_arrive() {
    let mut c = Cluster::start(&[&[]]);
    c.wait_nodes_ready();
    apply(&c, &CONFIGMAP.replace("VALUE", "one"));
    apply(
        &c,
        "apiVersion: v1
kind: Pod
metadata:
  name: keep
spec:
  volumes:
  - name: cfg
    configMap: {name: app}
  - name: mem
    emptyDir: {medium: Memory}
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo kept > /mem/x; sleep 600']
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: mem, mountPath: /mem}
",
    );
    let pid = pid_of(&c, "keep", 0);
    c.wait("written", Duration::from_secs(10), || {
        std::fs::read_to_string(inside(pid, "/mem/x")).ok()
    });
    let uid = uid_of(&c, "keep");
    let w = c.workers[0].data_dir.clone();
    let pod_vols = w.join("volumes/pods").join(&uid);
    let before = mounted_under(&pod_vols);
    let data_link = std::fs::read_link(pod_vols.join("cfg/..data")).unwrap();
    // SIGKILL: the agent gets no chance to clean up; the new one must adopt, not recreate.
    c.restart_worker("w1");
    c.wait("node ready again", Duration::from_secs(30), || {
        c.node_ready("w1").filter(|r| *r)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pid_of(&c, "keep", 0), pid, "container re-adopted");
    assert_eq!(
        std::fs::read_to_string(inside(pid, "/mem/x")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        mounted_under(&pod_vols),
        before,
        "tmpfs neither lost nor mounted twice"
    );
    assert_eq!(
        std::fs::read_link(pod_vols.join("cfg/..data")).unwrap(),
        data_link,
        "an unchanged projection is not rewritten"
    );
    apply(&c, &CONFIGMAP.replace("VALUE", "after-restart"));
    c.wait("update after restart", Duration::from_secs(30), || {
        std::fs::read_to_string(inside(pid, "/etc/app/mode"))
            .ok()
            .filter(|s| s == "after-restart")
    });
    delete_pod(&c, "keep");
    c.wait("volumes removed", Duration::from_secs(20), || {
        (!pod_vols.exists()).then_some(())
    });
    assert_eq!(mounted_under(&w), Vec::<String>::new());
}

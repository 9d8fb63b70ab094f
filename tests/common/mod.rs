//! A real cluster of `herd` processes on 127.0.0.1 for integration tests: master and workers
//! as separate processes with their own data dirs, the CLI run as a subprocess, and cleanup of
//! every process, container, cgroup and mount on drop (even when the test fails).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod http;
pub mod netns;
pub mod registry;
pub mod tarball;

pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// `herd`, run inside network namespace `ns` when given (only the network namespace: mounts
/// and cgroups stay the host's, which `ip netns exec` would not keep).
pub fn herd_command(ns: Option<&str>) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(HERD);
            c
        }
        None => Command::new(HERD),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A busybox image archive built from Debian's busybox-static by `scripts/busybox-image`.
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let out = dir.join("busybox.tar");
    let st = Command::new("bash")
        .arg(repo().join("scripts/busybox-image"))
        .arg(&out)
        .status()
        .expect("run scripts/busybox-image");
    assert!(st.success(), "scripts/busybox-image failed");
    out
}

/// Workers sharing the test's network namespace must not fight over one `herd0`, routes and
/// nft table: they run with `--pod-network none` (pods get their own loopback only). Workers
/// in a node namespace of a `Topology` get the real bridge network.
fn pod_network_args(own_netns: bool) -> Vec<String> {
    if own_netns {
        Vec::new()
    } else {
        vec!["--pod-network".into(), "none".into()]
    }
}

fn ca_args(ca_hash: Option<&str>) -> Vec<String> {
    ca_hash
        .map(|h| vec!["--ca-hash".to_string(), h.to_string()])
        .unwrap_or_default()
}

pub struct Proc {
    pub name: String,
    pub child: Child,
    pub data_dir: PathBuf,
}

pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub master: Proc,
    pub api_url: String,
    pub token: String,
    /// `--ca-hash` from the join line (TLS is on by default).
    pub ca_hash: Option<String>,
    pub workers: Vec<Proc>,
    pub image: PathBuf,
    /// With a topology: the master's (and the CLI's) network namespace, and each worker's.
    pub master_ns: Option<String>,
    pub worker_ns: std::collections::BTreeMap<String, String>,
    /// The master never pulls through from upstream (see `start_pulling`).
    pub air_gapped: bool,
}

/// Reads a child's stdout until `done` accepts a line, bounded by `timeout`; the rest of the
/// output keeps draining on a thread so the child never blocks on a full pipe.
fn wait_for_lines(
    child: &mut Child,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Vec<String> {
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                // Receiver gone: keep draining silently.
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let stop = done(&l);
                lines.push(l);
                if stop {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    lines
}

impl Cluster {
    pub fn start(worker_labels: &[&[&str]]) -> Cluster {
        Self::start_with(worker_labels, None)
    }

    /// With `broker`, the master uses that external broker instead of its embedded one.
    pub fn start_with(worker_labels: &[&[&str]], broker: Option<&str>) -> Cluster {
        Self::start_opts(worker_labels, broker, None, false)
    }

    /// A master that pulls through from upstream registries (the others are `--air-gapped`:
    /// a test never reaches a registry it did not start). Only for tests whose images all
    /// come from a registry on 127.0.0.1. Worker entries starting with `--` are worker flags
    /// (`--platform=linux/arm/v7`), the rest labels.
    pub fn start_pulling(workers: &[&[&str]]) -> Cluster {
        Self::start_opts(workers, None, None, true)
    }

    /// Master on host "m" of `net`, workers w1, w2, … on hosts of those names.
    pub fn start_in(net: &netns::Topology, workers: usize) -> Cluster {
        let labels: Vec<&[&str]> = vec![&[]; workers];
        Self::start_opts(&labels, None, Some(net), false)
    }

    fn start_opts(
        worker_labels: &[&[&str]],
        broker: Option<&str>,
        net: Option<&netns::Topology>,
        upstream: bool,
    ) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("herd-it-")
            .tempdir()
            .expect("tempdir");
        let image = busybox_tar(tmp.path());
        let mdir = tmp.path().join("master");
        let master_ns = net.map(|n| n.ns("m"));
        let (api_addr, mqtt_addr) = match net {
            Some(n) => (format!("{}:6443", n.ip("m")), format!("{}:1883", n.ip("m"))),
            None => ("127.0.0.1:0".to_string(), "127.0.0.1:0".to_string()),
        };
        let mut cmd = herd_command(master_ns.as_deref());
        cmd.args([
            "master",
            "--api-addr",
            &api_addr,
            "--mqtt-addr",
            &mqtt_addr,
            "--data-dir",
        ])
        .arg(&mdir);
        if let Some(b) = broker {
            cmd.args(["--broker", b]);
        }
        if !upstream {
            cmd.arg("--air-gapped");
        }
        if let Ok(l) = std::env::var("HERD_TEST_MASTER_LOG") {
            cmd.env("RUST_LOG", l);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(tmp.path().join("master.log")).expect("log"),
            ))
            .spawn()
            .expect("spawn master");
        let lines = wait_for_lines(&mut child, Duration::from_secs(20), |l| {
            l.trim_start().starts_with("herd worker --join")
        });
        let mut master = Proc {
            name: "master".into(),
            child,
            data_dir: mdir,
        };
        let join = lines
            .iter()
            .find(|l| l.trim_start().starts_with("herd worker --join"));
        let Some(join) = join else {
            let _ = master.child.kill();
            panic!("master printed no join line: {lines:?}");
        };
        let parts: Vec<&str> = join.split_whitespace().collect();
        let api_url = parts[3].to_string();
        let token = parts[5].to_string();
        let ca_hash = parts.get(7).map(|s| s.to_string());
        let mut c = Cluster {
            tmp,
            master,
            api_url,
            token,
            ca_hash,
            workers: Vec::new(),
            image,
            master_ns,
            worker_ns: Default::default(),
            air_gapped: !upstream,
        };
        if let Some(n) = net {
            for i in 1..=worker_labels.len() {
                let w = format!("w{i}");
                c.worker_ns.insert(w.clone(), n.ns(&w));
            }
        }
        for (i, labels) in worker_labels.iter().enumerate() {
            c.add_worker(&format!("w{}", i + 1), labels);
        }
        c
    }

    /// Kills the master with SIGKILL and starts it again on the same ports and data dir.
    pub fn crash_and_restart_master(&mut self) {
        self.kill_master();
        self.restart_master();
    }

    /// Kills the master with SIGKILL (the embedded broker goes with it).
    pub fn kill_master(&mut self) {
        let _ = self.master.child.kill();
        let _ = self.master.child.wait();
    }

    /// Starts the (killed) master again on the same ports and data dir; returns once it
    /// prints its join line.
    pub fn restart_master(&mut self) {
        let _ = self.master.child.kill();
        let _ = self.master.child.wait();
        let api = self
            .api_url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string();
        let creds: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.workers[0].data_dir.join("node.json")).expect("node.json"),
        )
        .expect("node.json is json");
        let mqtt = creds["mqttUrl"]
            .as_str()
            .expect("mqttUrl")
            .trim_start_matches("mqtts://")
            .trim_start_matches("mqtt://")
            .to_string();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.tmp.path().join("master.log"))
            .expect("log");
        let mut child = herd_command(self.master_ns.as_deref())
            .args([
                "master",
                "--api-addr",
                &api,
                "--mqtt-addr",
                &mqtt,
                "--data-dir",
            ])
            .arg(&self.master.data_dir)
            .args(self.air_gapped.then_some("--air-gapped"))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("respawn master");
        let lines = wait_for_lines(&mut child, Duration::from_secs(20), |l| {
            l.trim_start().starts_with("herd worker --join")
        });
        self.master.child = child;
        assert!(
            lines.iter().any(|l| l.contains(&self.api_url)),
            "restarted master did not come back on {}: {lines:?}",
            self.api_url
        );
    }

    /// Starts a stopped (or killed) worker again with the same name and data dir.
    pub fn restart_worker(&mut self, name: &str) {
        let (api, token) = (self.api_url.clone(), self.token.clone());
        let ca_hash = self.ca_hash.clone();
        let ns = self.worker_ns.get(name).cloned();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.tmp.path().join(format!("{name}.log")))
            .expect("log");
        let w = self.worker(name);
        let _ = w.child.kill();
        let _ = w.child.wait();
        w.child = herd_command(ns.as_deref())
            .args([
                "worker",
                "--join",
                &api,
                "--token",
                &token,
                "--node-name",
                name,
                "--heartbeat-seconds",
                "1",
                "--data-dir",
            ])
            .arg(&w.data_dir)
            .args(ca_args(ca_hash.as_deref()))
            .args(pod_network_args(ns.is_some()))
            .env("HERD_RESTART_BACKOFF_BASE_MS", "300")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("respawn worker");
    }

    /// `-h/-p` (and `--cafile` for MQTTS) for mosquitto_pub/sub towards the master's MQTT
    /// endpoint, as the first worker got it at join.
    pub fn mosquitto_args(&self) -> Vec<String> {
        let creds: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.workers[0].data_dir.join("node.json")).expect("node.json"),
        )
        .expect("node.json is json");
        let url = creds["mqttUrl"].as_str().expect("mqttUrl").to_string();
        let port = url.rsplit(':').next().unwrap_or("").to_string();
        let mut args = vec!["-h".into(), "127.0.0.1".into(), "-p".into(), port];
        if url.starts_with("mqtts://") {
            args.push("--cafile".into());
            let ca = self.master.data_dir.join("pki/ca.crt");
            args.push(ca.to_string_lossy().into_owned());
        }
        args
    }

    /// `--cacert CA` for curl when the API is https (it is by default).
    pub fn curl_ca(&self) -> Vec<String> {
        if self.api_url.starts_with("https://") {
            let ca = self.master.data_dir.join("pki/ca.crt");
            vec!["--cacert".into(), ca.to_string_lossy().into_owned()]
        } else {
            Vec::new()
        }
    }

    pub fn config(&self) -> PathBuf {
        self.master.data_dir.join("admin.conf")
    }

    /// Adds worker `name` on the host of that name in `net` (bridge pod network).
    pub fn add_worker_in(&mut self, net: &netns::Topology, name: &str) {
        self.worker_ns.insert(name.to_string(), net.ns(name));
        self.add_worker(name, &[]);
    }

    pub fn add_worker(&mut self, name: &str, labels: &[&str]) {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("worker dir");
        let st = Command::new(HERD)
            .args(["image", "import"])
            .arg(&self.image)
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .expect("image import");
        assert!(
            st.status.success(),
            "image import: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let mut cmd = herd_command(self.worker_ns.get(name).map(String::as_str));
        cmd.args([
            "worker",
            "--join",
            &self.api_url,
            "--token",
            &self.token,
            "--node-name",
            name,
            "--heartbeat-seconds",
            "1",
            "--data-dir",
        ])
        .arg(&dir)
        .args(ca_args(self.ca_hash.as_deref()))
        .args(pod_network_args(self.worker_ns.contains_key(name)))
        .env("HERD_RESTART_BACKOFF_BASE_MS", "300");
        for l in labels {
            if l.starts_with("--") {
                cmd.arg(l);
            } else {
                cmd.args(["--node-label", l]);
            }
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.tmp.path().join(format!("{name}.log"))).expect("log"),
            ))
            .spawn()
            .expect("spawn worker");
        self.workers.push(Proc {
            name: name.into(),
            child,
            data_dir: dir,
        });
    }

    /// Runs the CLI against this cluster; returns (success, stdout, stderr).
    pub fn herd(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = herd_command(self.master_ns.as_deref());
        cmd.arg("--config").arg(self.config()).args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn herd cli");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut si = child.stdin.take().expect("stdin");
            si.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("cli output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn get_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (ok, out, _) = self.herd(&a, None);
        if !ok {
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    /// Polls `f` every 200 ms until it returns Some, at most `timeout`.
    pub fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return v;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("timed out after {timeout:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn node_ready(&self, name: &str) -> Option<bool> {
        let n = self.get_json(&["get", "node", name])?;
        let conds = n["status"]["conditions"].as_array()?;
        Some(
            conds
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        )
    }

    pub fn wait_nodes_ready(&self) {
        for w in &self.workers {
            self.wait(
                &format!("node {} Ready", w.name),
                Duration::from_secs(30),
                || self.node_ready(&w.name).filter(|r| *r),
            );
        }
    }

    pub fn pod(&self, name: &str) -> Option<serde_json::Value> {
        self.get_json(&["get", "pod", name])
    }

    pub fn dump_logs(&self) {
        for f in ["master.log", "w1.log", "w2.log", "w3.log"] {
            if let Ok(s) = std::fs::read_to_string(self.tmp.path().join(f)) {
                let tail: Vec<&str> = s.lines().rev().take(40).collect();
                eprintln!("---- {f} (last 40 lines) ----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }

    pub fn worker(&mut self, name: &str) -> &mut Proc {
        self.workers
            .iter_mut()
            .find(|w| w.name == name)
            .expect("worker")
    }
}

fn term_and_reap(p: &mut Proc) {
    let pid = nix::unistd::Pid::from_raw(p.child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = p.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = p.child.kill();
    let _ = p.child.wait();
}

/// Kills whatever a (possibly SIGKILLed) worker left behind under `dir`: shims and their
/// containers, cgroups named in its bundles, overlay mounts.
pub fn scrub(dir: &Path) {
    let dir_s = dir.to_string_lossy().into_owned();
    // Shim processes carry their bundle path (under the data dir) on the command line.
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmd).contains(&dir_s) && pid != std::process::id() as i32 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    // Container processes: everything in the cgroups of pods this worker ran.
    let pods: Vec<String> = std::fs::read_dir(dir.join("containers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for uid in &pods {
        for root in cgroup_roots() {
            let pod_cg = root.join("herd").join(uid);
            kill_and_remove_cgroup(&pod_cg);
        }
    }
    // The shared parent, once no pod (of any test) is left in it; fails harmlessly otherwise.
    for root in cgroup_roots() {
        let _ = std::fs::remove_dir(root.join("herd"));
    }
    // Overlay mounts under the data dir, deepest first.
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir_s))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

pub fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path();
            if p.join("cgroup.procs").exists() || p.is_dir() {
                roots.push(p);
            }
        }
    }
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    roots
}

fn kill_and_remove_cgroup(p: &Path) {
    if !p.is_dir() {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                kill_and_remove_cgroup(&e.path());
            }
        }
    }
    for _ in 0..20 {
        let procs = std::fs::read_to_string(p.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir(p);
}

/// Directories of a cgroup path across hierarchies (v1: one per controller; v2: one).
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    cgroup_roots()
        .into_iter()
        .map(|r| r.join(rel.trim_start_matches('/')))
        .filter(|p| p.is_dir())
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for w in &mut self.workers {
            term_and_reap(w);
            scrub(&w.data_dir);
        }
        term_and_reap(&mut self.master);
    }
}

/// Debian's mosquitto on a free loopback port, killed on drop.
pub struct Mosquitto {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self::start_on(port)
    }

    /// Kills the broker (its retained store goes with it: `persistence false`).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A fresh broker on the same port, knowing nothing retained.
    pub fn restart(&mut self) {
        self.stop();
        let fresh = Self::start_on(self.port);
        let old = std::mem::replace(self, fresh);
        drop(old);
    }

    fn start_on(port: u16) -> Mosquitto {
        Self::start_conf(port, "allow_anonymous true\n")
    }

    /// A fresh broker on the same port with `settings` (e.g. herd's password and ACL files)
    /// instead of anonymous access; it runs as root so it can read 0600 files of the test's.
    pub fn restart_with(&mut self, settings: &str) {
        self.stop();
        let fresh = Self::start_conf(self.port, &format!("user root\n{settings}"));
        let old = std::mem::replace(self, fresh);
        drop(old);
    }

    fn start_conf(port: u16, settings: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\npersistence false\n{settings}"),
        )
        .expect("write mosquitto.conf");
        // Debian installs the broker under /usr/sbin, which a non-login PATH may lack.
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (apt-get install mosquitto)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pods carrying `app=<app>`, as JSON.
pub fn pods_of(c: &Cluster, app: &str) -> Vec<serde_json::Value> {
    c.get_json(&["get", "pods", "-l", &format!("app={app}")])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

/// Ready and not being deleted, as a disruption budget counts it.
pub fn is_ready(p: &serde_json::Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Ready pods of `app` per node.
pub fn ready_by_node(c: &Cluster, app: &str) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for p in pods_of(c, app).iter().filter(|p| is_ready(p)) {
        let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        *m.entry(node).or_default() += 1;
    }
    m
}

/// A process that exists and is not a zombie waiting to be reaped.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Pids of the worker's shim processes (one per running container).
pub fn shim_pids(dir: &Path) -> Vec<i32> {
    let dir = dir.to_string_lossy().into_owned();
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd);
                    cmd.contains("__shim") && cmd.contains(&dir)
                })
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Container id → init pid of the worker's live containers, from the shims' `state.json`.
pub fn container_pids(dir: &Path) -> BTreeMap<String, i32> {
    let mut out = BTreeMap::new();
    let index = dir.join("state").join(".herd-bundles");
    for e in std::fs::read_dir(index).into_iter().flatten().flatten() {
        let Ok(bundle) = std::fs::read_link(e.path()) else {
            continue;
        };
        let st: Option<serde_json::Value> = std::fs::read(bundle.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let pid = st.and_then(|v| v["pid"].as_i64()).unwrap_or(0) as i32;
        if pid > 0 && alive(pid) && !bundle.join("exit.json").exists() {
            out.insert(e.file_name().to_string_lossy().into_owned(), pid);
        }
    }
    out
}

//! The vertical slice's performance figures, as one benchmark run (a plain `main` that prints
//! them; nothing here asserts on time):
//!
//! 1. apply → Running with a cached image (HTTP API, polled every 5 ms), median and p90 of
//!    `HERD_SLICE_N` (default 20), next to a raw libcontainer create+start of an equivalent
//!    bundle in a single-threaded child process (this binary re-executed), and their ratio;
//!    a per-stage breakdown from the `herd up` log.
//! 2. idle RSS of `herd master` with 2 workers, each `herd worker`, and `herd up`.
//! 3. bytes written per idle hour (`/proc/PID/io`) by the same processes, over
//!    `HERD_SLICE_IDLE_MINUTES` (default 3) after `HERD_SLICE_SETTLE_SECONDS` (default 20).
//!
//! Needs root (containers). Everything runs on 127.0.0.1 under a temp dir in /var/tmp (a real
//! disk, so writes are counted); every process, container, cgroup and mount is cleaned up by
//! drop guards, also on panic.
//!
//! `CARGO_TARGET_DIR=/var/tmp/herd-target cargo bench --bench slice`

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use herd::worker::runtime::{bundle, cgroups, sys, ContainerConfig, Resources};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

/// First argument that turns this binary into the raw libcontainer child.
const RAW_CHILD: &str = "__slice-raw";
const POLL: Duration = Duration::from_millis(5);
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(sorted: &[Duration]) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "meets target"
    } else {
        "MISSES target"
    }
}

// ---------------------------------------------------------------------------------------------
// Raw libcontainer, in a child process (libcontainer forks: never from a threaded process)

/// Child mode: `__slice-raw DIR TAG`. For every line read on stdin, creates and starts one
/// container from DIR/rootfs, prints `raw <micros>` (create+start), then kills and deletes it;
/// exits at end of input. Single-threaded: nothing here spawns a thread, so libcontainer's
/// forks are safe. Driven line by line so raw and herd samples interleave under the same load.
fn raw_child(args: &[String]) -> i32 {
    let [dir, tag] = args else {
        eprintln!("usage: {RAW_CHILD} DIR TAG");
        return 2;
    };
    let dir = PathBuf::from(dir);
    let state_root = dir.join("state");
    std::fs::create_dir_all(&state_root).expect("create libcontainer state root");
    let stdin = std::io::stdin();
    for (i, line) in stdin.lock().lines().enumerate() {
        if line.is_err() {
            break;
        }
        let id = format!("slice-raw-{tag}-{i}");
        let cfg = ContainerConfig {
            bundle_dir: dir.join("b").join(&id),
            rootfs: dir.join("rootfs"),
            args: vec!["sh".into(), "-c".into(), "sleep 100".into()],
            env: vec![PATH_ENV.into()],
            cwd: "/".into(),
            user: String::new(),
            hostname: "raw".into(),
            resources: Resources::default(),
            cgroup_path: format!("/herd-slice-{tag}/{id}"),
            log_path: dir.join("raw.log"),
            log_max_bytes: 1 << 20,
            security: Default::default(),
            mounts: vec![],
            sandbox: Default::default(),
            id: id.clone(),
        };
        std::fs::create_dir_all(&cfg.bundle_dir).expect("create bundle dir");
        bundle::write_bundle(&cfg).expect("write OCI bundle");
        let devnull = || {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .expect("open /dev/null")
        };
        let t0 = Instant::now();
        let mut c = ContainerBuilder::new(id.clone(), SyscallType::default())
            .with_root_path(&state_root)
            .expect("libcontainer state root")
            .with_stdout(devnull())
            .with_stderr(devnull())
            .as_init(&cfg.bundle_dir)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .expect("libcontainer create");
        let pid = c.pid().expect("container init pid").as_raw();
        let pidfd = sys::pidfd_open(pid).expect("pidfd_open on the container init");
        c.start().expect("libcontainer start");
        let took = t0.elapsed();
        sys::pidfd_send_signal(&pidfd, libc::SIGKILL).expect("kill the raw container");
        sys::waitid_pidfd(&pidfd, true).expect("wait for the raw container");
        c.delete(true).expect("libcontainer delete");
        sys::waitid_pidfd(&pidfd, false).expect("reap the raw container");
        let _ = std::fs::remove_dir_all(&cfg.bundle_dir);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "raw {}", took.as_micros());
        let _ = out.flush();
    }
    0
}

/// Kills every process in the cgroup subtree `rel` (all hierarchies) and removes its dirs.
struct CgroupGuard(String);

fn kill_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                kill_tree(&e.path());
            }
        }
    }
    for _ in 0..40 {
        let pids = cgroups::procs(dir);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) on pids read from a cgroup this bench created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for d in cgroups::existing_dirs(&self.0) {
            kill_tree(&d);
        }
    }
}

/// Unpacks the image's (single) layer from a `docker save` archive into `rootfs`.
fn extract_rootfs(image_tar: &Path, rootfs: &Path) {
    let f = std::fs::File::open(image_tar).expect("open the busybox image archive");
    let mut outer = tar::Archive::new(f);
    for entry in outer.entries().expect("read the image archive") {
        let entry = entry.expect("image archive entry");
        let is_layer = entry
            .path()
            .map(|p| p.ends_with("layer.tar"))
            .unwrap_or(false);
        if is_layer {
            let mut inner = tar::Archive::new(entry);
            inner.set_preserve_permissions(true);
            inner.unpack(rootfs).expect("unpack the busybox layer");
            return;
        }
    }
    panic!("no layer.tar in {}", image_tar.display());
}

/// The raw libcontainer side: a re-executed single-threaded copy of this binary that runs one
/// create+start(+kill+delete) per request. Its cgroups are removed by the guard.
struct Raw {
    child: Child,
    to: Option<std::process::ChildStdin>,
    from: BufReader<std::process::ChildStdout>,
    _guard: CgroupGuard,
}

impl Raw {
    fn start(dir: &Path, image_tar: &Path) -> Raw {
        extract_rootfs(image_tar, &dir.join("rootfs"));
        let tag = herd::util::fsutil::random_hex(3);
        let guard = CgroupGuard(format!("/herd-slice-{tag}"));
        let exe = std::env::current_exe().expect("path of this bench binary");
        let mut child = Command::new(exe)
            .arg(RAW_CHILD)
            .arg(dir)
            .arg(&tag)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the raw libcontainer child");
        let to = Some(child.stdin.take().expect("piped stdin"));
        let from = BufReader::new(child.stdout.take().expect("piped stdout"));
        Raw {
            child,
            to,
            from,
            _guard: guard,
        }
    }

    /// One create+start, timed inside the child.
    fn sample(&mut self) -> Duration {
        let to = self.to.as_mut().expect("raw child stdin open");
        writeln!(to, "go").expect("ask the raw child for a sample");
        to.flush().expect("flush to the raw child");
        let mut line = String::new();
        self.from
            .read_line(&mut line)
            .expect("read from the raw child");
        let us: u64 = line
            .strip_prefix("raw ")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("raw libcontainer child failed (said {line:?})"));
        Duration::from_micros(us)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // Closing stdin ends the child's loop; kill it if it does not exit soon.
        drop(self.to.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A `herd` process stopped (SIGTERM, then SIGKILL after 20 s) and scrubbed on drop.
struct Proc {
    name: String,
    child: Child,
    /// Worker data dir to scrub after the process is gone (shims, cgroups, mounts).
    worker_dir: Option<PathBuf>,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            eprintln!("{}: still running 20 s after SIGTERM, killing", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = &self.worker_dir {
            common::scrub(dir);
        }
    }
}

/// Spawns `herd ARGS` with stderr to `log`; with `banner`, waits (≤ 30 s) for a stdout line
/// containing it and returns that line; stdout keeps draining on a thread.
fn spawn_herd(
    name: &str,
    args: &[&str],
    log: &Path,
    worker_dir: Option<PathBuf>,
    banner: Option<&str>,
    envs: &[(&str, &str)],
) -> (Proc, String) {
    let child = Command::new(common::HERD)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(log).expect("create a log file"),
        ))
        .spawn()
        .expect("spawn herd");
    let mut p = Proc {
        name: name.into(),
        child,
        worker_dir,
    };
    let out = p.child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // The receiver may be gone; keep draining so the child never blocks.
            let _ = tx.send(line);
        }
    });
    let Some(want) = banner else {
        return (p, String::new());
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(want) => {
                // Keep the rest of the banner flowing into the void.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return (p, line);
            }
            Ok(line) => seen.push(line),
            Err(_) => {
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                panic!("{name}: no {want:?} line within 30 s; stdout {seen:?}; log:\n{tail}");
            }
        }
    }
}

fn herd_cli(args: &[&str]) {
    let out = Command::new(common::HERD)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the herd CLI");
    assert!(
        out.status.success(),
        "herd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (one connection per request), so the measured path has nothing
// between the bench and the API but a loopback socket.

struct Api {
    addr: String,
    token: String,
}

fn decode_chunked(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..pos])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        body = &body[pos + 2..];
        if size == 0 || body.len() < size {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
    out
}

impl Api {
    /// `config`: the admin kubeconfig the master wrote.
    fn from_config(config: &Path) -> Api {
        let r = herd::cli::kubeconfig::load(Some(config), None).expect("read admin.conf");
        let addr = r
            .server
            .strip_prefix("http://")
            .expect("the API is plain HTTP on loopback")
            .trim_end_matches('/')
            .to_string();
        Api {
            addr,
            token: r.token,
        }
    }

    fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .map_err(|e| e.to_string())?;
        let _ = s.set_nodelay(true);
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        s.write_all(req.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .map_err(|e| format!("receive: {e}"))?;
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no end of headers")?;
        let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no status code")?;
        let raw = &buf[split + 4..];
        let body = if head.contains("transfer-encoding: chunked") {
            decode_chunked(raw)
        } else {
            raw.to_vec()
        };
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        match self.call("GET", path, "") {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Waits (≤ 60 s) until `names` are all Ready.
    fn wait_nodes_ready(&self, names: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready: Vec<String> = self
                .get_json("/api/v1/nodes")
                .and_then(|v| v["items"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
                .collect();
            let all = if names.is_empty() {
                !ready.is_empty()
            } else {
                names.iter().all(|n| ready.iter().any(|r| r == n))
            };
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nodes {names:?} not Ready within 60 s (ready: {ready:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Figure 1: apply → Running

fn pod_json(name: &str) -> String {
    // Grace 0: the worker SIGKILLs at once on delete (`sh` as PID 1 ignores SIGTERM, so the
    // default 30 s grace would stall every iteration).
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main",
                "image": "busybox",
                "command": ["sh", "-c", "sleep 100"]
            }]
        }
    })
    .to_string()
}

/// Anything of pod `uid` still on the machine: a shim, a cgroup, a mount.
fn pod_leftovers(uid: &str) -> Option<String> {
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("__shim") && cmd.contains(uid) {
                return Some(format!("shim pid {pid}"));
            }
        }
    }
    if let Some(d) = cgroups::existing_dirs(&format!("/herd/{uid}")).first() {
        return Some(format!("cgroup {}", d.display()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if let Some(m) = mounts.lines().find(|l| l.contains(uid)) {
        return Some(format!("mount {m}"));
    }
    None
}

struct Sample {
    name: String,
    uid: String,
    posted: SystemTime,
    running: SystemTime,
    took: Duration,
    polls: u32,
}

/// One apply → Running → delete → gone cycle.
fn apply_once(api: &Api, name: &str) -> Sample {
    let body = pod_json(name);
    let posted = SystemTime::now();
    let t0 = Instant::now();
    let (code, resp) = api
        .call("POST", "/api/v1/namespaces/default/pods", &body)
        .expect("POST pod");
    assert_eq!(code, 201, "create pod {name}: {resp}");
    let path = format!("/api/v1/namespaces/default/pods/{name}");
    let mut polls = 0;
    let pod = loop {
        polls += 1;
        if let Some(p) = api.get_json(&path) {
            if p["status"]["phase"] == "Running" {
                break p;
            }
            assert!(p["status"]["phase"] != "Failed", "pod {name} failed: {p}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "pod {name} not Running within 60 s"
        );
        std::thread::sleep(POLL);
    };
    let took = t0.elapsed();
    let running = SystemTime::now();
    let uid = pod["metadata"]["uid"]
        .as_str()
        .expect("pod has a uid")
        .to_string();
    let (code, resp) = api
        .call("DELETE", &format!("{path}?gracePeriodSeconds=0"), "")
        .expect("DELETE pod");
    assert!(
        code == 200 || code == 202,
        "delete pod {name}: {code} {resp}"
    );
    // The row is gone at once; the worker is still stopping the container. Wait until it has.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(what) = pod_leftovers(&uid) {
        assert!(
            Instant::now() < deadline,
            "pod {name} ({uid}): {what} still there 30 s after delete"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let the worker finish its bookkeeping (observed delete, dirs) before the next apply.
    std::thread::sleep(Duration::from_millis(100));
    Sample {
        name: name.into(),
        uid,
        posted,
        running,
        took,
        polls,
    }
}

/// Timestamp (wall clock) of the first log line that contains `key` as a whole word and `msg`.
fn logged_at(log: &str, key: &str, msg: &str) -> Option<SystemTime> {
    log.lines().find_map(|l| {
        let at = l.find(key)?;
        let next = l[at + key.len()..].chars().next();
        if next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-') || !l.contains(msg) {
            return None;
        }
        let ts = l.split_whitespace().next()?;
        let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
        Some(SystemTime::from(t.with_timezone(&chrono::Utc)))
    })
}

/// Stage boundaries of one pod, from the `herd up` log (tracing timestamps, wall clock).
fn stages(log: &str, s: &Sample) -> Option<[SystemTime; 7]> {
    let key = format!("default/{}", s.name);
    Some([
        s.posted,
        logged_at(log, &key, "pod created")?,
        logged_at(log, &key, "pod bound")?,
        logged_at(log, &key, "starting pod")?,
        // Logged from a blocking thread without the pod span: found by uid in the path.
        logged_at(log, &s.uid, "rootfs mounted")?,
        logged_at(log, &key, "container started")?,
        s.running,
    ])
}

fn print_breakdown(log: &str, samples: &[Sample]) {
    const NAMES: [&str; 6] = [
        "POST → stored (HTTP, token check, SQLite commit)",
        "stored → bound (scheduler, SQLite commit)",
        "bound → worker starts the pod (desired over MQTT)",
        "worker starts the pod → rootfs mounted (image lookup, overlay)",
        "rootfs mounted → container started (shim exec, bundle, libcontainer)",
        "container started → bench sees Running (observed over MQTT, commit, 5 ms poll)",
    ];
    let mut cols: Vec<Vec<Duration>> = vec![Vec::new(); NAMES.len()];
    for s in samples {
        let Some(t) = stages(log, s) else { continue };
        for (i, col) in cols.iter_mut().enumerate() {
            col.push(t[i + 1].duration_since(t[i]).unwrap_or_default());
        }
    }
    if cols[0].is_empty() {
        println!("  (no stage breakdown: the herd up log lacks the expected lines)");
        return;
    }
    println!(
        "  stage medians over {} pods (herd up log timestamps):",
        cols[0].len()
    );
    for (name, col) in NAMES.iter().zip(cols.iter_mut()) {
        col.sort();
        println!(
            "    {:>9} (p90 {:>9})  {name}",
            ms(median(col)),
            ms(percentile(col, 90.0))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Figures 2 and 3: idle memory and disk writes

#[derive(Clone, Copy, Default)]
struct Mem {
    rss_kb: u64,
    hwm_kb: u64,
    /// Heap, stacks: this process's own.
    anon_kb: u64,
    /// Mapped binary and libraries: shared and reclaimable.
    file_kb: u64,
}

fn mem(pid: i32) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        anon_kb: field("RssAnon:"),
        file_kb: field("RssFile:"),
    }
}

#[derive(Clone, Copy, Default)]
struct Io {
    write_bytes: u64,
    wchar: u64,
}

fn io(pid: i32) -> Io {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |k: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Io {
        write_bytes: field("write_bytes:"),
        wchar: field("wchar:"),
    }
}

/// The 1/5/15-minute load averages: this machine is shared, so every figure comes with them.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn kb_per_hour(bytes: u64, over: Duration) -> f64 {
    bytes as f64 / 1024.0 * 3600.0 / over.as_secs_f64().max(1e-9)
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(RAW_CHILD) {
        std::process::exit(raw_child(&args[2..]));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("slice bench: needs root (containers), skipped");
        return;
    }
    let n = env_num("HERD_SLICE_N", 20.0).max(1.0) as usize;
    let idle = Duration::from_secs_f64(env_num("HERD_SLICE_IDLE_MINUTES", 3.0).max(0.1) * 60.0);
    let settle = Duration::from_secs_f64(env_num("HERD_SLICE_SETTLE_SECONDS", 20.0).max(0.0));
    // Short path: libcontainer's notify socket must fit 108 bytes. /var/tmp is a real disk.
    let base = tempfile::Builder::new()
        .prefix("hs")
        .tempdir_in("/var/tmp")
        .expect("temp dir in /var/tmp");
    let image = common::busybox_tar(base.path());
    println!("slice bench: n={n}, idle window {idle:?} after {settle:?} settle");

    println!("load average at start: {}", loadavg());

    // 1. Raw libcontainer (own single-threaded process) and herd up (image cached, pods through
    // the HTTP API), sampled alternately so both see the same machine load.
    let raw_dir = base.path().join("raw");
    std::fs::create_dir_all(&raw_dir).expect("raw dir");
    let mut raw_side = Raw::start(&raw_dir, &image);
    let up_dir = base.path().join("up");
    std::fs::create_dir_all(up_dir.join("worker")).expect("herd up worker dir");
    let up_dir_s = up_dir.to_str().expect("utf-8 temp path");
    herd_cli(&[
        "image",
        "import",
        image.to_str().expect("utf-8"),
        "--data-dir",
        up_dir_s,
    ]);
    let up_log = base.path().join("up.log");
    let (mut up, _) = spawn_herd(
        "herd up",
        &[
            "up",
            "--data-dir",
            up_dir_s,
            "--api-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
            // Container start is measured here; the host's network stays untouched.
            "--pod-network",
            "none",
            // Never reach a registry: the image is imported, traffic stays on loopback.
            "--air-gapped",
        ],
        &up_log,
        Some(up_dir.join("worker")),
        Some("herd master is up"),
        // The info default plus the worker's debug "rootfs mounted" line, for the breakdown.
        &[(
            "RUST_LOG",
            "info,rumqttd=off,rumqttc=warn,libcontainer=warn,libcgroups=warn,hyper=warn,\
             reqwest=warn,herd::worker::images::mount=debug",
        )],
    );
    let up_api = Api::from_config(&up_dir.join("admin.conf"));
    up_api.wait_nodes_ready(&[]);
    let raw_warm = raw_side.sample();
    let warm = apply_once(&up_api, "slice-warm");
    let mut samples = Vec::new();
    let mut raw = Vec::new();
    for i in 0..n {
        raw.push(raw_side.sample());
        samples.push(apply_once(&up_api, &format!("slice-{i}")));
    }
    drop(raw_side);
    raw.sort();
    let mut took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    took.sort();
    let polls: u32 = samples.iter().map(|s| s.polls).sum::<u32>() / n as u32;
    let (med, p90, rmed, rp90) = (
        median(&took),
        percentile(&took, 90.0),
        median(&raw),
        percentile(&raw, 90.0),
    );
    let ratio = med.as_secs_f64() / rmed.as_secs_f64().max(1e-9);
    println!();
    println!("== 1. apply → Running, cached image (HTTP POST, GET poll every 5 ms), n={n}");
    println!(
        "  herd up apply→Running   median {}  p90 {}  min {}  max {}  (warm-up {}; ~{polls} polls/pod)",
        ms(med),
        ms(p90),
        ms(took[0]),
        ms(took[took.len() - 1]),
        ms(warm.took)
    );
    println!(
        "  raw libcontainer create+start  median {}  p90 {}  min {}  max {}  (warm-up {})",
        ms(rmed),
        ms(rp90),
        ms(raw[0]),
        ms(raw[raw.len() - 1]),
        ms(raw_warm)
    );
    println!(
        "  ratio apply→Running / raw = {ratio:.2}x  (target ≤ 2x: {})",
        verdict(ratio <= 2.0)
    );
    let log = std::fs::read_to_string(&up_log).unwrap_or_default();
    print_breakdown(&log, &samples);
    println!("  load average after: {}", loadavg());

    // 2 + 3. A master with 2 workers (default heartbeat), plus the herd up above, all idle.
    let idle_dir = base.path().join("idle");
    let mdir = idle_dir.join("master");
    std::fs::create_dir_all(&mdir).expect("master dir");
    let (mut master, join) = spawn_herd(
        "herd master",
        &[
            "master",
            "--api-addr",
            "127.0.0.1:0",
            "--mqtt-addr",
            "127.0.0.1:0",
            "--data-dir",
            mdir.to_str().expect("utf-8"),
            "--air-gapped",
        ],
        &idle_dir.join("master.log"),
        None,
        Some("herd worker --join"),
        &[],
    );
    let words: Vec<&str> = join.split_whitespace().collect();
    let after = |flag: &str| -> String {
        let i = words
            .iter()
            .position(|w| *w == flag)
            .unwrap_or_else(|| panic!("no {flag} in join line {join:?}"));
        words.get(i + 1).expect("flag value").to_string()
    };
    let (join_url, token) = (after("--join"), after("--token"));
    let mut workers = Vec::new();
    for w in ["iw1", "iw2"] {
        let wdir = idle_dir.join(w);
        std::fs::create_dir_all(&wdir).expect("worker dir");
        let (p, _) = spawn_herd(
            &format!("herd worker {w}"),
            &[
                "worker",
                "--join",
                &join_url,
                "--token",
                &token,
                "--node-name",
                w,
                "--data-dir",
                wdir.to_str().expect("utf-8"),
            ],
            &idle_dir.join(format!("{w}.log")),
            Some(wdir.clone()),
            None,
            &[],
        );
        workers.push(p);
    }
    let master_api = Api::from_config(&mdir.join("admin.conf"));
    master_api.wait_nodes_ready(&["iw1", "iw2"]);
    std::thread::sleep(settle);

    let mut procs: Vec<&mut Proc> = Vec::new();
    procs.push(&mut master);
    for w in &mut workers {
        procs.push(w);
    }
    procs.push(&mut up);
    let mem0: Vec<Mem> = procs.iter().map(|p| mem(p.pid())).collect();
    let io0: Vec<Io> = procs.iter().map(|p| io(p.pid())).collect();
    let t0 = Instant::now();
    std::thread::sleep(idle);
    let window = t0.elapsed();
    let io1: Vec<Io> = procs.iter().map(|p| io(p.pid())).collect();
    let mem1: Vec<Mem> = procs.iter().map(|p| mem(p.pid())).collect();
    for p in procs.iter_mut() {
        assert!(p.alive(), "{} exited during the idle window", p.name);
    }

    println!();
    println!(
        "== 2. idle RSS (after {settle:?} settle → after {:.1} min more idle)",
        window.as_secs_f64() / 60.0
    );
    let targets = |name: &str| -> (Option<u64>, Option<f64>) {
        if name.starts_with("herd worker") {
            (Some(10 * 1024), Some(100.0))
        } else if name == "herd master" {
            (Some(30 * 1024), None)
        } else {
            (None, None)
        }
    };
    for (i, p) in procs.iter().enumerate() {
        let (rss_target, _) = targets(&p.name);
        let t = rss_target.map_or(String::from("no target"), |t| {
            format!(
                "target ≤ {}: {}",
                mb(t),
                verdict(mem1[i].rss_kb.max(mem0[i].rss_kb) <= t)
            )
        });
        println!(
            "  {:<16} VmRSS {} → {}   VmHWM {}   (anon {} + file {} + shmem)   ({t})",
            p.name,
            mb(mem0[i].rss_kb),
            mb(mem1[i].rss_kb),
            mb(mem1[i].hwm_kb),
            mb(mem1[i].anon_kb),
            mb(mem1[i].file_kb)
        );
    }
    println!();
    println!(
        "== 3. disk writes while idle, over {:.1} min, scaled to one hour",
        window.as_secs_f64() / 60.0
    );
    for (i, p) in procs.iter().enumerate() {
        let wb = io1[i].write_bytes.saturating_sub(io0[i].write_bytes);
        let wc = io1[i].wchar.saturating_sub(io0[i].wchar);
        let per_h = kb_per_hour(wb, window);
        let t = targets(&p.name).1.map_or(String::from("no target"), |t| {
            format!("target ≤ {t:.0} KB/h: {}", verdict(per_h <= t))
        });
        println!(
            "  {:<16} write_bytes {:>9.1} KB/h   wchar {:>9.1} KB/h   ({t})",
            p.name,
            per_h,
            kb_per_hour(wc, window)
        );
    }
    drop(procs);
    // Stop the processes before the temp dir goes (drop order: declared last, dropped first).
    drop(workers);
    drop(master);
    drop(up);
}

//! Container start latency: raw libcontainer (create + start of a prepared bundle, then exit +
//! delete) against `LinuxRuntime::start` through the shim. Needs root. Prints medians and the
//! ratio; `HERD_BENCH_N` sets the sample count (default 30).
//!
//! The raw part runs first, before any thread exists, because libcontainer forks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd::worker::runtime::{bundle, sys, ContainerConfig, LinuxRuntime, Resources, Runtime};
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn make_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for a in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
}

fn config(dir: &Path, tag: &str, i: usize) -> ContainerConfig {
    let id = format!("bench-{tag}-{i}");
    ContainerConfig {
        bundle_dir: dir.join("b").join(&id),
        rootfs: dir.join("r"),
        args: vec!["true".into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        user: String::new(),
        hostname: "bench".into(),
        resources: Resources {
            memory_limit_bytes: Some(32 << 20),
            ..Resources::default()
        },
        cgroup_path: format!("/herd-bench-{tag}/{id}"),
        log_path: dir.join("logs").join(format!("{id}.log")),
        log_max_bytes: 1 << 20,
        security: Default::default(),
        mounts: vec![],
        sandbox: Default::default(),
        id,
    }
}

/// (create+start, create+start+exit+delete) for one container, directly with libcontainer.
fn raw_cycle(cfg: &ContainerConfig, root: &Path) -> (Duration, Duration) {
    std::fs::create_dir_all(&cfg.bundle_dir).unwrap();
    bundle::write_bundle(cfg).unwrap();
    let devnull = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap()
    };
    let t0 = Instant::now();
    let mut c = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_root_path(root)
        .unwrap()
        .with_stdout(devnull())
        .with_stderr(devnull())
        .as_init(&cfg.bundle_dir)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .unwrap();
    let pid = c.pid().unwrap().as_raw();
    let pidfd = sys::pidfd_open(pid).unwrap();
    c.start().unwrap();
    let started = t0.elapsed();
    sys::waitid_pidfd(&pidfd, true).unwrap();
    c.delete(true).unwrap();
    sys::waitid_pidfd(&pidfd, false).unwrap();
    (started, t0.elapsed())
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("runtime bench: needs root, skipped");
        return;
    }
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run few.
    let n: usize = std::env::var("HERD_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::Builder::new()
        .prefix("hrb")
        .tempdir_in("/tmp")
        .unwrap();
    make_rootfs(&dir.path().join("r"));
    let tag = herd::util::fsutil::random_hex(3);
    let raw_root = dir.path().join("raw");
    std::fs::create_dir_all(&raw_root).unwrap();

    let (mut raw_start, mut raw_full) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (s, f) = raw_cycle(&config(dir.path(), &format!("{tag}r"), i), &raw_root);
        raw_start.push(s);
        raw_full.push(f);
    }

    let rt_tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rt = LinuxRuntime::new(
        dir.path().join("s"),
        PathBuf::from(env!("CARGO_BIN_EXE_herd")),
    );
    let (mut shim_start, mut shim_full) = (Vec::new(), Vec::new());
    rt_tokio.block_on(async {
        for i in 0..n {
            let cfg = config(dir.path(), &format!("{tag}s"), i);
            let t0 = Instant::now();
            rt.start(&cfg).await.unwrap();
            shim_start.push(t0.elapsed());
            rt.wait(&cfg.id).await.unwrap();
            rt.remove(&cfg.id).await.unwrap();
            shim_full.push(t0.elapsed());
        }
    });
    for t in ["r", "s"] {
        for d in herd::worker::runtime::cgroups::candidate_dirs(&format!("/herd-bench-{tag}{t}")) {
            let _ = std::fs::remove_dir(d);
        }
    }
    let (rs, rf) = (median(&mut raw_start), median(&mut raw_full));
    let (ss, sf) = (median(&mut shim_start), median(&mut shim_full));
    println!("runtime bench, n={n}, medians:");
    println!("  raw libcontainer  create+start {rs:?}   create+start+exit+delete {rf:?}");
    println!("  LinuxRuntime      start        {ss:?}   start+wait+remove        {sf:?}");
    println!(
        "  ratio shim/raw    start {:.2}x   full cycle {:.2}x",
        ss.as_secs_f64() / rs.as_secs_f64().max(1e-9),
        sf.as_secs_f64() / rf.as_secs_f64().max(1e-9)
    );
}

//! Real containers through `LinuxRuntime` (needs root): namespaces, cgroup limits, logs, exit
//! codes, signals, OOM, and that `remove` leaves nothing behind.

#[path = "runtime_support.rs"]
mod support;

use std::time::Duration;

use herd::worker::runtime::{cgroups, logs, Runtime, RuntimeError};
use support::{can_run, mounts_mentioning, procs_in_cgroup, shims_mentioning, Fixture};

const T: Duration = Duration::from_secs(20);

async fn log_containing(path: &std::path::Path, needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = logs::read_tail(path, None).unwrap();
        if needles.iter().all(|n| text.contains(n)) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ns(pid: i32, kind: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap()
}

#[tokio::test]
async fn container_is_isolated_limited_and_logged() {
    if !can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let fx = Fixture::new();
    let mut cfg = fx.config("iso", "echo to-stdout; echo to-stderr >&2; exec sleep 30");
    cfg.resources.memory_limit_bytes = Some(64 << 20);
    cfg.resources.pids_limit = Some(50);
    let started = tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .expect("start hung")
        .expect("start");
    assert!(started.pid > 0);

    for kind in ["pid", "mnt", "net", "uts", "ipc"] {
        assert_ne!(
            ns(started.pid, kind),
            ns(std::process::id() as i32, kind),
            "{kind} namespace is the host's"
        );
    }
    assert_eq!(cgroups::memory_limit(&cfg.cgroup_path), Some(64 << 20));

    // CVE-2019-5736: the shim (whose image libcontainer clones) runs from a sealed memfd that
    // cannot be written through /proc/<pid>/exe.
    let shim_pid = std::fs::read_to_string(cfg.bundle_dir.join("shim.pid")).unwrap();
    let exe = std::fs::read_link(format!("/proc/{}/exe", shim_pid.trim())).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:herd-shim"),
        "{exe:?}"
    );
    let write = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{}/exe", shim_pid.trim()))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
    assert!(write.is_err(), "shim binary is writable");
    assert!(procs_in_cgroup(&cfg.cgroup_path).contains(&started.pid));

    let text = log_containing(&cfg.log_path, &["to-stdout", "to-stderr"]).await;
    assert!(
        text.contains("to-stdout\n") && text.contains("to-stderr\n"),
        "{text:?}"
    );
    let raw = std::fs::read_to_string(&cfg.log_path).unwrap();
    assert!(
        raw.lines().any(|l| l.contains(" stdout F to-stdout")),
        "{raw}"
    );
    assert!(
        raw.lines().any(|l| l.contains(" stderr F to-stderr")),
        "{raw}"
    );

    fx.rt.kill(&cfg.id, libc::SIGKILL).unwrap();
    let exit = tokio::time::timeout(T, fx.rt.wait(&cfg.id))
        .await
        .expect("wait hung")
        .unwrap();
    assert_eq!(
        (exit.exit_code, exit.signal, exit.oom_killed),
        (137, Some(9), false)
    );
    tokio::time::timeout(T, fx.rt.remove(&cfg.id))
        .await
        .expect("remove hung")
        .unwrap();
}

#[tokio::test]
async fn exit_code_is_reported() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let cfg = fx.config("code", "echo bye; exit 3");
    tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .unwrap()
        .unwrap();
    let exit = tokio::time::timeout(T, fx.rt.wait(&cfg.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (exit.exit_code, exit.signal, exit.oom_killed),
        (3, None, false)
    );
    // The shim has cleaned up by the time `wait` resolves.
    assert!(cgroups::existing_dirs(&cfg.cgroup_path).is_empty());
    assert!(!fx.rt.state_root().join(&cfg.id).exists());
    assert_eq!(logs::read_tail(&cfg.log_path, None).unwrap(), "bye\n");
    // wait is repeatable: the exit record on disk is the truth.
    let again = fx.rt.wait(&cfg.id).await.unwrap();
    assert_eq!(again, exit);
    fx.rt.remove(&cfg.id).await.unwrap();
}

#[tokio::test]
async fn sigterm_reaches_a_trapping_init() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let cfg = fx.config(
        "term",
        "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
    );
    tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .unwrap()
        .unwrap();
    log_containing(&cfg.log_path, &["ready"]).await;
    fx.rt.kill(&cfg.id, libc::SIGTERM).unwrap();
    let exit = tokio::time::timeout(T, fx.rt.wait(&cfg.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((exit.exit_code, exit.signal), (7, None));
    assert!(logs::read_tail(&cfg.log_path, None)
        .unwrap()
        .contains("got-term"));
    // Signalling an exited container is not an error.
    fx.rt.kill(&cfg.id, libc::SIGTERM).unwrap();
    fx.rt.remove(&cfg.id).await.unwrap();
}

#[tokio::test]
async fn user_and_groups_come_from_the_image() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let mut cfg = fx.config("user", "id -u; id -g; id -G");
    cfg.user = "web".into();
    tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .unwrap()
        .unwrap();
    let exit = tokio::time::timeout(T, fx.rt.wait(&cfg.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 0);
    let out = logs::read_tail(&cfg.log_path, None).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1000", "1000"], "{out}");
    assert!(lines[2].contains("2000"), "{out}");
    fx.rt.remove(&cfg.id).await.unwrap();
}

#[tokio::test]
async fn oom_kill_is_reported() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    // dd allocates and touches a 64 MiB buffer: far over the 16 MiB limit.
    let mut cfg = fx.config("oom", "dd if=/dev/zero of=/dev/null bs=64M count=4");
    cfg.resources.memory_limit_bytes = Some(16 << 20);
    tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .unwrap()
        .unwrap();
    let exit = tokio::time::timeout(T, fx.rt.wait(&cfg.id))
        .await
        .unwrap()
        .unwrap();
    assert!(exit.oom_killed, "{exit:?}");
    assert_ne!(exit.exit_code, 0);
    fx.rt.remove(&cfg.id).await.unwrap();
}

#[tokio::test]
async fn remove_of_a_running_container_leaves_nothing() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let mounts_before = mounts_mentioning(&fx.tag).len();
    let cfg = fx.config("rm", "exec sleep 60");
    let started = tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shims_mentioning(&cfg.bundle_dir.to_string_lossy()).len(), 1);
    tokio::time::timeout(T, fx.rt.remove(&cfg.id))
        .await
        .expect("remove hung")
        .unwrap();
    assert!(
        cgroups::existing_dirs(&cfg.cgroup_path).is_empty(),
        "cgroup leaked"
    );
    assert!(
        !fx.rt.state_root().join(&cfg.id).exists(),
        "state dir leaked"
    );
    assert!(!cfg.bundle_dir.exists(), "bundle dir leaked");
    assert!(
        shims_mentioning(&cfg.bundle_dir.to_string_lossy()).is_empty(),
        "shim leaked"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", started.pid)).exists()
            || std::fs::read_to_string(format!("/proc/{}/cmdline", started.pid))
                .map(|c| !c.contains("sleep"))
                .unwrap_or(true),
        "container process leaked"
    );
    assert_eq!(
        mounts_mentioning(&fx.tag).len(),
        mounts_before,
        "mount leaked"
    );
    // Idempotent, and everything else reports the container as unknown.
    fx.rt.remove(&cfg.id).await.unwrap();
    assert!(matches!(
        fx.rt.wait(&cfg.id).await,
        Err(RuntimeError::NotFound { .. })
    ));
}

#[tokio::test]
async fn failed_start_reports_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let mut cfg = fx.config("baduser", "true");
    cfg.user = "no-such-user".into();
    let e = tokio::time::timeout(T, fx.rt.start(&cfg)).await.unwrap();
    assert!(format!("{:?}", e).contains("no-such-user"), "{e:?}");

    let mut cfg2 = fx.config("noexe", "true");
    cfg2.args = vec!["/bin/does-not-exist".into()];
    let e = tokio::time::timeout(T, fx.rt.start(&cfg2)).await.unwrap();
    assert!(e.is_err());
    for c in [&cfg, &cfg2] {
        assert!(
            cgroups::existing_dirs(&c.cgroup_path).is_empty(),
            "cgroup leaked"
        );
        assert!(!fx.rt.state_root().join(&c.id).exists(), "state dir leaked");
        assert!(shims_mentioning(&c.bundle_dir.to_string_lossy()).is_empty());
        fx.rt.remove(&c.id).await.unwrap();
    }
}

#[tokio::test]
async fn a_new_runtime_instance_adopts_a_running_container() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let cfg = fx.config(
        "adopt",
        "trap 'exit 5' TERM; echo ready; while :; do sleep 0.1; done",
    );
    tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .unwrap()
        .unwrap();
    log_containing(&cfg.log_path, &["ready"]).await;
    // A restarted agent: same state root, empty memory.
    let rt2 = herd::worker::runtime::LinuxRuntime::new(
        fx.rt.state_root().to_path_buf(),
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_herd")),
    );
    rt2.kill(&cfg.id, libc::SIGTERM).unwrap();
    let exit = tokio::time::timeout(T, rt2.wait(&cfg.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 5);
    rt2.remove(&cfg.id).await.unwrap();
}

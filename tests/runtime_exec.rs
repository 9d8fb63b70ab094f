//! Reaching into a running container through `LinuxRuntime` (needs root): `exec` runs in the
//! container's namespaces, cgroup and user with a timeout; `net_namespace` lets a probe
//! connect from inside, where loopback is up.

#[path = "runtime_support.rs"]
mod support;

use std::time::{Duration, Instant};

use herd::worker::pods::probes::net::Target;
use herd::worker::pods::probes::Outcome;
use herd::worker::runtime::{sys, ContainerConfig, Runtime};
use support::{can_run, Fixture};

const T: Duration = Duration::from_secs(20);

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

async fn start(fx: &Fixture, cfg: &ContainerConfig) {
    tokio::time::timeout(T, fx.rt.start(cfg))
        .await
        .expect("start hung")
        .expect("start");
}

#[tokio::test]
async fn exec_runs_inside_the_container_as_its_user_with_a_timeout() {
    if !can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let fx = Fixture::new();
    let mut cfg = fx.config("ex", "exec sleep 60");
    cfg.user = "web".into();
    start(&fx, &cfg).await;
    let id = cfg.id.as_str();
    let sec = Duration::from_secs(5);

    let out = fx
        .rt
        .exec(
            id,
            &argv(&["sh", "-c", "echo hi; id -u; echo oops >&2; exit 3"]),
            sec,
        )
        .await
        .expect("exec");
    assert_eq!(
        (out.exit_code, out.output.as_str(), out.timed_out),
        (3, "hi\n1000\noops\n", false)
    );

    // Same pid namespace (pid 1 is the container's command) and same cgroup.
    let out = fx
        .rt
        .exec(
            id,
            &argv(&[
                "sh",
                "-c",
                "cat /proc/1/cmdline; echo; cat /proc/self/cgroup",
            ]),
            sec,
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(out.output.starts_with("sleep\u{0}60"), "{out:?}");
    // Inside the container's cgroup namespace its own cgroup is the root.
    assert!(
        out.output
            .lines()
            .any(|l| l == "0::/" || (l.contains(":pids:") && l.ends_with(":/"))),
        "{out:?}"
    );

    let started = Instant::now();
    let out = fx
        .rt
        .exec(id, &argv(&["sleep", "30"]), Duration::from_millis(500))
        .await
        .expect("exec");
    assert!(out.timed_out, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let out = fx
        .rt
        .exec(id, &argv(&["/no/such/binary"]), sec)
        .await
        .expect("a missing command is the command's failure, not the runtime's");
    assert_eq!(out.exit_code, 126, "{out:?}");
    assert!(out.output.contains("exec failed"), "{out:?}");

    // Concurrent execs (liveness and readiness at once) all work and leave nothing behind.
    let rt = &fx.rt;
    let many = (0..4).map(|i| {
        let cmd = argv(&["sh", "-c", &format!("exit {i}")]);
        async move { rt.exec(id, &cmd, sec).await }
    });
    let codes: Vec<i32> = futures_util::future::join_all(many)
        .await
        .into_iter()
        .map(|r| r.expect("exec").exit_code)
        .collect();
    assert_eq!(codes, [0, 1, 2, 3]);
    let leftovers: Vec<String> = std::fs::read_dir(fx.rt.state_root().join(id))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tenant-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    assert!(fx
        .rt
        .exec("nope-nope", &argv(&["true"]), sec)
        .await
        .is_err());
    fx.rt.remove(id).await.expect("remove");
    assert!(fx.rt.exec(id, &argv(&["true"]), sec).await.is_err());
}

#[tokio::test]
async fn probes_connect_from_inside_the_network_namespace_where_loopback_is_up() {
    if !can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let fx = Fixture::new();
    std::os::unix::fs::symlink("busybox", fx.rootfs.join("bin/httpd")).unwrap();
    std::fs::create_dir_all(fx.rootfs.join("www")).unwrap();
    std::fs::write(fx.rootfs.join("www/index.html"), "hello\n").unwrap();
    let cfg = fx.config("net", "exec httpd -f -p 127.0.0.1:8080 -h /www");
    start(&fx, &cfg).await;
    let id = cfg.id.as_str();

    let out = fx
        .rt
        .exec(
            id,
            &argv(&["cat", "/sys/class/net/lo/flags"]),
            Duration::from_secs(5),
        )
        .await
        .expect("exec");
    let flags = u32::from_str_radix(out.output.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up: {out:?}");

    let check = |target: Target| {
        let ns = fx.rt.net_namespace(id).expect("net namespace");
        sys::run_in_netns(&ns, || target.check(Duration::from_secs(2))).expect("setns")
    };
    let http = Target::Http {
        addr: "127.0.0.1:8080".parse().unwrap(),
        path: "/index.html".into(),
        headers: vec![],
    };
    // httpd may need a moment to listen.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = check(http.clone());
    while got != Outcome::Success && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = check(http.clone());
    }
    assert_eq!(got, Outcome::Success);
    let missing = Target::Http {
        addr: "127.0.0.1:8080".parse().unwrap(),
        path: "/missing".into(),
        headers: vec![],
    };
    assert_eq!(
        check(missing),
        Outcome::Failure("HTTP probe failed with statuscode: 404".into())
    );
    let closed = check(Target::Tcp("127.0.0.1:8081".parse().unwrap()));
    assert!(
        matches!(&closed, Outcome::Failure(m) if m.contains("refused")),
        "{closed:?}"
    );

    fx.rt.remove(id).await.expect("remove");
    assert!(fx.rt.net_namespace(id).is_err());
}

//! Container hardening with real containers (needs root): what an ordinary container cannot
//! do to the host (see processes, load modules, mount, rename the host, write /proc/sys, reach
//! host devices, create namespaces, overwrite the herd binary), and how `securityContext`
//! settings change it (user, read-only root, capabilities, privilege escalation, privileged,
//! Unconfined). Every container is removed by the test, or by the fixture if the test fails.

#[path = "runtime_support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use herd::api::security::{Capabilities, PodSecurityContext, SecurityContext};
use herd::api::{Container, Pod, PodSpec};
use herd::worker::runtime::{logs, security, ContainerConfig, Exit, Runtime, Security};
use support::{can_run, Fixture};

const T: Duration = Duration::from_secs(20);

/// Starts `cfg`, waits for it to exit, removes it, and returns its exit and output.
async fn run(fx: &Fixture, cfg: &ContainerConfig) -> (Exit, String) {
    let started = tokio::time::timeout(T, fx.rt.start(cfg))
        .await
        .expect("start hung");
    if let Err(e) = started {
        let shim_log = std::fs::read_to_string(cfg.bundle_dir.join("shim.log")).unwrap_or_default();
        let log = std::fs::read_to_string(&cfg.log_path).unwrap_or_default();
        panic!("start: {e}\nshim log:\n{shim_log}\ncontainer log:\n{log}");
    }
    let exit = tokio::time::timeout(T, fx.rt.wait(&cfg.id))
        .await
        .expect("container did not exit")
        .expect("wait");
    let out = logs::read_tail(&cfg.log_path, None).unwrap();
    tokio::time::timeout(T, fx.rt.remove(&cfg.id))
        .await
        .expect("remove hung")
        .expect("remove");
    (exit, out)
}

/// The `Key:\tvalue` line of /proc/self/status as the script printed it.
fn status_field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap()
}

/// Prints the confinement of the script's own shell.
const STATUS: &str = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status";

#[tokio::test]
async fn a_container_sees_only_its_own_processes() {
    if !can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    let fx = Fixture::new();
    let cfg = fx.config(
        "pids",
        "for p in /proc/[0-9]*; do echo \"pid ${p#/proc/} $(cat $p/comm)\"; done; busybox ps",
    );
    let (exit, out) = run(&fx, &cfg).await;
    assert_eq!(exit.exit_code, 0, "{out}");
    let pids: Vec<&str> = out.lines().filter(|l| l.starts_with("pid ")).collect();
    assert!(pids.contains(&"pid 1 sh"), "{out}");
    assert!(
        pids.len() <= 4,
        "more than the script's own processes: {out}"
    );
    // The test process itself (on the host) is not among them.
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    assert!(!out.contains(me.trim()), "{out}");
    assert!(out.contains("PID"), "busybox ps failed: {out}");
}

#[tokio::test]
async fn the_default_container_cannot_touch_the_kernel_or_the_host() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    std::fs::write(fx.rootfs.join("tmp/evil.ko"), b"\x7fELF not a module").unwrap();
    let before = host_hostname();
    let script = format!(
        "{STATUS}
         busybox insmod /tmp/evil.ko && echo INSMOD-OK
         busybox mount -t tmpfs x /tmp && echo MOUNT-OK
         busybox hostname evil && echo HOSTNAME-OK
         v=$(cat /proc/sys/vm/overcommit_memory)
         echo $v > /proc/sys/vm/overcommit_memory && echo PROCSYS-OK
         echo h > /proc/sysrq-trigger && echo SYSRQ-OK
         busybox unshare -U true && echo USERNS-OK
         busybox unshare -n true && echo NETNS-OK
         echo interrupts=$(busybox wc -c < /proc/interrupts)
         echo done"
    );
    let cfg = fx.config("kernel", &script);
    let (exit, out) = run(&fx, &cfg).await;
    assert_eq!(exit.exit_code, 0, "{out}");
    assert!(out.contains("done"), "{out}");
    for ok in [
        "INSMOD-OK",
        "MOUNT-OK",
        "HOSTNAME-OK",
        "PROCSYS-OK",
        "SYSRQ-OK",
        "USERNS-OK",
        "NETNS-OK",
    ] {
        assert!(!out.contains(ok), "{ok} in\n{out}");
    }
    // Refused by the seccomp filter (the kernel has no module loader here: without the
    // filter this would be ENOSYS, not EPERM), and user namespaces, which the kernel grants
    // to anyone, are refused too.
    assert!(
        out.lines()
            .any(|l| l.contains("insmod") && l.contains("Operation not permitted")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("unshare") && l.contains("Operation not permitted")),
        "{out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1", "{out}");
    // Docker's default capability set.
    assert_eq!(status_field(&out, "CapEff"), "00000000a80425fb", "{out}");
    // /proc/interrupts (host-wide activity) is masked by an empty /dev/null bind.
    assert!(out.contains("interrupts=0"), "{out}");
    assert_eq!(host_hostname(), before);
}

#[tokio::test]
async fn only_the_default_device_nodes_exist_and_others_cannot_be_opened() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let cfg = fx.config(
        "dev",
        "busybox find /dev -type c -o -type b; \
         busybox mknod /tmp/mem c 1 1 && busybox head -c 1 /tmp/mem && echo MEM-READ; \
         echo done",
    );
    let (exit, out) = run(&fx, &cfg).await;
    assert_eq!(exit.exit_code, 0, "{out}");
    let nodes: Vec<&str> = out.lines().filter(|l| l.starts_with("/dev/")).collect();
    for n in &nodes {
        assert!(
            security::DEFAULT_DEVICES.contains(n) || n.starts_with("/dev/pts/"),
            "host device {n} in the container: {out}"
        );
    }
    assert!(nodes.contains(&"/dev/null") && nodes.contains(&"/dev/urandom"));
    // A node made with MKNOD is refused by the device cgroup.
    assert!(!out.contains("MEM-READ"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

/// The user and security a pod's settings give, through the worker's own mapping.
fn from_pod(psc: Option<PodSecurityContext>, sc: SecurityContext) -> (String, Security) {
    let pod = Pod {
        spec: PodSpec {
            security_context: psc,
            containers: vec![Container {
                name: "app".into(),
                image: "busybox".into(),
                security_context: Some(sc),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let e = herd::worker::pods::security::effective(&pod, &pod.spec.containers[0], "")
        .expect("allowed");
    (e.user, e.security)
}

#[tokio::test]
async fn run_as_user_group_and_supplemental_groups_apply() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let (user, sec) = from_pod(
        Some(PodSecurityContext {
            run_as_group: Some(5678),
            supplemental_groups: vec![2000],
            fs_group: Some(3000),
            ..Default::default()
        }),
        SecurityContext {
            run_as_user: Some(1234),
            run_as_non_root: Some(true),
            ..Default::default()
        },
    );
    let mut cfg = fx.config("user", &format!("id -u; id -g; id -G; {STATUS}"));
    cfg.user = user;
    cfg.security = sec;
    let (exit, out) = run(&fx, &cfg).await;
    assert_eq!(exit.exit_code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1234", "5678"], "{out}");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    for g in ["5678", "2000", "3000"] {
        assert!(groups.contains(&g), "{g} not in {groups:?}");
    }
    // A non-root user keeps no capability after exec.
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000", "{out}");
}

#[tokio::test]
async fn a_read_only_root_filesystem_refuses_writes_but_dev_shm_works() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let (user, sec) = from_pod(
        None,
        SecurityContext {
            read_only_root_filesystem: Some(true),
            ..Default::default()
        },
    );
    let mut cfg = fx.config(
        "ro",
        "touch /x && echo ROOT-WRITTEN; echo x > /tmp/x && echo TMP-WRITTEN; \
         echo x > /dev/shm/x && echo SHM-OK",
    );
    cfg.user = user;
    cfg.security = sec;
    let (_, out) = run(&fx, &cfg).await;
    assert!(
        !out.contains("ROOT-WRITTEN") && !out.contains("TMP-WRITTEN"),
        "{out}"
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("SHM-OK"), "{out}");
    assert!(!fx.rootfs.join("x").exists());
}

#[tokio::test]
async fn dropping_all_capabilities_leaves_root_powerless() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    std::fs::write(fx.rootfs.join("tmp/f"), "x").unwrap();
    let (user, sec) = from_pod(
        None,
        SecurityContext {
            capabilities: Some(Capabilities {
                drop: vec!["ALL".into()],
                add: vec![],
            }),
            ..Default::default()
        },
    );
    let mut cfg = fx.config(
        "nocaps",
        &format!("{STATUS}; busybox chown 1:1 /tmp/f && echo CHOWN-OK; echo done"),
    );
    cfg.user = user;
    cfg.security = sec;
    let (_, out) = run(&fx, &cfg).await;
    assert_eq!(status_field(&out, "CapEff"), "0000000000000000", "{out}");
    assert!(!out.contains("CHOWN-OK"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");

    // Adding one back gives exactly that one (NET_BIND_SERVICE is bit 10).
    let (user, sec) = from_pod(
        None,
        SecurityContext {
            capabilities: Some(Capabilities {
                drop: vec!["ALL".into()],
                add: vec!["CAP_NET_BIND_SERVICE".into()],
            }),
            ..Default::default()
        },
    );
    let mut cfg = fx.config("onecap", STATUS);
    cfg.user = user;
    cfg.security = sec;
    let (_, out) = run(&fx, &cfg).await;
    assert_eq!(status_field(&out, "CapEff"), "0000000000000400", "{out}");
}

#[tokio::test]
async fn privilege_escalation_is_off_unless_allowed_and_seccomp_stays_either_way() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let (user, sec) = from_pod(
        None,
        SecurityContext {
            allow_privilege_escalation: Some(true),
            ..Default::default()
        },
    );
    let mut cfg = fx.config("escalate", STATUS);
    cfg.user = user;
    cfg.security = sec;
    let (exit, out) = run(&fx, &cfg).await;
    assert_eq!(exit.exit_code, 0, "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0", "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
}

#[tokio::test]
async fn an_unconfined_seccomp_profile_removes_only_the_filter() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let mut cfg = fx.config(
        "unconfined",
        &format!("{STATUS}; busybox unshare -U true && echo USERNS-OK"),
    );
    cfg.security.seccomp_unconfined = true;
    let (_, out) = run(&fx, &cfg).await;
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert_eq!(status_field(&out, "CapEff"), "00000000a80425fb", "{out}");
    let userns_allowed = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .is_ok_and(|s| s.trim() != "0");
    if userns_allowed {
        // What the default filter refused, the kernel itself allows.
        assert!(out.contains("USERNS-OK"), "{out}");
    }
}

#[tokio::test]
async fn a_privileged_container_gets_everything_but_stays_in_its_namespaces() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let host_dev = security::host_devices(Path::new("/dev"))
        .into_iter()
        .map(|d| d.path().to_string_lossy().into_owned())
        .find(|p| !p.contains("tty"));
    let before = host_hostname();
    let (user, sec) = from_pod(
        None,
        SecurityContext {
            privileged: Some(true),
            ..Default::default()
        },
    );
    let script = format!(
        "{STATUS}
         busybox mount -t tmpfs x /tmp && echo MOUNT-OK
         busybox hostname inside-only && echo HOSTNAME=$(busybox hostname)
         [ -n \"{dev}\" ] && [ -e \"{dev}\" ] && echo DEVICE-OK
         echo done",
        dev = host_dev.clone().unwrap_or_default()
    );
    let mut cfg = fx.config("priv", &script);
    cfg.user = user;
    cfg.security = sec;
    let (exit, out) = run(&fx, &cfg).await;
    assert_eq!(exit.exit_code, 0, "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0", "{out}");
    // Every capability this (root) test process holds, which is every one the kernel knows
    // unless the machine restricts root.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = status_field(&status, "CapBnd");
    assert_eq!(status_field(&out, "CapEff"), all, "{out}");
    assert!(out.contains("MOUNT-OK"), "{out}");
    // Its own UTS namespace: the host keeps its name.
    assert!(out.contains("HOSTNAME=inside-only"), "{out}");
    assert_eq!(host_hostname(), before);
    if host_dev.is_some() {
        assert!(out.contains("DEVICE-OK"), "{host_dev:?} missing: {out}");
    }
}

#[tokio::test]
async fn exec_into_a_container_keeps_its_seccomp_filter() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let cfg = fx.config("execsc", "exec sleep 60");
    tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .expect("start hung")
        .expect("start");
    let argv = |s: &str| vec!["sh".to_string(), "-c".into(), s.into()];
    let out = fx
        .rt
        .exec(
            &cfg.id,
            &argv(&format!(
                "{STATUS}; busybox unshare -U true && echo USERNS-OK"
            )),
            Duration::from_secs(10),
        )
        .await
        .expect("exec");
    assert_eq!(status_field(&out.output, "Seccomp"), "2", "{out:?}");
    assert_eq!(status_field(&out.output, "NoNewPrivs"), "1", "{out:?}");
    assert!(!out.output.contains("USERNS-OK"), "{out:?}");
    tokio::time::timeout(T, fx.rt.remove(&cfg.id))
        .await
        .expect("remove hung")
        .expect("remove");
}

/// Copies the shared libraries `binary` needs (per `ldd`) into `rootfs` at their host paths.
fn copy_libraries(binary: &Path, rootfs: &Path) {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    for word in text.split_whitespace().filter(|w| w.starts_with('/')) {
        let dst = rootfs.join(word.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(word, &dst).unwrap_or_else(|e| panic!("copying {word}: {e}"));
    }
}

fn digest(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut h).unwrap();
    h.finalize().to_vec()
}

/// CVE-2019-5736: a container that gets the runtime's own binary executed inside it (there
/// through a `#!/proc/self/exe` script; here by exec'ing `/proc/self/exe` directly, which
/// lands in the same place) holds `/proc/<pid>/exe` of that process. herd's helpers run from
/// a sealed in-memory copy, so neither writing while it runs nor writing through a kept
/// descriptor after it exited reaches anything, and the binary on disk is unchanged.
#[tokio::test]
async fn the_herd_binary_cannot_be_overwritten_from_inside_a_container() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let herd = Path::new(env!("CARGO_BIN_EXE_herd"));
    copy_libraries(herd, &fx.rootfs);
    let before = digest(herd);
    // The attacker: waits for a process running herd's binary, keeps a descriptor to it,
    // tries to write to it, lets it go on (it is blocked opening the fifo), and writes again
    // once it has exited.
    let attacker = "busybox mkfifo /tmp/fifo
        echo ready
        found=
        while [ -z \"$found\" ]; do
          for d in /proc/[0-9]*; do
            case \"$(busybox readlink $d/exe 2>/dev/null)\" in *herd*) found=$d ;; esac
          done
          sleep 0.05
        done
        echo \"found $(busybox readlink $found/exe)\"
        exec 3< $found/exe && echo opened
        printf x >> $found/exe && echo WROTE-WHILE-RUNNING
        echo > /tmp/fifo
        while [ -e $found ]; do sleep 0.05; done
        printf x >> /proc/self/fd/3 && echo WROTE-AFTER-EXIT
        echo attack-done
        exec sleep 60";
    let cfg = fx.config("cve", attacker);
    tokio::time::timeout(T, fx.rt.start(&cfg))
        .await
        .expect("start hung")
        .expect("start");
    // The fifo must exist before herd opens it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !logs::read_tail(&cfg.log_path, None)
        .unwrap_or_default()
        .contains("ready")
    {
        assert!(std::time::Instant::now() < deadline, "attacker never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let argv: Vec<String> = ["/proc/self/exe", "apply", "-f", "/tmp/fifo"]
        .map(String::from)
        .into();
    let out = fx
        .rt
        .exec(&cfg.id, &argv, Duration::from_secs(15))
        .await
        .expect("exec");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut log = logs::read_tail(&cfg.log_path, None).unwrap();
    while !log.contains("attack-done") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log = logs::read_tail(&cfg.log_path, None).unwrap();
    }
    tokio::time::timeout(T, fx.rt.remove(&cfg.id))
        .await
        .expect("remove hung")
        .expect("remove");
    eprintln!("exec: {out:?}\ncontainer log:\n{log}");
    assert!(!out.timed_out, "herd never got its fifo: {out:?}\n{log}");
    assert!(log.contains("attack-done"), "{out:?}\n{log}");
    // The process the container reached ran the sealed copy, not the file on disk.
    assert!(log.contains("found /memfd:herd"), "{log}");
    assert!(log.contains("opened"), "{log}");
    assert!(!log.contains("WROTE-"), "{log}");
    assert_eq!(digest(herd), before, "the herd binary changed");
}

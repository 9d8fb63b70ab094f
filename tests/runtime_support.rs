//! Shared fixture for the runtime integration tests (included with `#[path]`): a busybox
//! rootfs, unique ids, and a guard that removes containers, cgroups, shims and temp dirs even
//! when a test fails. Compiled on its own it is an empty test target.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use herd::worker::runtime::{cgroups, ContainerConfig, LinuxRuntime, Resources};

/// Busybox applets the tests use.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "true", "false", "dd", "head", "tail", "id", "ls",
];

/// Builds a rootfs with `bin/busybox`, applet symlinks, and minimal passwd/group files.
pub fn make_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox-static is installed");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/tmp:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nweb:x:1000:\nextra:x:2000:web\n",
    )
    .unwrap();
}

/// True when this process can create containers (root).
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub rt: LinuxRuntime,
    pub rootfs: PathBuf,
    /// Per-fixture cgroup parent (`/herd-test-<tag>`): nothing shared between parallel tests.
    pub cgroup_parent: String,
    pub tag: String,
    ids: std::sync::Mutex<Vec<(String, String)>>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        // Short path: libcontainer's notify socket lives under the state root (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("hrt")
            .tempdir_in("/tmp")
            .unwrap();
        let rootfs = dir.path().join("r");
        make_rootfs(&rootfs);
        let tag = herd::util::fsutil::random_hex(4);
        let rt = LinuxRuntime::new(
            dir.path().join("s"),
            PathBuf::from(env!("CARGO_BIN_EXE_herd")),
        );
        Fixture {
            rt,
            rootfs,
            cgroup_parent: format!("/herd-test-{tag}"),
            tag,
            dir,
            ids: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A config for a container `name` running `script` with `sh -c`.
    pub fn config(&self, name: &str, script: &str) -> ContainerConfig {
        let id = format!("t{}-{name}", self.tag);
        let cgroup_path = format!("{}/{id}", self.cgroup_parent);
        self.ids
            .lock()
            .unwrap()
            .push((id.clone(), cgroup_path.clone()));
        ContainerConfig {
            bundle_dir: self.dir.path().join("b").join(&id),
            rootfs: self.rootfs.clone(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: String::new(),
            hostname: name.into(),
            resources: Resources::default(),
            log_path: self.dir.path().join("logs").join(format!("{id}.log")),
            log_max_bytes: 1 << 20,
            security: Default::default(),
            mounts: vec![],
            sandbox: Default::default(),
            cgroup_path,
            id,
        }
    }
}

/// Pids of live shims whose command line names `needle`. A container's init is a clone of
/// its shim with the same command line until it execs the container's command (libcontainer
/// names it `youki:[2:INIT]`); it is not a shim, and a test that looks right after a start
/// can catch it before its exec.
pub fn shims_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.starts_with("youki:") {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("__shim") && cmd.contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// Processes whose cgroup membership names `cgroup_path` (any hierarchy).
pub fn procs_in_cgroup(cgroup_path: &str) -> Vec<i32> {
    cgroups::existing_dirs(cgroup_path)
        .iter()
        .flat_map(|d| cgroups::procs(d))
        .collect()
}

/// Mount points mentioning `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

impl Drop for Fixture {
    /// Synchronous teardown (a Drop cannot await): kill shims and container processes, remove
    /// cgroups (leaf and the per-fixture parents) and libcontainer state; the TempDir goes last.
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        for pid in shims_mentioning(&dir) {
            // SAFETY: plain kill(2) of a process we started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let ids = self.ids.lock().map(|v| v.clone()).unwrap_or_default();
        for (_, cg) in &ids {
            let _ = cgroups::remove(cg, Duration::from_secs(3));
        }
        for d in cgroups::candidate_dirs(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

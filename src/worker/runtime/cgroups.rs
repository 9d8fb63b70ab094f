//! Finding and removing a container's cgroup directories on cgroup v1 (one directory per
//! controller hierarchy), v2 (one unified directory) and hybrid hosts (both).
//!
//! libcontainer's `delete` removes the leaf it created; these helpers exist so `remove` can
//! finish the job after a crashed shim, and so tests can assert limits and the absence of leaks
//! on every hierarchy, not only the ones libcgroups chose.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {path}: still busy after {waited_ms} ms")]
    Busy { path: PathBuf, waited_ms: u128 },
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    /// `true` for cgroup2.
    pub unified: bool,
    /// v1 controllers (and `name=` options) of this hierarchy; empty for v2.
    pub controllers: Vec<String>,
}

/// Every cgroup hierarchy mounted in this mount namespace (`/proc/self/mountinfo`).
pub fn hierarchies() -> Vec<Hierarchy> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    parse_hierarchies(&text)
}

/// Parses mountinfo lines into cgroup hierarchies. Pure.
pub fn parse_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        let (Some(mount_point), Some(fstype)) = (fields.get(4), rfields.first()) else {
            continue;
        };
        let unified = match *fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if unified {
            Vec::new()
        } else {
            rfields
                .get(2)
                .map(|opts| {
                    opts.split(',')
                        .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains("relatime"))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        out.push(Hierarchy {
            mount_point: PathBuf::from(mount_point.replace("\\040", " ")),
            unified,
            controllers,
        });
    }
    out
}

fn join(mount_point: &Path, cgroup_path: &str) -> PathBuf {
    mount_point.join(cgroup_path.trim_start_matches('/'))
}

/// The directory of `cgroup_path` in every mounted hierarchy, existing or not.
pub fn candidate_dirs(cgroup_path: &str) -> Vec<PathBuf> {
    hierarchies()
        .iter()
        .map(|h| join(&h.mount_point, cgroup_path))
        .collect()
}

/// The directories of `cgroup_path` that exist now, in any hierarchy (leak detection).
pub fn existing_dirs(cgroup_path: &str) -> Vec<PathBuf> {
    candidate_dirs(cgroup_path)
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
}

/// True when the host runs the unified (v2-only) hierarchy at /sys/fs/cgroup.
pub fn is_unified() -> bool {
    hierarchies()
        .iter()
        .any(|h| h.unified && h.mount_point == Path::new("/sys/fs/cgroup"))
}

/// The directory holding `cgroup_path`'s memory controller files: the v1 `memory` hierarchy if
/// mounted, else the v2 one.
pub fn memory_dir(cgroup_path: &str) -> Option<PathBuf> {
    let hs = hierarchies();
    if let Some(h) = hs
        .iter()
        .find(|h| !h.unified && h.controllers.iter().any(|c| c == "memory"))
    {
        return Some(join(&h.mount_point, cgroup_path));
    }
    hs.iter()
        .find(|h| h.unified && h.mount_point == Path::new("/sys/fs/cgroup"))
        .map(|h| join(&h.mount_point, cgroup_path))
}

/// The memory limit in bytes (`memory.limit_in_bytes` on v1, `memory.max` on v2); `None` when
/// unlimited or unreadable.
pub fn memory_limit(cgroup_path: &str) -> Option<u64> {
    let dir = memory_dir(cgroup_path)?;
    for file in ["memory.max", "memory.limit_in_bytes"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
            return text.trim().parse().ok();
        }
    }
    None
}

/// How many processes the kernel OOM-killed in this cgroup: the `oom_kill` counter of v1
/// `memory.oom_control` or v2 `memory.events`.
pub fn oom_kill_count(cgroup_path: &str) -> Option<u64> {
    let dir = memory_dir(cgroup_path)?;
    for file in ["memory.events", "memory.oom_control"] {
        if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
            return parse_counter(&text, "oom_kill");
        }
    }
    None
}

/// `key N` from a flat-keyed cgroup file. Pure.
pub fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Pids listed in `dir/cgroup.procs`.
pub fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Parent of every pod's cgroup (like the kubelet's `kubepods`).
pub const PODS_ROOT: &str = "/herd";

/// The cgroup path of a pod: its containers' cgroups are children of it.
pub fn pod_path(uid: &str) -> String {
    format!("{PODS_ROOT}/{uid}")
}

/// Removes a pod's cgroup, then the shared parent once no pod is left in it (removing a
/// cgroup that still has children fails, which is exactly the test), so a node without pods
/// leaves nothing behind.
pub fn remove_pod(uid: &str, timeout: Duration) -> Result<(), CgroupError> {
    remove(&pod_path(uid), timeout)?;
    for dir in existing_dirs(PODS_ROOT) {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Kills every process in `cgroup_path` (all hierarchies) and removes its directory from each,
/// retrying while the kernel finishes tearing the processes down. Idempotent; removes only the
/// leaf (parents belong to the pod).
pub fn remove(cgroup_path: &str, timeout: Duration) -> Result<(), CgroupError> {
    if cgroup_path.trim_matches('/').is_empty() {
        // Never touch a hierarchy's root.
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    for dir in existing_dirs(cgroup_path) {
        loop {
            for pid in procs(&dir) {
                // SAFETY: plain kill(2); ESRCH for an already dead pid is fine.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    return Err(CgroupError::Busy {
                        path: dir,
                        waited_ms: timeout.as_millis(),
                    })
                }
                Err(source) => return Err(CgroupError::Io { path: dir, source }),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /proc rw - proc proc rw";

    #[test]
    fn hybrid_mountinfo_lists_v1_and_v2_hierarchies() {
        let hs = parse_hierarchies(MOUNTINFO);
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[1].controllers, vec!["memory"]);
        assert_eq!(hs[2].controllers, vec!["name=systemd"]);
        assert!(hs[3].unified);
        assert_eq!(
            join(&hs[1].mount_point, "/herd/p/c"),
            PathBuf::from("/sys/fs/cgroup/memory/herd/p/c")
        );
    }

    #[test]
    fn oom_counter_parses_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_counter(v1, "oom_kill"), Some(2));
        assert_eq!(parse_counter(v2, "oom_kill"), Some(1));
        assert_eq!(parse_counter("", "oom_kill"), None);
    }
}

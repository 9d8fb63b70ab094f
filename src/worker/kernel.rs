//! What the kernel must offer before a worker starts containers: the memory cgroup, overlayfs
//! and pidfds. Checked once at the start of `herd worker` and `herd up`, so that a Raspberry Pi
//! OS board (memory cgroup disabled by default) fails at once with the exact fix, instead of
//! failing obscurely at the first pod.
//!
//! [`assess`] is pure and takes the texts of the relevant `/proc` and `/sys` files; [`check`]
//! reads them. The cgroup layout found (v1, v2 or hybrid) is logged either way.

use std::fmt;
use std::path::PathBuf;

use crate::worker::runtime::cgroups::{parse_hierarchies, Hierarchy};

/// Exit status for a kernel that cannot run containers (sysexits' EX_CONFIG): the systemd units
/// list it in `RestartPreventExitStatus=` so a misconfigured board does not restart in a loop.
pub const EXIT_KERNEL_CONFIG: i32 = 78;

/// Setting this variable to `1` turns the failed checks into warnings (for kernels whose files
/// look unusual but work).
pub const SKIP_VAR: &str = "HERD_SKIP_KERNEL_CHECK";

/// The kernel parameters that turn the memory cgroup on (Raspberry Pi OS leaves it off).
pub const MEMORY_CGROUP_PARAMS: &str = "cgroup_enable=memory cgroup_memory=1";

/// Raspberry Pi OS bookworm and later, then older images.
pub const CMDLINE_FILES: [&str; 2] = ["/boot/firmware/cmdline.txt", "/boot/cmdline.txt"];

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel lacks something containers need; each problem says how to fix it.
    #[error("this kernel cannot run herd's containers:\n{}", render(.problems))]
    Unsupported { problems: Vec<Problem> },
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The status `main` exits with for `err`: [`EXIT_KERNEL_CONFIG`] when a kernel check failed
/// anywhere in the chain, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<KernelError>()) {
        EXIT_KERNEL_CONFIG
    } else {
        1
    }
}

/// How the cgroup hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only cgroup v1 hierarchies.
    V1,
    /// Only cgroup2, normally at `/sys/fs/cgroup` (Raspberry Pi OS and Debian since bookworm).
    V2,
    /// v1 hierarchies plus a cgroup2 mount elsewhere (usually `/sys/fs/cgroup/unified`).
    Hybrid { unified: PathBuf },
    /// No cgroup file system mounted at all.
    None,
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupMode::V1 => f.write_str("v1"),
            CgroupMode::V2 => f.write_str("v2 (unified)"),
            CgroupMode::Hybrid { unified } => write!(f, "hybrid (v1, v2 at {})", unified.display()),
            CgroupMode::None => f.write_str("none mounted"),
        }
    }
}

/// One missing kernel feature, with the way to fix it in its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The memory cgroup exists but is switched off on the kernel command line.
    MemoryCgroupDisabled { cmdline_file: Option<PathBuf> },
    /// The kernel was built without the memory cgroup.
    MemoryCgroupMissing,
    /// The memory cgroup is on but no hierarchy offers it.
    MemoryCgroupNotMounted { mode: CgroupMode },
    /// `/proc/filesystems` has no overlay.
    NoOverlayfs,
    /// Kernel older than 5.3 (no `pidfd_open`).
    NoPidfd { release: String },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::MemoryCgroupDisabled { cmdline_file } => {
                let file = match cmdline_file {
                    Some(p) => p.display().to_string(),
                    None => format!("{} (older images: {})", CMDLINE_FILES[0], CMDLINE_FILES[1]),
                };
                write!(
                    f,
                    "the memory cgroup is disabled (Raspberry Pi OS does this by default), so pod \
                     memory limits cannot work. Fix: add `{MEMORY_CGROUP_PARAMS}` to the end of the \
                     single line in {file} (same line, separated by a space; on other boards, add \
                     them to the kernel command line of the boot loader), then reboot"
                )
            }
            Problem::MemoryCgroupMissing => f.write_str(
                "the kernel has no memory cgroup (built without CONFIG_MEMCG, no `memory` row in \
                 /proc/cgroups): install a kernel that has it",
            ),
            Problem::MemoryCgroupNotMounted { mode } => write!(
                f,
                "the memory cgroup is enabled but no mounted hierarchy offers it (cgroup layout: \
                 {mode}): mount cgroup2 at /sys/fs/cgroup, or a v1 memory hierarchy"
            ),
            Problem::NoOverlayfs => f.write_str(
                "overlayfs is missing (no `overlay` in /proc/filesystems), container root file \
                 systems need it: `modprobe overlay`, and add `overlay` to /etc/modules",
            ),
            Problem::NoPidfd { release } => write!(
                f,
                "kernel {release} has no pidfd_open (needs Linux 5.3 or newer), which herd uses to \
                 wait for containers: upgrade the kernel"
            ),
        }
    }
}

/// The file texts [`assess`] looks at, read by [`check`] (or given by tests).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `/proc/cgroups`.
    pub proc_cgroups: String,
    /// `/proc/filesystems`.
    pub proc_filesystems: String,
    /// `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// `cgroup.controllers` of the cgroup2 mount, when there is one.
    pub v2_controllers: Option<String>,
    /// `uname -r`.
    pub release: String,
    /// Whether `pidfd_open` on ourselves worked (`None`: not tried, judge by the release).
    pub pidfd_works: Option<bool>,
    /// The boot command line file that exists on this board, if any.
    pub cmdline_file: Option<PathBuf>,
}

/// What the kernel offers, and what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub mode: CgroupMode,
    pub memory: bool,
    pub overlayfs: bool,
    pub pidfd: bool,
    pub problems: Vec<Problem>,
}

/// The `enabled` column of `/proc/cgroups` for `controller`; `None` when the row is absent.
/// Pure.
pub fn controller_enabled(proc_cgroups: &str, controller: &str) -> Option<bool> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&controller)).then(|| cols.get(3) == Some(&"1"))
        })
}

/// Whether `/proc/filesystems` lists `fs` (`nodev\toverlay`). Pure.
pub fn has_filesystem(proc_filesystems: &str, fs: &str) -> bool {
    proc_filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some(fs))
}

/// `(major, minor)` of a release such as `6.1.0-rpi7-rpi-v8`. Pure.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The cgroup layout from the mounted hierarchies. Pure.
pub fn cgroup_mode(hierarchies: &[Hierarchy]) -> CgroupMode {
    let v1 = hierarchies.iter().any(|h| !h.unified);
    let v2 = hierarchies.iter().find(|h| h.unified);
    match (v1, v2) {
        (true, Some(h)) => CgroupMode::Hybrid {
            unified: h.mount_point.clone(),
        },
        (false, Some(_)) => CgroupMode::V2,
        (true, None) => CgroupMode::V1,
        (false, None) => CgroupMode::None,
    }
}

/// Judges the kernel from its files. Pure.
pub fn assess(inputs: &Inputs) -> Report {
    let hierarchies = parse_hierarchies(&inputs.mountinfo);
    let mode = cgroup_mode(&hierarchies);
    let mut problems = Vec::new();

    let v1_memory = hierarchies
        .iter()
        .any(|h| !h.unified && h.controllers.iter().any(|c| c == "memory"));
    let v2_memory = inputs
        .v2_controllers
        .as_deref()
        .is_some_and(|c| c.split_whitespace().any(|c| c == "memory"));
    let memory = match controller_enabled(&inputs.proc_cgroups, "memory") {
        // A kernel booted with cgroup_disable=memory still lists the row, with enabled 0.
        Some(false) => {
            problems.push(Problem::MemoryCgroupDisabled {
                cmdline_file: inputs.cmdline_file.clone(),
            });
            false
        }
        // No row: either no memcg at all, or a kernel without /proc/cgroups (cgroup v2 only,
        // CONFIG_CGROUP_V1 off): then cgroup.controllers is the only witness.
        None if !v2_memory => {
            problems.push(if inputs.proc_cgroups.trim().is_empty() && !v1_memory {
                Problem::MemoryCgroupDisabled {
                    cmdline_file: inputs.cmdline_file.clone(),
                }
            } else {
                Problem::MemoryCgroupMissing
            });
            false
        }
        _ if v1_memory || v2_memory => true,
        _ => {
            problems.push(Problem::MemoryCgroupNotMounted { mode: mode.clone() });
            false
        }
    };

    let overlayfs = has_filesystem(&inputs.proc_filesystems, "overlay");
    if !overlayfs {
        problems.push(Problem::NoOverlayfs);
    }

    let pidfd = inputs
        .pidfd_works
        .unwrap_or_else(|| parse_release(&inputs.release).is_some_and(|v| v >= (5, 3)));
    if !pidfd {
        problems.push(Problem::NoPidfd {
            release: inputs.release.trim().to_string(),
        });
    }

    Report {
        mode,
        memory,
        overlayfs,
        pidfd,
        problems,
    }
}

/// Reads this machine's files into [`Inputs`]. Missing files read as empty.
pub fn read_inputs() -> Inputs {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mountinfo = read("/proc/self/mountinfo");
    let v2_controllers = parse_hierarchies(&mountinfo)
        .into_iter()
        .find(|h| h.unified)
        .and_then(|h| std::fs::read_to_string(h.mount_point.join("cgroup.controllers")).ok());
    Inputs {
        proc_cgroups: read("/proc/cgroups"),
        proc_filesystems: read("/proc/filesystems"),
        mountinfo,
        v2_controllers,
        release: read("/proc/sys/kernel/osrelease"),
        pidfd_works: Some(pidfd_works()),
        cmdline_file: CMDLINE_FILES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    }
}

/// Tries `pidfd_open` on this process: a backported kernel older than 5.3 may have it.
fn pidfd_works() -> bool {
    // SAFETY: pidfd_open(2) with our own pid and no flags; the returned fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    unsafe { libc::close(fd as i32) };
    true
}

/// Checks this machine's kernel, logs the cgroup layout, and fails with every problem and its
/// fix. With `HERD_SKIP_KERNEL_CHECK=1` problems are only logged.
pub fn check() -> Result<Report, KernelError> {
    let inputs = read_inputs();
    let report = assess(&inputs);
    tracing::info!(
        kernel = %inputs.release.trim(),
        cgroup = %report.mode,
        memory_cgroup = report.memory,
        overlayfs = report.overlayfs,
        pidfd = report.pidfd,
        "kernel checked"
    );
    if report.problems.is_empty() {
        return Ok(report);
    }
    if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
        for p in &report.problems {
            tracing::warn!("{SKIP_VAR}=1, going on although {p}");
        }
        return Ok(report);
    }
    Err(KernelError::Unsupported {
        problems: report.problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raspberry Pi OS bookworm on a Pi 4 as shipped: cgroup v2, memory row present but off.
    const RPI_CGROUPS_OFF: &str = "\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t0\t88\t1
cpu\t0\t88\t1
cpuacct\t0\t88\t1
blkio\t0\t88\t1
memory\t0\t88\t0
devices\t0\t88\t1
freezer\t0\t88\t1
net_cls\t0\t88\t1
perf_event\t0\t88\t1
net_prio\t0\t88\t1
pids\t0\t88\t1
";
    const RPI_MOUNTINFO: &str = "\
22 1 179:2 / / rw,noatime - ext4 /dev/mmcblk0p2 rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
29 22 179:1 / /boot/firmware rw,relatime - vfat /dev/mmcblk0p1 rw";
    const RPI_CONTROLLERS_OFF: &str = "cpuset cpu io pids\n";
    const RPI_CONTROLLERS_ON: &str = "cpuset cpu io memory pids\n";
    const FILESYSTEMS: &str =
        "nodev\tsysfs\nnodev\ttmpfs\nnodev\tcgroup2\n\text4\nnodev\toverlay\n";
    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    fn rpi(cgroups: &str, controllers: &str) -> Inputs {
        Inputs {
            proc_cgroups: cgroups.into(),
            proc_filesystems: FILESYSTEMS.into(),
            mountinfo: RPI_MOUNTINFO.into(),
            v2_controllers: Some(controllers.into()),
            release: "6.1.0-rpi7-rpi-v8".into(),
            pidfd_works: None,
            cmdline_file: Some(PathBuf::from("/boot/firmware/cmdline.txt")),
        }
    }

    #[test]
    fn raspberry_pi_os_with_memory_off_gets_the_exact_cmdline_fix() {
        let r = assess(&rpi(RPI_CGROUPS_OFF, RPI_CONTROLLERS_OFF));
        assert_eq!(r.mode, CgroupMode::V2);
        assert!(!r.memory);
        assert_eq!(r.problems.len(), 1);
        let msg = KernelError::Unsupported {
            problems: r.problems,
        }
        .to_string();
        assert!(
            msg.contains("add `cgroup_enable=memory cgroup_memory=1`"),
            "{msg}"
        );
        assert!(msg.contains("/boot/firmware/cmdline.txt"), "{msg}");
        assert!(msg.contains("reboot"), "{msg}");
    }

    #[test]
    fn an_unknown_board_is_told_both_cmdline_locations() {
        let mut i = rpi(RPI_CGROUPS_OFF, RPI_CONTROLLERS_OFF);
        i.cmdline_file = None;
        let msg = assess(&i).problems[0].to_string();
        assert!(msg.contains("/boot/firmware/cmdline.txt (older images: /boot/cmdline.txt)"));
    }

    #[test]
    fn raspberry_pi_os_after_the_fix_passes_on_cgroup_v2() {
        let on = RPI_CGROUPS_OFF.replace("memory\t0\t88\t0", "memory\t0\t88\t1");
        let r = assess(&rpi(&on, RPI_CONTROLLERS_ON));
        assert_eq!(r.problems, []);
        assert!(r.memory && r.overlayfs && r.pidfd);
    }

    #[test]
    fn a_v2_kernel_without_proc_cgroups_is_judged_by_its_controllers() {
        assert!(assess(&rpi("", RPI_CONTROLLERS_ON)).memory);
        let r = assess(&rpi("", RPI_CONTROLLERS_OFF));
        assert!(matches!(
            r.problems[..],
            [Problem::MemoryCgroupDisabled { .. }]
        ));
    }

    #[test]
    fn a_kernel_without_memcg_is_told_so_not_the_cmdline_fix() {
        let no_row = RPI_CGROUPS_OFF.replace("memory\t0\t88\t0\n", "");
        let r = assess(&rpi(&no_row, RPI_CONTROLLERS_OFF));
        assert_eq!(r.problems, [Problem::MemoryCgroupMissing]);
    }

    #[test]
    fn hybrid_v1_host_with_a_memory_hierarchy_passes_and_reports_hybrid() {
        let i = Inputs {
            proc_cgroups: "#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t4\t125\t1\n"
                .into(),
            proc_filesystems: FILESYSTEMS.into(),
            mountinfo: HYBRID_MOUNTINFO.into(),
            v2_controllers: Some(String::new()),
            release: "6.18.44".into(),
            pidfd_works: Some(true),
            cmdline_file: None,
        };
        let r = assess(&i);
        assert_eq!(
            r.mode,
            CgroupMode::Hybrid {
                unified: PathBuf::from("/sys/fs/cgroup/unified")
            }
        );
        assert_eq!(r.problems, []);
        assert_eq!(
            r.mode.to_string(),
            "hybrid (v1, v2 at /sys/fs/cgroup/unified)"
        );
    }

    #[test]
    fn enabled_memory_without_any_hierarchy_offering_it_is_reported() {
        let i = Inputs {
            proc_cgroups: "memory\t0\t1\t1\n".into(),
            mountinfo: "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu".into(),
            ..rpi("", "")
        };
        let r = assess(&i);
        assert_eq!(r.mode, CgroupMode::V1);
        assert_eq!(
            r.problems,
            [Problem::MemoryCgroupNotMounted {
                mode: CgroupMode::V1
            }]
        );
    }

    #[test]
    fn missing_overlayfs_and_an_old_kernel_are_both_reported() {
        let mut i = rpi(
            &RPI_CGROUPS_OFF.replace("memory\t0\t88\t0", "memory\t0\t88\t1"),
            RPI_CONTROLLERS_ON,
        );
        i.proc_filesystems = "nodev\tsysfs\n\text4\n".into();
        i.release = "4.19.97-v7+".into();
        let r = assess(&i);
        assert_eq!(
            r.problems,
            [
                Problem::NoOverlayfs,
                Problem::NoPidfd {
                    release: "4.19.97-v7+".into()
                }
            ]
        );
        // A backport that has pidfd_open is believed over the version number.
        i.pidfd_works = Some(true);
        assert_eq!(assess(&i).problems, [Problem::NoOverlayfs]);
    }

    #[test]
    fn releases_parse_to_major_and_minor() {
        assert_eq!(parse_release("6.1.0-rpi7-rpi-v8"), Some((6, 1)));
        assert_eq!(parse_release("5.3\n"), Some((5, 3)));
        assert_eq!(parse_release("4.19.97-v7+"), Some((4, 19)));
        assert_eq!(parse_release("garbage"), None);
    }

    #[test]
    fn a_kernel_error_anywhere_in_the_chain_exits_with_ex_config() {
        let e = anyhow::Error::new(KernelError::Unsupported {
            problems: vec![Problem::NoOverlayfs],
        })
        .context("worker");
        assert_eq!(exit_code(&e), EXIT_KERNEL_CONFIG);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
    }

    #[test]
    fn this_machine_passes_the_check() {
        // The test machines run containers, so their kernel must pass; this also exercises
        // the file reading.
        let r = assess(&read_inputs());
        assert_eq!(r.problems, [], "{:?}", r.mode);
    }
}

//! herd's default seccomp profile (`seccompProfile.type: RuntimeDefault`), as OCI spec data.
//!
//! The shape follows Docker's default profile: an allowlist, every other system call failing
//! with `EPERM`. System calls that reach kernel-global state (modules, kexec, reboot, swap,
//! clock, accounting, keyrings, BPF, perf, mounts, namespaces) are allowed only when the
//! container holds the capability the kernel would demand anyway, so adding e.g. `SYS_TIME`
//! to a container also lets `clock_settime` through. Some calls are never allowed: the
//! keyring calls (keyrings are not namespaced), io_uring (a large, often-exploited surface
//! that also bypasses this filter for the operations it performs), and obsolete ones.
//!
//! Names are resolved by the host's libseccomp when libcontainer loads the filter; a name it
//! does not know (a newer system call, or one of another architecture) is skipped, which means
//! denied.
//!
//! Pure: the host's architecture, kernel version and the container's capabilities come in.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// What the profile depends on besides the container's capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host<'a> {
    /// `std::env::consts::ARCH` of the worker: `x86_64`, `aarch64`, `arm`, ….
    pub arch: &'a str,
    /// Kernel (major, minor).
    pub kernel: (u32, u32),
}

impl Host<'static> {
    /// This machine.
    pub fn current() -> Self {
        Host {
            arch: std::env::consts::ARCH,
            kernel: kernel_version(),
        }
    }
}

/// (major, minor) of the running kernel; (0, 0) when it cannot be read.
pub fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_kernel_release(&release)
}

fn parse_kernel_release(release: &str) -> (u32, u32) {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

const EPERM: u32 = libc::EPERM as u32;
const ENOSYS: u32 = libc::ENOSYS as u32;

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET`: creating any namespace needs `SYS_ADMIN` here. User
/// namespaces matter most: unprivileged ones would expose kernel code paths meant for root.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// The same plus `CLONE_NEWTIME`, which `unshare` accepts (in `clone`'s first argument that
/// bit belongs to the exit signal).
const UNSHARE_NAMESPACE_FLAGS: u64 = CLONE_NAMESPACE_FLAGS | 0x80;
/// `AF_VSOCK`: sockets to the hypervisor, not to the network.
const AF_VSOCK: u64 = 40;
/// `personality` values that do not weaken the process: Linux, 32-bit, 2.6-style uname, both,
/// and the query value. Not allowed: `ADDR_NO_RANDOMIZE` and friends.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

// The groups below are whitespace-separated system call names.

/// Files, directories, descriptors and I/O.
const FILES: &str = "\
    access faccessat faccessat2 chdir fchdir getcwd chmod fchmod fchmodat fchmodat2 chown
    chown32 fchown fchown32 fchownat lchown lchown32 open openat openat2 creat close close_range
    dup dup2 dup3 fcntl fcntl64 flock read readv pread64 preadv preadv2 write writev pwrite64
    pwritev pwritev2 lseek _llseek sendfile sendfile64 splice tee vmsplice copy_file_range ioctl
    fsync fdatasync sync syncfs sync_file_range sync_file_range2 arm_sync_file_range truncate
    truncate64 ftruncate ftruncate64 fallocate fadvise64 fadvise64_64 arm_fadvise64_64 readahead
    stat stat64 fstat fstat64 lstat lstat64 newfstatat fstatat64 statx statfs statfs64 fstatfs
    fstatfs64 readlink readlinkat getdents getdents64 link linkat symlink symlinkat unlink
    unlinkat rename renameat renameat2 mkdir mkdirat rmdir mknod mknodat umask utime utimes
    utimensat utimensat_time64 futimesat getxattr lgetxattr fgetxattr setxattr lsetxattr
    fsetxattr listxattr llistxattr flistxattr removexattr lremovexattr fremovexattr
    name_to_handle_at memfd_create inotify_init inotify_init1 inotify_add_watch inotify_rm_watch
    fanotify_mark cachestat
";

/// Waiting for descriptors, pipes, event and timer fds, POSIX AIO.
const EVENTS: &str = "\
    select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 epoll_create
    epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait epoll_pwait2
    eventfd eventfd2 signalfd signalfd4 timerfd_create timerfd_settime timerfd_settime64
    timerfd_gettime timerfd_gettime64 pipe pipe2 io_setup io_destroy io_submit io_cancel
    io_getevents io_pgetevents io_pgetevents_time64
";

/// The process's own memory.
const MEMORY: &str = "\
    brk mmap mmap2 munmap mremap mprotect pkey_mprotect pkey_alloc pkey_free madvise mincore
    mlock mlock2 mlockall munlock munlockall msync remap_file_pages membarrier get_mempolicy
";

/// Processes, threads, scheduling, limits. `clone`, `clone3`, `unshare` and `personality`
/// have rules of their own.
const PROCESSES: &str = "\
    fork vfork execve execveat exit exit_group wait4 waitid waitpid getpid getppid gettid
    getpgid setpgid getpgrp getsid setsid kill tkill tgkill pidfd_open pidfd_send_signal
    process_mrelease set_tid_address set_robust_list get_robust_list futex futex_time64
    futex_waitv futex_wake futex_wait futex_requeue rseq restart_syscall arch_prctl prctl
    set_thread_area get_thread_area set_tls get_tls cacheflush breakpoint seccomp sched_yield
    sched_getaffinity sched_setaffinity sched_getparam sched_setparam sched_getscheduler
    sched_setscheduler sched_get_priority_max sched_get_priority_min sched_rr_get_interval
    sched_rr_get_interval_time64 sched_getattr sched_setattr getpriority setpriority nice
    ioprio_get ioprio_set getcpu getrlimit ugetrlimit setrlimit prlimit64 getrusage times uname
    sysinfo capget capset getrandom landlock_create_ruleset landlock_add_rule
    landlock_restrict_self
";

/// Signals.
const SIGNALS: &str = "\
    rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo sigaction sigprocmask sigreturn
    sigsuspend sigpending sigaltstack signal pause alarm
";

/// User and group ids (the kernel checks `SETUID`/`SETGID` itself).
const IDENTITY: &str = "\
    getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid getresuid32
    getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid setgid32 setreuid
    setreuid32 setregid setregid32 setresuid setresuid32 setresgid setresgid32 setgroups
    setgroups32 setfsuid setfsuid32 setfsgid setfsgid32
";

/// Reading clocks, sleeping, timers. `adjtimex` in read mode is common; changing the clock
/// needs `SYS_TIME`, which the kernel checks.
const TIME: &str = "\
    time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
    clock_nanosleep clock_nanosleep_time64 nanosleep timer_create timer_delete timer_settime
    timer_settime64 timer_gettime timer_gettime64 timer_getoverrun getitimer setitimer adjtimex
    clock_adjtime clock_adjtime64
";

/// System V and POSIX IPC (namespaced by the container's IPC namespace).
const IPC: &str = "\
    shmget shmat shmdt shmctl semget semop semctl semtimedop semtimedop_time64 msgget msgsnd
    msgrcv msgctl ipc mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive
    mq_timedreceive_time64 mq_notify mq_getsetattr
";

/// Sockets (namespaced by the pod's network namespace). `socket` has a rule of its own.
const NETWORK: &str = "\
    socketpair bind listen accept accept4 connect getsockname getpeername sendto send sendmsg
    sendmmsg recvfrom recv recvmsg recvmmsg recvmmsg_time64 shutdown setsockopt getsockopt
    socketcall
";

/// System calls allowed only to a container holding one of the capabilities.
const BY_CAPABILITY: &[(&[&str], &str)] = &[
    (
        &["SYS_ADMIN"],
        "mount umount umount2 mount_setattr move_mount open_tree fsopen fsconfig fsmount fspick \
         pivot_root setns sethostname setdomainname swapon swapoff quotactl quotactl_fd \
         lookup_dcookie fanotify_init",
    ),
    (&["SYS_ADMIN", "BPF"], "bpf"),
    (&["SYS_ADMIN", "PERFMON"], "perf_event_open"),
    (&["SYS_ADMIN", "SYSLOG"], "syslog"),
    (&["SYS_BOOT"], "reboot kexec_load kexec_file_load"),
    (&["SYS_CHROOT"], "chroot"),
    (&["SYS_MODULE"], "init_module finit_module delete_module"),
    (&["SYS_PACCT"], "acct"),
    (
        &["SYS_PTRACE"],
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev userfaultfd",
    ),
    (&["SYS_RAWIO"], "iopl ioperm"),
    (
        &["SYS_TIME"],
        "settimeofday stime clock_settime clock_settime64",
    ),
    (&["SYS_TTY_CONFIG"], "vhangup"),
    (
        &["SYS_NICE"],
        "mbind set_mempolicy set_mempolicy_home_node migrate_pages move_pages",
    ),
    (&["DAC_READ_SEARCH"], "open_by_handle_at"),
];

/// Kernels before 4.8 let a traced process skip the filter: there `ptrace` needs `SYS_PTRACE`.
const PTRACE_SAFE_SINCE: (u32, u32) = (4, 8);

/// The architectures a filter covers: the native one plus the compat ABIs its kernel runs
/// (32-bit programs on a 64-bit board must not dodge the filter through another ABI).
pub fn architectures(arch: &str) -> Vec<Arch> {
    match arch {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "x86" => vec![Arch::ScmpArchX86],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "arm" => vec![Arch::ScmpArchArm],
        _ => vec![],
    }
}

fn allow(names: impl IntoIterator<Item = impl Into<String>>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.into_iter().map(Into::into).collect())
        .set_action(LinuxSeccompAction::ScmpActAllow);
    s
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSeccompArg {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    if let Some(v) = value_two {
        b = b.value_two(v);
    }
    // Every field is set or has a default: building cannot fail.
    b.build().expect("seccomp argument with all fields set")
}

/// `(argument & mask) == 0`. libcontainer 0.7 reads a masked comparison with `valueTwo` as
/// the mask and `value` as the expected result (runc reads them the other way round); the
/// real-container tests would catch a change, since `sh` could no longer fork.
fn no_bits_of(index: usize, mask: u64) -> LinuxSeccompArg {
    arg(index, LinuxSeccompOperator::ScmpCmpMaskedEq, 0, Some(mask))
}

fn allow_if(name: &str, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut s = allow([name]);
    s.set_args(Some(args));
    s
}

fn errno(name: &str, code: u32) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(vec![name.to_owned()])
        .set_action(LinuxSeccompAction::ScmpActErrno)
        .set_errno_ret(Some(code));
    s
}

/// The default profile for a container holding `caps` (canonical names without `CAP_`, the
/// bounding set).
pub fn default_profile(host: Host<'_>, caps: &BTreeSet<String>) -> LinuxSeccomp {
    let has = |c: &str| caps.contains(c);
    let mut allowed: Vec<&str> = [
        FILES, EVENTS, MEMORY, PROCESSES, SIGNALS, IDENTITY, TIME, IPC, NETWORK,
    ]
    .iter()
    .flat_map(|group| group.split_whitespace())
    .collect();
    for (needs, names) in BY_CAPABILITY {
        if needs.iter().any(|c| has(c)) {
            allowed.extend(names.split_whitespace());
        }
    }
    if host.kernel >= PTRACE_SAFE_SINCE || has("SYS_PTRACE") {
        allowed.push("ptrace");
    }
    let mut rules = Vec::new();
    if has("SYS_ADMIN") {
        allowed.extend(["clone", "clone3", "unshare"]);
    } else {
        // Forking and threads stay possible; new namespaces do not.
        rules.push(allow_if(
            "clone",
            vec![no_bits_of(0, CLONE_NAMESPACE_FLAGS)],
        ));
        rules.push(allow_if(
            "unshare",
            vec![no_bits_of(0, UNSHARE_NAMESPACE_FLAGS)],
        ));
        // clone3 passes its flags in memory a filter cannot read: ENOSYS makes the C library
        // fall back to clone, whose flags the rule above checks.
        rules.push(errno("clone3", ENOSYS));
    }
    rules.push(allow_if(
        "socket",
        vec![arg(0, LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK, None)],
    ));
    // Several comparisons of one argument: libcontainer adds each as its own rule (any matches).
    rules.push(allow_if(
        "personality",
        PERSONALITIES
            .iter()
            .map(|p| arg(0, LinuxSeccompOperator::ScmpCmpEq, *p, None))
            .collect(),
    ));
    rules.insert(0, allow(allowed));

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        .set_architectures(Some(architectures(host.arch)))
        .set_syscalls(Some(rules));
    profile
}

/// The profile the exec helper loads into itself before libcontainer joins the container:
/// libcontainer 0.7 drops the container's seccomp filter for processes it execs into a
/// running container, so the helper installs the filter first and the command inherits it.
/// The helper needs `setns` to enter the container's namespaces; the command gets it too,
/// harmless without `SYS_ADMIN` (the kernel refuses every namespace then).
pub fn for_exec(profile: &LinuxSeccomp) -> LinuxSeccomp {
    let mut p = profile.clone();
    let has_setns = p.syscalls().iter().flatten().any(|s| {
        s.action() == LinuxSeccompAction::ScmpActAllow
            && s.args().is_none()
            && s.names().iter().any(|n| n == "setns")
    });
    if !has_setns {
        let mut rules = p.syscalls().clone().unwrap_or_default();
        // Another rule for setns (an errno one from a custom profile) would conflict.
        for r in &mut rules {
            let names: Vec<String> = r
                .names()
                .iter()
                .filter(|n| *n != "setns")
                .cloned()
                .collect();
            r.set_names(names);
        }
        rules.retain(|r| !r.names().is_empty());
        rules.push(allow(["setns"]));
        p.set_syscalls(Some(rules));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86: Host<'static> = Host {
        arch: "x86_64",
        kernel: (6, 1),
    };

    fn docker_caps() -> BTreeSet<String> {
        super::super::security::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    /// Names allowed without any argument condition.
    fn unconditional(p: &LinuxSeccomp) -> BTreeSet<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    fn rule<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn the_default_denies_with_eperm_and_covers_compat_abis() {
        let p = default_profile(X86, &docker_caps());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(
            architectures("aarch64"),
            [Arch::ScmpArchAarch64, Arch::ScmpArchArm]
        );
        assert_eq!(architectures("arm"), [Arch::ScmpArchArm]);
        assert!(architectures("riscv64").is_empty());
    }

    #[test]
    fn dangerous_calls_are_denied_to_an_ordinary_container() {
        let p = default_profile(X86, &docker_caps());
        let allowed = unconditional(&p);
        for name in [
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "mount",
            "umount2",
            "reboot",
            "swapon",
            "swapoff",
            "open_by_handle_at",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "userfaultfd",
            "setns",
            "pivot_root",
            "settimeofday",
            "clock_settime",
            "acct",
            "quotactl",
            "syslog",
            "unshare",
            "clone",
            "clone3",
            "iopl",
            "ioperm",
            "io_uring_setup",
            "lookup_dcookie",
            "sethostname",
            "process_vm_writev",
            "kcmp",
            "personality",
            "uselib",
            "nfsservctl",
            "vhangup",
            "mbind",
        ] {
            assert!(!allowed.contains(name), "{name} is allowed unconditionally");
        }
        for name in [
            "keyctl",
            "add_key",
            "request_key",
            "io_uring_setup",
            "modify_ldt",
        ] {
            assert!(rule(&p, name).is_empty(), "{name}");
        }
        // An ordinary program still runs: the default capabilities' calls are there.
        for name in [
            "read", "execve", "chroot", "fchown", "setuid", "ptrace", "sendmsg",
        ] {
            assert!(allowed.contains(name), "{name}");
        }
    }

    #[test]
    fn clone_and_unshare_may_not_create_namespaces_and_clone3_falls_back() {
        let p = default_profile(X86, &docker_caps());
        let clone = rule(&p, "clone");
        assert_eq!(clone.len(), 1);
        let a = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (a.index(), a.op(), a.value(), a.value_two()),
            (
                0,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                0,
                Some(0x7E02_0000)
            )
        );
        let unshare = rule(&p, "unshare")[0].args().as_ref().unwrap()[0];
        assert_eq!(unshare.value_two(), Some(0x7E02_0080));
        let clone3 = rule(&p, "clone3");
        assert_eq!(
            (clone3[0].action(), clone3[0].errno_ret()),
            (LinuxSeccompAction::ScmpActErrno, Some(38))
        );
        let socket = rule(&p, "socket")[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (socket.op(), socket.value()),
            (LinuxSeccompOperator::ScmpCmpNe, 40)
        );
        assert_eq!(rule(&p, "personality")[0].args().as_ref().unwrap().len(), 5);
    }

    #[test]
    fn capabilities_unlock_the_calls_the_kernel_would_allow_them() {
        let mut caps = docker_caps();
        caps.extend(["SYS_ADMIN", "SYS_TIME", "SYS_MODULE", "PERFMON"].map(String::from));
        let p = default_profile(X86, &caps);
        let allowed = unconditional(&p);
        for name in [
            "mount",
            "setns",
            "unshare",
            "clone",
            "clone3",
            "sethostname",
            "bpf",
            "syslog",
            "clock_settime",
            "init_module",
            "perf_event_open",
        ] {
            assert!(allowed.contains(name), "{name}");
            assert_eq!(rule(&p, name).len(), 1, "{name} has one rule");
        }
        assert!(!allowed.contains("reboot"));
        assert!(!allowed.contains("keyctl"));
        // Dropping CHROOT removes chroot.
        caps.remove("SYS_CHROOT");
        assert!(!unconditional(&default_profile(X86, &caps)).contains("chroot"));
    }

    #[test]
    fn ptrace_needs_sys_ptrace_on_kernels_before_4_8() {
        let old = Host {
            arch: "arm",
            kernel: (4, 4),
        };
        assert!(!unconditional(&default_profile(old, &docker_caps())).contains("ptrace"));
        let mut caps = docker_caps();
        caps.insert("SYS_PTRACE".into());
        let p = default_profile(old, &caps);
        assert!(unconditional(&p).contains("ptrace"));
        assert!(unconditional(&p).contains("process_vm_readv"));
    }

    #[test]
    fn every_name_has_exactly_one_rule() {
        let mut caps: BTreeSet<String> = crate::api::security::CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        for caps in [docker_caps(), BTreeSet::new(), std::mem::take(&mut caps)] {
            let p = default_profile(X86, &caps);
            let mut seen = BTreeSet::new();
            for s in p.syscalls().iter().flatten() {
                for n in s.names() {
                    assert!(seen.insert(n.clone()), "{n} appears twice");
                }
            }
        }
    }

    #[test]
    fn the_exec_variant_adds_setns_once() {
        let p = default_profile(X86, &docker_caps());
        let e = for_exec(&p);
        assert!(unconditional(&e).contains("setns"));
        assert_eq!(rule(&e, "setns").len(), 1);
        assert_eq!(rule(&for_exec(&e), "setns").len(), 1);
        let mut caps = docker_caps();
        caps.insert("SYS_ADMIN".into());
        let admin = default_profile(X86, &caps);
        assert_eq!(for_exec(&admin), admin);
    }

    /// Names newer than the libseccomp this machine has (Debian 12: 2.5.4); a newer library
    /// knows them, an older one skips them.
    const NEWER_THAN_LIBSECCOMP: &[&str] = &[
        "cachestat",
        "fchmodat2",
        "futex_wake",
        "futex_wait",
        "futex_requeue",
        "set_mempolicy_home_node",
    ];

    #[test]
    fn every_name_is_a_system_call_of_a_covered_architecture() {
        use libseccomp::{ScmpArch, ScmpSyscall};
        let mut caps: BTreeSet<String> = crate::api::security::CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        caps.remove("SYS_ADMIN");
        let mut names: BTreeSet<String> = unconditional(&default_profile(X86, &caps));
        for s in default_profile(X86, &docker_caps())
            .syscalls()
            .iter()
            .flatten()
        {
            names.extend(s.names().iter().cloned());
        }
        let arches = [
            ScmpArch::X8664,
            ScmpArch::X86,
            ScmpArch::X32,
            ScmpArch::Aarch64,
            ScmpArch::Arm,
        ];
        for name in &names {
            let known = arches
                .iter()
                .any(|a| ScmpSyscall::from_name_by_arch(name, *a).is_ok());
            assert!(
                known || NEWER_THAN_LIBSECCOMP.contains(&name.as_str()),
                "{name} is not a system call libseccomp knows"
            );
        }
        assert!(names.len() > 300, "{}", names.len());
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v595"), (6, 18));
        assert_eq!(parse_kernel_release("4.9.0+"), (4, 9));
        assert_eq!(parse_kernel_release("garbage"), (0, 0));
    }
}

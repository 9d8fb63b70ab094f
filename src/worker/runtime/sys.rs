//! Thin wrappers over the Linux calls the runtime needs that nix 0.29 lacks or that must stay
//! allocation-free: pidfds, `waitid` on a pidfd, sealed memfd copies of the herd binary, and
//! work inside a container's network namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// `pidfd_open(pid, 0)`: a handle that names exactly this process, so a recycled pid can never
/// be signalled or waited on by mistake, and that polls readable once the process exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(pidfd, sig)`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own; null siginfo means "like kill(2)".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a process ended, as `waitid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
}

/// `waitid(P_PIDFD, pidfd, WEXITED [| WNOWAIT])` for a child of this process. With
/// `keep_zombie` the child stays unreaped so its pid cannot be recycled while we clean up.
pub fn waitid_pidfd(pidfd: &OwnedFd, keep_zombie: bool) -> io::Result<WaitStatus> {
    // SAFETY: siginfo_t is plain data; zeroed is a valid initial value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let mut flags = libc::WEXITED;
    if keep_zombie {
        flags |= libc::WNOWAIT;
    }
    loop {
        // SAFETY: info is a valid out-pointer for the duration of the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
    // SAFETY: after a successful WEXITED waitid the si_status/si_code fields are filled in.
    let (code, status) = unsafe { (info.si_code, info.si_status()) };
    Ok(if code == libc::CLD_EXITED {
        WaitStatus::Exited(status)
    } else {
        WaitStatus::Signaled(status)
    })
}

const MFD_EXEC: libc::c_uint = 0x0010;
const ALL_SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// A sealed, executable in-memory copy of `src`. Executing the shim from it means the image a
/// container could reach through `/proc/<pid>/exe` is this copy, which no one can write to:
/// the mitigation for CVE-2019-5736.
pub fn sealed_copy(src: &Path) -> io::Result<OwnedFd> {
    let name = c"herd-shim";
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create takes a NUL-terminated name and flags.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
    if fd < 0 {
        // Kernels before 6.3 reject MFD_EXEC; they make every memfd executable anyway.
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), base) };
    }
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from the kernel, owned by nobody else.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut out = std::fs::File::from(memfd);
    let mut input = std::fs::File::open(src)?;
    io::copy(&mut input, &mut out)?;
    let memfd = OwnedFd::from(out);
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, ALL_SEALS) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(memfd)
}

/// True when `fd` is a memfd carrying every seal [`sealed_copy`] sets.
pub fn is_sealed(fd: RawFd) -> bool {
    // SAFETY: F_GET_SEALS only reads; on a non-memfd it fails with EINVAL.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    seals >= 0 && seals & ALL_SEALS == ALL_SEALS
}

/// True when this process runs from a sealed memfd.
pub fn running_sealed() -> bool {
    std::fs::File::open("/proc/self/exe")
        .map(|f| is_sealed(f.as_raw_fd()))
        .unwrap_or(false)
}

/// Re-executes this process from a sealed copy of its own binary (same argv and env). Only
/// returns on failure.
/// The common start of the helper processes (`__shim`, `__exec`): drop the agent's sealed
/// binary fd they inherited only to be exec'd from it, then make sure they run from a sealed
/// copy (CVE-2019-5736), re-executing with `argv` (which carries `--sealed`) if not. `Err` is
/// the message to report before giving up; a successful re-exec never returns.
pub fn ensure_sealed(
    tool: &str,
    exe_fd: Option<i32>,
    sealed_retry: bool,
    argv: impl FnOnce() -> Vec<String>,
) -> Result<(), String> {
    if let Some(fd) = exe_fd {
        // SAFETY: closing an inherited fd number nobody else in this process uses.
        unsafe { libc::close(fd) };
    }
    if running_sealed() {
        return Ok(());
    }
    if sealed_retry {
        return Err(format!(
            "herd {tool}: not running from a sealed binary after re-exec"
        ));
    }
    let err = reexec_sealed(&argv());
    Err(format!("herd {tool}: sealed re-exec: {err}"))
}

pub fn reexec_sealed(argv: &[String]) -> io::Error {
    let memfd = match sealed_copy(Path::new("/proc/self/exe")) {
        Ok(fd) => fd,
        Err(e) => return e,
    };
    let cargs: Vec<std::ffi::CString> = match argv
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect()
    {
        Ok(v) => v,
        Err(e) => return io::Error::new(io::ErrorKind::InvalidInput, e),
    };
    let mut ptrs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: argv is a NULL-terminated array of valid C strings that outlive the call; environ
    // is the process environment. An ELF binary runs fine from a CLOEXEC fd.
    unsafe { libc::fexecve(memfd.as_raw_fd(), ptrs.as_ptr(), environ) };
    io::Error::last_os_error()
}

/// True once the process behind `pidfd` has exited (its pidfd polls readable).
pub fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents != 0
}

/// Runs `f` on a fresh thread that has joined the network namespace `netns` (an fd of a
/// `/proc/<pid>/ns/net` file) and returns its result. `setns` only moves the calling thread,
/// and that thread ends with `f`, so no other thread of this process (tokio's workers, the
/// shim's main thread) ever changes namespace.
pub fn run_in_netns<T: Send>(netns: &OwnedFd, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let fd = netns.as_raw_fd();
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("herd-netns".into())
            .spawn_scoped(scope, move || {
                // SAFETY: setns on an fd the caller keeps open for the duration of the scope.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f())
            })?;
        worker
            .join()
            .map_err(|_| io::Error::other("network namespace thread panicked"))?
    })
}

/// Sets `lo` up in the current thread's network namespace (`SIOCSIFFLAGS`): a new namespace
/// starts with loopback down, and without it nothing in the container, nor a probe, can
/// reach 127.0.0.1.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned right below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from the kernel, owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; zeroed is valid, and "lo" fits ifr_name with its NUL.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills ifr_flags of the ifreq we pass.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifr_ifru is a union; the flags member is what SIOCGIFFLAGS just filled.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we pass.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_copy_is_identical_and_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("bin");
        std::fs::write(&src, b"\x7fELF not really").unwrap();
        let fd = sealed_copy(&src).unwrap();
        assert!(is_sealed(fd.as_raw_fd()));
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), b"\x7fELF not really");
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"));
        assert!(w.is_err(), "a sealed memfd must refuse writes");
        assert!(!is_sealed(std::fs::File::open(&src).unwrap().as_raw_fd()));
    }

    #[test]
    fn pidfd_waits_for_a_child_and_reports_its_code() {
        // Reaped below through the pidfd, which clippy cannot see.
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        assert_eq!(waitid_pidfd(&fd, true).unwrap(), WaitStatus::Exited(7));
        assert_eq!(waitid_pidfd(&fd, false).unwrap(), WaitStatus::Exited(7));
    }
}

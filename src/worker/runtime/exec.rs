//! Running a command inside a running container: the one-shot helper process
//! (`herd __exec --root DIR --id ID --timeout-ms N [--exe-fd N] -- ARGV...`) and the agent side
//! that spawns it ([`run`]).
//!
//! libcontainer's tenant builder forks (clone3) to enter the container's namespaces and
//! cgroup, which must never happen in the multi-threaded agent; so, like the shim, a fresh
//! single-threaded process does it, dispatched from `main` before any runtime starts, and
//! running from a sealed copy of the binary (the window between fork and exec is exactly where
//! CVE-2019-5736 struck `runc exec`). The helper runs the command as the container's user,
//! keeps the first [`OUTPUT_LIMIT`] bytes of its stdout and stderr (as the kubelet does for a
//! probe message), kills it when the timeout expires, and reports one JSON line on stdout.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::syscall::syscall::SyscallType;

use super::linux::LinuxRuntime;
use super::sys::{self, WaitStatus};
use super::RuntimeError;

/// Output kept from a command, stdout and stderr interleaved.
pub const OUTPUT_LIMIT: usize = 10 * 1024;
/// How long the agent gives the helper beyond the command's own timeout (entering the
/// container, killing an overrunning command) before killing the helper itself.
const HELPER_SLACK: Duration = Duration::from_secs(10);
/// What a shell returns for a command it found but could not execute.
const CANNOT_EXECUTE: i32 = 126;

/// How a command run inside a container ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// The first [`OUTPUT_LIMIT`] bytes of stdout and stderr, lossily decoded.
    pub output: String,
    /// Killed because it ran longer than its timeout.
    pub timed_out: bool,
}

/// The one line the helper writes on its stdout.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Report {
    Ok(ExecOutput),
    Error(String),
}

#[derive(Debug, PartialEq)]
struct Opts {
    root: PathBuf,
    id: String,
    timeout: Duration,
    exe_fd: Option<i32>,
    sealed_retry: bool,
    argv: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let (mut root, mut id, mut timeout_ms) = (None, None, None);
    let mut exe_fd = None;
    let mut sealed_retry = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--root" => root = it.next().map(PathBuf::from),
            "--id" => id = it.next().cloned(),
            "--timeout-ms" => timeout_ms = it.next().and_then(|v| v.parse::<u64>().ok()),
            "--exe-fd" => exe_fd = it.next().and_then(|v| v.parse().ok()),
            "--sealed" => sealed_retry = true,
            "--" => break,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let argv: Vec<String> = it.cloned().collect();
    if argv.is_empty() {
        return Err("no command after --".into());
    }
    Ok(Opts {
        root: root.ok_or("missing --root")?,
        id: id.ok_or("missing --id")?,
        timeout: Duration::from_millis(timeout_ms.ok_or("missing or bad --timeout-ms")?),
        exe_fd,
        sealed_retry,
        argv,
    })
}

fn report(r: &Report) {
    if let Ok(line) = serde_json::to_string(r) {
        println!("{line}");
    }
}

/// Entry point, called from `main` before any thread or tokio runtime exists.
pub fn main(args: &[String]) -> i32 {
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            report(&Report::Error(format!("herd __exec: {e}")));
            return 2;
        }
    };
    let argv = || {
        // `--sealed` goes before `--`, which ends the options.
        let mut argv: Vec<String> = std::env::args().collect();
        argv.insert(2.min(argv.len()), "--sealed".into());
        argv
    };
    if let Err(e) = sys::ensure_sealed("__exec", opts.exe_fd, opts.sealed_retry, argv) {
        report(&Report::Error(e));
        return 1;
    }
    match exec_in_container(&opts) {
        Ok(out) => {
            report(&Report::Ok(out));
            0
        }
        Err(e) => {
            report(&Report::Error(e));
            1
        }
    }
}

/// What an exec'd process inherits from the container's bundle: the uid, gid and extra gids
/// the container's own process runs as, and its seccomp filter.
struct Confinement {
    uid: u32,
    gid: u32,
    gids: Vec<u32>,
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

fn confinement(container: &Container) -> Result<Confinement, String> {
    let path = container.bundle().join("config.json");
    let spec =
        oci_spec::runtime::Spec::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let user = spec
        .process()
        .as_ref()
        .map(|p| p.user().clone())
        .unwrap_or_default();
    Ok(Confinement {
        uid: user.uid(),
        gid: user.gid(),
        gids: user.additional_gids().clone().unwrap_or_default(),
        seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
    })
}

fn exec_in_container(opts: &Opts) -> Result<ExecOutput, String> {
    let container = Container::load(opts.root.join(&opts.id))
        .map_err(|e| format!("container {}: {e}", opts.id))?;
    if container.status() != ContainerStatus::Running {
        return Err(format!(
            "container {} is {:?}, not running",
            opts.id,
            container.status()
        ));
    }
    let Confinement {
        uid,
        gid,
        gids,
        seccomp,
    } = confinement(&container)?;
    let (out_r, out_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let err_w = out_w.try_clone().map_err(|e| format!("dup: {e}"))?;
    let devnull = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    let builder = ContainerBuilder::new(opts.id.clone(), SyscallType::default())
        .with_root_path(&opts.root)
        .map_err(|e| format!("state root {}: {e}", opts.root.display()))?
        .with_stdin(devnull)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_tenant()
        .with_container_args(opts.argv.clone())
        .with_user(Some(uid))
        .with_group(Some(gid))
        .with_additional_gids(gids)
        .with_detach(true);
    let state_dir = opts.root.join(&opts.id);
    let lock = lock_exclusive(&state_dir.join(EXEC_LOCK))?;
    // libcontainer 0.7 does not give a tenant the container's seccomp filter: load it into
    // this helper (plus `setns`, which joining needs), and the command inherits it. From
    // here on this process only joins, waits and reports, all of which the filter allows.
    if let Some(filter) = &seccomp {
        libcontainer::seccomp::initialize_seccomp(&super::seccomp::for_exec(filter))
            .map_err(|e| format!("container {}: loading its seccomp filter: {e}", opts.id))?;
    }
    // As in the shim: the command must not inherit Rust's ignored SIGPIPE.
    set_sigpipe(libc::SIG_DFL);
    let built = builder.build();
    set_sigpipe(libc::SIG_IGN);
    remove_tenant_leftovers(&state_dir);
    drop(lock);
    let pid = match built {
        Ok(pid) => pid.as_raw(),
        // Typically "executable file not found": the command's failure, not the runtime's.
        Err(e) => {
            return Ok(ExecOutput {
                exit_code: CANNOT_EXECUTE,
                output: format!("exec failed: {e}"),
                timed_out: false,
            })
        }
    };
    let pidfd = sys::pidfd_open(pid).map_err(|e| format!("pidfd_open {pid}: {e}"))?;
    let (output, timed_out) = collect(&out_r, &pidfd, opts.timeout);
    let exit_code = match sys::waitid_pidfd(&pidfd, false) {
        Ok(WaitStatus::Exited(c)) => c,
        Ok(WaitStatus::Signaled(s)) => 128 + s,
        Err(e) => return Err(format!("waitid: {e}")),
    };
    Ok(ExecOutput {
        exit_code,
        output: String::from_utf8_lossy(&output).into_owned(),
        timed_out,
    })
}

/// Serializes tenant creation per container. libcontainer leaves a `tenant-notify-*` socket
/// in the container's state dir for every exec and never removes it; a probe running every
/// few seconds would pile them up. Holding this lock, no other exec is between creating its
/// socket and using it, so every leftover can go.
const EXEC_LOCK: &str = ".herd-exec.lock";

fn lock_exclusive(path: &std::path::Path) -> Result<std::fs::File, String> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    loop {
        // SAFETY: flock on an fd we own; released when the file is closed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(f);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(format!("locking {}: {e}", path.display()));
        }
    }
}

fn remove_tenant_leftovers(state_dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("tenant-notify-") || name.starts_with("tenant-tty-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn set_sigpipe(handler: libc::sighandler_t) {
    // SAFETY: installing SIG_DFL/SIG_IGN is async-signal-safe and this process has one thread.
    unsafe { libc::signal(libc::SIGPIPE, handler) };
}

/// Reads output (keeping the first [`OUTPUT_LIMIT`] bytes) until the process exits or the
/// timeout expires, in which case it is SIGKILLed. Returns the output and whether it timed
/// out. Does not wait for end of output: a background child of the command may hold the pipe.
fn collect(out: &OwnedFd, pidfd: &OwnedFd, timeout: Duration) -> (Vec<u8>, bool) {
    // SAFETY: fcntl flag manipulation on an fd we own.
    unsafe {
        let fl = libc::fcntl(out.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(out.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let deadline = Instant::now() + timeout;
    let mut kept = Vec::new();
    let mut open = true;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = sys::pidfd_send_signal(pidfd, libc::SIGKILL);
            drain(out, &mut kept);
            return (kept, true);
        }
        let mut fds = [
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open { out.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: fds is a valid array of two pollfd structs (a negative fd is skipped).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            let _ = sys::pidfd_send_signal(pidfd, libc::SIGKILL);
            return (kept, false);
        }
        if fds[1].revents != 0 {
            open = drain(out, &mut kept);
        }
        if fds[0].revents != 0 {
            drain(out, &mut kept);
            return (kept, false);
        }
    }
}

/// Reads what is available; returns false at end of output.
fn drain(fd: &OwnedFd, kept: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: reading into a stack buffer of the given length.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
            )
        };
        if n > 0 {
            let room = OUTPUT_LIMIT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..(n as usize).min(room)]);
            continue;
        }
        if n == 0 {
            return false;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return true,
            _ => return false,
        }
    }
}

/// Agent side: runs `argv` in container `id` through a `herd __exec` helper.
pub(super) async fn run(
    rt: &LinuxRuntime,
    id: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutput, RuntimeError> {
    let fail = |message: String| RuntimeError::Failed {
        id: id.to_owned(),
        message,
    };
    if argv.is_empty() {
        return Err(fail("exec: empty command".into()));
    }
    let (mut cmd, _sealed) = rt.helper_command("__exec").await;
    cmd.arg("--root")
        .arg(rt.state_root())
        .arg("--id")
        .arg(id)
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string())
        .arg("--")
        .args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        // Dropped (the probe was cancelled, the agent gave up): the helper goes too.
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|source| RuntimeError::Io {
        id: id.to_owned(),
        op: "spawning exec helper",
        source,
    })?;
    let out = match tokio::time::timeout(timeout + HELPER_SLACK, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(RuntimeError::Io {
                id: id.to_owned(),
                op: "waiting for exec helper",
                source,
            })
        }
        Err(_) => {
            return Err(fail(format!(
                "exec helper still running {}s after the command's timeout",
                HELPER_SLACK.as_secs()
            )))
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    match serde_json::from_str::<Report>(line) {
        Ok(Report::Ok(output)) => Ok(output),
        Ok(Report::Error(message)) => Err(fail(message)),
        Err(e) => Err(fail(format!(
            "bad exec helper report {line:?} ({}): {e}",
            out.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn helper_args_end_with_the_command_after_a_double_dash() {
        let o = parse_args(&args(&[
            "--sealed",
            "--root",
            "/r",
            "--id",
            "c1",
            "--timeout-ms",
            "1500",
            "--",
            "test",
            "--root",
        ]))
        .unwrap();
        assert_eq!(o.root, PathBuf::from("/r"));
        assert_eq!(o.id, "c1");
        assert_eq!(o.timeout, Duration::from_millis(1500));
        assert!(o.sealed_retry);
        assert_eq!(o.argv, ["test", "--root"]);
        assert!(parse_args(&args(&["--root", "/r", "--id", "c", "--timeout-ms", "1"])).is_err());
        assert!(parse_args(&args(&["--id", "c", "--timeout-ms", "1", "--", "x"])).is_err());
        assert!(parse_args(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn report_lines_are_tagged_json() {
        let ok = Report::Ok(ExecOutput {
            exit_code: 1,
            output: "no".into(),
            timed_out: false,
        });
        let line = serde_json::to_string(&ok).unwrap();
        assert_eq!(
            line,
            r#"{"ok":{"exit_code":1,"output":"no","timed_out":false}}"#
        );
        let back: Report = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ok);
    }

    #[test]
    fn output_is_kept_up_to_the_limit_and_a_slow_child_is_killed() {
        // A real child of this test process stands in for the container command.
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let w = std::process::Stdio::from(w);
        #[allow(clippy::zombie_processes)] // reaped below through the pidfd
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "head -c 20000 /dev/zero; exec sleep 30"])
            .stdout(w)
            .spawn()
            .unwrap();
        let pidfd = sys::pidfd_open(child.id() as i32).unwrap();
        let started = Instant::now();
        let (out, timed_out) = collect(&r, &pidfd, Duration::from_millis(500));
        assert!(timed_out);
        assert_eq!(out.len(), OUTPUT_LIMIT);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            sys::waitid_pidfd(&pidfd, false).unwrap(),
            WaitStatus::Signaled(libc::SIGKILL)
        );
    }
}

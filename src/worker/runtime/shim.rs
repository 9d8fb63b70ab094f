//! The per-container shim process (`herd __shim --bundle DIR --root DIR [--exe-fd N]`).
//!
//! One shim per container, single-threaded, started by the agent in its own session. It runs
//! from a sealed in-memory copy of the binary (CVE-2019-5736), writes the OCI bundle, creates
//! and starts the container with libcontainer (whose init becomes the shim's child; between the
//! two, a short-lived thread sets loopback up in the container's network namespace), reports
//! `{"ok":{"pid":…,"started_at":…}}` or `{"error":"…"}` as one line on stdout, then copies the
//! container's stdout/stderr into the CRI log until the init exits. It then records the exit in
//! `exit.json`, deletes the libcontainer container (state dir and cgroup) and exits 0.
//!
//! Files in the bundle dir (the protocol with [`super::linux::LinuxRuntime`]):
//! [`CONFIG_FILE`] (input), [`PID_FILE`], [`STATE_FILE`], [`EXIT_FILE`], [`LOG_FILE`].

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

use super::logs::{CriWriter, LineSplitter, Stream};
use super::sys::{self, WaitStatus};
use super::{bundle, cgroups, ContainerConfig, Exit, Started};

/// The `ContainerConfig` the agent hands to the shim (JSON).
pub const CONFIG_FILE: &str = "herd-config.json";
/// The shim's own pid, written first thing, so a restarted agent can find a live shim.
pub const PID_FILE: &str = "shim.pid";
/// [`ShimState`] once the container runs.
pub const STATE_FILE: &str = "state.json";
/// The [`Exit`] record: the source of truth for how the container ended.
pub const EXIT_FILE: &str = "exit.json";
/// The shim's own stderr (diagnostics only).
pub const LOG_FILE: &str = "shim.log";

/// How long output may keep flowing after the init exited (pipes held by a stray process).
const DRAIN: Duration = Duration::from_secs(2);

/// What the shim knows about a running container; persisted for re-adoption after an agent
/// restart.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShimState {
    pub shim_pid: i32,
    pub pid: i32,
    pub started_at: String,
}

/// The one line the shim writes on its stdout.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    Ok(Started),
    Error(String),
}

struct Opts {
    bundle: PathBuf,
    root: PathBuf,
    exe_fd: Option<i32>,
    sealed_retry: bool,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut bundle = None;
    let mut root = None;
    let mut exe_fd = None;
    let mut sealed_retry = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bundle" => bundle = it.next().map(PathBuf::from),
            "--root" => root = it.next().map(PathBuf::from),
            "--exe-fd" => exe_fd = it.next().and_then(|v| v.parse().ok()),
            "--sealed" => sealed_retry = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Opts {
        bundle: bundle.ok_or("missing --bundle")?,
        root: root.ok_or("missing --root")?,
        exe_fd,
        sealed_retry,
    })
}

/// Writes the report line and detaches stdout from the agent's pipe, so an agent that goes
/// away later cannot hurt the shim (no SIGPIPE, no blocked writes).
fn report(r: &Report) {
    if let Ok(line) = serde_json::to_string(r) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1 replaces the pipe; `null` is closed when dropped.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

/// Entry point, called from `main` before any thread or tokio runtime exists.
pub fn main(args: &[String]) -> i32 {
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            report(&Report::Error(format!("herd __shim: {e}")));
            return 2;
        }
    };
    let argv = || {
        let mut argv: Vec<String> = std::env::args().collect();
        argv.push("--sealed".into());
        argv
    };
    if let Err(e) = sys::ensure_sealed("__shim", opts.exe_fd, opts.sealed_retry, argv) {
        report(&Report::Error(e));
        return 1;
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HERD_SHIM_LOG")
                // The seccomp profile names system calls of every architecture it covers; the
                // host's libseccomp skipping the ones it does not know is expected.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,libcontainer::seccomp=error")
                }),
        )
        .try_init();

    let cfg: ContainerConfig = match std::fs::read(opts.bundle.join(CONFIG_FILE))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            report(&Report::Error(format!(
                "{}: {e}",
                opts.bundle.join(CONFIG_FILE).display()
            )));
            return 1;
        }
    };
    let _ = crate::util::fsutil::write_replace(
        &cfg.bundle_dir.join(PID_FILE),
        std::process::id().to_string().as_bytes(),
        0o644,
    );
    match create_and_start(&cfg, &opts.root) {
        Err(msg) => {
            eprintln!("container {}: {msg}", cfg.id);
            report(&Report::Error(msg));
            1
        }
        Ok(running) => {
            let started = Started {
                pid: running.pid,
                started_at: crate::util::time::now_rfc3339(),
            };
            let state = ShimState {
                shim_pid: std::process::id() as i32,
                pid: running.pid,
                started_at: started.started_at.clone(),
            };
            if let Ok(json) = serde_json::to_vec(&state) {
                // No fsync: after a power cut the container is gone anyway.
                if let Err(e) = crate::util::fsutil::write_replace(
                    &cfg.bundle_dir.join(STATE_FILE),
                    &json,
                    0o644,
                ) {
                    eprintln!("container {}: writing {STATE_FILE}: {e}", cfg.id);
                }
            }
            report(&Report::Ok(started));
            supervise(running, &cfg, &opts.root);
            0
        }
    }
}

struct Running {
    container: Container,
    pid: i32,
    pidfd: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

fn set_sigpipe(handler: libc::sighandler_t) {
    // SAFETY: installing SIG_DFL/SIG_IGN is async-signal-safe and the shim has one thread.
    unsafe { libc::signal(libc::SIGPIPE, handler) };
}

/// Removes whatever a failed or finished container left: libcontainer state dir and the
/// cgroup leaf in every hierarchy. Best effort, bounded.
fn cleanup(cfg: &ContainerConfig, root: &Path) {
    let state_dir = root.join(&cfg.id);
    if state_dir.exists() {
        if let Ok(mut c) = Container::load(state_dir.clone()) {
            if let Err(e) = c.delete(true) {
                eprintln!("container {}: delete: {e}", cfg.id);
            }
        }
    }
    if let Err(e) = cgroups::remove(&cfg.cgroup_path, Duration::from_secs(2)) {
        eprintln!("container {}: {e}", cfg.id);
    }
    if state_dir.exists() {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
}

fn create_and_start(cfg: &ContainerConfig, root: &Path) -> Result<Running, String> {
    bundle::write_bundle(cfg).map_err(|e| e.to_string())?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let devnull = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let builder = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_root_path(root)
        .map_err(|e| format!("state root {}: {e}", root.display()))?
        .with_stdin(devnull)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .as_init(&cfg.bundle_dir)
        .with_systemd(false)
        .with_detach(true);
    // Rust ignores SIGPIPE and an ignored signal stays ignored across execve: restore the
    // default for the container's processes only while libcontainer forks them.
    set_sigpipe(libc::SIG_DFL);
    // libcontainer writes the container's oom_score_adj into the *caller's* /proc/self too:
    // keep the shim's own score (it must outlive its container to record the exit).
    let own_oom = std::fs::read_to_string("/proc/self/oom_score_adj").ok();
    let built = builder.build();
    if let Some(v) = own_oom {
        let _ = std::fs::write("/proc/self/oom_score_adj", v.trim());
    }
    set_sigpipe(libc::SIG_IGN);
    let mut container = match built {
        Ok(c) => c,
        Err(e) => {
            cleanup(cfg, root);
            return Err(format!("create: {e}{}", init_errors(&err_r)));
        }
    };
    let Some(pid) = container.pid().map(|p| p.as_raw()) else {
        cleanup(cfg, root);
        return Err("create: libcontainer reported no init pid".into());
    };
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            cleanup(cfg, root);
            return Err(format!("pidfd_open {pid}: {e}"));
        }
    };
    // The init waits for `start`, so nothing in the container runs before loopback is up.
    // Not fatal: a container that never uses 127.0.0.1 runs fine without it.
    if let Err(e) = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .and_then(|ns| sys::run_in_netns(&OwnedFd::from(ns), sys::loopback_up))
        .and_then(|r| r)
    {
        eprintln!("container {}: bringing loopback up: {e}", cfg.id);
    }
    if let Err(e) = container.start() {
        let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
        let _ = sys::waitid_pidfd(&pidfd, true);
        cleanup(cfg, root);
        let _ = sys::waitid_pidfd(&pidfd, false);
        return Err(format!("start: {e}"));
    }
    Ok(Running {
        container,
        pid,
        pidfd,
        stdout: out_r,
        stderr: err_r,
    })
}

/// The errors a failed container init logged: it logs to the container's stderr, which
/// nobody reads when creation fails, and its own error ("failed syscall") says too little.
fn init_errors(stderr: &OwnedFd) -> String {
    set_nonblocking(stderr);
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: reading into a buffer of the given length; the init has exited, so what it wrote
    // is all there is and a non-blocking read returns at once.
    let n = unsafe {
        libc::read(
            stderr.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::c_void>(),
            buf.len(),
        )
    };
    error_lines(&String::from_utf8_lossy(&buf[..n.max(0) as usize]))
}

/// ` (error; error)` from the ERROR lines of a tracing log, without their timestamps; empty
/// when there are none.
fn error_lines(log: &str) -> String {
    let errors: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(" ERROR ").map(|(_, rest)| rest.trim()))
        .collect();
    if errors.is_empty() {
        String::new()
    } else {
        format!(" ({})", errors.join("; "))
    }
}

struct Source {
    fd: OwnedFd,
    stream: Stream,
    split: LineSplitter,
}

fn set_nonblocking(fd: &OwnedFd) {
    // SAFETY: fcntl flag manipulation on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn write_records(log: &mut Option<CriWriter>, stream: Stream, recs: Vec<(bool, Vec<u8>)>) {
    let Some(w) = log else { return };
    for (partial, text) in recs {
        if let Err(e) = w.write(stream, partial, &text) {
            // A full disk must not kill the container: keep draining, drop the output.
            eprintln!("{e}");
        }
    }
}

/// Reads what is available; returns false at end of stream.
fn pump(src: &mut Source, log: &mut Option<CriWriter>) -> bool {
    let mut buf = [0u8; 64 * 1024];
    loop {
        // SAFETY: reading into a stack buffer of the given length.
        let n = unsafe {
            libc::read(
                src.fd.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
            )
        };
        if n > 0 {
            let recs = src.split.feed(&buf[..n as usize]);
            write_records(log, src.stream, recs);
            continue;
        }
        if n == 0 {
            let rest = src
                .split
                .finish()
                .map(|t| vec![(false, t)])
                .unwrap_or_default();
            write_records(log, src.stream, rest);
            return false;
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return true,
            _ => {
                eprintln!("read {:?}: {err}", src.stream);
                return false;
            }
        }
    }
}

/// Copies output until the init exits, then records the exit and cleans up.
fn supervise(run: Running, cfg: &ContainerConfig, root: &Path) {
    let Running {
        mut container,
        pid: _,
        pidfd,
        stdout,
        stderr,
    } = run;
    let mut log = match CriWriter::open(&cfg.log_path, cfg.log_max_bytes) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("container {}: {e}", cfg.id);
            None
        }
    };
    let mut sources: Vec<Source> = [(stdout, Stream::Stdout), (stderr, Stream::Stderr)]
        .into_iter()
        .map(|(fd, stream)| {
            set_nonblocking(&fd);
            Source {
                fd,
                stream,
                split: LineSplitter::default(),
            }
        })
        .collect();
    let mut drain_until: Option<Instant> = None;
    loop {
        let mut fds: Vec<libc::pollfd> = sources
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if drain_until.is_none() {
            fds.push(libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout_ms = match drain_until {
            None => -1,
            Some(t) => t.saturating_duration_since(Instant::now()).as_millis() as i32,
        };
        // SAFETY: fds is a valid array of fds.len() pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            eprintln!("container {}: poll: {err}", cfg.id);
            break;
        }
        if drain_until.is_none() && fds.last().is_some_and(|p| p.revents != 0) {
            drain_until = Some(Instant::now() + DRAIN);
        }
        let mut i = 0;
        let mut k = 0;
        while i < sources.len() {
            let ready = fds[k].revents != 0;
            k += 1;
            if ready && !pump(&mut sources[i], &mut log) {
                sources.remove(i);
            } else {
                i += 1;
            }
        }
        if let Some(t) = drain_until {
            if sources.is_empty() || Instant::now() >= t {
                break;
            }
        }
    }
    for src in &mut sources {
        pump(src, &mut log);
        let rest = src
            .split
            .finish()
            .map(|t| vec![(false, t)])
            .unwrap_or_default();
        write_records(&mut log, src.stream, rest);
    }
    drop(sources);

    // Read the status but leave the zombie: its pid cannot be recycled while we delete.
    let status = sys::waitid_pidfd(&pidfd, true);
    let oom_killed = cgroups::oom_kill_count(&cfg.cgroup_path).is_some_and(|n| n > 0);
    let (exit_code, signal) = match status {
        Ok(WaitStatus::Exited(c)) => (c, None),
        Ok(WaitStatus::Signaled(s)) => (128 + s, Some(s)),
        Err(e) => {
            eprintln!("container {}: waitid: {e}", cfg.id);
            (255, None)
        }
    };
    let exit = Exit {
        exit_code,
        signal,
        oom_killed,
        finished_at: crate::util::time::now_rfc3339(),
    };
    match serde_json::to_vec(&exit) {
        Ok(json) => {
            if let Err(e) =
                crate::util::fsutil::write_atomic(&cfg.bundle_dir.join(EXIT_FILE), &json, 0o644)
            {
                eprintln!("container {}: writing {EXIT_FILE}: {e}", cfg.id);
            }
        }
        Err(e) => eprintln!("container {}: {e}", cfg.id),
    }
    if let Err(e) = container.delete(true) {
        eprintln!("container {}: delete: {e}", cfg.id);
    }
    let _ = sys::waitid_pidfd(&pidfd, false);
    cleanup(cfg, root);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_tagged_json() {
        let ok = Report::Ok(Started {
            pid: 42,
            started_at: "2026-01-01T00:00:00Z".into(),
        });
        let line = serde_json::to_string(&ok).unwrap();
        assert_eq!(
            line,
            r#"{"ok":{"pid":42,"started_at":"2026-01-01T00:00:00Z"}}"#
        );
        let err: Report = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(err, Report::Error("boom".into()));
    }

    #[test]
    fn a_failed_init_explains_itself_with_its_error_lines() {
        let log = "2026-01-01T00:00:00Z DEBUG x: fine\n\
            2026-01-01T00:00:00Z ERROR libcontainer::process::init::process: failed to drop capabilities err=EPERM\n\
            2026-01-01T00:00:00Z ERROR libcontainer::process::container_intermediate_process: failed syscall\n";
        assert_eq!(
            error_lines(log),
            " (libcontainer::process::init::process: failed to drop capabilities err=EPERM; \
             libcontainer::process::container_intermediate_process: failed syscall)"
        );
        assert_eq!(error_lines("no errors here\n"), "");
    }

    #[test]
    fn args_need_bundle_and_root() {
        let a = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(a(&["--bundle", "/b"]).is_err());
        let o = a(&["--bundle", "/b", "--root", "/r", "--exe-fd", "7"]).unwrap();
        assert_eq!(
            (o.bundle, o.root, o.exe_fd),
            ("/b".into(), "/r".into(), Some(7))
        );
        assert!(a(&["--bogus"]).is_err());
    }
}

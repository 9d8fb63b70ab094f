//! `LinuxRuntime`: the real [`Runtime`], driving one shim process per container.
//!
//! The agent never calls libcontainer (which forks) from its multi-threaded tokio process; it
//! only spawns `herd __shim`, reads one status line with a timeout, and afterwards works from
//! the files the shim leaves in the bundle dir, so a restarted agent can pick up where the old
//! one left off. Exits are observed through pidfds, which cannot miss an exit.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::AsyncBufReadExt;

use super::shim::{self, Report, ShimState};
use super::{cgroups, sys, ContainerConfig, Exit, Runtime, RuntimeError, Started};

/// How long a shim may take to create and start a container (a Pi SD card can be slow).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `remove` waits for a SIGKILLed container's shim to finish its cleanup.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Directory under the state root mapping container ids to bundle dirs (symlinks), so
/// `wait`/`kill`/`remove` work by id after an agent restart. The leading dot keeps it apart
/// from container ids, which are `[a-z0-9-]`.
const INDEX_DIR: &str = ".herd-bundles";

/// What became of an indexed container while no agent watched it (see [`LinuxRuntime::observe`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Its shim is alive and the container has started and not exited.
    Running(ShimState),
    /// The shim recorded the exit (`state` is `None` if it never recorded a start).
    Exited {
        state: Option<ShimState>,
        exit: Exit,
    },
    /// No live shim and no exit record: it never started, or its shim was killed (a reboot).
    Gone,
}

/// Containers via per-container shims. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct LinuxRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    state_root: PathBuf,
    herd_exe: PathBuf,
    /// Sealed copy of `herd_exe`, made once and shared by every shim (one copy in memory, not
    /// one per container). `None` until first use or if sealing is impossible, in which case
    /// each shim seals itself.
    sealed_exe: Mutex<Option<Arc<OwnedFd>>>,
    bundles: Mutex<HashMap<String, PathBuf>>,
}

fn err(id: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Failed {
        id: id.to_owned(),
        message: message.into(),
    }
}

fn io_err<'a>(id: &'a str, op: &'static str) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Io {
        id: id.to_owned(),
        op,
        source,
    }
}

/// Container ids become path components and cgroup names: keep them boring.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Mount points at or below `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect()
}

impl LinuxRuntime {
    /// `state_root`: libcontainer's state dir (under herd's data dir; keep the path short, the
    /// notify socket inside must fit a 108-byte unix socket path). `herd_exe`: the herd binary
    /// to run shims from.
    pub fn new(state_root: PathBuf, herd_exe: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                state_root,
                herd_exe,
                sealed_exe: Mutex::new(None),
                bundles: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn state_root(&self) -> &Path {
        &self.inner.state_root
    }

    /// The bundle dir of `id`: from memory, else from the on-disk index.
    pub fn bundle_dir(&self, id: &str) -> Option<PathBuf> {
        if let Ok(map) = self.inner.bundles.lock() {
            if let Some(p) = map.get(id) {
                return Some(p.clone());
            }
        }
        std::fs::read_link(self.inner.state_root.join(INDEX_DIR).join(id)).ok()
    }

    /// What the shim recorded once the container ran.
    pub fn shim_state(&self, id: &str) -> Option<ShimState> {
        read_json(&self.bundle_dir(id)?.join(shim::STATE_FILE))
    }

    /// The exit record, if the container has exited.
    pub fn exit_record(&self, id: &str) -> Option<Exit> {
        read_json(&self.bundle_dir(id)?.join(shim::EXIT_FILE))
    }

    /// Every container id in the on-disk index with its bundle dir: all a previous agent may
    /// have left running, for re-adoption.
    pub fn indexed(&self) -> Vec<(String, PathBuf)> {
        let index = self.inner.state_root.join(INDEX_DIR);
        let Ok(rd) = std::fs::read_dir(&index) else {
            return Vec::new();
        };
        let mut out: Vec<(String, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let id = e.file_name().to_str()?.to_string();
                let bundle = std::fs::read_link(e.path()).ok()?;
                valid_id(&id).then_some((id, bundle))
            })
            .collect();
        out.sort();
        out
    }

    /// Whether `id` still runs, exited (with its recorded exit), or is gone. The exit record is
    /// checked first: a shim that wrote it may still be cleaning up.
    pub fn observe(&self, id: &str) -> Observed {
        let Some(bundle) = self.bundle_dir(id) else {
            return Observed::Gone;
        };
        let state: Option<ShimState> = read_json(&bundle.join(shim::STATE_FILE));
        if let Some(exit) = read_json::<Exit>(&bundle.join(shim::EXIT_FILE)) {
            return Observed::Exited { state, exit };
        }
        match (state, Self::shim_pidfd(&bundle)) {
            (Some(st), Some(_)) => Observed::Running(st),
            // The shim may have written the record and exited between the two looks.
            (state, _) => match read_json::<Exit>(&bundle.join(shim::EXIT_FILE)) {
                Some(exit) => Observed::Exited { state, exit },
                None => Observed::Gone,
            },
        }
    }

    async fn sealed_exe(&self) -> Option<Arc<OwnedFd>> {
        if let Ok(guard) = self.inner.sealed_exe.lock() {
            if let Some(fd) = guard.as_ref() {
                return Some(fd.clone());
            }
        }
        let exe = self.inner.herd_exe.clone();
        let made = tokio::task::spawn_blocking(move || sys::sealed_copy(&exe))
            .await
            .ok()?;
        match made {
            Ok(fd) => {
                let fd = Arc::new(fd);
                if let Ok(mut guard) = self.inner.sealed_exe.lock() {
                    // Another start may have raced us; either copy is fine, keep the first.
                    return Some(guard.get_or_insert(fd).clone());
                }
                Some(fd)
            }
            Err(e) => {
                tracing::warn!(exe = %self.inner.herd_exe.display(), "cannot seal herd binary, shims will seal themselves: {e}");
                None
            }
        }
    }

    /// `herd <subcommand> [--exe-fd N]` for a helper process (`__shim`, `__exec`) that calls
    /// libcontainer, run from the sealed binary when there is one. The helper gets its own
    /// session: a Ctrl-C or hangup aimed at the agent never reaches it, and the agent's death
    /// leaves a shim's container running. Keep the returned fd alive until the child spawned.
    pub(super) async fn helper_command(
        &self,
        subcommand: &str,
    ) -> (tokio::process::Command, Option<Arc<OwnedFd>>) {
        let sealed = self.sealed_exe().await;
        let mut cmd = match &sealed {
            Some(fd) => tokio::process::Command::new(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => tokio::process::Command::new(&self.inner.herd_exe),
        };
        cmd.arg0("herd").arg(subcommand).current_dir("/");
        let sealed_raw = sealed.as_ref().map(|fd| fd.as_raw_fd());
        if let Some(raw) = sealed_raw {
            cmd.arg("--exe-fd").arg(raw.to_string());
        }
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe calls (setsid, fcntl).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(raw) = sealed_raw {
                    // Let exactly this child inherit the sealed binary so it can exec it.
                    if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        (cmd, sealed)
    }

    fn remember(&self, id: &str, bundle: &Path) -> Result<(), RuntimeError> {
        if let Ok(mut map) = self.inner.bundles.lock() {
            map.insert(id.to_owned(), bundle.to_path_buf());
        }
        let index = self.inner.state_root.join(INDEX_DIR);
        std::fs::create_dir_all(&index).map_err(io_err(id, "creating bundle index"))?;
        let link = index.join(id);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(bundle, &link).map_err(io_err(id, "indexing bundle"))
    }

    fn forget(&self, id: &str) {
        if let Ok(mut map) = self.inner.bundles.lock() {
            map.remove(id);
        }
        let _ = std::fs::remove_file(self.inner.state_root.join(INDEX_DIR).join(id));
    }

    /// A pidfd for the live shim of the container in `bundle`, or `None` if it is gone. The
    /// pid file could name a recycled pid, so the process must prove it is our shim: its
    /// command line names this bundle dir (a zombie has none: it has exited, which is "gone").
    fn shim_pidfd(bundle: &Path) -> Option<OwnedFd> {
        let pid: i32 = std::fs::read_to_string(bundle.join(shim::PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let fd = sys::pidfd_open(pid).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let want = bundle.as_os_str().as_encoded_bytes();
        let ours = cmdline.split(|&b| b == 0).any(|arg| arg == want)
            && cmdline.split(|&b| b == 0).any(|arg| arg == b"__shim");
        ours.then_some(fd)
    }

    /// A pidfd for the container's init, verified to still be the shim's child.
    fn init_pidfd(bundle: &Path) -> Option<OwnedFd> {
        let st: ShimState = read_json(&bundle.join(shim::STATE_FILE))?;
        let fd = sys::pidfd_open(st.pid).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", st.pid)).ok()?;
        let ppid: i32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        (ppid == st.shim_pid).then_some(fd)
    }

    /// Resolves when the process behind `pidfd` has exited.
    async fn exited(id: &str, pidfd: OwnedFd) -> Result<(), RuntimeError> {
        // SAFETY: the OwnedFd moves into the AsyncFd, which owns it until dropped; nothing else
        // closes or replaces that fd number meanwhile.
        let afd = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .map_err(|e| io_err(id, "watching shim pidfd")(e.into()))?;
        let _guard = afd
            .readable()
            .await
            .map_err(io_err(id, "waiting on shim pidfd"))?;
        Ok(())
    }

    /// Best-effort teardown of everything libcontainer may have left for `id`, for when the
    /// shim could not do it (killed, crashed, timed out).
    fn force_cleanup(&self, id: &str, cgroup_path: Option<&str>) -> Result<(), RuntimeError> {
        if let Some(path) = cgroup_path {
            cgroups::remove(path, Duration::from_secs(5)).map_err(|e| err(id, e.to_string()))?;
        }
        let state = self.inner.state_root.join(id);
        match std::fs::remove_dir_all(&state) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(id, "removing libcontainer state")(e)),
        }
    }
}

impl Runtime for LinuxRuntime {
    async fn start(&self, cfg: &ContainerConfig) -> Result<Started, RuntimeError> {
        let id = cfg.id.as_str();
        if !valid_id(id) {
            return Err(err(id, "id must be 1-64 characters of [a-z0-9-]"));
        }
        let bundle = cfg.bundle_dir.clone();
        std::fs::create_dir_all(&bundle).map_err(io_err(id, "creating bundle dir"))?;
        std::fs::create_dir_all(&self.inner.state_root)
            .map_err(io_err(id, "creating state root"))?;
        for stale in [shim::EXIT_FILE, shim::STATE_FILE, shim::PID_FILE] {
            let _ = std::fs::remove_file(bundle.join(stale));
        }
        let json = serde_json::to_vec_pretty(cfg).map_err(|e| err(id, e.to_string()))?;
        crate::util::fsutil::write_replace(&bundle.join(shim::CONFIG_FILE), &json, 0o600)
            .map_err(io_err(id, "writing shim config"))?;
        self.remember(id, &bundle)?;
        let shim_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(bundle.join(shim::LOG_FILE))
            .map_err(io_err(id, "opening shim log"))?;

        let (mut cmd, _sealed) = self.helper_command("__shim").await;
        cmd.arg("--bundle")
            .arg(&bundle)
            .arg("--root")
            .arg(&self.inner.state_root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(shim_log)
            .kill_on_drop(false);
        let mut child = cmd.spawn().map_err(io_err(id, "spawning shim"))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.start_kill();
            return Err(err(id, "shim has no status pipe"));
        };
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        let read = tokio::time::timeout(START_TIMEOUT, reader.read_line(&mut line)).await;
        drop(reader);
        let outcome = match read {
            Ok(Ok(n)) if n > 0 => match serde_json::from_str::<Report>(line.trim()) {
                Ok(Report::Ok(started)) => Ok(started),
                Ok(Report::Error(message)) => Err(err(id, message)),
                Err(e) => Err(err(id, format!("bad shim report {line:?}: {e}"))),
            },
            Ok(Ok(_)) => Err(err(id, "shim exited without reporting")),
            Ok(Err(e)) => Err(io_err(id, "reading shim report")(e)),
            Err(_) => Err(err(
                id,
                format!("shim did not report within {}s", START_TIMEOUT.as_secs()),
            )),
        };
        if outcome.is_err() {
            // The shim cleans up after itself on a reported error; after a timeout or crash
            // we do it. Either way it must be gone before we return.
            let _ = child.start_kill();
            let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
            let _ = self.force_cleanup(id, Some(&cfg.cgroup_path));
        } else {
            // Reap the shim whenever it exits; `wait` watches it through a pidfd.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        outcome
    }

    async fn wait(&self, id: &str) -> Result<Exit, RuntimeError> {
        let bundle = self
            .bundle_dir(id)
            .ok_or_else(|| RuntimeError::NotFound { id: id.to_owned() })?;
        if let Some(pidfd) = Self::shim_pidfd(&bundle) {
            Self::exited(id, pidfd).await?;
        }
        read_json(&bundle.join(shim::EXIT_FILE))
            .ok_or_else(|| err(id, "shim is gone and left no exit record"))
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let bundle = self
            .bundle_dir(id)
            .ok_or_else(|| RuntimeError::NotFound { id: id.to_owned() })?;
        let Some(pidfd) = Self::init_pidfd(&bundle) else {
            // Already exited (or never ran): nothing to signal.
            return Ok(());
        };
        match sys::pidfd_send_signal(&pidfd, signal) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(io_err(id, "signalling container")(e)),
        }
    }

    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<super::ExecOutput, RuntimeError> {
        if !valid_id(id) {
            return Err(err(id, "id must be 1-64 characters of [a-z0-9-]"));
        }
        super::exec::run(self, id, argv, timeout).await
    }

    fn net_namespace(&self, id: &str) -> Result<OwnedFd, RuntimeError> {
        let bundle = self
            .bundle_dir(id)
            .ok_or_else(|| RuntimeError::NotFound { id: id.to_owned() })?;
        let not_running = || err(id, "not running");
        let pidfd = Self::init_pidfd(&bundle).ok_or_else(not_running)?;
        let st: ShimState = read_json(&bundle.join(shim::STATE_FILE)).ok_or_else(not_running)?;
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", st.pid))
            .map_err(io_err(id, "opening network namespace"))?;
        // The pid could have been recycled between the pidfd check and the open; the init
        // still being alive after the open proves the namespace is the container's.
        if sys::pidfd_exited(&pidfd) {
            return Err(not_running());
        }
        Ok(OwnedFd::from(ns))
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let bundle = self.bundle_dir(id);
        let cgroup_path = bundle
            .as_ref()
            .and_then(|b| read_json::<ContainerConfig>(&b.join(shim::CONFIG_FILE)))
            .map(|c| c.cgroup_path);
        if let Some(b) = &bundle {
            if let Some(pidfd) = Self::shim_pidfd(b) {
                self.kill(id, libc::SIGKILL)?;
                let shim_fd = pidfd.try_clone().ok();
                let waited = tokio::time::timeout(STOP_TIMEOUT, Self::exited(id, pidfd)).await;
                if !matches!(waited, Ok(Ok(()))) {
                    tracing::warn!(
                        container = id,
                        "shim did not exit after SIGKILL of its container; killing it"
                    );
                    if let Some(fd) = &shim_fd {
                        let _ = sys::pidfd_send_signal(fd, libc::SIGKILL);
                    }
                }
            }
        }
        self.force_cleanup(id, cgroup_path.as_deref())?;
        if let Some(b) = &bundle {
            let mounts = mounts_under(b);
            if !mounts.is_empty() {
                return Err(err(
                    id,
                    format!(
                        "bundle dir {} still has mounts ({}); unmount the rootfs first",
                        b.display(),
                        mounts[0].display()
                    ),
                ));
            }
            match std::fs::remove_dir_all(b) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(id, "removing bundle dir")(e)),
            }
        }
        self.forget(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_alnum_and_dashes() {
        assert!(valid_id("abc-web-0"));
        assert!(!valid_id(""));
        assert!(!valid_id("../x"));
        assert!(!valid_id("Web"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}

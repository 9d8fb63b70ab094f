//! One container's life on the worker: resolve image, mount rootfs, start, probe, wait, stop,
//! restart per policy. Decisions come from the pure `restart` and `probes::machine` modules;
//! this is the I/O shell.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::adopt::{Resume, ResumeState};
use super::containers;
use super::probes::{self, ContainerChecker, Event};
use super::restart::{AfterExit, Backoff};
use crate::api::pod::{ContainerState, StateRunning, StateTerminated, StateWaiting};
use crate::api::probe::ProbeKind;
use crate::api::{Container, ContainerStatus, Pod};
use crate::util::time::now_rfc3339;
use crate::worker::images::{Image, ImageStore};
use crate::worker::runtime::{ContainerConfig, Exit, PodSandbox, Runtime, Started};

/// File in an attempt's dir naming the pod generation it was started for, so a new agent
/// never adopts a container of a spec that has since changed.
pub const GENERATION_FILE: &str = "generation";

/// What the pod loop needs to run containers.
pub struct Env<R: Runtime> {
    pub runtime: Arc<R>,
    pub images: Arc<ImageStore>,
    /// `<worker data>/containers`
    pub containers_dir: PathBuf,
    /// `<worker data>/logs`
    pub logs_dir: PathBuf,
    pub backoff_base: Duration,
    pub log_max_bytes: u64,
    /// Where pod volumes live on this node.
    pub volumes: crate::worker::volumes::Layout,
    /// Pod sandboxes and networking.
    pub net: Arc<crate::worker::net::Network>,
    /// Where images come from when a pod needs one the node lacks.
    pub pull: Arc<crate::worker::pulling::PullSource>,
}

/// A pod's volumes as its volume task last prepared them; `None` before the first pass.
pub type VolumeState = watch::Receiver<Option<Arc<crate::worker::volumes::Prepared>>>;

/// A container task's report to its pod loop.
#[derive(Debug, Clone)]
pub struct Update {
    pub index: usize,
    pub status: ContainerStatus,
    /// False once the container is terminated for good under the pod's restart policy.
    pub will_restart: bool,
}

/// Log file of one attempt; the pod's `logs` RPC reads the highest (or the one before).
pub fn log_path(logs_dir: &std::path::Path, uid: &str, container: &str, attempt: u32) -> PathBuf {
    logs_dir
        .join(uid)
        .join(container)
        .join(format!("{attempt}.log"))
}

pub(super) fn waiting(reason: &str, message: String) -> ContainerState {
    ContainerState {
        waiting: Some(StateWaiting {
            reason: reason.into(),
            message,
        }),
        ..Default::default()
    }
}

pub(super) fn terminated(exit: &Exit, started_at: &str) -> StateTerminated {
    let reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    StateTerminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: reason.into(),
        message: String::new(),
        started_at: (!started_at.is_empty()).then(|| started_at.to_string()),
        finished_at: Some(exit.finished_at.clone()),
    }
}

/// libcontainer ids: short, unique per attempt, `[a-z0-9-]`.
pub(super) fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{short}-{name}-{attempt}")
}

/// Sends one status update to the pod loop.
pub(super) async fn send(
    updates: &mpsc::Sender<Update>,
    index: usize,
    status: &ContainerStatus,
    will_restart: bool,
) {
    let _ = updates
        .send(Update {
            index,
            status: status.clone(),
            will_restart,
        })
        .await;
}

/// An attempt a previous agent left, picked up instead of starting a new one.
enum Carried {
    Running {
        started_at: String,
    },
    Exited {
        started_at: Option<String>,
        exit: Exit,
        /// No exit record: restart at once (a reboot must not add a crash-loop delay).
        vanished: bool,
    },
}

/// Runs one container until `stop` carries a grace period; then terminates it within it.
/// With `resume`, continues where a previous agent left the container (see `adopt`): the
/// same attempt, container id, log file and restart count.
// Each argument is one independent input of the container task (the pod's shared volumes and
// sandbox among them); a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn run<R: Runtime>(
    env: Arc<Env<R>>,
    pod: Pod,
    index: usize,
    updates: mpsc::Sender<Update>,
    mut stop: watch::Receiver<Option<i64>>,
    resume: Option<Resume>,
    mut volumes: VolumeState,
    sandbox: Arc<PodSandbox>,
) {
    let spec: Container = pod.spec.containers[index].clone();
    let uid = pod.metadata.uid.clone();
    let policy = pod.spec.restart_policy;
    let mut status = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone(),
        state: waiting("ContainerCreating", String::new()),
        ..Default::default()
    };
    let mut backoff = Backoff::new(env.backoff_base);
    let mut pulled_before = false;
    let mut pull_failures: u32 = 0;
    let mut attempt: u32 = 0;
    let mut carried: Option<Carried> = None;
    if let Some(r) = resume {
        attempt = r.attempt;
        // Every attempt after the first followed exactly one restart decision.
        let restarts = r.attempt.saturating_sub(1);
        match r.state {
            ResumeState::Running { started_at } => {
                backoff = Backoff::resumed(env.backoff_base, restarts);
                carried = Some(Carried::Running { started_at });
            }
            ResumeState::Exited { started_at, exit } => {
                backoff = Backoff::resumed(env.backoff_base, restarts);
                carried = Some(Carried::Exited {
                    started_at,
                    exit,
                    vanished: false,
                });
            }
            ResumeState::Vanished { started_at } => {
                backoff = Backoff::resumed(env.backoff_base, restarts);
                let exit = Exit {
                    exit_code: 255,
                    signal: None,
                    oom_killed: false,
                    finished_at: now_rfc3339(),
                };
                carried = Some(Carried::Exited {
                    started_at,
                    exit,
                    vanished: true,
                });
            }
            ResumeState::Fresh => {}
        }
    }
    send(&updates, index, &status, true).await;
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let (id, dir, started, exited) = match carried.take() {
            Some(Carried::Running { started_at }) => {
                let (id, dir) = attempt_paths(&env, &uid, &spec.name, attempt);
                status.image_id = resolve(&env, &spec.image)
                    .await
                    .map(|i| i.id)
                    .unwrap_or_default();
                tracing::info!(container = %spec.name, %id, "re-adopted running container");
                (id, dir, started_at, None)
            }
            Some(Carried::Exited {
                started_at,
                exit,
                vanished,
            }) => {
                let (id, dir) = attempt_paths(&env, &uid, &spec.name, attempt);
                tracing::info!(container = %spec.name, %id, exit_code = exit.exit_code, vanished, "container exited while no agent watched");
                (
                    id,
                    dir,
                    started_at.unwrap_or_default(),
                    Some((exit, vanished)),
                )
            }
            None => {
                let mounts = match mounts_for(&spec, &mut volumes, &mut stop).await {
                    None => return,
                    Some(Ok(m)) => m,
                    Some(Err(message)) => {
                        // Volumes before the image, as the kubelet mounts before it pulls. The
                        // kubelet's reason for a missing ConfigMap/Secret: the container waits
                        // and starts once the volume can be prepared.
                        let state = waiting("CreateContainerConfigError", message.clone());
                        // Retried every few seconds: log and report only a change.
                        if status.state != state {
                            tracing::info!(container = %spec.name, %message, "volumes not ready");
                            status.state = state;
                            send(&updates, index, &status, true).await;
                        }
                        let _ = volumes.borrow_and_update();
                        tokio::select! {
                            _ = volumes.changed() => {}
                            stopped = wait_or_stop(&mut stop, Duration::from_secs(5)) => if stopped { return },
                        }
                        continue;
                    }
                };
                let image = match super::image::ensure(
                    &env,
                    &spec,
                    &mut pulled_before,
                    &mut status,
                    &updates,
                    index,
                )
                .await
                {
                    Ok(img) => {
                        pull_failures = 0;
                        img
                    }
                    Err(na) => {
                        tracing::warn!(container = %spec.name, reason = na.reason, message = %na.message, "image not available");
                        status.state = waiting(na.reason, na.message.clone());
                        send(&updates, index, &status, true).await;
                        let delay = super::image::pull_backoff(pull_failures);
                        pull_failures += 1;
                        if na.reason == "ErrImagePull" {
                            // The kubelet's second word for a pull that keeps failing.
                            status.state = waiting(
                                "ImagePullBackOff",
                                format!("Back-off pulling image {:?}: {}", spec.image, na.message),
                            );
                            if wait_or_stop(&mut stop, Duration::from_secs(1).min(delay)).await {
                                return;
                            }
                            send(&updates, index, &status, true).await;
                        }
                        if wait_or_stop(&mut stop, delay).await {
                            return;
                        }
                        continue;
                    }
                };
                attempt += 1;
                let (id, dir) = attempt_paths(&env, &uid, &spec.name, attempt);
                let outcome = start_one(
                    &env, &pod, &spec, &image, &id, &dir, attempt, mounts, &sandbox,
                )
                .await;
                match outcome {
                    Ok(s) => {
                        status.image_id = image.id.clone();
                        (id, dir, s.started_at, None)
                    }
                    Err(failure) => {
                        let (reason, message) = failure.reason_and_message();
                        tracing::warn!(container = %spec.name, %message, reason, "container did not start");
                        cleanup(&env, &id, &dir).await;
                        status.state = waiting(reason, message);
                        send(&updates, index, &status, true).await;
                        let delay = match backoff.on_exit(
                            crate::api::RestartPolicy::Always,
                            1,
                            Duration::ZERO,
                        ) {
                            AfterExit::RestartIn(d) => d,
                            AfterExit::Stay => env.backoff_base,
                        };
                        if wait_or_stop(&mut stop, delay).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let run_start = Instant::now();
        status.container_id = format!("herd://{id}");
        status.restart_count = backoff.restart_count;
        let (exit, probe_kill, vanished) = match exited {
            Some((exit, vanished)) => (Ok(exit), None, vanished),
            None => {
                let (exit, probe_kill) = supervise(
                    &env,
                    &pod,
                    &spec,
                    index,
                    &id,
                    &started,
                    &mut status,
                    &updates,
                    &mut stop,
                )
                .await;
                (exit, probe_kill, false)
            }
        };
        cleanup(&env, &id, &dir).await;
        let exit = exit.unwrap_or_else(|e| {
            tracing::warn!(container = %spec.name, error = %e, "lost track of container exit");
            Exit {
                exit_code: 255,
                signal: None,
                oom_killed: false,
                finished_at: now_rfc3339(),
            }
        });
        let mut term = terminated(&exit, &started);
        // The kubelet restarts a container its probe killed under `OnFailure` even if it
        // exited 0 on SIGTERM: the kill, not the exit code, is the failure.
        let policy_code = match &probe_kill {
            Some(_) if exit.exit_code == 0 => 1,
            _ => exit.exit_code,
        };
        if let Some(message) = probe_kill {
            term.message = message;
        }
        if vanished {
            term.message = "container vanished while no agent was running (reboot?)".into();
        }
        status.ready = false;
        status.started = Some(false);
        if stop.borrow().is_some() {
            status.state = ContainerState {
                terminated: Some(term),
                ..Default::default()
            };
            send(&updates, index, &status, false).await;
            return;
        }
        match backoff.on_exit(policy, policy_code, run_start.elapsed()) {
            AfterExit::RestartIn(delay) => {
                let delay = if vanished { Duration::ZERO } else { delay };
                status.last_state = ContainerState {
                    terminated: Some(term),
                    ..Default::default()
                };
                status.restart_count = backoff.restart_count;
                status.state = waiting(
                    "CrashLoopBackOff",
                    format!(
                        "back-off {}s restarting failed container={} pod={}",
                        delay.as_secs(),
                        spec.name,
                        pod.metadata.name
                    ),
                );
                send(&updates, index, &status, true).await;
                if wait_or_stop(&mut stop, delay).await {
                    return;
                }
            }
            AfterExit::Stay => {
                status.state = ContainerState {
                    terminated: Some(term),
                    ..Default::default()
                };
                send(&updates, index, &status, false).await;
                let _ = stop.wait_for(|s| s.is_some()).await;
                return;
            }
        }
    }
}

/// The container's bind mounts once its pod's volumes were prepared, or why they are not
/// ready; `None` when stopped while waiting for the first preparation.
pub(super) async fn mounts_for(
    spec: &Container,
    volumes: &mut VolumeState,
    stop: &mut watch::Receiver<Option<i64>>,
) -> Option<Result<Vec<crate::worker::runtime::BindMount>, String>> {
    let prepared = loop {
        if let Some(p) = volumes.borrow_and_update().clone() {
            break p;
        }
        tokio::select! {
            r = volumes.changed() => if r.is_err() { return None },
            _ = stop.wait_for(|s| s.is_some()) => return None,
        }
    };
    if spec.volume_mounts.is_empty() {
        return Some(Ok(Vec::new()));
    }
    let c = spec.clone();
    Some(
        tokio::task::spawn_blocking(move || crate::worker::volumes::resolve_mounts(&c, &prepared))
            .await
            .unwrap_or_else(|e| Err(format!("resolving mounts: {e}"))),
    )
}

/// Container id and dir of one attempt.
pub(super) fn attempt_paths<R: Runtime>(
    env: &Env<R>,
    uid: &str,
    name: &str,
    attempt: u32,
) -> (String, PathBuf) {
    let id = container_id(uid, name, attempt);
    let dir = env
        .containers_dir
        .join(uid)
        .join(format!("{name}-{attempt}"));
    (id, dir)
}

/// One running attempt: reports it running, probes it, and waits for its exit or a stop
/// (then terminates it). Returns the exit and, if a probe killed it, the probe's message.
#[allow(clippy::too_many_arguments)]
async fn supervise<R: Runtime>(
    env: &Arc<Env<R>>,
    pod: &Pod,
    spec: &Container,
    index: usize,
    id: &str,
    started: &str,
    status: &mut ContainerStatus,
    updates: &mpsc::Sender<Update>,
    stop: &mut watch::Receiver<Option<i64>>,
) -> (
    Result<Exit, crate::worker::runtime::RuntimeError>,
    Option<String>,
) {
    status.state = ContainerState {
        running: Some(StateRunning {
            started_at: Some(started.to_string()),
        }),
        ..Default::default()
    };
    // Without probes a running container is started and ready at once, as before.
    let probe_list = probes::of(spec);
    let has = |k: ProbeKind| probe_list.iter().any(|(kind, _)| *kind == k);
    let (has_startup, has_readiness) = (has(ProbeKind::Startup), has(ProbeKind::Readiness));
    status.started = Some(!has_startup);
    status.ready = !has_startup && !has_readiness;
    send(updates, index, status, true).await;

    // Dropping the set (any way out of this attempt) cancels the prober and its checks.
    let mut prober = JoinSet::new();
    let (probe_tx, mut probe_rx) = mpsc::channel::<Event>(8);
    if !probe_list.is_empty() {
        let checker = ContainerChecker {
            runtime: env.runtime.clone(),
            id: id.to_string(),
            ports: spec.ports.clone(),
        };
        prober.spawn(
            probes::runner::run(Arc::new(checker), probe_list.clone(), probe_tx).in_current_span(),
        );
    } else {
        drop(probe_tx);
    }
    // Set when a probe kill ends this attempt: the message for `terminated.message`.
    let mut probe_kill: Option<String> = None;
    let exited = env.runtime.wait(id);
    tokio::pin!(exited);
    let exit = loop {
        tokio::select! {
            e = &mut exited => break e,
            // Copy the grace out inside the block so no watch guard lives across an await.
            g = async { stop.wait_for(|s| s.is_some()).await.map(|r| r.unwrap_or(30)).unwrap_or(30) } => {
                let grace = g.max(0) as u64;
                break terminate(env, id, Duration::from_secs(grace)).await;
            }
            Some(event) = probe_rx.recv() => match event {
                Event::Started => {
                    status.started = Some(true);
                    status.ready = !has_readiness;
                    send(updates, index, status, true).await;
                }
                Event::Ready(ready) => {
                    status.ready = ready;
                    send(updates, index, status, true).await;
                }
                Event::Kill { kind, message } => {
                    tracing::warn!(
                        container = %spec.name,
                        %message,
                        "container failed its {} probe, will be terminated",
                        kind.field()
                    );
                    let grace = probe_list
                        .iter()
                        .find(|(k, _)| *k == kind)
                        .and_then(|(_, p)| p.termination_grace_period_seconds)
                        .unwrap_or(pod.spec.grace_seconds())
                        .max(0) as u64;
                    probe_kill = Some(message);
                    break terminate(env, id, Duration::from_secs(grace)).await;
                }
            },
        }
    };
    drop(prober);
    (exit, probe_kill)
}

/// True if stopped while waiting.
pub(super) async fn wait_or_stop(stop: &mut watch::Receiver<Option<i64>>, d: Duration) -> bool {
    // A dropped sender (manager gone) counts as a stop too.
    tokio::time::timeout(d, stop.wait_for(|s| s.is_some()))
        .await
        .is_ok()
}

pub(super) async fn resolve<R: Runtime>(env: &Env<R>, reference: &str) -> Result<Image, String> {
    let images = env.images.clone();
    let r = reference.to_string();
    match tokio::task::spawn_blocking(move || images.resolve(&r)).await {
        Ok(Ok(Some(img))) => Ok(img),
        Ok(Ok(None)) => Err(format!("image {reference:?} is not present on this node")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("image lookup failed: {e}")),
    }
}

/// Why an attempt did not start, as the kubelet's waiting reasons tell it.
pub(super) enum StartFailure {
    /// The container's settings forbid it (`runAsNonRoot` with a root user).
    Config(String),
    /// Creating or starting it failed.
    Create(String),
}

impl StartFailure {
    pub(super) fn reason_and_message(self) -> (&'static str, String) {
        match self {
            StartFailure::Config(m) => ("CreateContainerConfigError", m),
            StartFailure::Create(m) => ("CreateContainerError", m),
        }
    }
}

impl From<String> for StartFailure {
    fn from(message: String) -> Self {
        StartFailure::Create(message)
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn start_one<R: Runtime>(
    env: &Env<R>,
    pod: &Pod,
    spec: &Container,
    image: &Image,
    id: &str,
    dir: &std::path::Path,
    attempt: u32,
    mounts: Vec<crate::worker::runtime::BindMount>,
    sandbox: &PodSandbox,
) -> Result<Started, StartFailure> {
    let confined = super::security::effective(pod, spec, &image.config.user)
        .map_err(|e| StartFailure::Config(e.to_string()))?;
    let argv = containers::argv(spec, &image.config).map_err(|e| e.to_string())?;
    let resources = containers::resources(spec).map_err(|e| e.to_string())?;
    let hostname = pod.metadata.name.chars().take(63).collect::<String>();
    let envv = containers::env(spec, &image.config, &hostname);
    let log_path = log_path(&env.logs_dir, &pod.metadata.uid, &spec.name, attempt);
    // Keep this attempt's and the previous attempt's logs (`logs --previous`), no more.
    if attempt > 2 {
        let old = log_path.with_file_name(format!("{}.log", attempt - 2));
        let _ = std::fs::remove_file(&old);
        let _ = std::fs::remove_file(crate::worker::runtime::logs::rotated(&old));
    }
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Tiny, and written once per start (a start writes far more anyway); no fsync: after a
    // power cut the container is gone and a missing file only means "current generation".
    std::fs::write(
        dir.join(GENERATION_FILE),
        pod.metadata.generation.to_string(),
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    let images = env.images.clone();
    let (img, d) = (image.clone(), dir.to_path_buf());
    let rootfs = tokio::task::spawn_blocking(move || images.mount_rootfs(&img, &d))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let cfg = ContainerConfig {
        id: id.to_string(),
        bundle_dir: dir.join("bundle"),
        rootfs,
        args: argv,
        env: envv,
        cwd: containers::cwd(spec, &image.config),
        user: confined.user,
        hostname,
        resources,
        cgroup_path: format!(
            "{}/{id}",
            crate::worker::runtime::cgroups::pod_path(&pod.metadata.uid)
        ),
        log_path,
        log_max_bytes: env.log_max_bytes,
        security: confined.security,
        mounts,
        sandbox: sandbox.clone(),
    };
    let started = env.runtime.start(&cfg).await.map_err(|e| e.to_string())?;
    tracing::info!(container = %spec.name, pid = started.pid, "container started");
    Ok(started)
}

/// SIGTERM, the grace period, then SIGKILL; every wait bounded.
pub(super) async fn terminate<R: Runtime>(
    env: &Env<R>,
    id: &str,
    grace: Duration,
) -> Result<Exit, crate::worker::runtime::RuntimeError> {
    let _ = env.runtime.kill(id, libc::SIGTERM);
    if let Ok(r) = tokio::time::timeout(grace, env.runtime.wait(id)).await {
        return r;
    }
    let _ = env.runtime.kill(id, libc::SIGKILL);
    match tokio::time::timeout(Duration::from_secs(10), env.runtime.wait(id)).await {
        Ok(r) => r,
        Err(_) => Err(crate::worker::runtime::RuntimeError::Failed {
            id: id.to_string(),
            message: "did not exit 10s after SIGKILL".into(),
        }),
    }
}

pub(super) async fn cleanup<R: Runtime>(env: &Env<R>, id: &str, dir: &std::path::Path) {
    if let Err(e) = env.runtime.remove(id).await {
        tracing::warn!(%id, error = %e, "container removal incomplete");
    }
    let images = env.images.clone();
    let d = dir.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = images.unmount_rootfs(&d) {
            tracing::warn!(dir = %d.display(), error = %e, "rootfs unmount failed");
        }
        let _ = std::fs::remove_dir_all(&d);
    })
    .await;
}

//! Init containers: run one by one, each to successful completion, before the pod's app
//! containers start. A failing one is restarted with back-off under `Always`/`OnFailure`
//! (kubelet's rule: init containers restart as if `OnFailure`) and fails the pod under
//! `Never`. The pure decision is [`after_exit`]; `run_all` is the I/O shell.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::container::{self, Env};
use super::manager::Report;
use super::phase;
use super::restart::{AfterExit, Backoff};
use crate::api::pod::{ContainerState, StateRunning};
use crate::api::{ContainerStatus, Pod, PodPhase, PodStatus, RestartPolicy};
use crate::util::time::now_rfc3339;
use crate::worker::runtime::{Exit, PodSandbox, Runtime};

/// How the init phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every init container completed: start the app containers.
    Done,
    /// One failed under `restartPolicy: Never`: the pod is Failed.
    Failed,
    /// The pod is being stopped.
    Stopped,
}

/// Pure: what follows an init container's exit.
pub fn after_exit(
    policy: RestartPolicy,
    backoff: &mut Backoff,
    exit_code: i32,
    ran_for: Duration,
) -> AfterExit {
    if exit_code == 0 {
        return AfterExit::Stay;
    }
    let p = match policy {
        RestartPolicy::Never => RestartPolicy::Never,
        _ => RestartPolicy::OnFailure,
    };
    backoff.on_exit(p, exit_code, ran_for)
}

async fn report(reports: &mpsc::Sender<Report>, pod: &Pod, status: &mut PodStatus) {
    let now = now_rfc3339();
    phase::initializing(
        &mut status.conditions,
        &status.init_container_statuses,
        &now,
    );
    status.observed_generation = Some(pod.metadata.generation);
    let _ = reports
        .send(Report::Status {
            pod: pod.clone(),
            status: status.clone(),
        })
        .await;
}

/// Runs the pod's init containers in order; `status` carries the pod's status (its
/// `init_container_statuses` are filled here) and is reported after every change.
pub async fn run_all<R: Runtime>(
    env: &Arc<Env<R>>,
    pod: &Pod,
    sandbox: &PodSandbox,
    volumes: &mut container::VolumeState,
    stop: &mut watch::Receiver<Option<i64>>,
    reports: &mpsc::Sender<Report>,
    status: &mut PodStatus,
) -> Outcome {
    let inits = &pod.spec.init_containers;
    status.init_container_statuses = inits
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            state: container::waiting("PodInitializing", String::new()),
            ..Default::default()
        })
        .collect();
    status.phase = PodPhase::Pending;
    report(reports, pod, status).await;
    let uid = &pod.metadata.uid;
    for (i, spec) in inits.iter().enumerate() {
        let mut backoff = Backoff::new(env.backoff_base);
        let mut attempt = 0u32;
        let (mut pulled_before, mut pull_failures) = (false, 0u32);
        loop {
            if stop.borrow().is_some() {
                return Outcome::Stopped;
            }
            // Volumes before the image, as for app containers.
            let mounts = match container::mounts_for(spec, volumes, stop).await {
                None => return Outcome::Stopped,
                Some(Ok(m)) => m,
                Some(Err(message)) => {
                    status.init_container_statuses[i].state =
                        container::waiting("CreateContainerConfigError", message);
                    report(reports, pod, status).await;
                    let _ = volumes.borrow_and_update();
                    tokio::select! {
                        _ = volumes.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = stop.wait_for(|s| s.is_some()) => return Outcome::Stopped,
                    }
                    continue;
                }
            };
            // Pulled like an app container's image (imagePullPolicy and all); the pull's
            // progress updates are not shown for init containers.
            let (progress, mut drain) = mpsc::channel(8);
            let drained = tokio::spawn(async move { while drain.recv().await.is_some() {} });
            let mut cs = status.init_container_statuses[i].clone();
            let got =
                super::image::ensure(env, spec, &mut pulled_before, &mut cs, &progress, i).await;
            drop(progress);
            let _ = drained.await;
            let image = match got {
                Ok(img) => {
                    pull_failures = 0;
                    img
                }
                Err(na) => {
                    status.init_container_statuses[i].state =
                        container::waiting(na.reason, na.message);
                    report(reports, pod, status).await;
                    let delay = super::image::pull_backoff(pull_failures);
                    pull_failures += 1;
                    if container::wait_or_stop(stop, delay).await {
                        return Outcome::Stopped;
                    }
                    continue;
                }
            };
            attempt += 1;
            let (id, dir) = container::attempt_paths(env, uid, &spec.name, attempt);
            let started =
                container::start_one(env, pod, spec, &image, &id, &dir, attempt, mounts, sandbox)
                    .await;
            let started = match started {
                Ok(s) => s,
                Err(f) => {
                    let (reason, message) = f.reason_and_message();
                    tracing::warn!(container = %spec.name, %message, "init container did not start");
                    container::cleanup(env, &id, &dir).await;
                    status.init_container_statuses[i].state = container::waiting(reason, message);
                    report(reports, pod, status).await;
                    if container::wait_or_stop(stop, env.backoff_base).await {
                        return Outcome::Stopped;
                    }
                    continue;
                }
            };
            tracing::info!(container = %spec.name, "init container started");
            let cs = &mut status.init_container_statuses[i];
            cs.image_id = image.id.clone();
            cs.container_id = format!("herd://{id}");
            cs.state = ContainerState {
                running: Some(StateRunning {
                    started_at: Some(started.started_at.clone()),
                }),
                ..Default::default()
            };
            report(reports, pod, status).await;
            let t0 = Instant::now();
            let exit = tokio::select! {
                e = env.runtime.wait(&id) => e,
                g = async { stop.wait_for(|s| s.is_some()).await.map(|r| r.unwrap_or(30)).unwrap_or(30) } => {
                    let r = container::terminate(env, &id, Duration::from_secs(g.max(0) as u64)).await;
                    container::cleanup(env, &id, &dir).await;
                    drop(r);
                    return Outcome::Stopped;
                }
            };
            container::cleanup(env, &id, &dir).await;
            let exit = exit.unwrap_or_else(|e| {
                tracing::warn!(container = %spec.name, error = %e, "lost track of init container exit");
                Exit {
                    exit_code: 255,
                    signal: None,
                    oom_killed: false,
                    finished_at: now_rfc3339(),
                }
            });
            tracing::info!(container = %spec.name, exit_code = exit.exit_code, "init container exited");
            let term = container::terminated(&exit, &started.started_at);
            let cs = &mut status.init_container_statuses[i];
            match after_exit(
                pod.spec.restart_policy,
                &mut backoff,
                exit.exit_code,
                t0.elapsed(),
            ) {
                AfterExit::Stay if exit.exit_code == 0 => {
                    cs.ready = true;
                    cs.state = ContainerState {
                        terminated: Some(term),
                        ..Default::default()
                    };
                    report(reports, pod, status).await;
                    break;
                }
                AfterExit::Stay => {
                    cs.state = ContainerState {
                        terminated: Some(term),
                        ..Default::default()
                    };
                    status.phase = PodPhase::Failed;
                    report(reports, pod, status).await;
                    return Outcome::Failed;
                }
                AfterExit::RestartIn(delay) => {
                    cs.last_state = ContainerState {
                        terminated: Some(term),
                        ..Default::default()
                    };
                    cs.restart_count = backoff.restart_count;
                    cs.state = container::waiting(
                        "CrashLoopBackOff",
                        format!(
                            "back-off {}s restarting failed container={} pod={}",
                            delay.as_secs(),
                            spec.name,
                            pod.metadata.name
                        ),
                    );
                    report(reports, pod, status).await;
                    if container::wait_or_stop(stop, delay).await {
                        return Outcome::Stopped;
                    }
                }
            }
        }
    }
    Outcome::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_init_container_stays_done() {
        let mut b = Backoff::new(Duration::from_secs(1));
        assert_eq!(
            after_exit(RestartPolicy::Always, &mut b, 0, Duration::ZERO),
            AfterExit::Stay
        );
    }

    #[test]
    fn a_failed_init_container_restarts_unless_the_policy_is_never() {
        for p in [RestartPolicy::Always, RestartPolicy::OnFailure] {
            let mut b = Backoff::new(Duration::from_secs(1));
            assert!(matches!(
                after_exit(p, &mut b, 1, Duration::ZERO),
                AfterExit::RestartIn(_)
            ));
            assert_eq!(b.restart_count, 1);
        }
        let mut b = Backoff::new(Duration::from_secs(1));
        assert_eq!(
            after_exit(RestartPolicy::Never, &mut b, 1, Duration::ZERO),
            AfterExit::Stay
        );
    }
}

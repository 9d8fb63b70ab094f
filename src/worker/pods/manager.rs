//! Keeps the set of running pods equal to the desired set, level-triggered: `reconcile` can be
//! called any number of times with the latest desired state.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::adopt::{Resume, ResumeState, Resumes};
use super::container::{self, Env, Update};
use super::{init, phase};
use crate::api::{ContainerStatus, Pod, PodStatus};
use crate::proto::{DesiredIndex, VolumeSources};
use crate::util::time::now_rfc3339;
use crate::worker::runtime::Runtime;

/// What the master wants, as last received. `index: None` until the first index arrives:
/// until then nothing is stopped (a fresh session must not kill pods it has not heard of yet).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Desired {
    pub index: Option<DesiredIndex>,
    pub specs: BTreeMap<(String, String), Pod>,
    /// Volume content per pod, as last received; never persisted (secrets stay off the disk).
    pub sources: BTreeMap<(String, String), VolumeSources>,
}

impl Desired {
    /// What the desired-state file holds: everything but volume content.
    pub fn persisted(&self) -> Desired {
        Desired {
            index: self.index.clone(),
            specs: self.specs.clone(),
            sources: BTreeMap::new(),
        }
    }

    /// The volume content received for a pod; `None` when none arrived yet (after a restart
    /// without the master).
    pub fn sources_of(&self, pod: &Pod) -> Option<&VolumeSources> {
        self.sources
            .get(&(pod.metadata.ns().to_string(), pod.metadata.name.clone()))
    }

    /// Pods the master wants, with their specs, in index order.
    pub fn wanted(&self) -> Vec<&Pod> {
        let Some(idx) = &self.index else {
            return Vec::new();
        };
        idx.pods
            .iter()
            .filter_map(|k| {
                self.specs
                    .get(&(k.namespace.clone(), k.name.clone()))
                    .filter(|p| p.metadata.uid == k.uid)
            })
            .collect()
    }
}

/// A pod loop's report to the agent.
#[derive(Debug, Clone)]
// A few reports per pod state change, moved once each: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Report {
    Status {
        pod: Pod,
        status: PodStatus,
    },
    /// Every container of the pod is stopped and removed.
    Stopped {
        pod: Pod,
    },
}

struct Running {
    pod: Pod,
    stop: watch::Sender<Option<i64>>,
    /// Volume content for the pod's volume task; a changed ConfigMap/Secret arrives here.
    sources: watch::Sender<Option<VolumeSources>>,
    task: JoinHandle<()>,
}

pub struct Manager<R: Runtime> {
    env: Arc<Env<R>>,
    running: HashMap<String, Running>,
    reports: mpsc::Sender<Report>,
    /// Containers a previous agent left, per pod uid, handed to the pod's loop when it starts.
    resumes: Resumes,
    /// Pods being deleted that this agent never ran (their containers, if any, went with the
    /// previous agent): reported gone once, or the master would wait for them forever.
    gone_reported: std::collections::HashSet<String>,
}

impl<R: Runtime> Manager<R> {
    pub fn new(env: Env<R>, reports: mpsc::Sender<Report>) -> Self {
        Manager {
            env: Arc::new(env),
            running: HashMap::new(),
            gone_reported: Default::default(),
            reports,
            resumes: Resumes::new(),
        }
    }

    /// Containers to re-adopt (from `adopt::plan`) when their pods start; call before the
    /// first `reconcile`.
    pub fn adopt(&mut self, resumes: Resumes) {
        self.resumes = resumes;
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.env.logs_dir.clone()
    }

    /// Starts wanted pods that are not running; stops running pods that are no longer wanted,
    /// are being deleted, or whose spec changed (they start again with the new spec once
    /// stopped).
    pub fn reconcile(&mut self, desired: &Desired) {
        if desired.index.is_none() {
            return;
        }
        let wanted: HashMap<&str, &Pod> = desired
            .wanted()
            .into_iter()
            .map(|p| (p.metadata.uid.as_str(), p))
            .collect();
        for (uid, r) in &self.running {
            let grace = match wanted.get(uid.as_str()) {
                None => Some(r.pod.spec.grace_seconds()),
                Some(p) if p.metadata.deletion_timestamp.is_some() => Some(
                    p.metadata
                        .deletion_grace_period_seconds
                        .unwrap_or(p.spec.grace_seconds()),
                ),
                Some(p) if p.metadata.generation != r.pod.metadata.generation => {
                    Some(r.pod.spec.grace_seconds())
                }
                Some(_) => None,
            };
            if let Some(g) = grace {
                if r.stop.borrow().is_none_or(|old| g < old) {
                    tracing::info!(pod = %r.pod.metadata.name, grace = g, "stopping pod");
                    r.stop.send_replace(Some(g));
                }
            } else if let Some(src) = desired.sources_of(&r.pod) {
                r.sources.send_if_modified(|cur| {
                    if cur.as_ref() == Some(src) {
                        return false;
                    }
                    *cur = Some(src.clone());
                    true
                });
            }
        }
        self.gone_reported
            .retain(|u| wanted.contains_key(u.as_str()));
        for (uid, pod) in wanted {
            if pod.metadata.deletion_timestamp.is_some() {
                if !self.running.contains_key(uid) && self.gone_reported.insert(uid.to_string()) {
                    let _ = self.reports.try_send(Report::Stopped { pod: pod.clone() });
                }
                continue;
            }
            if self.running.contains_key(uid) {
                continue;
            }
            self.spawn(pod.clone(), desired.sources_of(pod).cloned());
        }
    }

    /// Claim dirs (or `<ns>-<claim>-` prefixes) that running pods use: never garbage.
    pub fn claims_in_use(&self) -> std::collections::BTreeSet<String> {
        self.running
            .values()
            .flat_map(|r| crate::worker::volumes::claim_dirs(&r.pod, r.sources.borrow().as_ref()))
            .collect()
    }

    pub fn volume_layout(&self) -> crate::worker::volumes::Layout {
        self.env.volumes.clone()
    }

    /// A pod loop ended: forget it (a later `reconcile` restarts it if still wanted).
    pub fn finished(&mut self, uid: &str) {
        if let Some(r) = self.running.get(uid) {
            if r.task.is_finished() || r.stop.borrow().is_some() {
                self.running.remove(uid);
                // Its loop already reported it gone.
                self.gone_reported.insert(uid.to_string());
            }
        }
    }

    pub fn is_running(&self, uid: &str) -> bool {
        self.running.contains_key(uid)
    }

    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    /// Stops every pod (each with its grace period) and waits for all of them.
    pub async fn stop_all(&mut self) {
        for r in self.running.values() {
            r.stop.send_replace(Some(r.pod.spec.grace_seconds()));
        }
        for (_, r) in self.running.drain() {
            let _ = r.task.await;
        }
    }

    fn spawn(&mut self, pod: Pod, sources: Option<VolumeSources>) {
        let (stop, stop_rx) = watch::channel(None);
        let (sources, sources_rx) = watch::channel(sources);
        let span = tracing::info_span!("pod", pod = %format!("{}/{}", pod.metadata.ns(), pod.metadata.name), uid = %pod.metadata.uid);
        let resume = self.resumes.remove(&pod.metadata.uid).unwrap_or_default();
        let task = tokio::spawn(
            run_pod(
                self.env.clone(),
                pod.clone(),
                stop_rx,
                self.reports.clone(),
                resume,
                sources_rx,
            )
            .instrument(span),
        );
        self.running.insert(
            pod.metadata.uid.clone(),
            Running {
                pod,
                stop,
                sources,
                task,
            },
        );
    }
}

async fn run_pod<R: Runtime>(
    env: Arc<Env<R>>,
    pod: Pod,
    mut stop: watch::Receiver<Option<i64>>,
    reports: mpsc::Sender<Report>,
    mut resume: HashMap<String, Resume>,
    sources: watch::Receiver<Option<VolumeSources>>,
) {
    // An adopted pod started when its oldest running container did, not now.
    let adopted_start = resume
        .values()
        .filter_map(|r| match &r.state {
            ResumeState::Running { started_at } => Some(started_at.clone()),
            _ => None,
        })
        .min();
    // App containers a previous agent ran: the init containers completed back then.
    let initialized = resume.values().any(|r| {
        matches!(
            r.state,
            ResumeState::Running { .. } | ResumeState::Exited { .. }
        )
    });
    if resume.is_empty() {
        tracing::info!("starting pod");
    } else {
        tracing::info!(containers = resume.len(), "re-adopting pod");
    }
    let mut status = PodStatus {
        start_time: Some(adopted_start.unwrap_or_else(now_rfc3339)),
        ..Default::default()
    };
    // The sandbox first: every container joins its namespaces.
    let Some(net) = setup_net(&env, &pod, &mut stop, &reports, &mut status).await else {
        finish(&env, pod, &reports).await;
        return;
    };
    status.pod_ip = net.pod_ip.map(|i| i.to_string());
    status.host_ip = net.host_ip.map(|i| i.to_string());
    let sandbox = Arc::new(net.sandbox);
    // Volumes next: init containers mount them too (an init container filling an emptyDir
    // for the app is the usual pattern).
    let (vol_tx, vol_rx) = watch::channel(None);
    let (quit_volumes, quit_rx) = watch::channel(false);
    let volume_task = tokio::spawn(
        keep_volumes(env.volumes.clone(), pod.clone(), sources, vol_tx, quit_rx).in_current_span(),
    );
    // Asked, not aborted: an abort would leave a preparation pass running on the blocking
    // pool, free to mount or fill a dir after the teardown removed it.
    let stop_volumes = |quit: watch::Sender<bool>, task: tokio::task::JoinHandle<()>| async move {
        quit.send_replace(true);
        let _ = task.await;
    };
    if !pod.spec.init_containers.is_empty() {
        if initialized {
            status.init_container_statuses = pod
                .spec
                .init_containers
                .iter()
                .map(|c| completed(&c.name, &c.image))
                .collect();
        } else {
            let mut volumes = vol_rx.clone();
            let outcome = init::run_all(
                &env,
                &pod,
                &sandbox,
                &mut volumes,
                &mut stop,
                &reports,
                &mut status,
            )
            .await;
            match outcome {
                init::Outcome::Done => {}
                init::Outcome::Failed => {
                    let _ = stop.wait_for(|s| s.is_some()).await;
                    stop_volumes(quit_volumes, volume_task).await;
                    finish(&env, pod, &reports).await;
                    return;
                }
                init::Outcome::Stopped => {
                    stop_volumes(quit_volumes, volume_task).await;
                    finish(&env, pod, &reports).await;
                    return;
                }
            }
        }
    }
    let n = pod.spec.containers.len();
    let (tx, mut rx) = mpsc::channel::<Update>(64);
    for i in 0..n {
        let r = resume.remove(&pod.spec.containers[i].name);
        tokio::spawn(
            container::run(
                env.clone(),
                pod.clone(),
                i,
                tx.clone(),
                stop.clone(),
                r,
                vol_rx.clone(),
                sandbox.clone(),
            )
            .in_current_span(),
        );
    }
    drop(vol_rx);
    drop(tx);
    let mut statuses: Vec<ContainerStatus> = pod
        .spec
        .containers
        .iter()
        .map(|c| ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone(),
            ..Default::default()
        })
        .collect();
    let mut restarting = vec![true; n];
    while let Some(u) = rx.recv().await {
        if u.index >= n {
            continue;
        }
        statuses[u.index] = u.status;
        restarting[u.index] = u.will_restart;
        let now = now_rfc3339();
        status.phase = phase::phase(
            pod.spec.restart_policy,
            &statuses,
            restarting.iter().any(|r| *r),
        );
        status.container_statuses = statuses.clone();
        phase::conditions(&mut status.conditions, &statuses, &now);
        status.observed_generation = Some(pod.metadata.generation);
        let _ = reports
            .send(Report::Status {
                pod: pod.clone(),
                status: status.clone(),
            })
            .await;
    }
    stop_volumes(quit_volumes, volume_task).await;
    finish(&env, pod, &reports).await;
}

/// An init container a previous agent saw complete.
fn completed(name: &str, image: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        ready: true,
        state: crate::api::pod::ContainerState {
            terminated: Some(crate::api::pod::StateTerminated {
                reason: "Completed".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Sets up the pod's sandbox and network, retrying until it works or the pod is stopped
/// (`None`). On the bridge it first waits for the node's pod subnet.
async fn setup_net<R: Runtime>(
    env: &Arc<Env<R>>,
    pod: &Pod,
    stop: &mut watch::Receiver<Option<i64>>,
    reports: &mpsc::Sender<Report>,
    status: &mut PodStatus,
) -> Option<crate::worker::net::PodNet> {
    use crate::worker::net::Mode;
    let mut said = String::new();
    loop {
        if stop.borrow().is_some() {
            return None;
        }
        if env.net.mode == Mode::Bridge && !pod.spec.host_network {
            let mut known = env.net.node_net();
            if known.borrow().is_none() {
                status.message = "waiting for the node's pod subnet from the master".into();
                let _ = reports
                    .send(Report::Status {
                        pod: pod.clone(),
                        status: status.clone(),
                    })
                    .await;
                tokio::select! {
                    _ = known.wait_for(|n| n.is_some()) => {}
                    _ = stop.wait_for(|s| s.is_some()) => return None,
                }
            }
        }
        let (net, p) = (env.net.clone(), pod.clone());
        let t0 = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || net.setup(&p)).await {
            Ok(Ok(n)) => {
                tracing::info!(pod_ip = ?n.pod_ip, ms = t0.elapsed().as_millis() as u64, "pod sandbox ready");
                status.message.clear();
                return Some(n);
            }
            Ok(Err(e)) => {
                let m = e.to_string();
                if m != said {
                    tracing::warn!(error = %m, "pod sandbox setup failed; retrying");
                    said = m.clone();
                }
                status.message = m;
            }
            Err(e) => status.message = format!("pod sandbox setup panicked: {e}"),
        }
        let _ = reports
            .send(Report::Status {
                pod: pod.clone(),
                status: status.clone(),
            })
            .await;
        if super::container::wait_or_stop(stop, std::time::Duration::from_secs(2)).await {
            return None;
        }
    }
}

/// The pod is done: its cgroup, dirs, logs and sandbox go, then it is reported stopped.
async fn finish<R: Runtime>(env: &Arc<Env<R>>, pod: Pod, reports: &mpsc::Sender<Report>) {
    // The pod-level cgroup, container dirs, logs, volumes (emptyDirs, projections, their
    // tmpfs mounts; claims stay) and sandbox go with the pod (leaf cgroups and rootfs went
    // with each container).
    let uid = pod.metadata.uid.clone();
    let (containers, logs) = (env.containers_dir.join(&uid), env.logs_dir.join(&uid));
    let net = env.net.clone();
    let layout = env.volumes.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = crate::worker::volumes::teardown(&layout, &uid) {
            tracing::warn!(error = %e, "pod volumes not removed");
        }
        let cg = crate::worker::runtime::cgroups::pod_path(&uid);
        if let Err(e) =
            crate::worker::runtime::cgroups::remove_pod(&uid, std::time::Duration::from_secs(5))
        {
            tracing::warn!(cgroup = %cg, error = %e, "pod cgroup not removed");
        }
        let _ = std::fs::remove_dir_all(containers);
        let _ = std::fs::remove_dir_all(logs);
        net.teardown(&uid);
    })
    .await;
    tracing::info!("pod stopped");
    let _ = reports.send(Report::Stopped { pod }).await;
}

/// The pod's volume task: prepares its volumes, then again whenever the master sends new
/// content (a changed ConfigMap/Secret, a claim bound) and every few seconds while some
/// volume is not ready (a hostPath that appears later). Runs until `quit`; a pass in progress
/// finishes first.
async fn keep_volumes(
    layout: crate::worker::volumes::Layout,
    pod: Pod,
    mut sources: watch::Receiver<Option<VolumeSources>>,
    out: watch::Sender<Option<Arc<crate::worker::volumes::Prepared>>>,
    mut quit: watch::Receiver<bool>,
) {
    loop {
        if *quit.borrow() {
            return;
        }
        let src = sources.borrow_and_update().clone();
        let (l, p) = (layout.clone(), pod.clone());
        let prepared = match tokio::task::spawn_blocking(move || {
            crate::worker::volumes::prepare(&l, &p, src.as_ref())
        })
        .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "volume preparation panicked");
                return;
            }
        };
        let retry = !prepared.problems.is_empty();
        out.send_if_modified(|cur| {
            if cur.as_deref() == Some(&prepared) {
                return false;
            }
            *cur = Some(Arc::new(prepared));
            true
        });
        let pause = if retry {
            std::time::Duration::from_secs(5)
        } else {
            // Nothing to retry: only a change (or quit) wakes it; the daily pass is harmless.
            std::time::Duration::from_secs(86_400)
        };
        tokio::select! {
            r = sources.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(pause) => {}
            _ = quit.wait_for(|q| *q) => return,
        }
    }
}

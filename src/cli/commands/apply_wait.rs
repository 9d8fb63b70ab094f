//! `herd apply --wait`: after applying, wait until what was applied runs, showing image pull
//! progress of its pods (bars on a terminal, one line per 10 % otherwise).

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use super::Session;
use crate::api::apps::{Deployment, ReplicaSet};
use crate::api::meta::List;
use crate::api::selector::LabelSelector;
use crate::api::{Object, Pod, PodPhase};
use crate::cli::kind::Kind;

/// Something `apply` created or changed that can become ready.
#[derive(Debug, Clone)]
pub enum Target {
    Pod { ns: String, name: String },
    Deployment { ns: String, name: String },
    ReplicaSet { ns: String, name: String },
}

impl Target {
    pub fn of(obj: &Object, ns: &str) -> Option<Target> {
        let name = obj.metadata().name.clone();
        let ns = ns.to_owned();
        match obj {
            Object::Pod(_) => Some(Target::Pod { ns, name }),
            Object::Deployment(_) => Some(Target::Deployment { ns, name }),
            Object::ReplicaSet(_) => Some(Target::ReplicaSet { ns, name }),
            _ => None,
        }
    }

    fn ns(&self) -> &str {
        match self {
            Target::Pod { ns, .. }
            | Target::Deployment { ns, .. }
            | Target::ReplicaSet { ns, .. } => ns,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Pod { name, .. } => Kind::Pod.ref_name(name),
            Target::Deployment { name, .. } => Kind::Deployment.ref_name(name),
            Target::ReplicaSet { name, .. } => Kind::ReplicaSet.ref_name(name),
        }
    }
}

/// Pure: is a pod done starting? Running and Ready, or finished successfully.
pub fn pod_ready(p: &Pod) -> bool {
    p.status.phase == PodPhase::Succeeded
        || (p.status.phase == PodPhase::Running
            && p.status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Pure: kubectl's "successfully rolled out".
pub fn deployment_done(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    d.status.observed_generation >= d.metadata.generation
        && d.status.updated_replicas == want
        && d.status.replicas == want
        && d.status.available_replicas >= want
}

pub fn replicaset_done(r: &ReplicaSet) -> bool {
    let want = r.spec.replicas.unwrap_or(1);
    r.status.observed_generation >= r.metadata.generation
        && r.status.replicas == want
        && r.status.ready_replicas >= want
}

/// Pure: `(container, percent)` from a kubelet-style `Pulling` waiting message.
pub fn pulling(p: &Pod) -> Vec<(String, u64, String)> {
    p.status
        .container_statuses
        .iter()
        .filter_map(|c| {
            let w = c.state.waiting.as_ref()?;
            if w.reason != "Pulling" {
                return None;
            }
            let pct = w
                .message
                .split_whitespace()
                .find_map(|t| t.strip_suffix('%')?.parse::<u64>().ok())?;
            Some((c.name.clone(), pct.min(100), w.message.clone()))
        })
        .collect()
}

/// Shows pull progress per pod container.
enum Show {
    Bars(
        indicatif::MultiProgress,
        BTreeMap<String, indicatif::ProgressBar>,
    ),
    Lines(BTreeMap<String, u64>),
}

impl Show {
    fn new() -> Show {
        if std::io::stderr().is_terminal() {
            Show::Bars(indicatif::MultiProgress::new(), BTreeMap::new())
        } else {
            Show::Lines(BTreeMap::new())
        }
    }

    fn update(&mut self, key: &str, pct: u64, message: &str) {
        match self {
            Show::Bars(multi, bars) => {
                let bar = bars.entry(key.to_owned()).or_insert_with(|| {
                    let b = multi.add(indicatif::ProgressBar::new(100));
                    if let Ok(style) =
                        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}%")
                    {
                        b.set_style(style.progress_chars("=> "));
                    }
                    b.set_prefix(key.to_owned());
                    b
                });
                bar.set_position(pct);
            }
            Show::Lines(last) => {
                let step = pct / 10;
                if last.insert(key.to_owned(), step) != Some(step) {
                    eprintln!("{key}: {message}");
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Show::Bars(_, bars) = self {
            for b in bars.values() {
                b.finish_and_clear();
            }
        }
    }
}

/// Waits until every target is ready, or `timeout` (zero: forever) passes.
pub async fn wait(s: &Session, targets: &[Target], timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut show = Show::new();
    let mut pending: Vec<Target> = targets.to_vec();
    loop {
        let mut still = Vec::new();
        let mut pods_by_ns: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for t in &pending {
            if !pods_by_ns.contains_key(t.ns()) {
                let list: List<Pod> = s
                    .client
                    .get(&Kind::Pod.collection_path(Some(t.ns())))
                    .await?;
                pods_by_ns.insert(t.ns().to_owned(), list.items);
            }
            let pods = &pods_by_ns[t.ns()];
            let (done, selector): (bool, Option<LabelSelector>) = match t {
                Target::Pod { ns, name } => {
                    let p: Pod = s.client.get(&Kind::Pod.object_path(ns, name)).await?;
                    (pod_ready(&p), None)
                }
                Target::Deployment { ns, name } => {
                    let d: Deployment = s
                        .client
                        .get(&Kind::Deployment.object_path(ns, name))
                        .await?;
                    (deployment_done(&d), Some(d.spec.selector.clone()))
                }
                Target::ReplicaSet { ns, name } => {
                    let r: ReplicaSet = s
                        .client
                        .get(&Kind::ReplicaSet.object_path(ns, name))
                        .await?;
                    (replicaset_done(&r), Some(r.spec.selector.clone()))
                }
            };
            let mine = pods.iter().filter(|p| match (&selector, t) {
                (Some(sel), _) => sel.matches(&p.metadata.labels),
                (None, Target::Pod { name, .. }) => &p.metadata.name == name,
                _ => false,
            });
            for p in mine {
                for (container, pct, message) in pulling(p) {
                    show.update(&format!("{}/{container}", p.metadata.name), pct, &message);
                }
            }
            if done {
                println!("{} ready", t.describe());
            } else {
                still.push(t.clone());
            }
        }
        pending = still;
        if pending.is_empty() {
            show.finish();
            return Ok(());
        }
        if !timeout.is_zero() && start.elapsed() > timeout {
            show.finish();
            let names: Vec<String> = pending.iter().map(Target::describe).collect();
            anyhow::bail!(
                "timed out after {timeout:?} waiting for {}",
                names.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::{ContainerState, StateWaiting};
    use crate::api::ContainerStatus;

    fn waiting(reason: &str, message: &str) -> Pod {
        let mut p = Pod::default();
        p.status.container_statuses.push(ContainerStatus {
            name: "app".into(),
            state: ContainerState {
                waiting: Some(StateWaiting {
                    reason: reason.into(),
                    message: message.into(),
                }),
                ..Default::default()
            },
            ..Default::default()
        });
        p
    }

    #[test]
    fn pulling_messages_give_their_percentage() {
        let p = waiting(
            "Pulling",
            "pulling docker.io/library/x:1 from the master: 42% (1.0 MB of 2.4 MB)",
        );
        assert_eq!(pulling(&p)[0].1, 42);
        assert!(pulling(&waiting("ContainerCreating", "")).is_empty());
        assert!(pulling(&waiting("Pulling", "no number")).is_empty());
    }

    #[test]
    fn a_deployment_is_done_when_every_replica_is_updated_and_available() {
        let mut d = Deployment::default();
        d.spec.replicas = Some(2);
        d.metadata.generation = 3;
        d.status.observed_generation = 3;
        d.status.replicas = 2;
        d.status.updated_replicas = 2;
        d.status.available_replicas = 1;
        assert!(!deployment_done(&d));
        d.status.available_replicas = 2;
        assert!(deployment_done(&d));
        d.status.observed_generation = 2;
        assert!(!deployment_done(&d), "status of an older generation");
    }

    #[test]
    fn a_pod_is_ready_when_running_and_ready_or_succeeded() {
        let mut p = Pod::default();
        p.status.phase = PodPhase::Running;
        assert!(!pod_ready(&p));
        p.status.conditions.push(crate::api::Condition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        });
        assert!(pod_ready(&p));
        let mut done = Pod::default();
        done.status.phase = PodPhase::Succeeded;
        assert!(pod_ready(&done));
    }
}

//! Scheduler v2: a pure function from a pod and a cluster snapshot to a node, or the reasons
//! it fits nowhere.
//!
//! Filters (`filters`) remove nodes that cannot run the pod: readiness, cordon, taints,
//! nodeSelector and required node affinity, image platform, pod count, cpu and memory, then
//! topology spread (`DoNotSchedule`) and required pod anti-affinity in both directions. The
//! survivors are scored (`scores`): free resources, preferred node affinity,
//! `PreferNoSchedule` taints, preferred anti-affinity, `ScheduleAnyway` spread, and spreading
//! of pods with the same controller (so replicas land 2/2/2 on three equal nodes without any
//! constraint). The only topology is the node (`kubernetes.io/hostname`).
//!
//! Everything is deterministic: the same inputs bind the same node whatever order the nodes
//! came in, which keeps tests and a restarted master's decisions reproducible. The snapshot
//! (`snapshot`) is built once per scheduling pass and updated after each bind, so a decision
//! costs one sweep over the nodes, not a recount of every pod.

mod filters;
mod platform;
mod scores;
mod snapshot;
pub mod volumes;

use crate::api::quantity::{parse_bytes, parse_cpu_millis};
use crate::api::Pod;

use filters::{anti_affinity_blocks, unschedulable_message, Failure, HardSpread, PodFilter};
pub use platform::{normalize_platform, platform_runs};
use scores::PodScorer;
pub use snapshot::{node_snapshot, NodeSnapshot, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind {
        node: String,
    },
    /// `message` is in kube-scheduler's words, ready for the `PodScheduled` condition.
    Unschedulable {
        message: String,
    },
}

/// The resources a pod asks for, summed over its containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// Per container: the request, or the limit when only a limit is given (Kubernetes defaults
/// the request to the limit), else nothing. Unparsable amounts count as zero: validation
/// rejected them before the pod was stored.
pub fn pod_requests(pod: &Pod) -> Requests {
    let mut total = Requests::default();
    for c in &pod.spec.containers {
        let pick = |name: &str| {
            c.resources
                .requests
                .get(name)
                .or_else(|| c.resources.limits.get(name))
        };
        let cpu = pick("cpu")
            .and_then(|q| parse_cpu_millis(q).ok())
            .unwrap_or(0);
        let memory = pick("memory")
            .and_then(|q| parse_bytes(q).ok())
            .unwrap_or(0);
        total.cpu_millis = total.cpu_millis.saturating_add(cpu);
        total.memory_bytes = total.memory_bytes.saturating_add(memory);
    }
    total
}

/// Picks a node for `pod` among `nodes`, whose usage is already summed and whose pods are
/// not otherwise known (so pod anti-affinity and spreading see no placed pods). Kept for
/// callers with one decision to make; a pass over many pods uses a [`Snapshot`].
pub fn schedule(pod: &Pod, nodes: &[NodeSnapshot], image_platforms: Option<&[String]>) -> Decision {
    Snapshot::from_nodes(nodes.to_vec()).schedule(pod, image_platforms)
}

impl Snapshot {
    /// Picks the node for `pod`. `image_platforms` lists the platforms the pod's images
    /// offer; `None` when unknown (the image was not inspected), which skips the platform
    /// filter. `spec.nodeName` is not looked at: a pod that names its node is not scheduled.
    /// The snapshot is not changed: after binding, tell it with [`Snapshot::add_pod`].
    pub fn schedule(&self, pod: &Pod, image_platforms: Option<&[String]>) -> Decision {
        self.schedule_pinned(pod, image_platforms, None)
    }

    /// `schedule` for a pod that can run only on `pinned` (its local volume lives there):
    /// every other node fails with a volume node affinity conflict.
    pub fn schedule_pinned(
        &self,
        pod: &Pod,
        image_platforms: Option<&[String]>,
        pinned: Option<&str>,
    ) -> Decision {
        let nodes = &self.nodes;
        if nodes.is_empty() {
            return Decision::Unschedulable {
                message: "0/0 nodes are available: no nodes registered.".into(),
            };
        }
        let req = pod_requests(pod);
        let mut filter = PodFilter::new(pod, req, image_platforms);
        filter.pinned = pinned;
        let mut failures: Vec<Option<Failure>> = vec![None; nodes.len()];
        let mut eligible = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            failures[i] = match filter.static_filter(node) {
                Ok(()) => {
                    eligible[i] = true;
                    filter.fit(node).err()
                }
                Err(f) => Some(f),
            };
        }
        let mut spreads = HardSpread::new(self, pod);
        for s in &mut spreads {
            s.set_min(&eligible);
        }
        let blocked = anti_affinity_blocks(self, pod);
        let scorer = PodScorer::new(self, pod, req);
        let mut raws = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if failures[i].is_some() {
                continue;
            }
            if !spreads.iter().all(|s| s.allows(i)) {
                failures[i] = Some(Failure::TopologySpread);
                continue;
            }
            if let Some(why) = blocked.as_ref().and_then(|b| b[i]) {
                failures[i] = Some(why);
                continue;
            }
            raws.push((i, scorer.raw(i, node)));
        }
        match scores::best(&raws, nodes) {
            Some(i) => Decision::Bind {
                node: nodes[i].name.clone(),
            },
            None => Decision::Unschedulable {
                message: unschedulable_message(nodes, &failures, image_platforms),
            },
        }
    }
}

#[cfg(test)]
mod constraint_tests;
#[cfg(test)]
mod tests;

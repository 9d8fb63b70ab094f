//! Filters: whether a node can take the pod at all, and if not, the kube-scheduler reason.
//!
//! They run in kube-scheduler's plugin order and stop at the first failing one per node
//! (resource fit may report cpu and memory together), so the unschedulable message counts each
//! node once, under the reason a user fixes first. Failures are small values rendered to text
//! only when no node fits: the common case, where most nodes are filtered by affinity and one
//! wins, allocates nothing per node.

use std::collections::HashMap;

use crate::api::scheduling::{
    tolerated, NodeSelector, TaintEffect, Toleration, TopologySpreadConstraint, WhenUnsatisfiable,
};
use crate::api::Pod;

use super::platform::{describe, runs_normalized};
use super::snapshot::{NodeSnapshot, Snapshot};
use super::Requests;

/// The taint an `unschedulable` (cordoned) node carries in Kubernetes; tolerating it lets a
/// pod onto a cordoned node.
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Why one node was filtered out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    NotReady,
    Unschedulable,
    /// Index of the first untolerated NoSchedule/NoExecute taint.
    Taint(usize),
    NodeAffinity,
    Platform,
    TooManyPods,
    Resources {
        cpu: bool,
        memory: bool,
    },
    TopologySpread,
    AntiAffinity,
    ExistingAntiAffinity,
    /// The pod's local volume lives on another node.
    VolumeNodeAffinity,
}

/// The parts of a pod the node-local filters look at, extracted once per decision.
pub(super) struct PodFilter<'a> {
    pub pod: &'a Pod,
    pub req: Requests,
    required: Option<&'a NodeSelector>,
    tolerations: &'a [Toleration],
    tolerates_unschedulable: bool,
    /// Normalized offered platforms; `None` skips the platform filter.
    platforms: Option<Vec<String>>,
    /// Per distinct node platform seen so far: whether the image runs there. Boards come in a
    /// handful of platforms, so this saves normalizing strings for every node.
    platform_cache: HashMap<String, bool>,
    /// The only node the pod's bound claims allow (see `volumes`).
    pub pinned: Option<&'a str>,
}

impl<'a> PodFilter<'a> {
    pub fn new(pod: &'a Pod, req: Requests, image_platforms: Option<&[String]>) -> Self {
        let tolerations = pod.spec.tolerations.as_slice();
        let cordon = crate::api::scheduling::Taint {
            key: TAINT_UNSCHEDULABLE.into(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
            time_added: None,
        };
        PodFilter {
            pod,
            req,
            required: pod
                .spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|na| {
                    na.required_during_scheduling_ignored_during_execution
                        .as_ref()
                }),
            tolerations,
            tolerates_unschedulable: tolerated(tolerations, &cordon),
            platforms: image_platforms
                .map(|ps| ps.iter().map(|p| super::normalize_platform(p)).collect()),
            platform_cache: HashMap::new(),
            pinned: None,
        }
    }

    /// The filters that depend only on the node and the pod, not on other pods or free
    /// resources. A node passing them is "eligible": the pod could run there some day, which
    /// is what topology spreading counts domains over.
    pub fn static_filter(&mut self, node: &NodeSnapshot) -> Result<(), Failure> {
        if !node.ready {
            return Err(Failure::NotReady);
        }
        if node.unschedulable && !self.tolerates_unschedulable {
            return Err(Failure::Unschedulable);
        }
        for (i, taint) in node.taints.iter().enumerate() {
            if taint.effect != TaintEffect::PreferNoSchedule && !tolerated(self.tolerations, taint)
            {
                return Err(Failure::Taint(i));
            }
        }
        let selector_ok = self
            .pod
            .spec
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v));
        if !selector_ok || self.required.is_some_and(|r| !r.matches(&node.labels)) {
            return Err(Failure::NodeAffinity);
        }
        if self.pinned.is_some_and(|n| n != node.name) {
            return Err(Failure::VolumeNodeAffinity);
        }
        if let Some(offered) = &self.platforms {
            let runs = match self.platform_cache.get(&node.platform) {
                Some(&runs) => runs,
                None => {
                    let runs = offered.iter().any(|p| runs_normalized(&node.platform, p));
                    self.platform_cache.insert(node.platform.clone(), runs);
                    runs
                }
            };
            if !runs {
                return Err(Failure::Platform);
            }
        }
        Ok(())
    }

    /// Pod count, cpu and memory against what the node has left.
    pub fn fit(&self, node: &NodeSnapshot) -> Result<(), Failure> {
        if node.pod_count.saturating_add(1) > node.allocatable_pods {
            return Err(Failure::TooManyPods);
        }
        let free_cpu = node
            .allocatable_cpu_millis
            .saturating_sub(node.requested_cpu_millis);
        let free_memory = node
            .allocatable_memory_bytes
            .saturating_sub(node.requested_memory_bytes);
        // A pod that requests nothing always fits, even on an overcommitted node.
        let cpu = self.req.cpu_millis > 0 && self.req.cpu_millis > free_cpu;
        let memory = self.req.memory_bytes > 0 && self.req.memory_bytes > free_memory;
        if cpu || memory {
            return Err(Failure::Resources { cpu, memory });
        }
        Ok(())
    }
}

/// A `DoNotSchedule` spread constraint with its per-node counts: a node passes when placing
/// the pod there keeps it within `max_skew` of the least loaded eligible node.
pub(super) struct HardSpread {
    counts: Vec<u32>,
    self_match: u32,
    max_skew: u32,
    min: u32,
}

impl HardSpread {
    /// Per constraint: matching pods per node. `min` is filled in by [`Self::set_min`] once the
    /// eligible nodes are known.
    pub fn new(snap: &Snapshot, pod: &Pod) -> Vec<HardSpread> {
        hard_constraints(pod)
            .map(|c| HardSpread {
                counts: snap.count_matching(pod.metadata.ns(), &c.label_selector, false),
                self_match: u32::from(c.label_selector.matches(&pod.metadata.labels)),
                max_skew: u32::try_from(c.max_skew).unwrap_or(1).max(1),
                min: 0,
            })
            .collect()
    }

    pub fn set_min(&mut self, eligible: &[bool]) {
        self.min = self
            .counts
            .iter()
            .zip(eligible)
            .filter(|(_, &e)| e)
            .map(|(&c, _)| c)
            .min()
            .unwrap_or(0);
    }

    pub fn allows(&self, node: usize) -> bool {
        let after = self.counts[node].saturating_add(self.self_match);
        after.saturating_sub(self.min) <= self.max_skew
    }
}

fn hard_constraints(pod: &Pod) -> impl Iterator<Item = &TopologySpreadConstraint> {
    pod.spec
        .topology_spread_constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == WhenUnsatisfiable::DoNotSchedule)
}

/// Nodes the pod's required anti-affinity, or a placed pod's, rules out (hostname topology:
/// any matching pod on the node is a conflict). `None` when nothing is ruled out.
pub(super) fn anti_affinity_blocks(snap: &Snapshot, pod: &Pod) -> Option<Vec<Option<Failure>>> {
    let ns = pod.metadata.ns();
    let own = pod
        .spec
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .map(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_slice()
        })
        .unwrap_or_default();
    let placed = snap
        .anti_terms
        .iter()
        .filter(|t| t.namespace == ns && t.selector.matches(&pod.metadata.labels));
    let mut blocked: Option<Vec<Option<Failure>>> = None;
    let mut mark = |node: usize, why: Failure| {
        let b = blocked.get_or_insert_with(|| vec![None; snap.nodes.len()]);
        b[node].get_or_insert(why);
    };
    for term in own {
        let counts = snap.count_matching(ns, &term.label_selector, true);
        for (node, &c) in counts.iter().enumerate() {
            if c > 0 {
                mark(node, Failure::AntiAffinity);
            }
        }
    }
    for term in placed {
        for (&node, &c) in &term.per_node {
            if c > 0 {
                mark(node as usize, Failure::ExistingAntiAffinity);
            }
        }
    }
    blocked
}

/// The `PodScheduled=False` message: `0/N nodes are available: <count> <reason>, ...` with the
/// "count reason" strings sorted, as kube-scheduler writes it.
pub(super) fn unschedulable_message(
    nodes: &[NodeSnapshot],
    failures: &[Option<Failure>],
    image_platforms: Option<&[String]>,
) -> String {
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut count = |r: String| *reasons.entry(r).or_default() += 1;
    for (node, failure) in nodes.iter().zip(failures) {
        let Some(failure) = failure else { continue };
        match *failure {
            Failure::NotReady => count("node(s) were not ready".into()),
            Failure::Unschedulable => count("node(s) were unschedulable".into()),
            Failure::Taint(i) => {
                if let Some(t) = node.taints.get(i) {
                    count(format!(
                        "node(s) had untolerated taint {{{}: {}}}",
                        t.key, t.value
                    ));
                }
            }
            Failure::NodeAffinity => {
                count("node(s) didn't match Pod's node affinity/selector".into())
            }
            Failure::Platform => {
                let shown = if node.platform.is_empty() {
                    "unknown"
                } else {
                    node.platform.as_str()
                };
                count(format!(
                    "node(s) have platform {shown} but image offers {}",
                    describe(image_platforms.unwrap_or_default())
                ));
            }
            Failure::TooManyPods => count("Too many pods".into()),
            Failure::Resources { cpu, memory } => {
                if cpu {
                    count("Insufficient cpu".into());
                }
                if memory {
                    count("Insufficient memory".into());
                }
            }
            Failure::TopologySpread => {
                count("node(s) didn't match pod topology spread constraints".into())
            }
            Failure::AntiAffinity => count("node(s) didn't match pod anti-affinity rules".into()),
            Failure::ExistingAntiAffinity => {
                count("node(s) didn't satisfy existing pods anti-affinity rules".into())
            }
            Failure::VolumeNodeAffinity => {
                count("node(s) had volume node affinity conflict".into())
            }
        }
    }
    let mut parts: Vec<String> = reasons
        .into_iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    parts.sort();
    format!(
        "0/{} nodes are available: {}.",
        nodes.len(),
        parts.join(", ")
    )
}

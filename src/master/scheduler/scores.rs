//! Scores: how good each feasible node is for the pod.
//!
//! Each plugin yields a raw value per node, normalized over the feasible nodes to
//! `0..=MAX` (so a plugin's influence does not depend on its units), then weighted and summed
//! as kube-scheduler does. Integer arithmetic throughout: the result is exact and the same on
//! every machine, and the highest total wins, ties going to the node running fewer pods and
//! then to the first name.

use crate::api::scheduling::{tolerated, PreferredSchedulingTerm, TaintEffect, Toleration};
use crate::api::Pod;

use super::snapshot::{NodeSnapshot, Snapshot};
use super::Requests;

/// Full marks for one plugin. Fine-grained, so least-requested rarely ties by rounding.
const MAX: u64 = 1_000_000;

/// Plugin weights, kube-scheduler's defaults: taints count most, then affinity and spreading,
/// then free resources.
const W_LEAST_REQUESTED: u64 = 1;
const W_NODE_AFFINITY: u64 = 2;
const W_TAINTS: u64 = 3;
const W_ANTI_AFFINITY: u64 = 2;
const W_SPREAD: u64 = 2;
const W_SIBLINGS: u64 = 2;

/// Raw plugin values for one feasible node; for all but the first two, lower is better.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Raw {
    /// Free cpu share plus free memory share after placing, in millionths (0..=2 MAX).
    least_requested: u64,
    /// Sum of the weights of the matching preferred node-affinity terms.
    node_affinity: u64,
    /// Untolerated `PreferNoSchedule` taints.
    prefer_no_schedule: u64,
    /// Sum over preferred anti-affinity terms of weight × matching pods on the node.
    anti_affinity: u64,
    /// Matching pods on the node, summed over `ScheduleAnyway` spread constraints.
    spread: u64,
    /// Live pods on the node with the same controller as this pod.
    siblings: u64,
}

/// The per-pod inputs of scoring, with every cross-pod count computed once per decision.
pub(super) struct PodScorer<'a> {
    req: Requests,
    preferred: &'a [PreferredSchedulingTerm],
    tolerations: &'a [Toleration],
    anti_affinity: Option<Vec<u64>>,
    spread: Option<Vec<u64>>,
    siblings: Option<Vec<u32>>,
}

impl<'a> PodScorer<'a> {
    pub fn new(snap: &Snapshot, pod: &'a Pod, req: Requests) -> Self {
        let ns = pod.metadata.ns();
        let affinity = pod.spec.affinity.as_ref();
        let preferred = affinity
            .and_then(|a| a.node_affinity.as_ref())
            .map(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_slice()
            })
            .unwrap_or_default();
        let anti_terms = affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .map(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_slice()
            })
            .unwrap_or_default();
        let mut anti_affinity: Option<Vec<u64>> = None;
        for t in anti_terms {
            let counts = snap.count_matching(ns, &t.pod_affinity_term.label_selector, true);
            let sum = anti_affinity.get_or_insert_with(|| vec![0; counts.len()]);
            let weight = u64::try_from(t.weight).unwrap_or(0);
            for (s, c) in sum.iter_mut().zip(counts) {
                *s += weight * u64::from(c);
            }
        }
        let mut spread: Option<Vec<u64>> = None;
        for c in pod.spec.topology_spread_constraints.iter().filter(|c| {
            c.when_unsatisfiable == crate::api::scheduling::WhenUnsatisfiable::ScheduleAnyway
        }) {
            let counts = snap.count_matching(ns, &c.label_selector, false);
            let sum = spread.get_or_insert_with(|| vec![0; counts.len()]);
            for (s, c) in sum.iter_mut().zip(counts) {
                *s += u64::from(c);
            }
        }
        PodScorer {
            req,
            preferred,
            tolerations: &pod.spec.tolerations,
            anti_affinity,
            spread,
            siblings: pod
                .metadata
                .controller_ref()
                .map(|owner| snap.count_siblings(&owner.uid)),
        }
    }

    pub fn raw(&self, idx: usize, node: &NodeSnapshot) -> Raw {
        let node_affinity = self
            .preferred
            .iter()
            .filter(|p| p.preference.matches(&node.labels))
            .map(|p| u64::try_from(p.weight).unwrap_or(0))
            .sum();
        let prefer_no_schedule = node
            .taints
            .iter()
            .filter(|t| {
                t.effect == TaintEffect::PreferNoSchedule && !tolerated(self.tolerations, t)
            })
            .count() as u64;
        let at = |v: &Option<Vec<u64>>| v.as_ref().map_or(0, |v| v[idx]);
        Raw {
            least_requested: least_requested(self.req, node),
            node_affinity,
            prefer_no_schedule,
            anti_affinity: at(&self.anti_affinity),
            spread: at(&self.spread),
            siblings: self.siblings.as_ref().map_or(0, |v| u64::from(v[idx])),
        }
    }
}

/// Free share of one resource after placing the pod, in millionths.
fn free_share(allocatable: u64, requested: u64, pod: u64) -> u64 {
    if allocatable == 0 {
        return 0;
    }
    let free = allocatable.saturating_sub(requested.saturating_add(pod));
    // free <= allocatable, so the quotient is at most MAX and fits.
    (u128::from(free) * u128::from(MAX) / u128::from(allocatable)) as u64
}

/// Least-requested: the sum (equivalently, average) of the free cpu and memory shares, so
/// pods spread over the fleet and small boards are not packed while big ones idle.
fn least_requested(req: Requests, node: &NodeSnapshot) -> u64 {
    free_share(
        node.allocatable_cpu_millis,
        node.requested_cpu_millis,
        req.cpu_millis,
    ) + free_share(
        node.allocatable_memory_bytes,
        node.requested_memory_bytes,
        req.memory_bytes,
    )
}

/// Range of one component over the feasible nodes.
fn range(raws: &[(usize, Raw)], f: impl Fn(&Raw) -> u64) -> (u64, u64) {
    raws.iter()
        .map(|(_, r)| f(r))
        .fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// `MAX` for the smallest value, 0 for the largest, linear between; all equal scores `MAX`.
fn lower_is_better(v: u64, (lo, hi): (u64, u64)) -> u64 {
    if hi <= lo {
        MAX
    } else {
        (hi - v) * MAX / (hi - lo)
    }
}

/// The winning node's index among `raws` (pairs of node index and raw values, in node-name
/// order), or `None` when there are none.
pub(super) fn best(raws: &[(usize, Raw)], nodes: &[NodeSnapshot]) -> Option<usize> {
    let affinity_max = range(raws, |r| r.node_affinity).1;
    let taints = range(raws, |r| r.prefer_no_schedule);
    let anti = range(raws, |r| r.anti_affinity);
    let spread = range(raws, |r| r.spread);
    let siblings = range(raws, |r| r.siblings);
    let mut best: Option<(usize, u64, u64)> = None;
    for &(idx, r) in raws {
        // No matching preference anywhere: the plugin scores every node 0.
        let affinity = (r.node_affinity * MAX)
            .checked_div(affinity_max)
            .unwrap_or(0);
        let total = W_LEAST_REQUESTED * (r.least_requested / 2)
            + W_NODE_AFFINITY * affinity
            + W_TAINTS * lower_is_better(r.prefer_no_schedule, taints)
            + W_ANTI_AFFINITY * lower_is_better(r.anti_affinity, anti)
            + W_SPREAD * lower_is_better(r.spread, spread)
            + W_SIBLINGS * lower_is_better(r.siblings, siblings);
        let pods = nodes[idx].pod_count;
        // Strictly better only: on a full tie the earlier (lexically first) name stays.
        let better = match best {
            None => true,
            Some((_, bt, bp)) => total > bt || (total == bt && pods < bp),
        };
        if better {
            best = Some((idx, total, pods));
        }
    }
    best.map(|(idx, _, _)| idx)
}

//! The scheduler's view of the cluster: one [`NodeSnapshot`] per node plus indexes of the
//! placed pods, updated in place when a pod is bound.
//!
//! A scheduling pass places many pods against the same store read. Recomputing every node's
//! usage and every selector's per-node counts from all pods for each decision is quadratic, so
//! the snapshot keeps them incrementally: resources and pod counts per node, and placed pods
//! grouped by their (namespace, labels). Pods of one controller share their labels, so a
//! selector is matched against a few groups instead of thousands of pods, and each group
//! knows how many of its pods sit on each node.

use std::collections::{BTreeMap, HashMap};

use crate::api::node::{LABEL_ARCH, LABEL_ARCH_VARIANT, LABEL_OS};
use crate::api::quantity::{parse_bytes, parse_count, parse_cpu_millis};
use crate::api::scheduling::Taint;
use crate::api::selector::LabelSelector;
use crate::api::{Node, Pod, PodPhase};

use super::platform::normalize_platform;
use super::pod_requests;

/// What the scheduler needs to know about one node, precomputed from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub allocatable_cpu_millis: u64,
    pub allocatable_memory_bytes: u64,
    pub allocatable_pods: u64,
    pub requested_cpu_millis: u64,
    pub requested_memory_bytes: u64,
    pub pod_count: u64,
    /// OCI platform like "linux/arm64", "linux/arm/v7", "linux/amd64"
    pub platform: String,
}

/// Kubernetes' default when a node does not report `pods`.
const DEFAULT_MAX_PODS: u64 = 110;

/// Pods per node, by node index. Sparse: a group or owner usually covers few nodes.
pub(super) type NodeCounts = HashMap<u32, u32>;

/// Placed pods sharing a namespace (see `groups_by_namespace`) and a label set.
#[derive(Debug)]
pub(super) struct LabelGroup {
    pub labels: BTreeMap<String, String>,
    /// Terminating pods are kept apart: spreading ignores them (a rolling update must not
    /// fight its own outgoing pods), anti-affinity does not (they still hold the node).
    pub terminating: bool,
    pub per_node: NodeCounts,
}

/// A required anti-affinity term of placed pods, which keeps matching pods off their nodes.
#[derive(Debug)]
pub(super) struct PlacedAntiTerm {
    pub namespace: String,
    pub selector: LabelSelector,
    pub per_node: NodeCounts,
}

/// The cluster as one scheduling pass sees it. Nodes are kept sorted by name, so iteration
/// order (and with it every tie) does not depend on the order the store returned them in.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(super) nodes: Vec<NodeSnapshot>,
    index: HashMap<String, u32>,
    pub(super) groups: Vec<LabelGroup>,
    group_ids: HashMap<(String, bool, BTreeMap<String, String>), usize>,
    pub(super) groups_by_namespace: HashMap<String, Vec<usize>>,
    /// Live (not terminating) pods per controller uid, for default sibling spreading.
    pub(super) owners: HashMap<String, NodeCounts>,
    pub(super) anti_terms: Vec<PlacedAntiTerm>,
    anti_ids: HashMap<(String, String), usize>,
}

impl Snapshot {
    /// Builds the snapshot from stored nodes and pods; pods bound to a node take part,
    /// finished ones (`Succeeded`/`Failed`) hold nothing and are skipped.
    pub fn new(nodes: &[Node], pods: &[Pod]) -> Snapshot {
        let mut snap = Snapshot::from_nodes(nodes.iter().map(|n| node_snapshot(n, &[])).collect());
        for pod in pods {
            if let Some(node) = &pod.spec.node_name {
                snap.add_pod(pod, node);
            }
        }
        snap
    }

    /// A snapshot of nodes whose usage is already summed (no pods indexed yet).
    pub fn from_nodes(mut nodes: Vec<NodeSnapshot>) -> Snapshot {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut index = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            // Node counts fit u32: a cluster of four billion boards is not herd's problem.
            index.entry(n.name.clone()).or_insert(i as u32);
        }
        Snapshot {
            nodes,
            index,
            ..Snapshot::default()
        }
    }

    pub fn nodes(&self) -> &[NodeSnapshot] {
        &self.nodes
    }

    /// Accounts for `pod` running on `node`: its requests, its labels for selectors and
    /// spreading, its controller for sibling spreading and its required anti-affinity. Call
    /// it after each bind so the next decision in the same pass sees the pod. Returns false
    /// (and changes nothing) when the node is unknown or the pod has finished.
    pub fn add_pod(&mut self, pod: &Pod, node: &str) -> bool {
        if matches!(pod.status.phase, PodPhase::Succeeded | PodPhase::Failed) {
            return false;
        }
        let Some(&idx) = self.index.get(node) else {
            return false;
        };
        let r = pod_requests(pod);
        let n = &mut self.nodes[idx as usize];
        n.requested_cpu_millis = n.requested_cpu_millis.saturating_add(r.cpu_millis);
        n.requested_memory_bytes = n.requested_memory_bytes.saturating_add(r.memory_bytes);
        n.pod_count += 1;

        let namespace = pod.metadata.ns();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let key = (
            namespace.to_string(),
            terminating,
            pod.metadata.labels.clone(),
        );
        let gid = match self.group_ids.get(&key) {
            Some(&g) => g,
            None => {
                let g = self.groups.len();
                self.groups.push(LabelGroup {
                    labels: key.2.clone(),
                    terminating,
                    per_node: NodeCounts::new(),
                });
                self.groups_by_namespace
                    .entry(key.0.clone())
                    .or_default()
                    .push(g);
                self.group_ids.insert(key, g);
                g
            }
        };
        *self.groups[gid].per_node.entry(idx).or_default() += 1;

        if !terminating {
            if let Some(owner) = pod.metadata.controller_ref() {
                *self
                    .owners
                    .entry(owner.uid.clone())
                    .or_default()
                    .entry(idx)
                    .or_default() += 1;
            }
        }
        let terms = pod
            .spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .map(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_slice()
            })
            .unwrap_or_default();
        for term in terms {
            // LabelSelector has no Hash; its Debug form identifies it exactly.
            let key = (namespace.to_string(), format!("{:?}", term.label_selector));
            let tid = *self.anti_ids.entry(key).or_insert_with(|| {
                self.anti_terms.push(PlacedAntiTerm {
                    namespace: namespace.to_string(),
                    selector: term.label_selector.clone(),
                    per_node: NodeCounts::new(),
                });
                self.anti_terms.len() - 1
            });
            *self.anti_terms[tid].per_node.entry(idx).or_default() += 1;
        }
        true
    }

    /// Per node, the placed pods in `namespace` matching `selector`; terminating pods only
    /// when `with_terminating`.
    pub(super) fn count_matching(
        &self,
        namespace: &str,
        selector: &LabelSelector,
        with_terminating: bool,
    ) -> Vec<u32> {
        let mut counts = vec![0u32; self.nodes.len()];
        let Some(groups) = self.groups_by_namespace.get(namespace) else {
            return counts;
        };
        for &g in groups {
            let group = &self.groups[g];
            if (group.terminating && !with_terminating) || !selector.matches(&group.labels) {
                continue;
            }
            for (&node, &n) in &group.per_node {
                counts[node as usize] += n;
            }
        }
        counts
    }

    /// Per node, the live pods controlled by the owner with `uid`.
    pub(super) fn count_siblings(&self, uid: &str) -> Vec<u32> {
        let mut counts = vec![0u32; self.nodes.len()];
        if let Some(per_node) = self.owners.get(uid) {
            for (&node, &n) in per_node {
                counts[node as usize] += n;
            }
        }
        counts
    }
}

/// Builds a snapshot from the stored node and the pods bound to it. Finished pods
/// (`Succeeded`/`Failed`) hold no resources and are not counted.
pub fn node_snapshot(node: &Node, pods_on_node: &[&Pod]) -> NodeSnapshot {
    let amount = |name: &str, parse: fn(&str) -> Result<u64, _>, default: u64| {
        node.status
            .allocatable
            .get(name)
            .or_else(|| node.status.capacity.get(name))
            .map(|q| parse(q).unwrap_or(0))
            .unwrap_or(default)
    };
    let mut snap = NodeSnapshot {
        name: node.metadata.name.clone(),
        labels: node.metadata.labels.clone(),
        ready: node.is_ready(),
        unschedulable: node.spec.unschedulable,
        taints: node.spec.taints.clone(),
        allocatable_cpu_millis: amount("cpu", parse_cpu_millis, 0),
        allocatable_memory_bytes: amount("memory", parse_bytes, 0),
        allocatable_pods: amount("pods", parse_count, DEFAULT_MAX_PODS),
        platform: node_platform(node),
        ..NodeSnapshot::default()
    };
    for pod in pods_on_node {
        if matches!(pod.status.phase, PodPhase::Succeeded | PodPhase::Failed) {
            continue;
        }
        let r = pod_requests(pod);
        snap.requested_cpu_millis = snap.requested_cpu_millis.saturating_add(r.cpu_millis);
        snap.requested_memory_bytes = snap.requested_memory_bytes.saturating_add(r.memory_bytes);
        snap.pod_count += 1;
    }
    snap
}

/// `os/arch[/variant]` from the node's reported system info, falling back to its labels
/// for a node that registered before reporting info.
fn node_platform(node: &Node) -> String {
    let info = &node.status.node_info;
    let label = |k: &str| node.metadata.labels.get(k).cloned().unwrap_or_default();
    let pick = |v: &str, k: &str| {
        if v.is_empty() {
            label(k)
        } else {
            v.to_string()
        }
    };
    let os = pick(&info.operating_system, LABEL_OS);
    let arch = pick(&info.architecture, LABEL_ARCH);
    let variant = pick(&info.variant, LABEL_ARCH_VARIANT);
    if arch.is_empty() {
        return String::new();
    }
    let os = if os.is_empty() {
        "linux".to_string()
    } else {
        os
    };
    let raw = if variant.is_empty() {
        format!("{os}/{arch}")
    } else {
        format!("{os}/{arch}/{variant}")
    };
    normalize_platform(&raw)
}

//! Scheduler v1: a pure function from a pod and node snapshots to a node, or the reasons it
//! fits nowhere.
//!
//! Filters remove nodes that cannot run the pod; the survivors are scored by how much room
//! they keep free (least-requested), so pods spread over the fleet and small boards are not
//! packed full while big ones idle. Everything is deterministic: the same inputs always bind
//! the same node, which keeps tests and a restarted master's decisions reproducible.

mod platform;

use std::collections::{BTreeMap, HashMap};

use crate::api::node::{LABEL_ARCH, LABEL_ARCH_VARIANT, LABEL_OS};
use crate::api::quantity::{parse_bytes, parse_count, parse_cpu_millis};
use crate::api::{Node, Pod, PodPhase};

pub use platform::{normalize_platform, platform_runs};

/// What the scheduler needs to know about one node, precomputed from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    pub unschedulable: bool,
    pub allocatable_cpu_millis: u64,
    pub allocatable_memory_bytes: u64,
    pub allocatable_pods: u64,
    pub requested_cpu_millis: u64,
    pub requested_memory_bytes: u64,
    pub pod_count: u64,
    /// OCI platform like "linux/arm64", "linux/arm/v7", "linux/amd64"
    pub platform: String,
}

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

/// Kubernetes' default when a node does not report `pods`.
const DEFAULT_MAX_PODS: u64 = 110;

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

/// Why one node was filtered out. A node can fail on both cpu and memory at once, as in
/// kube-scheduler's resource-fit plugin; other filters stop at the first failure.
fn filter(
    pod: &Pod,
    req: Requests,
    node: &NodeSnapshot,
    image_platforms: Option<&[String]>,
) -> Vec<String> {
    if !node.ready {
        return vec!["node(s) were not ready".into()];
    }
    if node.unschedulable {
        return vec!["node(s) were unschedulable".into()];
    }
    let selector_ok = pod
        .spec
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    if !selector_ok {
        return vec!["node(s) didn't match Pod's node affinity/selector".into()];
    }
    if let Some(offered) = image_platforms {
        if !offered.iter().any(|p| platform_runs(&node.platform, p)) {
            let shown = if node.platform.is_empty() {
                "unknown"
            } else {
                node.platform.as_str()
            };
            return vec![format!(
                "node(s) have platform {shown} but image offers {}",
                platform::describe(offered)
            )];
        }
    }
    if node.pod_count.saturating_add(1) > node.allocatable_pods {
        return vec!["Too many pods".into()];
    }
    let mut reasons = Vec::new();
    let free_cpu = node
        .allocatable_cpu_millis
        .saturating_sub(node.requested_cpu_millis);
    let free_memory = node
        .allocatable_memory_bytes
        .saturating_sub(node.requested_memory_bytes);
    // A pod that requests nothing always fits, even on an overcommitted node.
    if req.cpu_millis > 0 && req.cpu_millis > free_cpu {
        reasons.push("Insufficient cpu".into());
    }
    if req.memory_bytes > 0 && req.memory_bytes > free_memory {
        reasons.push("Insufficient memory".into());
    }
    reasons
}

/// Free share of one resource after placing the pod, in millionths.
fn free_share(allocatable: u64, requested: u64, pod: u64) -> u128 {
    if allocatable == 0 {
        return 0;
    }
    let free = allocatable.saturating_sub(requested.saturating_add(pod));
    u128::from(free) * 1_000_000 / u128::from(allocatable)
}

/// Least-requested score: the sum (equivalently, average) of the free cpu and memory shares.
fn score(req: Requests, node: &NodeSnapshot) -> u128 {
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

/// Picks the node for `pod`. `image_platforms` lists the platforms the pod's images offer;
/// `None` when unknown (the image was not inspected), which skips the platform filter.
/// `spec.nodeName` is not looked at: a pod that names its node is not scheduled.
///
/// Ties in score go to the node running fewer pods, so pods without requests still spread,
/// then to the lexically first name.
pub fn schedule(pod: &Pod, nodes: &[NodeSnapshot], image_platforms: Option<&[String]>) -> Decision {
    if nodes.is_empty() {
        return Decision::Unschedulable {
            message: "0/0 nodes are available: no nodes registered.".into(),
        };
    }
    let req = pod_requests(pod);
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut best: Option<(&NodeSnapshot, u128)> = None;
    for node in nodes {
        let failed = filter(pod, req, node, image_platforms);
        if !failed.is_empty() {
            for r in failed {
                *reasons.entry(r).or_default() += 1;
            }
            continue;
        }
        let s = score(req, node);
        let better = match best {
            None => true,
            Some((b, bs)) => {
                (
                    s,
                    std::cmp::Reverse(node.pod_count),
                    std::cmp::Reverse(&node.name),
                ) > (
                    bs,
                    std::cmp::Reverse(b.pod_count),
                    std::cmp::Reverse(&b.name),
                )
            }
        };
        if better {
            best = Some((node, s));
        }
    }
    if let Some((node, _)) = best {
        return Decision::Bind {
            node: node.name.clone(),
        };
    }
    // kube-scheduler sorts the "count reason" strings themselves.
    let mut parts: Vec<String> = reasons
        .into_iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    parts.sort();
    Decision::Unschedulable {
        message: format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            parts.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests;

//! Scheduler v2 throughput: 10,000 pods from 100 owners (each with topology spread and node
//! affinity, some with pod anti-affinity and tolerations) placed one by one onto 1,000 nodes,
//! the way the scheduling controller does it: one snapshot per pass, `add_pod` after each bind.
//!
//! Prints placements per second for the whole pass (best and median of `HERD_SCHED_RUNS`,
//! default 5), then lets criterion time single decisions against the fully loaded cluster.
//! The workload is generated from a fixed seed, so every run schedules the same pods.
//!
//! `CARGO_TARGET_DIR=/var/tmp/herd-target cargo bench --bench scheduler`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use herd::api::meta::{Condition, OwnerReference};
use herd::api::node::{NodeSpec, NodeStatus, NodeSystemInfo, LABEL_HOSTNAME};
use herd::api::pod::{Container, ResourceRequirements};
use herd::api::scheduling::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement,
    NodeSelectorTerm, PodAffinityTerm, PodAntiAffinity, PreferredSchedulingTerm, Taint,
    TaintEffect, Toleration, TolerationOperator, TopologySpreadConstraint, WeightedPodAffinityTerm,
    WhenUnsatisfiable, TOPOLOGY_HOSTNAME,
};
use herd::api::selector::LabelSelector;
use herd::api::{Node, ObjectMeta, Pod, PodSpec};
use herd::master::scheduler::{Decision, Snapshot};

const NODES: usize = 1_000;
const OWNERS: usize = 100;
const REPLICAS: usize = 100;
const ZONES: usize = 10;

/// xorshift64*: a fixed, dependency-free stream so the workload never changes between runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn labels(kv: &[(&str, String)]) -> BTreeMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn nodes(rng: &mut Rng) -> Vec<Node> {
    (0..NODES)
        .map(|i| {
            let name = format!("node-{i:04}");
            let cores = 2 + rng.below(7);
            let (arch, variant) = if i % 4 == 0 {
                ("arm", "v7")
            } else {
                ("arm64", "")
            };
            let mut taints = Vec::new();
            match i % 20 {
                0 => taints.push(Taint {
                    key: "dedicated".into(),
                    value: "gpu".into(),
                    effect: TaintEffect::NoSchedule,
                    time_added: None,
                }),
                1 => taints.push(Taint {
                    key: "spot".into(),
                    value: String::new(),
                    effect: TaintEffect::PreferNoSchedule,
                    time_added: None,
                }),
                _ => {}
            }
            Node {
                metadata: ObjectMeta {
                    name: name.clone(),
                    labels: labels(&[
                        (LABEL_HOSTNAME, name),
                        ("topology.kubernetes.io/zone", format!("zone-{}", i % ZONES)),
                        ("herd.io/cores", cores.to_string()),
                        ("disk", if i % 3 == 0 { "ssd" } else { "sd" }.to_string()),
                    ]),
                    ..Default::default()
                },
                spec: NodeSpec {
                    taints,
                    ..Default::default()
                },
                status: NodeStatus {
                    conditions: vec![Condition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        ..Default::default()
                    }],
                    node_info: NodeSystemInfo {
                        architecture: arch.into(),
                        variant: variant.into(),
                        operating_system: "linux".into(),
                        ..Default::default()
                    },
                    allocatable: labels(&[
                        ("cpu", cores.to_string()),
                        ("memory", format!("{}Gi", cores)),
                        ("pods", "110".to_string()),
                    ]),
                    ..Default::default()
                },
                ..Default::default()
            }
        })
        .collect()
}

fn req(key: &str, operator: NodeSelectorOperator, values: &[String]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator,
        values: values.to_vec(),
    }
}

fn match_app(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: labels(&[("app", app.to_string())]),
        ..Default::default()
    }
}

/// One owner's pod template: spread on every owner, node affinity on every owner (required
/// zones or core counts, plus a preference), anti-affinity on some, tolerations on some.
fn template(rng: &mut Rng, owner: usize) -> Pod {
    let app = format!("app-{owner:03}");
    let uid = format!("uid-{owner:03}");
    let mut required = Vec::new();
    if owner.is_multiple_of(2) {
        let first = rng.below(ZONES as u64) as usize;
        let zones: Vec<String> = (0..4)
            .map(|k| format!("zone-{}", (first + k * 2) % ZONES))
            .collect();
        required.push(req(
            "topology.kubernetes.io/zone",
            NodeSelectorOperator::In,
            &zones,
        ));
    } else {
        required.push(req(
            "herd.io/cores",
            NodeSelectorOperator::Gt,
            &[(1 + rng.below(3)).to_string()],
        ));
    }
    let node_affinity = NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: required,
            }],
        }),
        preferred_during_scheduling_ignored_during_execution: vec![PreferredSchedulingTerm {
            weight: 1 + rng.below(100) as i32,
            preference: NodeSelectorTerm {
                match_expressions: vec![req("disk", NodeSelectorOperator::In, &["ssd".into()])],
            },
        }],
    };
    let pod_anti_affinity = match owner % 10 {
        // One replica per node.
        0 => Some(PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: vec![PodAffinityTerm {
                label_selector: match_app(&app),
                topology_key: TOPOLOGY_HOSTNAME.into(),
            }],
            ..Default::default()
        }),
        // Keep away from the previous owner's pods where possible.
        1 | 2 => Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: vec![WeightedPodAffinityTerm {
                weight: 50,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: match_app(&format!("app-{:03}", owner - 1)),
                    topology_key: TOPOLOGY_HOSTNAME.into(),
                },
            }],
            ..Default::default()
        }),
        _ => None,
    };
    let tolerations = if owner.is_multiple_of(5) {
        vec![Toleration {
            key: "dedicated".into(),
            operator: TolerationOperator::Equal,
            value: "gpu".into(),
            effect: Some(TaintEffect::NoSchedule),
            toleration_seconds: None,
        }]
    } else {
        Vec::new()
    };
    let when = if owner.is_multiple_of(3) {
        WhenUnsatisfiable::ScheduleAnyway
    } else {
        WhenUnsatisfiable::DoNotSchedule
    };
    Pod {
        metadata: ObjectMeta {
            namespace: Some(format!("ns-{}", owner % 4)),
            labels: labels(&[("app", app.clone()), ("pod-template-hash", uid.clone())]),
            owner_references: vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: app.clone(),
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            ..Default::default()
        },
        spec: PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: format!("registry.local/{app}:1"),
                resources: ResourceRequirements {
                    requests: labels(&[
                        ("cpu", format!("{}m", 50 + 25 * rng.below(7))),
                        ("memory", format!("{}Mi", 32 + 16 * rng.below(7))),
                    ]),
                    limits: BTreeMap::new(),
                },
                ..Default::default()
            }],
            affinity: Some(Affinity {
                node_affinity: Some(node_affinity),
                pod_anti_affinity,
            }),
            tolerations,
            topology_spread_constraints: vec![TopologySpreadConstraint {
                max_skew: 1 + (owner % 3) as i32,
                topology_key: TOPOLOGY_HOSTNAME.into(),
                when_unsatisfiable: when,
                label_selector: match_app(&app),
            }],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Pods in the order the store lists them: by owner, then replica.
fn pods(rng: &mut Rng) -> Vec<Pod> {
    let mut out = Vec::with_capacity(OWNERS * REPLICAS);
    for owner in 0..OWNERS {
        let t = template(rng, owner);
        for r in 0..REPLICAS {
            let mut p = t.clone();
            p.metadata.name = format!("app-{owner:03}-{r:03}");
            out.push(p);
        }
    }
    out
}

/// One scheduling pass over every pod; returns the loaded snapshot, the time spent and how
/// many pods found no node.
fn pass(nodes: &[Node], pods: &[Pod], platforms: &[String]) -> (Snapshot, Duration, usize) {
    let start = Instant::now();
    let mut snap = Snapshot::new(nodes, &[]);
    let mut unschedulable = 0;
    for p in pods {
        match snap.schedule(p, Some(platforms)) {
            Decision::Bind { node } => {
                snap.add_pod(p, &node);
            }
            Decision::Unschedulable { .. } => unschedulable += 1,
        }
    }
    (snap, start.elapsed(), unschedulable)
}

fn main() {
    let mut rng = Rng(0x5eed_f00d_4e7d);
    let nodes = nodes(&mut rng);
    let pods = pods(&mut rng);
    let platforms = vec!["linux/arm64".to_string(), "linux/arm/v7".to_string()];
    let runs: usize = std::env::var("HERD_SCHED_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);

    let mut times = Vec::new();
    let mut loaded = None;
    for _ in 0..runs.max(1) {
        let (snap, took, unschedulable) = pass(&nodes, &pods, &platforms);
        times.push(took);
        let per_node: Vec<u64> = snap.nodes().iter().map(|n| n.pod_count).collect();
        let (lo, hi) = (
            per_node.iter().min().copied().unwrap_or(0),
            per_node.iter().max().copied().unwrap_or(0),
        );
        println!(
            "pass: {} pods onto {} nodes in {:.3} s ({} unschedulable, pods per node {lo}..{hi})",
            pods.len(),
            nodes.len(),
            took.as_secs_f64(),
            unschedulable
        );
        loaded = Some(snap);
    }
    times.sort();
    let rate = |d: Duration| pods.len() as f64 / d.as_secs_f64();
    let best = times[0];
    let median = times[times.len() / 2];
    println!(
        "scheduler: {:.0} placements/s median, {:.0} best ({} pods, {} owners, {} nodes, {} runs)",
        rate(median),
        rate(best),
        pods.len(),
        OWNERS,
        nodes.len(),
        times.len()
    );

    // Single decisions against the loaded cluster (the snapshot is not changed).
    let Some(loaded) = loaded else { return };
    let mut c = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let spread_only = &pods[REPLICAS * 3];
    let anti = &pods[REPLICAS * 10];
    c.bench_function("decision/spread+affinity", |b| {
        b.iter(|| black_box(loaded.schedule(black_box(spread_only), Some(&platforms))))
    });
    c.bench_function("decision/required-anti-affinity", |b| {
        b.iter(|| black_box(loaded.schedule(black_box(anti), Some(&platforms))))
    });
    c.final_summary();
}

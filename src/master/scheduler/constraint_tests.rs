//! Scheduler v2: spreading, affinity, anti-affinity, taints, determinism and the incremental
//! snapshot. Placement sequences go through `Snapshot::add_pod`, as the controller does.

use std::collections::BTreeMap;

use super::*;
use crate::api::meta::{Condition, OwnerReference};
use crate::api::node::{NodeSpec, NodeStatus};
use crate::api::pod::{Container, ResourceRequirements};
use crate::api::scheduling::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement,
    NodeSelectorTerm, PodAffinityTerm, PodAntiAffinity, PreferredSchedulingTerm, Taint,
    TaintEffect, Toleration, TolerationOperator, TopologySpreadConstraint, WeightedPodAffinityTerm,
    WhenUnsatisfiable, TOPOLOGY_HOSTNAME,
};
use crate::api::selector::LabelSelector;
use crate::api::{Node, ObjectMeta, PodPhase, PodSpec, PodStatus};

const GI: u64 = 1 << 30;

fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(name: &str) -> NodeSnapshot {
    NodeSnapshot {
        name: name.into(),
        ready: true,
        allocatable_cpu_millis: 4000,
        allocatable_memory_bytes: 4 * GI,
        allocatable_pods: 110,
        platform: "linux/arm64".into(),
        ..Default::default()
    }
}

fn labeled(name: &str, labels: &[(&str, &str)]) -> NodeSnapshot {
    NodeSnapshot {
        labels: map(labels),
        ..node(name)
    }
}

fn tainted(name: &str, key: &str, value: &str, effect: TaintEffect) -> NodeSnapshot {
    NodeSnapshot {
        taints: vec![Taint {
            key: key.into(),
            value: value.into(),
            effect,
            time_added: None,
        }],
        ..node(name)
    }
}

/// A pod requesting 100m and 64Mi, in the default namespace.
fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: name.into(),
            labels: map(labels),
            ..Default::default()
        },
        spec: PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: "i".into(),
                resources: ResourceRequirements {
                    requests: map(&[("cpu", "100m"), ("memory", "64Mi")]),
                    limits: BTreeMap::new(),
                },
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn owned_by(mut p: Pod, uid: &str) -> Pod {
    p.metadata.owner_references = vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: uid.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: None,
    }];
    p
}

fn selector(kv: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: map(kv),
        ..Default::default()
    }
}

fn spread(max_skew: i32, when: WhenUnsatisfiable, kv: &[(&str, &str)]) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: TOPOLOGY_HOSTNAME.into(),
        when_unsatisfiable: when,
        label_selector: selector(kv),
    }
}

fn requirement(key: &str, op: NodeSelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn term(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: reqs,
    }
}

fn with_node_affinity(
    mut p: Pod,
    required: Vec<NodeSelectorTerm>,
    preferred: Vec<(i32, NodeSelectorTerm)>,
) -> Pod {
    let affinity = p.spec.affinity.get_or_insert_with(Affinity::default);
    affinity.node_affinity = Some(NodeAffinity {
        required_during_scheduling_ignored_during_execution: (!required.is_empty()).then_some(
            NodeSelector {
                node_selector_terms: required,
            },
        ),
        preferred_during_scheduling_ignored_during_execution: preferred
            .into_iter()
            .map(|(weight, preference)| PreferredSchedulingTerm { weight, preference })
            .collect(),
    });
    p
}

fn with_anti_affinity(
    mut p: Pod,
    required: &[&[(&str, &str)]],
    preferred: &[(i32, &[(&str, &str)])],
) -> Pod {
    let t = |kv: &[(&str, &str)]| PodAffinityTerm {
        label_selector: selector(kv),
        topology_key: TOPOLOGY_HOSTNAME.into(),
    };
    let affinity = p.spec.affinity.get_or_insert_with(Affinity::default);
    affinity.pod_anti_affinity = Some(PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: required
            .iter()
            .map(|kv| t(kv))
            .collect(),
        preferred_during_scheduling_ignored_during_execution: preferred
            .iter()
            .map(|(weight, kv)| WeightedPodAffinityTerm {
                weight: *weight,
                pod_affinity_term: t(kv),
            })
            .collect(),
    });
    p
}

fn toleration(
    key: &str,
    op: TolerationOperator,
    value: &str,
    effect: Option<TaintEffect>,
) -> Toleration {
    Toleration {
        key: key.into(),
        operator: op,
        value: value.into(),
        effect,
        toleration_seconds: None,
    }
}

fn bind(node: &str) -> Decision {
    Decision::Bind { node: node.into() }
}

fn unschedulable(message: &str) -> Decision {
    Decision::Unschedulable {
        message: message.into(),
    }
}

/// Schedules `p` and records the bind, as the controller does; the chosen node's name.
fn place(snap: &mut Snapshot, p: &Pod) -> String {
    match snap.schedule(p, None) {
        Decision::Bind { node } => {
            assert!(snap.add_pod(p, &node));
            node
        }
        Decision::Unschedulable { message } => panic!("{}: {message}", p.metadata.name),
    }
}

fn pod_counts(snap: &Snapshot) -> Vec<(String, u64)> {
    snap.nodes()
        .iter()
        .map(|n| (n.name.clone(), n.pod_count))
        .collect()
}

fn counts(kv: &[(&str, u64)]) -> Vec<(String, u64)> {
    kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn six_replicas_of_one_owner_land_two_per_node_on_three_equal_nodes() {
    for requests in [true, false] {
        let mut snap = Snapshot::from_nodes(vec![node("c"), node("a"), node("b")]);
        for i in 0..6 {
            let mut p = owned_by(pod(&format!("web-{i}"), &[("app", "web")]), "rs-1");
            if !requests {
                p.spec.containers[0].resources = ResourceRequirements::default();
            }
            place(&mut snap, &p);
        }
        assert_eq!(
            pod_counts(&snap),
            counts(&[("a", 2), ("b", 2), ("c", 2)]),
            "requests: {requests}"
        );
    }
}

#[test]
fn siblings_spread_even_onto_a_busier_node() {
    // a-busy already runs unrelated pods; the replicas still go one per node first.
    let mut busy = node("a-busy");
    busy.requested_cpu_millis = 1000;
    let mut snap = Snapshot::from_nodes(vec![busy, node("b"), node("c")]);
    let placed: Vec<String> = (0..3)
        .map(|i| {
            place(
                &mut snap,
                &owned_by(pod(&format!("w{i}"), &[("app", "w")]), "rs"),
            )
        })
        .collect();
    let mut sorted = placed.clone();
    sorted.sort();
    assert_eq!(sorted, ["a-busy", "b", "c"]);
}

#[test]
fn do_not_schedule_spread_keeps_counts_within_max_skew_against_least_requested() {
    let mut big = node("big");
    big.allocatable_cpu_millis = 64_000;
    big.allocatable_memory_bytes = 64 * GI;
    let nodes = vec![big, node("s1"), node("s2")];
    // Without a constraint (and no owner), least-requested sends everything to the big node.
    let mut free = Snapshot::from_nodes(nodes.clone());
    for i in 0..9 {
        place(&mut free, &pod(&format!("p{i}"), &[("app", "web")]));
    }
    assert_eq!(
        pod_counts(&free),
        counts(&[("big", 9), ("s1", 0), ("s2", 0)])
    );
    for max_skew in [1u64, 2] {
        let mut snap = Snapshot::from_nodes(nodes.clone());
        for i in 0..9 {
            let mut p = pod(&format!("p{i}"), &[("app", "web")]);
            p.spec.topology_spread_constraints = vec![spread(
                max_skew as i32,
                WhenUnsatisfiable::DoNotSchedule,
                &[("app", "web")],
            )];
            place(&mut snap, &p);
            let c: Vec<u64> = pod_counts(&snap).iter().map(|(_, n)| *n).collect();
            let (lo, hi) = (c.iter().min().copied(), c.iter().max().copied());
            assert!(
                hi.unwrap_or(0) - lo.unwrap_or(0) <= max_skew,
                "skew {max_skew}: {c:?}"
            );
        }
    }
}

#[test]
fn a_spread_violation_is_reported_and_only_eligible_nodes_count_as_domains() {
    let ssd = |name: &str| labeled(name, &[("disk", "ssd")]);
    let with_web_on_a = |b: NodeSnapshot| {
        let mut snap = Snapshot::from_nodes(vec![ssd("a"), b, labeled("c", &[("disk", "hdd")])]);
        for i in 0..2 {
            snap.add_pod(&pod(&format!("x{i}"), &[("app", "web")]), "a");
        }
        snap
    };
    let mut p = pod("new", &[("app", "web")]);
    p.spec.node_selector = map(&[("disk", "ssd")]);
    p.spec.topology_spread_constraints = vec![spread(
        1,
        WhenUnsatisfiable::DoNotSchedule,
        &[("app", "web")],
    )];
    // Counts a=2, b=0: only b keeps the skew within 1. c does not match the nodeSelector and
    // is no domain at all.
    assert_eq!(with_web_on_a(ssd("b")).schedule(&p, None), bind("b"));
    // A full b still counts as a domain: the pod waits rather than piling onto a.
    let full = NodeSnapshot {
        requested_cpu_millis: 4000,
        ..ssd("b")
    };
    assert_eq!(
        with_web_on_a(full).schedule(&p, None),
        unschedulable(
            "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) didn't match pod topology spread constraints."
        )
    );
    // A cordoned b is no domain: with only a eligible, a is within any skew.
    let cordoned = NodeSnapshot {
        unschedulable: true,
        ..ssd("b")
    };
    assert_eq!(with_web_on_a(cordoned).schedule(&p, None), bind("a"));
}

#[test]
fn schedule_anyway_spread_prefers_emptier_nodes_but_never_blocks() {
    // b is busier, so least-requested alone would pick a.
    let busy_b = NodeSnapshot {
        requested_cpu_millis: 1000,
        ..node("b")
    };
    let mut snap = Snapshot::from_nodes(vec![node("a"), busy_b]);
    for i in 0..3 {
        snap.add_pod(&pod(&format!("x{i}"), &[("app", "web")]), "a");
    }
    let mut p = pod("new", &[("app", "web")]);
    p.spec.topology_spread_constraints = vec![spread(
        1,
        WhenUnsatisfiable::ScheduleAnyway,
        &[("app", "web")],
    )];
    assert_eq!(snap.schedule(&p, None), bind("b"));
    let mut only_a = Snapshot::from_nodes(vec![
        node("a"),
        NodeSnapshot {
            unschedulable: true,
            ..node("b")
        },
    ]);
    for i in 0..3 {
        only_a.add_pod(&pod(&format!("x{i}"), &[("app", "web")]), "a");
    }
    assert_eq!(only_a.schedule(&p, None), bind("a"));
}

#[test]
fn required_node_affinity_filters_with_every_operator() {
    use NodeSelectorOperator::*;
    let nodes = [
        labeled("pi-zero", &[("zone", "attic"), ("cores", "1")]),
        labeled(
            "pi-3",
            &[("zone", "attic"), ("cores", "4"), ("gpu", "none")],
        ),
        labeled("pi-5", &[("zone", "cellar"), ("cores", "4")]),
    ];
    let cases: Vec<(Vec<NodeSelectorTerm>, Decision)> = vec![
        (
            vec![term(vec![requirement("zone", In, &["cellar"])])],
            bind("pi-5"),
        ),
        (
            vec![term(vec![
                requirement("zone", NotIn, &["cellar"]),
                requirement("cores", Gt, &["2"]),
            ])],
            bind("pi-3"),
        ),
        (
            vec![term(vec![requirement("cores", Lt, &["2"])])],
            bind("pi-zero"),
        ),
        (
            vec![term(vec![requirement("gpu", Exists, &[])])],
            bind("pi-3"),
        ),
        (
            vec![term(vec![
                requirement("gpu", DoesNotExist, &[]),
                requirement("cores", Gt, &["1"]),
            ])],
            bind("pi-5"),
        ),
        // Terms are ORed.
        (
            vec![
                term(vec![requirement("zone", In, &["garage"])]),
                term(vec![requirement("cores", Lt, &["2"])]),
            ],
            bind("pi-zero"),
        ),
        (
            vec![term(vec![requirement("cores", Gt, &["4"])])],
            unschedulable(
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
            ),
        ),
    ];
    for (required, want) in cases {
        let p = with_node_affinity(pod("p", &[]), required.clone(), vec![]);
        assert_eq!(schedule(&p, &nodes, None), want, "{required:?}");
    }
}

#[test]
fn preferred_node_affinity_picks_the_heaviest_matching_node_without_filtering() {
    use NodeSelectorOperator::*;
    let nodes = [
        labeled("a", &[("disk", "hdd")]),
        labeled("b", &[("disk", "ssd")]),
        labeled("c", &[("disk", "ssd"), ("cores", "8")]),
    ];
    let ssd = term(vec![requirement("disk", In, &["ssd"])]);
    let many_cores = term(vec![requirement("cores", Gt, &["4"])]);
    let p = with_node_affinity(pod("p", &[]), vec![], vec![(10, ssd.clone())]);
    assert_eq!(schedule(&p, &nodes, None), bind("b"));
    let p = with_node_affinity(
        pod("p", &[]),
        vec![],
        vec![(10, ssd.clone()), (50, many_cores)],
    );
    assert_eq!(schedule(&p, &nodes, None), bind("c"));
    // Nothing preferred is available: the pod still runs.
    let p = with_node_affinity(pod("p", &[]), vec![], vec![(100, ssd)]);
    assert_eq!(schedule(&p, &nodes[..1], None), bind("a"));
}

#[test]
fn required_anti_affinity_by_hostname_puts_one_pod_per_node() {
    let mut snap = Snapshot::from_nodes(vec![node("a"), node("b"), node("c")]);
    let db = |i: usize| {
        with_anti_affinity(
            pod(&format!("db-{i}"), &[("app", "db")]),
            &[&[("app", "db")]],
            &[],
        )
    };
    let mut placed: Vec<String> = (0..3).map(|i| place(&mut snap, &db(i))).collect();
    placed.sort();
    assert_eq!(placed, ["a", "b", "c"]);
    assert_eq!(
        snap.schedule(&db(3), None),
        unschedulable("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.")
    );
    // Another namespace is out of the term's reach.
    let mut other = db(4);
    other.metadata.namespace = Some("staging".into());
    assert_eq!(snap.schedule(&other, None), bind("a"));
}

#[test]
fn a_placed_pods_anti_affinity_keeps_matching_pods_off_its_node() {
    let mut snap = Snapshot::from_nodes(vec![node("a"), node("b")]);
    let loner = with_anti_affinity(pod("loner", &[("app", "loner")]), &[&[("app", "web")]], &[]);
    snap.add_pod(&loner, "a");
    assert_eq!(
        snap.schedule(&pod("web", &[("app", "web")]), None),
        bind("b")
    );
    let mut only_a = Snapshot::from_nodes(vec![node("a")]);
    only_a.add_pod(&loner, "a");
    assert_eq!(
        only_a.schedule(&pod("web", &[("app", "web")]), None),
        unschedulable(
            "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."
        )
    );
    // Pods the term does not select are unaffected.
    assert_eq!(
        only_a.schedule(&pod("db", &[("app", "db")]), None),
        bind("a")
    );
}

#[test]
fn preferred_anti_affinity_avoids_matching_pods_when_it_can() {
    let mut snap = Snapshot::from_nodes(vec![node("a"), node("b")]);
    // a runs two pods, b one: least-requested alone picks b, where the cache runs.
    snap.add_pod(&pod("cache", &[("app", "cache")]), "b");
    snap.add_pod(&pod("noisy", &[("app", "noisy")]), "a");
    snap.add_pod(&pod("noisy2", &[("app", "noisy")]), "a");
    let plain = pod("p", &[]);
    assert_eq!(snap.schedule(&plain, None), bind("b"));
    let avoid_cache = with_anti_affinity(pod("p", &[]), &[], &[(100, &[("app", "cache")])]);
    assert_eq!(snap.schedule(&avoid_cache, None), bind("a"));
    let one = Snapshot::from_nodes(vec![node("b")]);
    assert_eq!(one.schedule(&avoid_cache, None), bind("b"));
}

#[test]
fn taints_filter_unless_tolerated_whatever_the_toleration_seconds() {
    use TaintEffect::*;
    use TolerationOperator::*;
    let dedicated = tainted("edge", "dedicated", "edge", NoSchedule);
    let evicting = tainted("flaky", "node.kubernetes.io/unreachable", "", NoExecute);
    let none: Vec<Toleration> = vec![];
    let mut with_seconds = toleration(
        "node.kubernetes.io/unreachable",
        Exists,
        "",
        Some(NoExecute),
    );
    with_seconds.toleration_seconds = Some(10);
    let cases: Vec<(&NodeSnapshot, Vec<Toleration>, bool)> = vec![
        (&dedicated, none.clone(), false),
        (
            &dedicated,
            vec![toleration("dedicated", Equal, "edge", Some(NoSchedule))],
            true,
        ),
        (
            &dedicated,
            vec![toleration("dedicated", Equal, "core", Some(NoSchedule))],
            false,
        ),
        (
            &dedicated,
            vec![toleration("dedicated", Exists, "", Some(NoSchedule))],
            true,
        ),
        (
            &dedicated,
            vec![toleration("dedicated", Equal, "edge", None)],
            true,
        ),
        (
            &dedicated,
            vec![toleration("dedicated", Equal, "edge", Some(NoExecute))],
            false,
        ),
        (&dedicated, vec![toleration("", Exists, "", None)], true),
        (&evicting, none.clone(), false),
        (&evicting, vec![with_seconds], true),
        (
            &evicting,
            vec![toleration("dedicated", Exists, "", None)],
            false,
        ),
    ];
    for (n, tolerations, fits) in cases {
        let mut p = pod("p", &[]);
        p.spec.tolerations = tolerations.clone();
        let got = schedule(&p, std::slice::from_ref(n), None);
        assert_eq!(
            matches!(got, Decision::Bind { .. }),
            fits,
            "{}: {tolerations:?}: {got:?}",
            n.name
        );
    }
    assert_eq!(
        schedule(&pod("p", &[]), &[dedicated, evicting], None),
        unschedulable(
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: edge}, \
             1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
        )
    );
}

#[test]
fn prefer_no_schedule_taints_are_avoided_but_never_filter() {
    use TaintEffect::PreferNoSchedule;
    let soft = tainted("a-soft", "spot", "yes", PreferNoSchedule);
    let nodes = [soft.clone(), node("b")];
    assert_eq!(schedule(&pod("p", &[]), &nodes, None), bind("b"));
    assert_eq!(schedule(&pod("p", &[]), &[soft], None), bind("a-soft"));
    let mut tolerant = pod("p", &[]);
    tolerant.spec.tolerations = vec![toleration("spot", TolerationOperator::Exists, "", None)];
    assert_eq!(schedule(&tolerant, &nodes, None), bind("a-soft"));
}

#[test]
fn a_cordoned_node_takes_pods_tolerating_the_unschedulable_taint() {
    let cordoned = NodeSnapshot {
        unschedulable: true,
        ..node("a")
    };
    let mut p = pod("p", &[]);
    assert_eq!(
        schedule(&p, std::slice::from_ref(&cordoned), None),
        unschedulable("0/1 nodes are available: 1 node(s) were unschedulable.")
    );
    p.spec.tolerations = vec![toleration(
        "node.kubernetes.io/unschedulable",
        TolerationOperator::Exists,
        "",
        Some(TaintEffect::NoSchedule),
    )];
    assert_eq!(schedule(&p, &[cordoned], None), bind("a"));
}

/// A mixed workload: owners with and without spread, affinity, anti-affinity and taints.
fn workload() -> (Vec<NodeSnapshot>, Vec<Pod>) {
    let nodes: Vec<NodeSnapshot> = (0..12)
        .map(|i| {
            let mut n = labeled(&format!("n{i:02}"), &[("zone", ["x", "y", "z"][i % 3])]);
            n.allocatable_cpu_millis = 2000 + 1000 * (i as u64 % 4);
            if i % 5 == 4 {
                n.taints = vec![Taint {
                    key: "spot".into(),
                    value: String::new(),
                    effect: TaintEffect::PreferNoSchedule,
                    time_added: None,
                }];
            }
            n
        })
        .collect();
    let mut pods = Vec::new();
    for owner in 0..6 {
        let app = format!("app{owner}");
        for r in 0..7 {
            let mut p = owned_by(pod(&format!("{app}-{r}"), &[("app", &app)]), &app);
            if owner % 2 == 0 {
                p.spec.topology_spread_constraints = vec![spread(
                    1,
                    WhenUnsatisfiable::DoNotSchedule,
                    &[("app", &app)],
                )];
            }
            if owner % 3 == 1 {
                p = with_node_affinity(
                    p,
                    vec![term(vec![requirement(
                        "zone",
                        NodeSelectorOperator::NotIn,
                        &["z"],
                    )])],
                    vec![(
                        30,
                        term(vec![requirement("zone", NodeSelectorOperator::In, &["x"])]),
                    )],
                );
            }
            if owner == 5 {
                p = with_anti_affinity(p, &[&[("app", &app)]], &[]);
            }
            pods.push(p);
        }
    }
    (nodes, pods)
}

fn run(nodes: Vec<NodeSnapshot>, pods: &[Pod]) -> Vec<Decision> {
    let mut snap = Snapshot::from_nodes(nodes);
    pods.iter()
        .map(|p| {
            let d = snap.schedule(p, None);
            if let Decision::Bind { node } = &d {
                snap.add_pod(p, node);
            }
            d
        })
        .collect()
}

#[test]
fn the_same_input_gives_the_same_placements_whatever_the_node_order() {
    let (nodes, pods) = workload();
    let first = run(nodes.clone(), &pods);
    assert!(
        first.iter().all(|d| matches!(d, Decision::Bind { .. })),
        "{first:?}"
    );
    assert_eq!(run(nodes.clone(), &pods), first);
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(run(reversed, &pods), first);
    // A fixed shuffle: rotate, then swap pairs.
    let mut shuffled = nodes;
    shuffled.rotate_left(5);
    for pair in shuffled.chunks_mut(2) {
        pair.reverse();
    }
    assert_eq!(run(shuffled, &pods), first);
}

#[test]
fn an_incrementally_updated_snapshot_decides_like_one_built_from_the_store() {
    let (nodes, pods) = workload();
    let stored_nodes: Vec<Node> = nodes
        .iter()
        .map(|n| Node {
            metadata: ObjectMeta {
                name: n.name.clone(),
                labels: n.labels.clone(),
                ..Default::default()
            },
            spec: NodeSpec {
                taints: n.taints.clone(),
                ..Default::default()
            },
            status: NodeStatus {
                conditions: vec![Condition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }],
                allocatable: map(&[
                    ("cpu", &format!("{}m", n.allocatable_cpu_millis)),
                    ("memory", "4Gi"),
                ]),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect();
    let mut incremental = Snapshot::new(&stored_nodes, &[]);
    let mut bound: Vec<Pod> = Vec::new();
    for p in &pods {
        let rebuilt = Snapshot::new(&stored_nodes, &bound);
        let d = incremental.schedule(p, None);
        assert_eq!(d, rebuilt.schedule(p, None), "{}", p.metadata.name);
        if let Decision::Bind { node } = d {
            incremental.add_pod(p, &node);
            let mut b = p.clone();
            b.spec.node_name = Some(node);
            bound.push(b);
        }
    }
    assert_eq!(
        incremental.nodes(),
        Snapshot::new(&stored_nodes, &bound).nodes()
    );
}

#[test]
fn finished_pods_hold_nothing_and_terminating_pods_do_not_count_for_spreading() {
    let mut snap = Snapshot::from_nodes(vec![node("a"), node("b")]);
    let done = Pod {
        status: PodStatus {
            phase: PodPhase::Succeeded,
            ..Default::default()
        },
        ..pod("done", &[("app", "web")])
    };
    assert!(!snap.add_pod(&done, "a"));
    assert!(!snap.add_pod(&pod("x", &[]), "no-such-node"));
    let mut leaving = owned_by(pod("old", &[("app", "web")]), "rs");
    leaving.metadata.deletion_timestamp = Some("2025-01-01T00:00:00Z".into());
    // Two terminating web pods on b, one live on a.
    snap.add_pod(&leaving, "b");
    snap.add_pod(&leaving, "b");
    snap.add_pod(&owned_by(pod("live", &[("app", "web")]), "rs"), "a");
    let mut p = owned_by(pod("new", &[("app", "web")]), "rs");
    p.spec.topology_spread_constraints = vec![spread(
        1,
        WhenUnsatisfiable::DoNotSchedule,
        &[("app", "web")],
    )];
    assert_eq!(snap.schedule(&p, None), bind("b"));
    // Anti-affinity still sees them: a terminating pod holds its node until it is gone.
    let exclusive = with_anti_affinity(pod("new", &[("app", "web")]), &[&[("app", "web")]], &[]);
    assert_eq!(
        snap.schedule(&exclusive, None),
        unschedulable("0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.")
    );
}

#[test]
fn unschedulable_messages_name_each_new_reason() {
    let mut spread_pod = pod("p", &[("app", "web")]);
    spread_pod.spec.topology_spread_constraints = vec![spread(
        1,
        WhenUnsatisfiable::DoNotSchedule,
        &[("app", "web")],
    )];
    spread_pod = with_anti_affinity(spread_pod, &[&[("role", "exclusive")]], &[]);
    let mut snap = Snapshot::from_nodes(vec![
        node("a"),
        node("b"),
        node("c"),
        tainted("d", "gpu", "true", TaintEffect::NoSchedule),
        NodeSnapshot {
            ready: false,
            ..node("e")
        },
    ]);
    snap.add_pod(&pod("w1", &[("app", "web")]), "a");
    snap.add_pod(&pod("w2", &[("app", "web")]), "a");
    snap.add_pod(&pod("x", &[("role", "exclusive")]), "b");
    let loner = with_anti_affinity(pod("l", &[]), &[&[("app", "web")]], &[]);
    snap.add_pod(&loner, "c");
    assert_eq!(
        snap.schedule(&spread_pod, None),
        unschedulable(
            "0/5 nodes are available: 1 node(s) didn't match pod anti-affinity rules, \
             1 node(s) didn't match pod topology spread constraints, \
             1 node(s) didn't satisfy existing pods anti-affinity rules, \
             1 node(s) had untolerated taint {gpu: true}, 1 node(s) were not ready."
        )
    );
}

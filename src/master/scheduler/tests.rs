use std::collections::BTreeMap;

use super::*;
use crate::api::meta::Condition;
use crate::api::node::{NodeSpec, NodeStatus, NodeSystemInfo};
use crate::api::pod::{Container, ResourceRequirements};
use crate::api::{Node, ObjectMeta, PodPhase, PodSpec, PodStatus};

const GI: u64 = 1 << 30;

fn node(name: &str) -> NodeSnapshot {
    NodeSnapshot {
        name: name.into(),
        labels: BTreeMap::new(),
        ready: true,
        unschedulable: false,
        taints: Vec::new(),
        allocatable_cpu_millis: 4000,
        allocatable_memory_bytes: 4 * GI,
        allocatable_pods: 110,
        requested_cpu_millis: 0,
        requested_memory_bytes: 0,
        pod_count: 0,
        platform: "linux/arm64".into(),
    }
}

fn pod_with(cpu: &str, memory: &str) -> Pod {
    let mut requests = BTreeMap::new();
    if !cpu.is_empty() {
        requests.insert("cpu".to_string(), cpu.to_string());
    }
    if !memory.is_empty() {
        requests.insert("memory".to_string(), memory.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            name: "p".into(),
            ..Default::default()
        },
        spec: PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: "i".into(),
                resources: ResourceRequirements {
                    requests,
                    limits: BTreeMap::new(),
                },
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Default::default()
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

fn platforms(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_pod_binds_to_the_only_node_it_fits() {
    let mut small = node("small");
    small.allocatable_memory_bytes = GI / 2;
    let nodes = [small, node("big")];
    assert_eq!(
        schedule(&pod_with("100m", "1Gi"), &nodes, None),
        bind("big")
    );
}

#[test]
fn requests_must_fit_in_what_is_left_of_allocatable() {
    let mut busy = node("busy");
    busy.requested_cpu_millis = 3900;
    assert_eq!(
        schedule(&pod_with("200m", ""), &[busy.clone()], None),
        unschedulable("0/1 nodes are available: 1 Insufficient cpu.")
    );
    assert_eq!(schedule(&pod_with("100m", ""), &[busy], None), bind("busy"));
}

#[test]
fn a_pod_without_requests_fits_even_an_overcommitted_node() {
    let mut full = node("full");
    full.requested_cpu_millis = 5000;
    full.requested_memory_bytes = 8 * GI;
    assert_eq!(schedule(&pod_with("", ""), &[full], None), bind("full"));
}

#[test]
fn node_selector_must_match_node_labels() {
    let mut a = node("a");
    a.labels.insert("disk".into(), "hdd".into());
    let mut b = node("b");
    b.labels.insert("disk".into(), "ssd".into());
    let mut p = pod_with("", "");
    p.spec.node_selector.insert("disk".into(), "ssd".into());
    assert_eq!(schedule(&p, &[a.clone(), b], None), bind("b"));
    assert_eq!(
        schedule(&p, &[a], None),
        unschedulable(
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        )
    );
}

#[test]
fn not_ready_and_unschedulable_nodes_are_skipped() {
    let mut down = node("a-down");
    down.ready = false;
    let mut cordoned = node("b-cordoned");
    cordoned.unschedulable = true;
    let p = pod_with("", "");
    assert_eq!(
        schedule(&p, &[down.clone(), cordoned.clone(), node("c")], None),
        bind("c")
    );
    assert_eq!(
        schedule(&p, &[down, cordoned], None),
        unschedulable(
            "0/2 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable."
        )
    );
}

#[test]
fn a_full_node_reports_too_many_pods() {
    let mut full = node("full");
    full.allocatable_pods = 3;
    full.pod_count = 3;
    assert_eq!(
        schedule(&pod_with("", ""), &[full], None),
        unschedulable("0/1 nodes are available: 1 Too many pods.")
    );
}

#[test]
fn image_platform_must_be_offered_for_the_node() {
    let mut pi3 = node("pi3");
    pi3.platform = "linux/arm/v7".into();
    let mut zero = node("zero");
    zero.platform = "linux/arm/v6".into();
    let pi4 = node("pi4");
    let p = pod_with("", "");
    let v6_only = platforms(&["linux/arm/v6"]);
    // armv7 falls back to the v6 image; the arm64 board cannot run it at all.
    assert_eq!(
        schedule(&p, &[pi4.clone(), pi3.clone()], Some(&v6_only)),
        bind("pi3")
    );
    let v7_only = platforms(&["linux/arm/v7"]);
    assert_eq!(
        schedule(&p, std::slice::from_ref(&zero), Some(&v7_only)),
        unschedulable(
            "0/1 nodes are available: 1 node(s) have platform linux/arm/v6 but image offers linux/arm/v7."
        )
    );
    let offered = platforms(&["linux/arm64/v8", "linux/amd64", "unknown/unknown"]);
    assert_eq!(
        schedule(&p, std::slice::from_ref(&pi4), Some(&offered)),
        bind("pi4")
    );
    assert_eq!(
        schedule(&p, &[zero.clone(), pi3], Some(&offered)),
        unschedulable(
            "0/2 nodes are available: 1 node(s) have platform linux/arm/v6 but image offers linux/amd64, linux/arm64, \
             1 node(s) have platform linux/arm/v7 but image offers linux/amd64, linux/arm64."
        )
    );
    // Unknown image platforms skip the filter.
    assert_eq!(schedule(&p, &[zero], None), bind("zero"));
}

#[test]
fn the_least_requested_node_wins() {
    let mut busy = node("a-busy");
    busy.requested_cpu_millis = 2000;
    busy.requested_memory_bytes = GI;
    let mut bigger = node("b-bigger");
    bigger.allocatable_memory_bytes = 8 * GI;
    bigger.requested_memory_bytes = 2 * GI;
    let idle = node("c-idle");
    let p = pod_with("500m", "512Mi");
    // Free shares after placing: busy 37.5%+62.5%, bigger 87.5%+68.75%, idle 87.5%+87.5%.
    assert_eq!(
        schedule(&p, &[busy.clone(), bigger.clone(), idle], None),
        bind("c-idle")
    );
    assert_eq!(schedule(&p, &[busy, bigger], None), bind("b-bigger"));
}

#[test]
fn ties_go_to_fewer_pods_then_to_the_first_name_whatever_the_order() {
    let nodes = [node("w3"), node("w1"), node("w2")];
    let p = pod_with("100m", "64Mi");
    assert_eq!(schedule(&p, &nodes, None), bind("w1"));
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(schedule(&p, &reversed, None), bind("w1"));
    let mut crowded = nodes.clone();
    crowded[1].pod_count = 5;
    assert_eq!(schedule(&pod_with("", ""), &crowded, None), bind("w2"));
}

#[test]
fn the_unschedulable_message_counts_and_sorts_reasons_like_kube_scheduler() {
    let mut a = node("a");
    a.labels.insert("zone".into(), "x".into());
    let mut b = node("b");
    b.labels.insert("zone".into(), "y".into());
    b.allocatable_memory_bytes = GI;
    let mut c = node("c");
    c.labels.insert("zone".into(), "y".into());
    c.allocatable_memory_bytes = GI;
    c.allocatable_cpu_millis = 100;
    let mut p = pod_with("500m", "2Gi");
    p.spec.node_selector.insert("zone".into(), "y".into());
    assert_eq!(
        schedule(&p, &[a, b, c], None),
        unschedulable(
            "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient memory."
        )
    );
}

#[test]
fn zero_nodes_says_none_are_registered() {
    assert_eq!(
        schedule(&pod_with("", ""), &[], None),
        unschedulable("0/0 nodes are available: no nodes registered.")
    );
}

#[test]
fn pod_requests_sum_containers_and_fall_back_to_limits() {
    let mut p = pod_with("250m", "");
    p.spec.containers.push(Container {
        name: "side".into(),
        image: "i".into(),
        resources: ResourceRequirements {
            requests: BTreeMap::from([("cpu".to_string(), "0.5".to_string())]),
            limits: BTreeMap::from([
                ("cpu".to_string(), "1".to_string()),
                ("memory".to_string(), "64Mi".to_string()),
            ]),
        },
        ..Default::default()
    });
    assert_eq!(
        pod_requests(&p),
        Requests {
            cpu_millis: 750,
            memory_bytes: 64 << 20
        }
    );
}

#[test]
fn node_snapshots_come_from_allocatable_conditions_and_bound_pods() {
    let n = Node {
        metadata: ObjectMeta {
            name: "pi".into(),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            ..Default::default()
        },
        spec: NodeSpec {
            unschedulable: true,
            ..Default::default()
        },
        status: NodeStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }],
            node_info: NodeSystemInfo {
                architecture: "arm".into(),
                variant: "v7".into(),
                operating_system: "linux".into(),
                ..Default::default()
            },
            capacity: BTreeMap::from([("pods".to_string(), "20".to_string())]),
            allocatable: BTreeMap::from([
                ("cpu".to_string(), "4".to_string()),
                ("memory".to_string(), "900Mi".to_string()),
            ]),
            ..Default::default()
        },
        ..Default::default()
    };
    let running = pod_with("1", "100Mi");
    let done = Pod {
        status: PodStatus {
            phase: PodPhase::Succeeded,
            ..Default::default()
        },
        ..pod_with("2", "200Mi")
    };
    let snap = node_snapshot(&n, &[&running, &done]);
    assert_eq!(
        snap,
        NodeSnapshot {
            name: "pi".into(),
            labels: n.metadata.labels.clone(),
            ready: true,
            unschedulable: true,
            taints: Vec::new(),
            allocatable_cpu_millis: 4000,
            allocatable_memory_bytes: 900 << 20,
            allocatable_pods: 20,
            requested_cpu_millis: 1000,
            requested_memory_bytes: 100 << 20,
            pod_count: 1,
            platform: "linux/arm/v7".into(),
        }
    );
    let bare = node_snapshot(&Node::default(), &[]);
    assert!(!bare.ready);
    assert_eq!(bare.allocatable_pods, 110);
    assert_eq!(bare.platform, "");
}

//! Local persistent volumes in scheduling (pure): a pod whose claim is bound to a node can run
//! only there (kube-scheduler's "volume node affinity conflict"); a pod whose claim is missing
//! or being deleted cannot run anywhere; an unbound claim binds to wherever its first pod goes
//! (WaitForFirstConsumer).

use std::collections::BTreeMap;

use crate::api::pvc::PersistentVolumeClaim;
use crate::api::volume::references;
use crate::api::Pod;

/// Where a pod's claims let it run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPlacement {
    /// No claim, or only unbound ones: any node (they bind to the chosen one).
    Anywhere,
    /// A claim is bound to this node.
    Node(String),
    /// Cannot be scheduled; the message says why.
    Blocked(String),
}

/// Claims of one namespace by name.
pub type Claims<'a> = BTreeMap<&'a str, &'a PersistentVolumeClaim>;

/// Pure: where `pod` may go given its namespace's `claims` and the `others` pods (to enforce
/// ReadWriteOncePod: one pod at a time).
pub fn placement(pod: &Pod, claims: &Claims<'_>, others: &[&Pod]) -> ClaimPlacement {
    let mut node: Option<(&str, &str)> = None;
    for name in references(&pod.spec).claims {
        let Some(c) = claims.get(name.as_str()) else {
            return ClaimPlacement::Blocked(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if c.metadata.deletion_timestamp.is_some() {
            return ClaimPlacement::Blocked(format!(
                "persistentvolumeclaim \"{name}\" is being deleted"
            ));
        }
        if c.single_pod() {
            let user = others.iter().find(|o| {
                o.metadata.uid != pod.metadata.uid
                    && o.metadata.ns() == pod.metadata.ns()
                    && o.metadata.deletion_timestamp.is_none()
                    && references(&o.spec).claims.contains(&name)
            });
            if let Some(u) = user {
                return ClaimPlacement::Blocked(format!(
                    "persistentvolumeclaim \"{name}\" is ReadWriteOncePod and used by pod \"{}\"",
                    u.metadata.name
                ));
            }
        }
        if let Some(n) = c.node() {
            match node {
                Some((other, other_claim)) if other != n => {
                    return ClaimPlacement::Blocked(format!(
                        "persistentvolumeclaims \"{other_claim}\" and \"{name}\" are bound to different nodes ({other}, {n})"
                    ))
                }
                _ => node = Some((n, c.metadata.name.as_str())),
            }
        }
    }
    match node {
        Some((n, _)) => ClaimPlacement::Node(n.to_string()),
        None => ClaimPlacement::Anywhere,
    }
}

/// Pure: the claims of `pod` still to bind to `node` (the pod was just bound there).
pub fn to_bind<'a>(pod: &Pod, claims: &Claims<'a>) -> Vec<&'a PersistentVolumeClaim> {
    references(&pod.spec)
        .claims
        .iter()
        .filter_map(|n| claims.get(n.as_str()).copied())
        .filter(|c| c.node().is_none() && c.metadata.deletion_timestamp.is_none())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pvc::SELECTED_NODE;
    use crate::api::volume::{ClaimSource, Volume};

    fn claim(name: &str, node: Option<&str>, modes: &[&str]) -> PersistentVolumeClaim {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = name.into();
        c.metadata.namespace = Some("default".into());
        c.spec.access_modes = modes.iter().map(|m| m.to_string()).collect();
        if let Some(n) = node {
            c.metadata
                .annotations
                .insert(SELECTED_NODE.into(), n.into());
        }
        c
    }

    fn pod(name: &str, claims: &[&str]) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.uid = format!("uid-{name}");
        p.spec.volumes = claims
            .iter()
            .map(|c| Volume {
                name: format!("v-{c}"),
                persistent_volume_claim: Some(ClaimSource {
                    claim_name: c.to_string(),
                    read_only: false,
                }),
                ..Default::default()
            })
            .collect();
        p
    }

    fn index(cs: &[PersistentVolumeClaim]) -> Claims<'_> {
        cs.iter().map(|c| (c.metadata.name.as_str(), c)).collect()
    }

    #[test]
    fn a_pod_without_claims_or_with_unbound_ones_goes_anywhere_and_binds_them() {
        let cs = [claim("a", None, &["ReadWriteOnce"])];
        assert_eq!(
            placement(&pod("p", &[]), &index(&cs), &[]),
            ClaimPlacement::Anywhere
        );
        let p = pod("p", &["a"]);
        assert_eq!(placement(&p, &index(&cs), &[]), ClaimPlacement::Anywhere);
        assert_eq!(to_bind(&p, &index(&cs)).len(), 1);
    }

    #[test]
    fn a_bound_claim_pins_the_pod_to_its_node() {
        let cs = [
            claim("a", Some("w2"), &["ReadWriteOnce"]),
            claim("b", None, &["ReadWriteOnce"]),
        ];
        let p = pod("p", &["a", "b"]);
        assert_eq!(
            placement(&p, &index(&cs), &[]),
            ClaimPlacement::Node("w2".into())
        );
        let names: Vec<&str> = to_bind(&p, &index(&cs))
            .iter()
            .map(|c| c.metadata.name.as_str())
            .collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn missing_deleting_split_and_busy_single_pod_claims_block() {
        let mut gone = claim("d", None, &["ReadWriteOnce"]);
        gone.metadata.deletion_timestamp = Some("t".into());
        let cs = [
            claim("a", Some("w1"), &["ReadWriteOnce"]),
            claim("b", Some("w2"), &["ReadWriteOnce"]),
            claim("x", None, &["ReadWriteOncePod"]),
            gone,
        ];
        let blocked = |p: &Pod, others: &[&Pod]| match placement(p, &index(&cs), others) {
            ClaimPlacement::Blocked(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            blocked(&pod("p", &["zz"]), &[]),
            "persistentvolumeclaim \"zz\" not found"
        );
        assert_eq!(
            blocked(&pod("p", &["d"]), &[]),
            "persistentvolumeclaim \"d\" is being deleted"
        );
        assert!(blocked(&pod("p", &["a", "b"]), &[]).contains("bound to different nodes (w1, w2)"));
        let first = pod("first", &["x"]);
        let second = pod("second", &["x"]);
        assert_eq!(
            placement(&second, &index(&cs), &[&second]),
            ClaimPlacement::Anywhere
        );
        assert!(blocked(&second, &[&first, &second])
            .contains("ReadWriteOncePod and used by pod \"first\""));
    }

    #[test]
    fn the_filter_reports_a_volume_node_affinity_conflict_for_other_nodes() {
        use crate::master::scheduler::{Decision, NodeSnapshot, Snapshot};
        let node = |name: &str| NodeSnapshot {
            name: name.into(),
            labels: Default::default(),
            ready: true,
            unschedulable: false,
            taints: vec![],
            allocatable_cpu_millis: 4000,
            allocatable_memory_bytes: 4 << 30,
            allocatable_pods: 110,
            requested_cpu_millis: 0,
            requested_memory_bytes: 0,
            pod_count: 0,
            platform: String::new(),
        };
        // w1 would win on free resources; the claim on w2 overrides that.
        let mut busy = node("w2");
        busy.requested_cpu_millis = 3000;
        let snap = Snapshot::from_nodes(vec![node("w1"), busy]);
        let p = pod("p", &["a"]);
        assert_eq!(
            snap.schedule_pinned(&p, None, Some("w2")),
            Decision::Bind { node: "w2".into() }
        );
        let snap = Snapshot::from_nodes(vec![node("w1")]);
        assert_eq!(
            snap.schedule_pinned(&p, None, Some("w2")),
            Decision::Unschedulable {
                message: "0/1 nodes are available: 1 node(s) had volume node affinity conflict."
                    .into()
            }
        );
    }
}

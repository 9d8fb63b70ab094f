//! `herd describe deployment|rs`: kubectl's views of the workload kinds, and the pod template
//! block `rollout history --revision` shares.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::describe::{annotations_block, indent_table, kv, map_block, map_block_at};
use super::or_none;
use crate::api::apps::{Deployment, IntOrString, PodTemplateSpec, ReplicaSet, StrategyType};
use crate::api::{Pod, PodPhase};
use crate::cli::workload::{new_and_old, owned_by, selector_string};

const W: usize = 24;

pub fn describe_deployment(d: &Deployment, all_rss: &[ReplicaSet]) -> String {
    let mut o = String::new();
    let m = &d.metadata;
    kv(&mut o, 0, W, "Name", &m.name);
    kv(&mut o, 0, W, "Namespace", m.ns());
    kv(
        &mut o,
        0,
        W,
        "CreationTimestamp",
        &or_none(m.creation_timestamp.as_deref()),
    );
    map_block(&mut o, W, "Labels", &m.labels);
    annotations_block(&mut o, W, "Annotations", &m.annotations);
    kv(&mut o, 0, W, "Selector", &selector_string(&d.spec.selector));
    let st = &d.status;
    kv(
        &mut o,
        0,
        W,
        "Replicas",
        &format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            d.spec.replicas(),
            st.updated_replicas,
            st.replicas,
            st.available_replicas,
            st.unavailable_replicas
        ),
    );
    let strategy = d.spec.strategy.type_;
    kv(&mut o, 0, W, "StrategyType", &format!("{strategy:?}"));
    kv(
        &mut o,
        0,
        W,
        "MinReadySeconds",
        &d.spec.min_ready_seconds.to_string(),
    );
    if strategy == StrategyType::RollingUpdate {
        let ru = d.spec.strategy.rolling_update.clone().unwrap_or_default();
        let show = |v: &Option<IntOrString>| match v {
            Some(IntOrString::Int(i)) => i.to_string(),
            Some(IntOrString::String(s)) => s.clone(),
            None => "25%".to_string(),
        };
        kv(
            &mut o,
            0,
            W,
            "RollingUpdateStrategy",
            &format!(
                "{} max unavailable, {} max surge",
                show(&ru.max_unavailable),
                show(&ru.max_surge)
            ),
        );
    }
    if d.spec.paused {
        kv(&mut o, 0, W, "Paused", "true");
    }
    pod_template(&mut o, &d.spec.template);
    o.push_str("Conditions:\n");
    if st.conditions.is_empty() {
        o.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = st
            .conditions
            .iter()
            .map(|c| vec![c.type_.clone(), c.status.clone(), or_none(Some(&c.reason))])
            .collect();
        indent_table(&mut o, &["Type", "Status", "Reason"], &rows);
    }
    let owned = owned_by(&m.uid, all_rss);
    let (new, old) = new_and_old(d, &owned);
    // Like kubectl, old sets that were scaled to zero are history, not part of the picture.
    let old: Vec<String> = old
        .iter()
        .filter(|rs| rs.spec.replicas() != 0)
        .map(|rs| rs_summary(rs))
        .collect();
    let old = if old.is_empty() {
        "<none>".to_string()
    } else {
        old.join(", ")
    };
    kv(&mut o, 0, 17, "OldReplicaSets", &old);
    kv(
        &mut o,
        0,
        17,
        "NewReplicaSet",
        &new.map(rs_summary).unwrap_or_else(|| "<none>".to_string()),
    );
    o
}

/// `web-5d8f (3/3 replicas created)`.
fn rs_summary(rs: &ReplicaSet) -> String {
    format!(
        "{} ({}/{} replicas created)",
        rs.metadata.name,
        rs.status.replicas,
        rs.spec.replicas()
    )
}

pub fn describe_replica_set(rs: &ReplicaSet, pods_in_ns: &[Pod]) -> String {
    const RW: usize = 16;
    let mut o = String::new();
    let m = &rs.metadata;
    kv(&mut o, 0, RW, "Name", &m.name);
    kv(&mut o, 0, RW, "Namespace", m.ns());
    kv(
        &mut o,
        0,
        RW,
        "Selector",
        &selector_string(&rs.spec.selector),
    );
    map_block(&mut o, RW, "Labels", &m.labels);
    annotations_block(&mut o, RW, "Annotations", &m.annotations);
    if let Some(r) = m.controller_ref() {
        kv(
            &mut o,
            0,
            RW,
            "Controlled By",
            &format!("{}/{}", r.kind, r.name),
        );
    }
    kv(
        &mut o,
        0,
        RW,
        "Replicas",
        &format!(
            "{} current / {} desired",
            rs.status.replicas,
            rs.spec.replicas()
        ),
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pods_in_ns.iter().filter(|p| {
        !m.uid.is_empty() && p.metadata.controller_ref().is_some_and(|r| r.uid == m.uid)
    }) {
        let bucket = match p.status.phase {
            PodPhase::Running => "Running",
            PodPhase::Pending => "Waiting",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
            PodPhase::Unknown => "Unknown",
        };
        *counts.entry(bucket).or_default() += 1;
    }
    let n = |k: &str| counts.get(k).copied().unwrap_or(0);
    kv(
        &mut o,
        0,
        RW,
        "Pods Status",
        &format!(
            "{} Running / {} Waiting / {} Succeeded / {} Failed",
            n("Running"),
            n("Waiting"),
            n("Succeeded"),
            n("Failed")
        ),
    );
    pod_template(&mut o, &rs.spec.template);
    o
}

/// The `Pod Template:` block: labels, annotations, and each container's image, command,
/// resources and environment.
pub fn pod_template(o: &mut String, t: &PodTemplateSpec) {
    // Compact keys, as kubectl's tab writer lays out this block.
    const TW: usize = 0;
    o.push_str("Pod Template:\n");
    map_block_at(o, 2, TW, "Labels", &t.metadata.labels, "=");
    if !t.metadata.annotations.is_empty() {
        map_block_at(o, 2, TW, "Annotations", &t.metadata.annotations, ": ");
    }
    o.push_str("  Containers:\n");
    for c in &t.spec.containers {
        const CW: usize = 14;
        let _ = writeln!(o, "   {}:", c.name);
        kv(o, 4, CW, "Image", &c.image);
        for (key, list) in [("Command", &c.command), ("Args", &c.args)] {
            if !list.is_empty() {
                let _ = writeln!(o, "    {key}:");
                for a in list {
                    let _ = writeln!(o, "      {a}");
                }
            }
        }
        for (key, map) in [
            ("Limits", &c.resources.limits),
            ("Requests", &c.resources.requests),
        ] {
            if !map.is_empty() {
                let _ = writeln!(o, "    {key}:");
                let w = map.keys().map(|k| k.len()).max().unwrap_or(0) + 3;
                for (k, v) in map {
                    kv(o, 6, w, k, v);
                }
            }
        }
        if c.env.is_empty() {
            kv(o, 4, CW, "Environment", "<none>");
        } else {
            let _ = writeln!(o, "    Environment:");
            let w = c.env.iter().map(|e| e.name.len()).max().unwrap_or(0) + 3;
            for e in &c.env {
                kv(o, 6, w, &e.name, &e.value);
            }
        }
    }
    if !t.spec.node_selector.is_empty() {
        map_block_at(o, 2, TW, "Node-Selectors", &t.spec.node_selector, "=");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apps::{RollingUpdate, POD_TEMPLATE_HASH, REVISION_ANNOTATION};
    use crate::api::meta::{Condition, OwnerReference};
    use crate::api::Container;

    fn deployment() -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        d.metadata.uid = "d-uid".into();
        d.metadata.labels.insert("app".into(), "web".into());
        d.metadata
            .annotations
            .insert(REVISION_ANNOTATION.into(), "2".into());
        d.spec.replicas = Some(3);
        d.spec
            .selector
            .match_labels
            .insert("app".into(), "web".into());
        d.spec
            .template
            .metadata
            .labels
            .insert("app".into(), "web".into());
        d.spec.template.spec.containers.push(Container {
            name: "main".into(),
            image: "img:2".into(),
            ..Container::default()
        });
        d.status.replicas = 4;
        d.status.updated_replicas = 2;
        d.status.available_replicas = 3;
        d.status.unavailable_replicas = 1;
        d.status.conditions.push(Condition {
            type_: "Progressing".into(),
            status: "True".into(),
            reason: "ReplicaSetUpdated".into(),
            ..Condition::default()
        });
        d
    }

    fn owned_rs(d: &Deployment, name: &str, rev: &str, image: &str, want: i32) -> ReplicaSet {
        let mut r = ReplicaSet::default();
        r.metadata.name = name.into();
        r.metadata.uid = format!("{name}-uid");
        r.metadata
            .annotations
            .insert(REVISION_ANNOTATION.into(), rev.into());
        r.metadata.owner_references.push(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: d.metadata.name.clone(),
            uid: d.metadata.uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        });
        r.spec.replicas = Some(want);
        r.status.replicas = want;
        r.spec.template = d.spec.template.clone();
        r.spec.template.spec.containers[0].image = image.into();
        r.spec.template.metadata.labels.insert(
            POD_TEMPLATE_HASH.into(),
            name.trim_start_matches("web-").into(),
        );
        r.spec.selector.match_labels = r.spec.template.metadata.labels.clone();
        r
    }

    #[test]
    fn deployment_description_reads_like_kubectls() {
        let mut d = deployment();
        let rss = vec![
            owned_rs(&d, "web-a1", "1", "img:1", 2),
            owned_rs(&d, "web-b2", "2", "img:2", 2),
            owned_rs(&d, "web-z0", "0", "img:0", 0),
        ];
        d.spec.strategy.rolling_update = Some(RollingUpdate {
            max_surge: Some(IntOrString::Int(1)),
            max_unavailable: None,
        });
        let out = describe_deployment(&d, &rss);
        for want in [
            "Name:                   web\n",
            "Namespace:              default\n",
            "Labels:                 app=web\n",
            "Annotations:            deployment.kubernetes.io/revision: 2\n",
            "Selector:               app=web\n",
            "Replicas:               3 desired | 2 updated | 4 total | 3 available | 1 unavailable\n",
            "StrategyType:           RollingUpdate\n",
            "MinReadySeconds:        0\n",
            "RollingUpdateStrategy:  25% max unavailable, 1 max surge\n",
            "Pod Template:\n  Labels:  app=web\n  Containers:\n   main:\n    Image:        img:2\n",
            "Conditions:\n  Type         Status  Reason\n  ----         ------  ------\n  \
             Progressing  True    ReplicaSetUpdated\n",
            "OldReplicaSets:  web-a1 (2/2 replicas created)\n",
            "NewReplicaSet:   web-b2 (2/2 replicas created)\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        assert!(!out.contains("web-z0"), "{out}");
    }

    #[test]
    fn a_deployment_without_replica_sets_says_none() {
        let out = describe_deployment(&deployment(), &[]);
        assert!(out.contains("OldReplicaSets:  <none>\n"), "{out}");
        assert!(out.contains("NewReplicaSet:   <none>\n"), "{out}");
    }

    #[test]
    fn replica_set_description_counts_its_own_pods() {
        let d = deployment();
        let rs = owned_rs(&d, "web-b2", "2", "img:2", 2);
        let mine = |phase: PodPhase, uid: &str| {
            let mut p = Pod::default();
            p.status.phase = phase;
            p.metadata.owner_references.push(OwnerReference {
                uid: uid.into(),
                controller: Some(true),
                ..OwnerReference::default()
            });
            p
        };
        let pods = [
            mine(PodPhase::Running, "web-b2-uid"),
            mine(PodPhase::Pending, "web-b2-uid"),
            mine(PodPhase::Running, "other"),
        ];
        let out = describe_replica_set(&rs, &pods);
        for want in [
            "Name:           web-b2\n",
            "Selector:       app=web,pod-template-hash=b2\n",
            "Labels:         <none>\n",
            "Annotations:    deployment.kubernetes.io/revision: 2\n",
            "Controlled By:  Deployment/web\n",
            "Replicas:       2 current / 2 desired\n",
            "Pods Status:    1 Running / 1 Waiting / 0 Succeeded / 0 Failed\n",
            "  Labels:  app=web\n           pod-template-hash=b2\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}

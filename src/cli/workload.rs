//! Client-side workload logic, pure so it can be tested without a server: which ReplicaSets a
//! Deployment owns and which of them is current, revisions, the `rollout status` verdict, the
//! revision `rollout undo` goes back to, and `set image` arguments.

use std::collections::BTreeMap;

use crate::api::apps::{
    Deployment, PodTemplateSpec, ReplicaSet, POD_TEMPLATE_HASH, REVISION_ANNOTATION,
};
use crate::api::selector::{LabelSelector, Operator};
use crate::api::{ObjectMeta, PodSpec};

/// Annotation kubectl shows as CHANGE-CAUSE in `rollout history`.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The revision number in an object's annotations, if it has a valid one.
pub fn revision(meta: &ObjectMeta) -> Option<i64> {
    meta.annotations
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.trim().parse().ok())
}

/// The ReplicaSets whose controller owner reference points at `owner_uid`, oldest revision
/// first (unrevisioned ones first of all, then by name for a stable order).
pub fn owned_by<'a>(owner_uid: &str, all: &'a [ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let mut v: Vec<&ReplicaSet> = all
        .iter()
        .filter(|rs| {
            !owner_uid.is_empty()
                && rs
                    .metadata
                    .controller_ref()
                    .is_some_and(|r| r.uid == owner_uid)
        })
        .collect();
    v.sort_by(|a, b| {
        (revision(&a.metadata), &a.metadata.name).cmp(&(revision(&b.metadata), &b.metadata.name))
    });
    v
}

/// A ReplicaSet's template as the Deployment wrote it: without the `pod-template-hash` label
/// the controller adds.
pub fn without_hash(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    t.metadata.labels.remove(POD_TEMPLATE_HASH);
    t
}

/// Splits the owned ReplicaSets into the new one (its template is the Deployment's; failing
/// that, its revision is the Deployment's) and the old ones.
pub fn new_and_old<'a>(
    d: &Deployment,
    owned: &[&'a ReplicaSet],
) -> (Option<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let by_template = owned
        .iter()
        .rev()
        .find(|rs| without_hash(&rs.spec.template) == d.spec.template);
    let by_revision = || {
        let want = revision(&d.metadata)?;
        owned.iter().find(|rs| revision(&rs.metadata) == Some(want))
    };
    let new = by_template.or_else(by_revision).copied();
    let old = owned
        .iter()
        .copied()
        .filter(|rs| new.is_none_or(|n| n.metadata.uid != rs.metadata.uid))
        .collect();
    (new, old)
}

/// A selector in the `-l` string form kubectl prints (`app=web,tier in (a,b),!canary`), or
/// `<none>` when it selects everything.
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in &sel.match_expressions {
        parts.push(match r.operator {
            Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
            Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
            Operator::Exists => r.key.clone(),
            Operator::DoesNotExist => format!("!{}", r.key),
        });
    }
    if parts.is_empty() {
        "<none>".to_string()
    } else {
        parts.join(",")
    }
}

/// Container names and images of a template, comma-joined, for the wide tables.
pub fn containers_and_images(spec: &PodSpec) -> (String, String) {
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = spec.containers.iter().map(|c| c.image.as_str()).collect();
    (names.join(","), images.join(","))
}

/// Where a rollout stands, with kubectl's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    Waiting(String),
    Done(String),
}

/// `rollout status`'s verdict on one observation of a Deployment: done once the controller
/// has seen the latest spec, every replica is updated, no old one is left and every updated
/// one is available. A Progressing condition with reason ProgressDeadlineExceeded fails.
pub fn rollout_status(d: &Deployment) -> Result<Rollout, String> {
    let name = &d.metadata.name;
    let st = &d.status;
    if st.observed_generation < d.metadata.generation {
        return Ok(Rollout::Waiting(
            "Waiting for deployment spec update to be observed...".to_string(),
        ));
    }
    if let Some(c) = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing" && c.reason == "ProgressDeadlineExceeded")
    {
        let mut msg = format!("deployment {name:?} exceeded its progress deadline");
        if !c.message.is_empty() {
            msg = format!("{msg}: {}", c.message);
        }
        return Err(msg);
    }
    let want = d.spec.replicas();
    let waiting = |what: String| {
        Ok(Rollout::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {what}..."
        )))
    };
    if st.updated_replicas < want {
        return waiting(format!(
            "{} out of {want} new replicas have been updated",
            st.updated_replicas
        ));
    }
    if st.replicas > st.updated_replicas {
        return waiting(format!(
            "{} old replicas are pending termination",
            st.replicas - st.updated_replicas
        ));
    }
    if st.available_replicas < st.updated_replicas {
        return waiting(format!(
            "{} of {} updated replicas are available",
            st.available_replicas, st.updated_replicas
        ));
    }
    Ok(Rollout::Done(format!(
        "deployment {name:?} successfully rolled out"
    )))
}

/// The ReplicaSet `rollout undo` returns to: revision `to` when given (non-zero), else the
/// newest revision before the newest one.
pub fn rollback_target<'a>(
    deployment: &str,
    owned: &[&'a ReplicaSet],
    to: i64,
) -> Result<&'a ReplicaSet, String> {
    let mut revisioned: Vec<(i64, &ReplicaSet)> = owned
        .iter()
        .filter_map(|rs| revision(&rs.metadata).map(|r| (r, *rs)))
        .collect();
    if to != 0 {
        return revisioned
            .into_iter()
            .find(|(r, _)| *r == to)
            .map(|(_, rs)| rs)
            .ok_or_else(|| format!("unable to find specified revision {to} in history"));
    }
    revisioned.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
    revisioned
        .get(1)
        .map(|(_, rs)| *rs)
        .ok_or_else(|| format!("no rollout history found for deployment {deployment:?}"))
}

/// Annotations of a ReplicaSet that describe its revision rather than its content; `rollout
/// undo` copies every other one back onto the Deployment (change-cause in particular).
const REVISION_ONLY: &[&str] = &[
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// Puts `rs`'s template (minus the hash label) into `d`, and its content annotations onto
/// `d`. Returns false when the template already matches, which kubectl reports as a skipped
/// rollback.
pub fn roll_back_to(d: &mut Deployment, rs: &ReplicaSet) -> bool {
    let template = without_hash(&rs.spec.template);
    if template == d.spec.template {
        return false;
    }
    d.spec.template = template;
    let keep: BTreeMap<String, String> = d
        .metadata
        .annotations
        .iter()
        .filter(|(k, _)| REVISION_ONLY.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut annotations = keep;
    for (k, v) in &rs.metadata.annotations {
        if !REVISION_ONLY.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    d.metadata.annotations = annotations;
    true
}

/// `set image` positionals: `KIND/NAME` or `KIND NAME`, then `CONTAINER=IMAGE` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArgs {
    pub kind: String,
    pub name: Option<String>,
    pub images: Vec<(String, String)>,
}

pub fn parse_image_args(args: &[String]) -> Result<ImageArgs, String> {
    let (pairs, resource): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| a.contains('='));
    let (kind, name) = match resource.as_slice() {
        [kind] => ((*kind).clone(), None),
        [kind, name] => ((*kind).clone(), Some((*name).clone())),
        [] => return Err("you must specify a resource, as KIND/NAME or KIND NAME".into()),
        more => {
            return Err(format!(
                "expected KIND/NAME or KIND NAME and CONTAINER=IMAGE pairs, got {:?}",
                more
            ))
        }
    };
    if pairs.is_empty() {
        return Err("at least one image update is required, as CONTAINER=IMAGE".into());
    }
    let mut images = Vec::new();
    for p in pairs {
        match p.split_once('=') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => {
                images.push((c.to_string(), i.to_string()))
            }
            _ => return Err(format!("{p:?} is not CONTAINER=IMAGE")),
        }
    }
    Ok(ImageArgs { kind, name, images })
}

/// Sets the images (`*` means every container). Fails, changing nothing, if a named container
/// does not exist.
pub fn set_images(spec: &mut PodSpec, images: &[(String, String)]) -> Result<(), String> {
    for (c, _) in images {
        if c != "*" && !spec.containers.iter().any(|x| &x.name == c) {
            return Err(format!("unable to find container named {c:?}"));
        }
    }
    for (c, image) in images {
        for x in spec
            .containers
            .iter_mut()
            .filter(|x| c == "*" || &x.name == c)
        {
            x.image = image.clone();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::meta::{Condition, OwnerReference};
    use crate::api::selector::Requirement;
    use crate::api::Container;

    fn deployment(generation: i64, replicas: i32) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
        d.metadata.uid = "d-uid".into();
        d.metadata.generation = generation;
        d.spec.replicas = Some(replicas);
        d.spec
            .template
            .metadata
            .labels
            .insert("app".into(), "web".into());
        d.spec.template.spec.containers.push(Container {
            name: "main".into(),
            image: "img:1".into(),
            ..Container::default()
        });
        d.status.observed_generation = generation;
        d
    }

    fn rs(name: &str, rev: i64, image: &str, owner: &str) -> ReplicaSet {
        let mut r = ReplicaSet::default();
        r.metadata.name = name.into();
        r.metadata.uid = format!("{name}-uid");
        r.metadata
            .annotations
            .insert(REVISION_ANNOTATION.into(), rev.to_string());
        r.metadata.owner_references.push(OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            uid: owner.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });
        r.spec
            .template
            .metadata
            .labels
            .insert("app".into(), "web".into());
        r.spec
            .template
            .metadata
            .labels
            .insert(POD_TEMPLATE_HASH.into(), format!("h{rev}"));
        r.spec.template.spec.containers.push(Container {
            name: "main".into(),
            image: image.into(),
            ..Container::default()
        });
        r
    }

    #[test]
    fn rollout_status_walks_through_kubectls_messages() {
        let mut d = deployment(2, 3);
        d.status.observed_generation = 1;
        assert_eq!(
            rollout_status(&d),
            Ok(Rollout::Waiting(
                "Waiting for deployment spec update to be observed...".into()
            ))
        );
        d.status.observed_generation = 2;
        d.status.replicas = 4;
        d.status.updated_replicas = 1;
        assert_eq!(
            rollout_status(&d),
            Ok(Rollout::Waiting(
                "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas \
                 have been updated..."
                    .into()
            ))
        );
        d.status.updated_replicas = 3;
        assert_eq!(
            rollout_status(&d),
            Ok(Rollout::Waiting(
                "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending \
                 termination..."
                    .into()
            ))
        );
        d.status.replicas = 3;
        d.status.available_replicas = 1;
        assert_eq!(
            rollout_status(&d),
            Ok(Rollout::Waiting(
                "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are \
                 available..."
                    .into()
            ))
        );
        d.status.available_replicas = 3;
        assert_eq!(
            rollout_status(&d),
            Ok(Rollout::Done(
                "deployment \"web\" successfully rolled out".into()
            ))
        );
    }

    #[test]
    fn a_passed_progress_deadline_fails_with_the_conditions_message() {
        let mut d = deployment(1, 3);
        d.status.conditions.push(Condition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: "ProgressDeadlineExceeded".into(),
            message: "ReplicaSet \"web-h2\" has timed out progressing.".into(),
            ..Condition::default()
        });
        assert_eq!(
            rollout_status(&d),
            Err(
                "deployment \"web\" exceeded its progress deadline: ReplicaSet \"web-h2\" has \
                 timed out progressing."
                    .into()
            )
        );
    }

    #[test]
    fn owned_replica_sets_are_found_by_controller_uid_in_revision_order() {
        let all = vec![
            rs("web-h2", 2, "img:2", "d-uid"),
            rs("other-h1", 1, "x", "other-uid"),
            rs("web-h1", 1, "img:1", "d-uid"),
        ];
        let owned = owned_by("d-uid", &all);
        let names: Vec<&str> = owned.iter().map(|r| r.metadata.name.as_str()).collect();
        assert_eq!(names, ["web-h1", "web-h2"]);
        assert!(owned_by("", &all).is_empty());
    }

    #[test]
    fn the_new_replica_set_is_the_one_with_the_deployments_template() {
        let d = deployment(1, 3);
        let all = vec![
            rs("web-h1", 1, "img:1", "d-uid"),
            rs("web-h2", 2, "img:2", "d-uid"),
        ];
        let owned = owned_by("d-uid", &all);
        let (new, old) = new_and_old(&d, &owned);
        assert_eq!(new.map(|r| r.metadata.name.as_str()), Some("web-h1"));
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].metadata.name, "web-h2");
    }

    #[test]
    fn undo_goes_to_the_revision_before_the_newest_or_the_one_asked_for() {
        let all = vec![
            rs("web-h1", 1, "img:1", "d-uid"),
            rs("web-h3", 3, "img:3", "d-uid"),
            rs("web-h2", 2, "img:2", "d-uid"),
        ];
        let owned = owned_by("d-uid", &all);
        assert_eq!(
            rollback_target("web", &owned, 0).map(|r| r.metadata.name.as_str()),
            Ok("web-h2")
        );
        assert_eq!(
            rollback_target("web", &owned, 1).map(|r| r.metadata.name.as_str()),
            Ok("web-h1")
        );
        assert_eq!(
            rollback_target("web", &owned, 7).map(|_| ()),
            Err("unable to find specified revision 7 in history".into())
        );
        let only = vec![rs("web-h1", 1, "img:1", "d-uid")];
        assert_eq!(
            rollback_target("web", &owned_by("d-uid", &only), 0).map(|_| ()),
            Err("no rollout history found for deployment \"web\"".into())
        );
    }

    #[test]
    fn rolling_back_copies_the_template_without_the_hash_label() {
        let mut d = deployment(3, 3);
        d.spec.template.spec.containers[0].image = "img:2".into();
        d.metadata
            .annotations
            .insert(REVISION_ANNOTATION.into(), "2".into());
        d.metadata
            .annotations
            .insert(CHANGE_CAUSE.into(), "to 2".into());
        let mut target = rs("web-h1", 1, "img:1", "d-uid");
        target
            .metadata
            .annotations
            .insert(CHANGE_CAUSE.into(), "first".into());
        assert!(roll_back_to(&mut d, &target));
        assert_eq!(d.spec.template.spec.containers[0].image, "img:1");
        assert!(!d
            .spec
            .template
            .metadata
            .labels
            .contains_key(POD_TEMPLATE_HASH));
        assert_eq!(d.metadata.annotations[REVISION_ANNOTATION], "2");
        assert_eq!(d.metadata.annotations[CHANGE_CAUSE], "first");
        assert!(!roll_back_to(&mut d, &target), "already there: skipped");
    }

    #[test]
    fn set_image_arguments_take_either_resource_form() {
        let a = |v: &[&str]| parse_image_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            a(&["deploy/web", "main=img:2", "side=img:s"]),
            Ok(ImageArgs {
                kind: "deploy/web".into(),
                name: None,
                images: vec![
                    ("main".into(), "img:2".into()),
                    ("side".into(), "img:s".into())
                ],
            })
        );
        assert_eq!(
            a(&["deploy", "web", "*=img:3"]),
            Ok(ImageArgs {
                kind: "deploy".into(),
                name: Some("web".into()),
                images: vec![("*".into(), "img:3".into())],
            })
        );
        assert!(a(&["deploy/web"]).is_err());
        assert!(a(&["main=img"]).is_err());
        assert!(a(&["deploy/web", "main="]).is_err());
        assert!(a(&["deploy", "web", "extra", "main=img"]).is_err());
    }

    #[test]
    fn set_images_names_an_unknown_container_and_changes_nothing() {
        let mut spec = deployment(1, 1).spec.template.spec;
        spec.containers.push(Container {
            name: "side".into(),
            image: "s:1".into(),
            ..Container::default()
        });
        let err = set_images(
            &mut spec,
            &[("main".into(), "img:2".into()), ("c2".into(), "x".into())],
        );
        assert_eq!(err, Err("unable to find container named \"c2\"".into()));
        assert_eq!(spec.containers[0].image, "img:1");
        set_images(&mut spec, &[("*".into(), "all:9".into())]).unwrap();
        assert!(spec.containers.iter().all(|c| c.image == "all:9"));
        set_images(&mut spec, &[("side".into(), "s:2".into())]).unwrap();
        assert_eq!(containers_and_images(&spec).1, "all:9,s:2");
    }

    #[test]
    fn selectors_print_in_the_string_form() {
        let mut sel = LabelSelector::default();
        assert_eq!(selector_string(&sel), "<none>");
        sel.match_labels.insert("app".into(), "web".into());
        sel.match_expressions.push(Requirement {
            key: "tier".into(),
            operator: Operator::In,
            values: vec!["a".into(), "b".into()],
        });
        sel.match_expressions.push(Requirement {
            key: "canary".into(),
            operator: Operator::DoesNotExist,
            values: vec![],
        });
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b),!canary");
        assert_eq!(
            LabelSelector::parse(&selector_string(&sel)).unwrap(),
            sel,
            "round-trips through the parser"
        );
    }
}

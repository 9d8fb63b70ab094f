//! Validation of `apps/v1` workloads. The pod template is checked with the pod rules (paths
//! prefixed with `spec.template.`), plus what makes a controller workable: a non-empty
//! selector that matches the template's labels.

use super::apps::{Deployment, PodTemplateSpec, ReplicaSet, StrategyType};
use super::meta::ObjectMeta;
use super::pod::{Pod, RestartPolicy};
use super::selector::{LabelSelector, Operator};
use super::validate::{
    validate_dns1123_label, validate_dns1123_subdomain, validate_label_key, validate_label_value,
    validate_pod, FieldError, ValidationError,
};

fn add(errs: &mut Vec<FieldError>, path: &str, message: impl Into<String>) {
    errs.push(FieldError {
        path: path.to_string(),
        message: message.into(),
    });
}

/// Keys and values of the selector, and values present exactly when the operator needs them
/// (otherwise `In` without values would surface as a confusing "does not match").
fn selector_fields(errs: &mut Vec<FieldError>, selector: &LabelSelector) {
    for (k, v) in &selector.match_labels {
        let path = format!("spec.selector.matchLabels[{k}]");
        if let Err(m) = validate_label_key(k).and_then(|()| validate_label_value(v)) {
            add(errs, &path, m);
        }
    }
    for (i, r) in selector.match_expressions.iter().enumerate() {
        let path = format!("spec.selector.matchExpressions[{i}]");
        if let Err(m) = validate_label_key(&r.key) {
            add(errs, &format!("{path}.key"), m);
        }
        let values = format!("{path}.values");
        match r.operator {
            Operator::In | Operator::NotIn if r.values.is_empty() => add(
                errs,
                &values,
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => add(
                errs,
                &values,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            _ => {
                for (j, v) in r.values.iter().enumerate() {
                    if let Err(m) = validate_label_value(v) {
                        add(errs, &format!("{values}[{j}]"), m);
                    }
                }
            }
        }
    }
}

fn common(
    errs: &mut Vec<FieldError>,
    meta: &ObjectMeta,
    replicas: Option<i32>,
    selector: &LabelSelector,
    template: &PodTemplateSpec,
) {
    if meta.name.is_empty() {
        add(errs, "metadata.name", "is required");
    } else if let Err(m) = validate_dns1123_subdomain(&meta.name) {
        add(errs, "metadata.name", m);
    } else if meta.name.len() > 200 {
        // Room for the `-<hash>-<suffix>` of generated ReplicaSet and pod names.
        add(errs, "metadata.name", "must be at most 200 characters");
    }
    if let Some(ns) = &meta.namespace {
        if let Err(m) = validate_dns1123_label(ns) {
            add(errs, "metadata.namespace", m);
        }
    }
    if replicas.is_some_and(|r| r < 0) {
        add(errs, "spec.replicas", "must be greater than or equal to 0");
    }
    let selector_errors = errs.len();
    selector_fields(errs, selector);
    if selector.is_empty() {
        add(
            errs,
            "spec.selector",
            "is required (matchLabels or matchExpressions)",
        );
    } else if errs.len() == selector_errors && !selector.matches(&template.metadata.labels) {
        add(
            errs,
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        );
    }
    if template.spec.restart_policy != RestartPolicy::Always {
        add(
            errs,
            "spec.template.spec.restartPolicy",
            "Unsupported value: only \"Always\" is allowed for controller-managed pods",
        );
    }
    // The template is a pod without identity: check it as one named like its owner.
    let mut pod = Pod {
        metadata: template.metadata.clone(),
        spec: template.spec.clone(),
        ..Default::default()
    };
    pod.metadata.name = if meta.name.is_empty() {
        "x".into()
    } else {
        meta.name.clone()
    };
    pod.metadata.namespace = None;
    if let Err(e) = validate_pod(&pod) {
        for fe in e.errors {
            if fe.path == "metadata.name" {
                continue;
            }
            errs.push(FieldError {
                path: format!("spec.template.{}", fe.path),
                message: fe.message,
            });
        }
    }
}

fn done(errs: Vec<FieldError>) -> Result<(), ValidationError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { errors: errs })
    }
}

pub fn validate_replicaset(rs: &ReplicaSet) -> Result<(), ValidationError> {
    let mut errs = Vec::new();
    common(
        &mut errs,
        &rs.metadata,
        rs.spec.replicas,
        &rs.spec.selector,
        &rs.spec.template,
    );
    if rs.spec.min_ready_seconds < 0 {
        add(
            &mut errs,
            "spec.minReadySeconds",
            "must be greater than or equal to 0",
        );
    }
    done(errs)
}

pub fn validate_deployment(d: &Deployment) -> Result<(), ValidationError> {
    let mut errs = Vec::new();
    let s = &d.spec;
    common(&mut errs, &d.metadata, s.replicas, &s.selector, &s.template);
    if s.min_ready_seconds < 0 {
        add(
            &mut errs,
            "spec.minReadySeconds",
            "must be greater than or equal to 0",
        );
    }
    if s.revision_history_limit.is_some_and(|r| r < 0) {
        add(
            &mut errs,
            "spec.revisionHistoryLimit",
            "must be greater than or equal to 0",
        );
    }
    if let Some(p) = s.progress_deadline_seconds {
        if p <= s.min_ready_seconds {
            add(
                &mut errs,
                "spec.progressDeadlineSeconds",
                "must be greater than minReadySeconds",
            );
        }
    }
    match (s.strategy.type_, &s.strategy.rolling_update) {
        (StrategyType::Recreate, Some(_)) => add(
            &mut errs,
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        ),
        (StrategyType::RollingUpdate, Some(ru)) => {
            let n = s.replicas();
            let surge = ru
                .max_surge
                .as_ref()
                .map(|v| v.resolve(n, true))
                .transpose();
            let unav = ru
                .max_unavailable
                .as_ref()
                .map(|v| v.resolve(n, false))
                .transpose();
            if let Err(m) = &surge {
                add(&mut errs, "spec.strategy.rollingUpdate.maxSurge", m.clone());
            }
            if let Err(m) = &unav {
                add(
                    &mut errs,
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    m.clone(),
                );
            }
            let zero = |v: &Option<super::apps::IntOrString>| {
                matches!(v, Some(super::apps::IntOrString::Int(0)))
                    || matches!(v, Some(super::apps::IntOrString::String(p)) if p == "0%")
            };
            if zero(&ru.max_surge) && zero(&ru.max_unavailable) {
                add(
                    &mut errs,
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "may not be 0 when maxSurge is 0",
                );
            }
        }
        _ => {}
    }
    done(errs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apps::{IntOrString, RollingUpdate};
    use crate::api::pod::Container;

    fn deploy() -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = "web".into();
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
            image: "busybox".into(),
            ..Default::default()
        });
        d
    }

    fn paths(d: &Deployment) -> Vec<String> {
        validate_deployment(d)
            .err()
            .map(|e| e.errors.into_iter().map(|f| f.path).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_minimal_deployment_is_valid() {
        assert!(validate_deployment(&deploy()).is_ok());
    }

    #[test]
    fn each_problem_names_its_field() {
        let mut d = deploy();
        d.spec.template.metadata.labels.clear();
        assert_eq!(paths(&d), ["spec.template.metadata.labels"]);
        let mut d = deploy();
        d.spec.selector = LabelSelector::default();
        assert_eq!(paths(&d), ["spec.selector"]);
        let mut d = deploy();
        d.spec.replicas = Some(-1);
        assert_eq!(paths(&d), ["spec.replicas"]);
        let mut d = deploy();
        d.spec.template.spec.containers[0].image.clear();
        assert_eq!(paths(&d), ["spec.template.spec.containers[0].image"]);
        let mut d = deploy();
        d.spec.template.spec.restart_policy = RestartPolicy::Never;
        assert_eq!(paths(&d), ["spec.template.spec.restartPolicy"]);
        let mut d = deploy();
        d.spec.strategy.rolling_update = Some(RollingUpdate {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::String("0%".into())),
        });
        assert_eq!(paths(&d), ["spec.strategy.rollingUpdate.maxUnavailable"]);
        let mut d = deploy();
        d.spec.strategy.rolling_update = Some(RollingUpdate {
            max_surge: Some(IntOrString::String("lots".into())),
            max_unavailable: None,
        });
        assert_eq!(paths(&d), ["spec.strategy.rollingUpdate.maxSurge"]);
    }

    #[test]
    fn selector_expressions_need_values_exactly_when_the_operator_does() {
        use crate::api::selector::Requirement;
        let with = |op: Operator, values: &[&str]| {
            let mut d = deploy();
            d.spec.selector.match_expressions.push(Requirement {
                key: "app".into(),
                operator: op,
                values: values.iter().map(|v| v.to_string()).collect(),
            });
            paths(&d)
        };
        assert_eq!(
            with(Operator::In, &[]),
            ["spec.selector.matchExpressions[0].values"]
        );
        assert_eq!(
            with(Operator::Exists, &["web"]),
            ["spec.selector.matchExpressions[0].values"]
        );
        assert_eq!(
            with(Operator::In, &["bad value!"]),
            ["spec.selector.matchExpressions[0].values[0]"]
        );
        assert!(with(Operator::In, &["web"]).is_empty());
        let mut d = deploy();
        d.spec
            .selector
            .match_labels
            .insert("bad key!".into(), "web".into());
        assert_eq!(paths(&d), ["spec.selector.matchLabels[bad key!]"]);
    }
}

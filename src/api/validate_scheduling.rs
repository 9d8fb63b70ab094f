//! Validation of a pod's scheduling constraints (affinity, tolerations, topology spread), each
//! error naming its field path. Called from `validate_pod`, so pod templates get it too.
//!
//! Besides Kubernetes' own rules, herd rejects topology keys other than
//! `kubernetes.io/hostname` here: the scheduler knows no other domain, and a constraint it
//! would silently ignore is worse than an error at apply time.

use std::collections::HashSet;

use super::pod::PodSpec;
use super::scheduling::{
    NodeSelectorOperator, NodeSelectorRequirement, NodeSelectorTerm, PodAffinityTerm, TaintEffect,
    TolerationOperator, TOPOLOGY_HOSTNAME,
};
use super::selector::{LabelSelector, Operator};
use super::validate::{key_path, validate_label_key, validate_label_value, FieldError};

/// Every problem in `spec.affinity`, `spec.tolerations` and `spec.topologySpreadConstraints`.
pub fn validate_scheduling(spec: &PodSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(affinity) = &spec.affinity {
        if let Some(na) = &affinity.node_affinity {
            let base = "spec.affinity.nodeAffinity";
            if let Some(required) = &na.required_during_scheduling_ignored_during_execution {
                let path = format!("{base}.requiredDuringSchedulingIgnoredDuringExecution");
                if required.node_selector_terms.is_empty() {
                    add(
                        &mut errs,
                        format!("{path}.nodeSelectorTerms"),
                        "must have at least one node selector term",
                    );
                }
                for (i, term) in required.node_selector_terms.iter().enumerate() {
                    node_selector_term(&mut errs, &format!("{path}.nodeSelectorTerms[{i}]"), term);
                }
            }
            let pref = &na.preferred_during_scheduling_ignored_during_execution;
            for (i, p) in pref.iter().enumerate() {
                let path = format!("{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
                weight(&mut errs, &path, p.weight);
                node_selector_term(&mut errs, &format!("{path}.preference"), &p.preference);
            }
        }
        if let Some(anti) = &affinity.pod_anti_affinity {
            let base = "spec.affinity.podAntiAffinity";
            let required = &anti.required_during_scheduling_ignored_during_execution;
            for (i, term) in required.iter().enumerate() {
                let path = format!("{base}.requiredDuringSchedulingIgnoredDuringExecution[{i}]");
                pod_affinity_term(&mut errs, &path, term);
            }
            let pref = &anti.preferred_during_scheduling_ignored_during_execution;
            for (i, w) in pref.iter().enumerate() {
                let path = format!("{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
                weight(&mut errs, &path, w.weight);
                pod_affinity_term(
                    &mut errs,
                    &format!("{path}.podAffinityTerm"),
                    &w.pod_affinity_term,
                );
            }
        }
    }
    for (i, t) in spec.tolerations.iter().enumerate() {
        let path = format!("spec.tolerations[{i}]");
        if t.key.is_empty() {
            if t.operator != TolerationOperator::Exists {
                add(
                    &mut errs,
                    format!("{path}.operator"),
                    "must be Exists when `key` is empty, which means \"match all values and all keys\"",
                );
            }
        } else if let Err(m) = validate_label_key(&t.key) {
            add(&mut errs, format!("{path}.key"), m);
        }
        match t.operator {
            TolerationOperator::Exists if !t.value.is_empty() => add(
                &mut errs,
                format!("{path}.value"),
                "must be empty when `operator` is 'Exists'",
            ),
            TolerationOperator::Equal => {
                if let Err(m) = validate_label_value(&t.value) {
                    add(&mut errs, format!("{path}.value"), m);
                }
            }
            TolerationOperator::Exists => {}
        }
        if t.toleration_seconds.is_some() && t.effect != Some(TaintEffect::NoExecute) {
            add(
                &mut errs,
                format!("{path}.effect"),
                "must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, c) in spec.topology_spread_constraints.iter().enumerate() {
        let path = format!("spec.topologySpreadConstraints[{i}]");
        if c.max_skew < 1 {
            add(
                &mut errs,
                format!("{path}.maxSkew"),
                format!("must be greater than zero, got {}", c.max_skew),
            );
        }
        topology_key(&mut errs, &path, &c.topology_key);
        if !seen.insert((c.topology_key.as_str(), c.when_unsatisfiable)) {
            add(
                &mut errs,
                format!("{path}.whenUnsatisfiable"),
                "duplicate {topologyKey, whenUnsatisfiable} pair",
            );
        }
        label_selector(
            &mut errs,
            &format!("{path}.labelSelector"),
            &c.label_selector,
        );
    }
    errs
}

fn add(errs: &mut Vec<FieldError>, path: impl Into<String>, message: impl Into<String>) {
    errs.push(FieldError {
        path: path.into(),
        message: message.into(),
    });
}

fn weight(errs: &mut Vec<FieldError>, path: &str, w: i32) {
    if !(1..=100).contains(&w) {
        add(
            errs,
            format!("{path}.weight"),
            format!("must be in the range 1-100, got {w}"),
        );
    }
}

fn topology_key(errs: &mut Vec<FieldError>, path: &str, key: &str) {
    if key.is_empty() {
        add(errs, format!("{path}.topologyKey"), "is required");
    } else if key != TOPOLOGY_HOSTNAME {
        add(
            errs,
            format!("{path}.topologyKey"),
            format!("only {TOPOLOGY_HOSTNAME} is supported, got {key:?}"),
        );
    }
}

fn node_selector_term(errs: &mut Vec<FieldError>, path: &str, term: &NodeSelectorTerm) {
    for (j, r) in term.match_expressions.iter().enumerate() {
        node_selector_requirement(errs, &format!("{path}.matchExpressions[{j}]"), r);
    }
}

fn node_selector_requirement(errs: &mut Vec<FieldError>, path: &str, r: &NodeSelectorRequirement) {
    if let Err(m) = validate_label_key(&r.key) {
        add(errs, format!("{path}.key"), m);
    }
    let values = format!("{path}.values");
    match r.operator {
        NodeSelectorOperator::In | NodeSelectorOperator::NotIn => {
            if r.values.is_empty() {
                add(
                    errs,
                    values,
                    "must be specified when `operator` is 'In' or 'NotIn'",
                );
            } else {
                for (k, v) in r.values.iter().enumerate() {
                    if let Err(m) = validate_label_value(v) {
                        add(errs, format!("{values}[{k}]"), m);
                    }
                }
            }
        }
        NodeSelectorOperator::Exists | NodeSelectorOperator::DoesNotExist => {
            if !r.values.is_empty() {
                add(
                    errs,
                    values,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                );
            }
        }
        NodeSelectorOperator::Gt | NodeSelectorOperator::Lt => match r.values.as_slice() {
            [one] if one.parse::<i64>().is_ok() => {}
            [one] => add(
                errs,
                format!("{values}[0]"),
                format!("{one:?} must be an integer"),
            ),
            _ => add(
                errs,
                values,
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            ),
        },
    }
}

fn pod_affinity_term(errs: &mut Vec<FieldError>, path: &str, term: &PodAffinityTerm) {
    topology_key(errs, path, &term.topology_key);
    label_selector(errs, &format!("{path}.labelSelector"), &term.label_selector);
}

fn label_selector(errs: &mut Vec<FieldError>, path: &str, sel: &LabelSelector) {
    for (k, v) in &sel.match_labels {
        let p = key_path(&format!("{path}.matchLabels"), k);
        if let Err(m) = validate_label_key(k) {
            add(errs, p.as_str(), m);
        }
        if let Err(m) = validate_label_value(v) {
            add(errs, p, m);
        }
    }
    for (j, r) in sel.match_expressions.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{j}]");
        if let Err(m) = validate_label_key(&r.key) {
            add(errs, format!("{p}.key"), m);
        }
        match r.operator {
            Operator::In | Operator::NotIn if r.values.is_empty() => add(
                errs,
                format!("{p}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => add(
                errs,
                format!("{p}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::api::manifest;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: app\n    image: nginx\n";

    /// Parses a pod manifest with `extra` appended under `spec:` (indented two spaces), and
    /// returns the error text, or "" when it is accepted.
    fn apply(extra: &str) -> String {
        let text = format!("{POD}{extra}");
        match manifest::parse(&text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_pod_with_every_supported_constraint_is_accepted() {
        let extra = r#"  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: kubernetes.io/arch, operator: In, values: [arm64]}
          - {key: cores, operator: Gt, values: ["2"]}
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        preference:
          matchExpressions:
          - {key: disk, operator: Exists}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app: web}}
        topologyKey: kubernetes.io/hostname
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 10
        podAffinityTerm:
          labelSelector:
            matchExpressions: [{key: app, operator: In, values: [db]}]
          topologyKey: kubernetes.io/hostname
  tolerations:
  - {key: gpu, operator: Exists, effect: NoSchedule}
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 30}
  - {operator: Exists}
  - {key: dedicated, value: edge, effect: ""}
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {matchLabels: {app: web}}
"#;
        assert_eq!(apply(extra), "");
    }

    #[test]
    fn kubernetes_fields_herd_does_not_schedule_on_are_not_supported_yet() {
        for (extra, path) in [
            (
                "  affinity:\n    podAffinity: {}\n",
                "spec.affinity.podAffinity",
            ),
            (
                "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchFields: []\n",
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields",
            ),
            (
                "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: kubernetes.io/hostname\n        namespaces: [a]\n",
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespaces",
            ),
            (
                "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: kubernetes.io/hostname\n    whenUnsatisfiable: DoNotSchedule\n    minDomains: 2\n",
                "spec.topologySpreadConstraints[0].minDomains",
            ),
        ] {
            assert_eq!(
                apply(extra),
                format!("document 1: {path}: not supported yet"),
                "{extra}"
            );
        }
    }

    #[test]
    fn invalid_constraints_are_reported_with_their_paths() {
        let cases = [
            (
                "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: topology.kubernetes.io/zone\n",
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: only kubernetes.io/hostname is supported, got \"topology.kubernetes.io/zone\"",
            ),
            (
                "  topologySpreadConstraints:\n  - {maxSkew: 0, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}\n",
                "spec.topologySpreadConstraints[0].maxSkew: must be greater than zero, got 0",
            ),
            (
                "  topologySpreadConstraints:\n  - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}\n",
                "spec.topologySpreadConstraints[0].topologyKey: only kubernetes.io/hostname is supported, got \"zone\"",
            ),
            (
                "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions: [{key: cores, operator: Gt, values: [\"2\", \"3\"]}]\n",
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: must be specified single value when `operator` is 'Lt' or 'Gt'",
            ),
            (
                "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions: [{key: cores, operator: Lt, values: [many]}]\n",
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]: \"many\" must be an integer",
            ),
            (
                "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms: []\n",
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: must have at least one node selector term",
            ),
            (
                "  affinity:\n    nodeAffinity:\n      preferredDuringSchedulingIgnoredDuringExecution:\n      - weight: 101\n        preference: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}\n",
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: must be in the range 1-100, got 101; spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].values: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            (
                "  tolerations:\n  - {value: x}\n",
                "spec.tolerations[0].operator: must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ),
            (
                "  tolerations:\n  - {key: k, operator: Exists, value: x}\n",
                "spec.tolerations[0].value: must be empty when `operator` is 'Exists'",
            ),
            (
                "  tolerations:\n  - {key: k, operator: Exists, effect: NoSchedule, tolerationSeconds: 5}\n",
                "spec.tolerations[0].effect: must be 'NoExecute' when `tolerationSeconds` is set",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(apply(extra), format!("document 1: {want}"), "{extra}");
        }
    }

    #[test]
    fn a_spread_constraint_may_not_repeat_its_key_and_policy() {
        let extra = "  topologySpreadConstraints:\n  - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule}\n  - {maxSkew: 2, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule}\n";
        assert_eq!(
            apply(extra),
            "document 1: spec.topologySpreadConstraints[1].whenUnsatisfiable: duplicate {topologyKey, whenUnsatisfiable} pair"
        );
    }
}

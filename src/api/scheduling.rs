//! Scheduling constraints on pods and nodes: node affinity, pod anti-affinity, tolerations and
//! taints, topology spread. Shaped like Kubernetes' `v1` types, restricted to what herd's
//! scheduler implements (`podAffinity`, `matchFields` and the newer spread/affinity knobs are
//! reported as "not supported yet" by `manifest`).
//!
//! The matching rules live here next to the types, so the scheduler and any other reader (CLI,
//! validation) agree on what "tolerates" or "matches" means.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::selector::LabelSelector;

/// The only topology key herd understands: each node is its own domain.
pub const TOPOLOGY_HOSTNAME: &str = "kubernetes.io/hostname";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Affinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_anti_affinity: Option<PodAntiAffinity>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAffinity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

/// The terms are ORed: a node matches when any term matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelector {
    #[serde(default)]
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// The expressions are ANDed. A term without expressions matches no node, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorTerm {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: NodeSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// The label, read as an integer, is greater than the single value.
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferredSchedulingTerm {
    /// 1-100; added to a node's score when the preference matches.
    pub weight: i32,
    pub preference: NodeSelectorTerm,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodAntiAffinity {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_during_scheduling_ignored_during_execution: Vec<PodAffinityTerm>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<WeightedPodAffinityTerm>,
}

/// Pods matching `label_selector` in the pod's own namespace, counted per topology domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodAffinityTerm {
    #[serde(default)]
    pub label_selector: LabelSelector,
    #[serde(default)]
    pub topology_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedPodAffinityTerm {
    pub weight: i32,
    pub pod_affinity_term: PodAffinityTerm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl std::fmt::Display for TaintEffect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A node taint. Nodes are not read from manifests, so unknown fields are tolerated here
/// (a newer master may have written them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: TaintEffect,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_added: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// Empty with `Exists` tolerates every taint.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// `None` (or `""` in a manifest) tolerates every effect.
    #[serde(
        default,
        deserialize_with = "empty_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub effect: Option<TaintEffect>,
    /// How long a `NoExecute` taint is tolerated once added; eviction only, never scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// Kubernetes manifests write "all effects" as `effect: ""`, which no enum variant spells.
fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TaintEffect>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.as_deref() {
        None | Some("") => Ok(None),
        Some("NoSchedule") => Ok(Some(TaintEffect::NoSchedule)),
        Some("PreferNoSchedule") => Ok(Some(TaintEffect::PreferNoSchedule)),
        Some("NoExecute") => Ok(Some(TaintEffect::NoExecute)),
        Some(other) => Err(serde::de::Error::unknown_variant(
            other,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WhenUnsatisfiable {
    DoNotSchedule,
    ScheduleAnyway,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopologySpreadConstraint {
    /// Largest allowed difference between the matching-pod counts of two eligible domains.
    pub max_skew: i32,
    pub topology_key: String,
    pub when_unsatisfiable: WhenUnsatisfiable,
    #[serde(default)]
    pub label_selector: LabelSelector,
}

impl NodeSelectorRequirement {
    /// Kubernetes semantics; `Gt`/`Lt` compare integers and fail on a missing or
    /// non-integer label (or value).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        let compare = |want: std::cmp::Ordering| {
            let label = v.and_then(|v| v.parse::<i64>().ok());
            let bound = self.values.first().and_then(|b| b.parse::<i64>().ok());
            matches!((label, bound), (Some(l), Some(b)) if l.cmp(&b) == want)
        };
        match self.operator {
            NodeSelectorOperator::In => v.is_some_and(|v| self.values.contains(v)),
            NodeSelectorOperator::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            NodeSelectorOperator::Exists => v.is_some(),
            NodeSelectorOperator::DoesNotExist => v.is_none(),
            NodeSelectorOperator::Gt => compare(std::cmp::Ordering::Greater),
            NodeSelectorOperator::Lt => compare(std::cmp::Ordering::Less),
        }
    }
}

impl NodeSelectorTerm {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.match_expressions.is_empty()
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl NodeSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector_terms.iter().any(|t| t.matches(labels))
    }
}

impl Toleration {
    /// Whether this toleration covers `taint`. `toleration_seconds` plays no part: it only
    /// bounds how long a running pod stays after a `NoExecute` taint appears.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => true,
            TolerationOperator::Equal => self.value == taint.value,
        }
    }
}

/// Whether any of `tolerations` covers `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: NodeSelectorOperator, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn taint(key: &str, value: &str, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect,
            time_added: None,
        }
    }

    #[test]
    fn node_selector_operators_match_as_in_kubernetes() {
        use NodeSelectorOperator::*;
        let l = labels(&[("zone", "a"), ("cores", "4"), ("name", "pi")]);
        let cases = [
            (req("zone", In, &["a", "b"]), true),
            (req("zone", In, &["b"]), false),
            (req("zone", NotIn, &["b"]), true),
            (req("disk", NotIn, &["ssd"]), true),
            (req("zone", Exists, &[]), true),
            (req("disk", DoesNotExist, &[]), true),
            (req("cores", Gt, &["3"]), true),
            (req("cores", Gt, &["4"]), false),
            (req("cores", Lt, &["5"]), true),
            (req("cores", Lt, &["4"]), false),
            (req("name", Gt, &["1"]), false),
            (req("missing", Lt, &["10"]), false),
            (req("cores", Gt, &["x"]), false),
        ];
        for (r, want) in cases {
            assert_eq!(r.matches(&l), want, "{r:?}");
        }
    }

    #[test]
    fn an_empty_node_selector_term_matches_nothing() {
        assert!(!NodeSelectorTerm::default().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn tolerations_match_by_key_operator_value_and_effect() {
        use TaintEffect::*;
        let t = taint("gpu", "yes", NoSchedule);
        let tol = |key: &str, op: TolerationOperator, value: &str, effect: Option<TaintEffect>| {
            Toleration {
                key: key.into(),
                operator: op,
                value: value.into(),
                effect,
                toleration_seconds: Some(5),
            }
        };
        use TolerationOperator::*;
        let cases = [
            (tol("gpu", Equal, "yes", Some(NoSchedule)), true),
            (tol("gpu", Equal, "no", Some(NoSchedule)), false),
            (tol("gpu", Equal, "yes", Some(NoExecute)), false),
            (tol("gpu", Equal, "yes", None), true),
            (tol("gpu", Exists, "", None), true),
            (tol("", Exists, "", None), true),
            (tol("", Exists, "", Some(PreferNoSchedule)), false),
            (tol("other", Exists, "", None), false),
        ];
        for (toleration, want) in cases {
            assert_eq!(toleration.tolerates(&t), want, "{toleration:?}");
        }
    }

    #[test]
    fn an_empty_effect_in_a_manifest_means_every_effect() {
        let t: Toleration =
            serde_json::from_str(r#"{"key":"k","operator":"Exists","effect":""}"#).unwrap();
        assert_eq!(t.effect, None);
        assert_eq!(t.operator, TolerationOperator::Exists);
        let t: Toleration = serde_json::from_str(r#"{"key":"k","value":"v"}"#).unwrap();
        assert_eq!(t.operator, TolerationOperator::Equal);
        assert!(serde_json::from_str::<Toleration>(r#"{"effect":"Sometimes"}"#).is_err());
    }
}

//! `apps/v1` workloads: ReplicaSet and Deployment, with the defaults Kubernetes applies.

use serde::{Deserialize, Serialize};

use super::meta::{Condition, ObjectMeta};
use super::pod::PodSpec;
use super::selector::LabelSelector;

fn apps_v1() -> String {
    "apps/v1".into()
}

/// Pod metadata and spec stamped out by a controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplateSpec {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSet {
    #[serde(default = "apps_v1")]
    pub api_version: String,
    #[serde(default = "rs_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ReplicaSetSpec,
    #[serde(default)]
    pub status: ReplicaSetStatus,
}

fn rs_kind() -> String {
    "ReplicaSet".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSetSpec {
    /// Defaults to 1, as in Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub selector: LabelSelector,
    #[serde(default)]
    pub template: PodTemplateSpec,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_ready_seconds: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl ReplicaSetSpec {
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetStatus {
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub fully_labeled_replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub available_replicas: i32,
    #[serde(default)]
    pub observed_generation: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    #[serde(default = "apps_v1")]
    pub api_version: String,
    #[serde(default = "deploy_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DeploymentSpec,
    #[serde(default)]
    pub status: DeploymentStatus,
}

fn deploy_kind() -> String {
    "Deployment".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub selector: LabelSelector,
    #[serde(default)]
    pub template: PodTemplateSpec,
    #[serde(default)]
    pub strategy: DeploymentStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_ready_seconds: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

impl DeploymentSpec {
    pub fn replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }
    pub fn revision_history_limit(&self) -> i32 {
        self.revision_history_limit.unwrap_or(10)
    }
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds.unwrap_or(600)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrategyType {
    #[default]
    RollingUpdate,
    Recreate,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentStrategy {
    #[serde(default, rename = "type")]
    pub type_: StrategyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// `3` or `"25%"`, as Kubernetes' IntOrString.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl IntOrString {
    /// Resolves against `total`: percentages round up for surge and down for unavailable,
    /// exactly as Kubernetes does.
    pub fn resolve(&self, total: i32, round_up: bool) -> Result<i32, String> {
        match self {
            IntOrString::Int(i) if *i >= 0 => Ok(*i),
            IntOrString::Int(i) => Err(format!("{i}: must be non-negative")),
            IntOrString::String(s) => {
                let pct: i64 = s
                    .strip_suffix('%')
                    .and_then(|n| n.parse().ok())
                    .filter(|p| (0..=100).contains(p))
                    .ok_or_else(|| format!("{s:?}: must be an integer or a percentage 0%-100%"))?;
                let v = pct * i64::from(total.max(0));
                let r = if round_up { (v + 99) / 100 } else { v / 100 };
                Ok(r as i32)
            }
        }
    }
}

/// Kubernetes' defaults: 25% surge, 25% unavailable; both zero is not allowed (no progress),
/// so unavailable becomes 1 as Kubernetes does.
pub fn surge_and_unavailable(spec: &DeploymentSpec) -> Result<(i32, i32), String> {
    let ru = spec.strategy.rolling_update.clone().unwrap_or_default();
    let quarter = IntOrString::String("25%".into());
    let n = spec.replicas();
    let surge = ru.max_surge.as_ref().unwrap_or(&quarter).resolve(n, true)?;
    let mut unavailable = ru
        .max_unavailable
        .as_ref()
        .unwrap_or(&quarter)
        .resolve(n, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub updated_replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub available_replicas: i32,
    #[serde(default)]
    pub unavailable_replicas: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Annotation carrying a ReplicaSet's (and its Deployment's) revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Label the Deployment controller adds to tell its ReplicaSets' pods apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotation `kubectl rollout restart` sets on the template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_like_kubernetes() {
        let p = IntOrString::String("25%".into());
        assert_eq!(p.resolve(10, true), Ok(3));
        assert_eq!(p.resolve(10, false), Ok(2));
        assert_eq!(IntOrString::Int(2).resolve(10, true), Ok(2));
        assert!(IntOrString::String("x%".into()).resolve(10, true).is_err());
        assert!(IntOrString::String("150%".into())
            .resolve(10, true)
            .is_err());
        assert!(IntOrString::Int(-1).resolve(10, true).is_err());
    }

    #[test]
    fn defaults_are_a_quarter_and_never_both_zero() {
        let mut spec = DeploymentSpec {
            replicas: Some(4),
            ..Default::default()
        };
        assert_eq!(surge_and_unavailable(&spec), Ok((1, 1)));
        spec.replicas = Some(1);
        assert_eq!(surge_and_unavailable(&spec), Ok((1, 0)));
        spec.strategy.rolling_update = Some(RollingUpdate {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::Int(0)),
        });
        assert_eq!(surge_and_unavailable(&spec), Ok((0, 1)));
    }
}

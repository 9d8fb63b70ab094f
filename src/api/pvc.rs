//! `v1 PersistentVolumeClaim`, served local-path style (like k3s' local-path provisioner):
//! the claim stays `Pending` until the first pod using it is scheduled (WaitForFirstConsumer),
//! then it is bound to that pod's node, recorded in the `volume.kubernetes.io/selected-node`
//! annotation, and backed by a directory on that node. Pods using it go to that node only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;
use super::validate::{FieldError, ValidationError};

/// Where a bound claim lives; server-owned (kept across user updates).
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolumeClaim {
    #[serde(default = "v1")]
    pub api_version: String,
    #[serde(default = "pvc_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ClaimSpec,
    #[serde(default)]
    pub status: ClaimStatus,
}

fn v1() -> String {
    "v1".into()
}
fn pvc_kind() -> String {
    "PersistentVolumeClaim".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    #[serde(default)]
    pub resources: ClaimResources,
    /// Accepted and recorded; herd has one class, local-path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Only `Filesystem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimResources {
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "super::quantity::deserialize_map"
    )]
    pub requests: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    /// `Pending` or `Bound`; empty reads as `Pending`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
}

impl PersistentVolumeClaim {
    /// The node the claim is bound to, if any.
    pub fn node(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get(SELECTED_NODE)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    pub fn phase(&self) -> &str {
        if self.status.phase.is_empty() {
            "Pending"
        } else {
            &self.status.phase
        }
    }

    /// Only one pod at a time may use it (`ReadWriteOncePod`).
    pub fn single_pod(&self) -> bool {
        self.spec
            .access_modes
            .iter()
            .any(|m| m == "ReadWriteOncePod")
    }

    /// The directory name on the node: `<ns>-<claim>-<uid>` (unique per claim incarnation,
    /// so a re-created claim of the same name never sees old data).
    pub fn dir_name(&self) -> String {
        claim_dir_name(self.metadata.ns(), &self.metadata.name, &self.metadata.uid)
    }
}

pub fn claim_dir_name(ns: &str, name: &str, uid: &str) -> String {
    format!("{ns}-{name}-{uid}")
}

const ACCESS_MODES: &[&str] = &["ReadWriteOnce", "ReadWriteOncePod"];

pub fn validate_claim(c: &PersistentVolumeClaim) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    let mut add = |path: String, message: String| errors.push(FieldError { path, message });
    if c.metadata.name.is_empty() {
        add("metadata.name".into(), "is required".into());
    } else if let Err(m) = super::validate::validate_dns1123_subdomain(&c.metadata.name) {
        add("metadata.name".into(), m);
    }
    if let Some(ns) = &c.metadata.namespace {
        if let Err(m) = super::validate::validate_dns1123_label(ns) {
            add("metadata.namespace".into(), m);
        }
    }
    if c.spec.access_modes.is_empty() {
        add(
            "spec.accessModes".into(),
            "at least one access mode is required (ReadWriteOnce or ReadWriteOncePod)".into(),
        );
    }
    for (i, m) in c.spec.access_modes.iter().enumerate() {
        if !ACCESS_MODES.contains(&m.as_str()) {
            add(
                format!("spec.accessModes[{i}]"),
                format!(
                    "{m:?} is not supported by herd's local volumes (supported: ReadWriteOnce, ReadWriteOncePod)"
                ),
            );
        }
    }
    for (k, v) in &c.spec.resources.requests {
        let path = format!("spec.resources.requests.{k}");
        if k != "storage" {
            add(path, format!("unknown resource {k:?} (supported: storage)"));
        } else if let Err(e) = super::quantity::parse_bytes(v) {
            add(path, e.to_string());
        }
    }
    if let Some(m) = &c.spec.volume_mode {
        if m != "Filesystem" {
            add(
                "spec.volumeMode".into(),
                format!("{m:?} is not supported (supported: Filesystem)"),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_modes_and_requests_are_checked_with_their_paths() {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = "data".into();
        c.spec.access_modes = vec!["ReadWriteOnce".into()];
        c.spec
            .resources
            .requests
            .insert("storage".into(), "1Gi".into());
        assert!(validate_claim(&c).is_ok());
        c.spec.access_modes.push("ReadWriteMany".into());
        c.spec
            .resources
            .requests
            .insert("storage".into(), "x".into());
        c.spec.volume_mode = Some("Block".into());
        let e = validate_claim(&c).unwrap_err().to_string();
        assert!(
            e.contains("spec.accessModes[1]: \"ReadWriteMany\" is not supported"),
            "{e}"
        );
        assert!(
            e.contains("spec.resources.requests.storage: quantity \"x\""),
            "{e}"
        );
        assert!(e.contains("spec.volumeMode: \"Block\""), "{e}");
    }
}

//! `v1 ConfigMap`: non-secret configuration a pod mounts as files. `data` holds UTF-8 text,
//! `binaryData` base64 bytes, as in Kubernetes.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;
use super::validate::{FieldError, ValidationError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMap {
    #[serde(default = "v1")]
    pub api_version: String,
    #[serde(default = "configmap_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Key → base64 of the bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

fn v1() -> String {
    "v1".into()
}
fn configmap_kind() -> String {
    "ConfigMap".into()
}

/// Kubernetes' limit on a ConfigMap's total data.
pub const MAX_CONFIGMAP_BYTES: usize = 1 << 20;

impl ConfigMap {
    /// Every key with its bytes (`data` as UTF-8, `binaryData` decoded); undecodable
    /// `binaryData` (refused by validation) is skipped.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out: BTreeMap<String, Vec<u8>> = self
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
            .collect();
        for (k, v) in &self.binary_data {
            if let Ok(bytes) = b64.decode(v.trim()) {
                out.insert(k.clone(), bytes);
            }
        }
        out
    }
}

pub fn validate_configmap(c: &ConfigMap) -> Result<(), ValidationError> {
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
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut total = 0usize;
    for (k, v) in &c.data {
        if !super::secret::valid_key(k) {
            add(
                format!("data[{k:?}]"),
                "a key must consist of letters, digits, '-', '_' or '.'".into(),
            );
        }
        total += v.len();
    }
    for (k, v) in &c.binary_data {
        if !super::secret::valid_key(k) {
            add(
                format!("binaryData[{k:?}]"),
                "a key must consist of letters, digits, '-', '_' or '.'".into(),
            );
        }
        if c.data.contains_key(k) {
            add(
                format!("binaryData[{k:?}]"),
                "the key is also in data; a key may be in only one of them".into(),
            );
        }
        match b64.decode(v.trim()) {
            Ok(bytes) => total += bytes.len(),
            Err(e) => add(
                format!("binaryData[{k:?}]"),
                format!("not valid base64: {e}"),
            ),
        }
    }
    if total > MAX_CONFIGMAP_BYTES {
        add(
            "data".into(),
            format!("total size {total} bytes is over the limit of {MAX_CONFIGMAP_BYTES}"),
        );
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
    fn keys_binary_data_and_overlap_are_checked_with_their_paths() {
        let mut c = ConfigMap::default();
        c.metadata.name = "app".into();
        c.data.insert("app.ini".into(), "x=1".into());
        c.binary_data.insert("logo".into(), "AAEC".into());
        assert!(validate_configmap(&c).is_ok());
        assert_eq!(c.files()["logo"], vec![0, 1, 2]);
        c.data.insert("bad key".into(), String::new());
        c.binary_data.insert("app.ini".into(), "%%".into());
        let e = validate_configmap(&c).unwrap_err().to_string();
        assert!(e.contains("data[\"bad key\"]: a key"), "{e}");
        assert!(
            e.contains("binaryData[\"app.ini\"]: the key is also in data"),
            "{e}"
        );
        assert!(
            e.contains("binaryData[\"app.ini\"]: not valid base64"),
            "{e}"
        );
    }
}

//! `v1 Secret`: small named blobs (passwords, keys, tokens) that pods will consume. Stored
//! encrypted at rest by the master (see `master::store::seal`); the API returns them in
//! Kubernetes' shape, `data` values base64-encoded.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;
use super::validate::{FieldError, ValidationError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    #[serde(default = "v1")]
    pub api_version: String,
    #[serde(default = "secret_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default = "opaque", rename = "type")]
    pub type_: String,
    /// Key → base64 of the value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Write-only plain-text values, folded into `data` on write (Kubernetes' convenience).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

fn v1() -> String {
    "v1".into()
}
fn secret_kind() -> String {
    "Secret".into()
}
fn opaque() -> String {
    "Opaque".into()
}

/// Kubernetes' limit on a Secret's total data.
pub const MAX_SECRET_BYTES: usize = 1 << 20;

impl Secret {
    /// Moves `stringData` into `data` (stringData wins on a shared key), as the API server does.
    pub fn fold_string_data(&mut self) {
        let b64 = base64::engine::general_purpose::STANDARD;
        for (k, v) in std::mem::take(&mut self.string_data) {
            self.data.insert(k, b64.encode(v.as_bytes()));
        }
    }
}

pub(crate) fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

pub fn validate_secret(s: &Secret) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    let mut add = |path: String, message: String| errors.push(FieldError { path, message });
    if s.metadata.name.is_empty() {
        add("metadata.name".into(), "is required".into());
    } else if let Err(m) = super::validate::validate_dns1123_subdomain(&s.metadata.name) {
        add("metadata.name".into(), m);
    }
    if let Some(ns) = &s.metadata.namespace {
        if let Err(m) = super::validate::validate_dns1123_label(ns) {
            add("metadata.namespace".into(), m);
        }
    }
    if s.type_.is_empty() {
        add("type".into(), "must not be empty".into());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut total = 0usize;
    for (k, v) in &s.data {
        if !valid_key(k) {
            add(
                format!("data[{k:?}]"),
                "a key must consist of letters, digits, '-', '_' or '.'".into(),
            );
        }
        match b64.decode(v.trim()) {
            Ok(bytes) => total += bytes.len(),
            Err(e) => add(format!("data[{k:?}]"), format!("not valid base64: {e}")),
        }
    }
    for (k, v) in &s.string_data {
        if !valid_key(k) {
            add(
                format!("stringData[{k:?}]"),
                "a key must consist of letters, digits, '-', '_' or '.'".into(),
            );
        }
        total += v.len();
    }
    if total > MAX_SECRET_BYTES {
        add(
            "data".into(),
            format!("total size {total} bytes is over the limit of {MAX_SECRET_BYTES}"),
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

    fn secret(data: &[(&str, &str)]) -> Secret {
        let mut s = Secret {
            type_: "Opaque".into(),
            ..Default::default()
        };
        s.metadata.name = "db".into();
        for (k, v) in data {
            s.data.insert(k.to_string(), v.to_string());
        }
        s
    }

    #[test]
    fn keys_values_and_size_are_checked_with_their_paths() {
        assert!(validate_secret(&secret(&[("password", "aHVudGVyMg==")])).is_ok());
        let e = validate_secret(&secret(&[("pass word", "aA==")])).unwrap_err();
        assert!(e.to_string().contains("data[\"pass word\"]: a key"), "{e}");
        let e = validate_secret(&secret(&[("k", "%%%")])).unwrap_err();
        assert!(
            e.to_string().contains("data[\"k\"]: not valid base64"),
            "{e}"
        );
        let mut big = secret(&[]);
        big.string_data
            .insert("k".into(), "x".repeat(MAX_SECRET_BYTES + 1));
        let e = validate_secret(&big).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        let mut unnamed = secret(&[]);
        unnamed.metadata.name.clear();
        assert!(validate_secret(&unnamed).is_err());
    }

    #[test]
    fn string_data_is_folded_into_data() {
        let mut s = secret(&[("a", "eA==")]);
        s.string_data.insert("a".into(), "hunter2".into());
        s.fold_string_data();
        assert!(s.string_data.is_empty());
        assert_eq!(s.data["a"], "aHVudGVyMg==");
    }
}

//! `networking.k8s.io/v1 Ingress`: HTTP routing by host and path to Services, served by the
//! reverse proxy on nodes labelled `herd.io/ingress=true` (see `worker::services::ingress`).

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;
use super::validate::{validate_dns1123_label, FieldError, ValidationError};

pub const API_VERSION: &str = "networking.k8s.io/v1";
/// Nodes carrying this label (value `true`) run the ingress proxy.
pub const INGRESS_NODE_LABEL: &str = "herd.io/ingress";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: IngressSpec,
    /// Kubernetes reports load balancer addresses here; herd leaves it empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

fn api_version() -> String {
    API_VERSION.into()
}
fn kind() -> String {
    "Ingress".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressSpec {
    /// Accepted and ignored: herd has one ingress implementation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<IngressBackend>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<IngressRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// Exact host, or `*.example.com` (one leading label); unset matches every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpIngressRuleValue>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpIngressRuleValue {
    pub paths: Vec<HttpIngressPath>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathType {
    #[default]
    Prefix,
    Exact,
    /// Treated as Prefix, as ingress-nginx does.
    ImplementationSpecific,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpIngressPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub path_type: PathType,
    pub backend: IngressBackend,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressBackend {
    pub service: IngressServiceBackend,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressServiceBackend {
    pub name: String,
    pub port: ServiceBackendPort,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceBackendPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
}

impl std::fmt::Display for ServiceBackendPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, self.number) {
            (Some(n), _) => f.write_str(n),
            (None, Some(n)) => write!(f, "{n}"),
            (None, None) => f.write_str("?"),
        }
    }
}

fn check_backend(add: &mut impl FnMut(String, String), at: &str, b: &IngressBackend) {
    if let Err(m) = validate_dns1123_label(&b.service.name) {
        add(format!("{at}.service.name"), m);
    }
    match (&b.service.port.name, b.service.port.number) {
        (Some(_), Some(_)) => add(
            format!("{at}.service.port"),
            "set either name or number, not both".into(),
        ),
        (None, None) => add(
            format!("{at}.service.port"),
            "one of name or number is required".into(),
        ),
        (None, Some(n)) if !(1..=65535).contains(&n) => add(
            format!("{at}.service.port.number"),
            format!("{n} must be between 1 and 65535"),
        ),
        (Some(n), None) => {
            if let Err(m) = validate_dns1123_label(n) {
                add(format!("{at}.service.port.name"), m);
            }
        }
        _ => {}
    }
}

fn valid_host(h: &str) -> Result<(), String> {
    let bare = h.strip_prefix("*.").unwrap_or(h);
    if bare.contains('*') {
        return Err("a wildcard may only be the whole first label (*.example.com)".into());
    }
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Err("must be a DNS name, not an IP address".into());
    }
    super::validate::validate_dns1123_subdomain(bare)
}

pub fn validate_ingress(ing: &Ingress) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    let mut add = |path: String, message: String| errors.push(FieldError { path, message });
    if ing.metadata.name.is_empty() {
        add("metadata.name".into(), "is required".into());
    } else if let Err(m) = super::validate::validate_dns1123_subdomain(&ing.metadata.name) {
        add("metadata.name".into(), m);
    }
    if let Some(ns) = &ing.metadata.namespace {
        if let Err(m) = validate_dns1123_label(ns) {
            add("metadata.namespace".into(), m);
        }
    }
    if ing.spec.rules.is_empty() && ing.spec.default_backend.is_none() {
        add(
            "spec".into(),
            "either defaultBackend or rules must be specified".into(),
        );
    }
    if let Some(b) = &ing.spec.default_backend {
        check_backend(&mut add, "spec.defaultBackend", b);
    }
    for (i, r) in ing.spec.rules.iter().enumerate() {
        if let Some(h) = &r.host {
            if let Err(m) = valid_host(h) {
                add(format!("spec.rules[{i}].host"), format!("{h:?}: {m}"));
            }
        }
        let Some(http) = &r.http else { continue };
        for (j, p) in http.paths.iter().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            match p.path.as_deref() {
                Some(path) if path.starts_with('/') => {}
                Some(path) => add(
                    format!("{at}.path"),
                    format!("{path:?} must start with '/'"),
                ),
                None if p.path_type == PathType::ImplementationSpecific => {}
                None => add(
                    format!("{at}.path"),
                    "is required for pathType Prefix and Exact".into(),
                ),
            }
            check_backend(&mut add, &format!("{at}.backend"), &p.backend);
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

    fn ing(spec: &str) -> Ingress {
        yaml_serde::from_str(&format!("metadata: {{name: web}}\nspec:\n{spec}")).unwrap()
    }

    #[test]
    fn a_two_host_ingress_is_valid() {
        validate_ingress(&ing(
            "  rules:\n  - host: a.example\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: a, port: {number: 80}}}}\n  - host: '*.b.example'\n    http:\n      paths:\n      - {path: /x, pathType: Exact, backend: {service: {name: b, port: {name: http}}}}",
        ))
        .unwrap();
    }

    #[test]
    fn bad_fields_are_named_by_their_path() {
        let e = validate_ingress(&ing("  rules: []"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("spec: either defaultBackend or rules"), "{e}");
        let e = validate_ingress(&ing(
            "  rules:\n  - host: 'a.*.x'\n    http:\n      paths:\n      - {path: x, pathType: Prefix, backend: {service: {name: a, port: {}}}}",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("spec.rules[0].host: \"a.*.x\""), "{e}");
        assert!(
            e.contains("spec.rules[0].http.paths[0].path: \"x\" must start"),
            "{e}"
        );
        assert!(
            e.contains("spec.rules[0].http.paths[0].backend.service.port: one of name or number"),
            "{e}"
        );
        let e = validate_ingress(&ing(
            "  defaultBackend: {service: {name: a, port: {number: 0}}}",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("spec.defaultBackend.service.port.number: 0"),
            "{e}"
        );
    }
}

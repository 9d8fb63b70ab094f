//! `v1 Service` and `v1 Endpoints`: a stable virtual address (and optionally a port on every
//! node) in front of the ready pods a label selector picks. The master allocates the
//! addresses (see `master::services::alloc`); the endpoints controller keeps `Endpoints` in
//! step with pod readiness; every worker turns both into nftables rules and DNS answers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;
use super::validate::{validate_dns1123_label, FieldError, ValidationError};

/// Virtual addresses come from here; a requested `clusterIP` must lie inside it.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 89, 0, 0), 16);
/// Kubernetes' default NodePort range.
pub const NODE_PORT_MIN: u16 = 30000;
pub const NODE_PORT_MAX: u16 = 32767;
/// The cluster DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    #[serde(default = "v1")]
    pub api_version: String,
    #[serde(default = "service_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
    #[serde(default)]
    pub status: ServiceStatus,
}

/// Kubernetes reports load balancer state here; herd has none, so it stays empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
}

impl std::fmt::Display for ServiceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
        })
    }
}

/// What a service port carries (SCTP is not supported).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[allow(clippy::upper_case_acronyms)]
pub enum Protocol {
    #[default]
    TCP,
    UDP,
}

impl Protocol {
    /// The nftables / lowercase spelling.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::TCP => "tcp",
            Protocol::UDP => "udp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::TCP => "TCP",
            Protocol::UDP => "UDP",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Pods whose labels hold all of these back the service; empty selects none (Kubernetes:
    /// endpoints are then managed by hand, which herd does not support yet).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Allocated by the master when unset; `None` (the string) makes the service headless.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// Kubernetes mirrors `clusterIP` here; accepted so `get -o yaml` output re-applies.
    #[serde(default, rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    Str(String),
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub protocol: Protocol,
    pub port: i32,
    /// A number, or the name of a container port; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// Allocated by the master for NodePort services when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

impl Service {
    pub fn is_headless(&self) -> bool {
        self.spec.cluster_ip.as_deref() == Some("None")
    }

    /// The allocated virtual address, if any (not for headless or not yet allocated).
    pub fn cluster_ip(&self) -> Option<Ipv4Addr> {
        self.spec.cluster_ip.as_deref()?.parse().ok()
    }
}

fn v1() -> String {
    "v1".into()
}
fn service_kind() -> String {
    "Service".into()
}
fn endpoints_kind() -> String {
    "Endpoints".into()
}

pub fn in_service_cidr(ip: Ipv4Addr) -> bool {
    let (net, bits) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - bits);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// An IANA service name, what a named `targetPort` must be: at most 15 lowercase letters,
/// digits and '-', at least one letter, no leading/trailing or double '-'.
pub fn validate_port_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err("must be 1 to 15 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("must consist of lowercase letters, digits and '-'".into());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("must contain at least one letter".into());
    }
    if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return Err("must not start or end with '-' or hold \"--\"".into());
    }
    Ok(())
}

pub fn validate_service(s: &Service) -> Result<(), ValidationError> {
    let mut errors = Vec::new();
    let mut add = |path: String, message: String| errors.push(FieldError { path, message });
    let name = &s.metadata.name;
    if name.is_empty() {
        add("metadata.name".into(), "is required".into());
    } else if let Err(m) = validate_dns1123_label(name) {
        add("metadata.name".into(), m);
    } else if name.as_bytes()[0].is_ascii_digit() {
        // A service name is a DNS label that must not look like a number (DNS-1035).
        add("metadata.name".into(), "must start with a letter".into());
    }
    if let Some(ns) = &s.metadata.namespace {
        if let Err(m) = validate_dns1123_label(ns) {
            add("metadata.namespace".into(), m);
        }
    }
    for (k, v) in &s.spec.selector {
        if let Err(m) = super::validate::validate_label_key(k)
            .and_then(|()| super::validate::validate_label_value(v))
        {
            add(format!("spec.selector[{k:?}]"), m);
        }
    }
    let headless = s.is_headless();
    match s.spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => {}
        Some(ip) => match ip.parse::<Ipv4Addr>() {
            Ok(a) if in_service_cidr(a) => {}
            Ok(_) => add(
                "spec.clusterIP".into(),
                format!(
                    "{ip} is outside the service range {}/{}",
                    SERVICE_CIDR.0, SERVICE_CIDR.1
                ),
            ),
            Err(_) => add(
                "spec.clusterIP".into(),
                format!("{ip:?} is not an IPv4 address or \"None\""),
            ),
        },
    }
    if headless && s.spec.type_ == ServiceType::NodePort {
        add(
            "spec.clusterIP".into(),
            "a NodePort service cannot be headless (clusterIP: None)".into(),
        );
    }
    if s.spec.ports.is_empty() && !headless {
        add(
            "spec.ports".into(),
            "is required (only a headless service may have none)".into(),
        );
    }
    let mut names = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let many = s.spec.ports.len() > 1;
    for (i, p) in s.spec.ports.iter().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        if p.name.is_empty() {
            if many {
                add(
                    at("name"),
                    "is required when there is more than one port".into(),
                );
            }
        } else if let Err(m) = validate_dns1123_label(&p.name) {
            add(at("name"), m);
        } else if !names.insert(p.name.clone()) {
            add(at("name"), format!("{:?} is used by another port", p.name));
        }
        if !(1..=65535).contains(&p.port) {
            add(
                at("port"),
                format!("{} must be between 1 and 65535", p.port),
            );
        } else if !seen.insert((p.port, p.protocol)) {
            add(
                at("port"),
                format!("{}/{} is listed twice", p.port, p.protocol),
            );
        }
        match &p.target_port {
            None => {}
            Some(IntOrString::Int(t)) if (1..=65535).contains(t) => {}
            Some(IntOrString::Int(t)) => {
                add(at("targetPort"), format!("{t} must be between 1 and 65535"))
            }
            Some(IntOrString::Str(n)) => {
                if let Err(m) = validate_port_name(n) {
                    add(at("targetPort"), format!("{n:?}: {m}"));
                }
            }
        }
        if let Some(np) = p.node_port {
            if s.spec.type_ != ServiceType::NodePort {
                add(
                    at("nodePort"),
                    "may only be set on a NodePort service".into(),
                );
            } else if !(i32::from(NODE_PORT_MIN)..=i32::from(NODE_PORT_MAX)).contains(&np) {
                add(
                    at("nodePort"),
                    format!("{np} is outside the range {NODE_PORT_MIN}-{NODE_PORT_MAX}"),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { errors })
    }
}

/// `v1 Endpoints`: written only by the endpoints controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    #[serde(default = "v1")]
    pub api_version: String,
    #[serde(default = "endpoints_kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<EndpointSubset>,
}

/// Addresses that share one set of (resolved) ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSubset {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<EndpointAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub port: i32,
    #[serde(default)]
    pub protocol: Protocol,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(yaml_spec: &str) -> Service {
        let mut s: Service =
            yaml_serde::from_str(&format!("metadata: {{name: web}}\nspec:\n{yaml_spec}")).unwrap();
        s.metadata.namespace = None;
        s
    }

    fn err(s: &Service) -> String {
        validate_service(s).unwrap_err().to_string()
    }

    #[test]
    fn a_plain_service_and_a_headless_one_without_ports_are_valid() {
        validate_service(&svc(
            "  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]",
        ))
        .unwrap();
        validate_service(&svc("  clusterIP: None\n  selector: {app: web}")).unwrap();
        validate_service(&svc(
            "  type: NodePort\n  ports: [{port: 80, nodePort: 30080, protocol: UDP}]",
        ))
        .unwrap();
    }

    #[test]
    fn bad_ports_are_named_by_their_path() {
        let e = err(&svc("  ports: [{port: 0}]"));
        assert!(e.contains("spec.ports[0].port: 0 must be between"), "{e}");
        let e = err(&svc("  ports: [{port: 80, name: a}, {port: 80, name: b}]"));
        assert!(
            e.contains("spec.ports[1].port: 80/TCP is listed twice"),
            "{e}"
        );
        let e = err(&svc("  ports: [{port: 80}, {port: 81}]"));
        assert!(e.contains("spec.ports[0].name: is required"), "{e}");
        let e = err(&svc("  ports: [{port: 80, targetPort: Web_Port}]"));
        assert!(e.contains("spec.ports[0].targetPort"), "{e}");
        let e = err(&svc("  ports: [{port: 80, targetPort: 70000}]"));
        assert!(e.contains("spec.ports[0].targetPort: 70000"), "{e}");
        let e = err(&svc("  ports: [{port: 80, nodePort: 30001}]"));
        assert!(
            e.contains("spec.ports[0].nodePort: may only be set on a NodePort"),
            "{e}"
        );
        let e = err(&svc(
            "  type: NodePort\n  ports: [{port: 80, nodePort: 80}]",
        ));
        assert!(e.contains("spec.ports[0].nodePort: 80 is outside"), "{e}");
        let e = err(&svc("  selector: {app: web}"));
        assert!(e.contains("spec.ports: is required"), "{e}");
    }

    #[test]
    fn cluster_ip_must_be_none_or_inside_the_service_range() {
        validate_service(&svc("  clusterIP: 10.89.3.4\n  ports: [{port: 80}]")).unwrap();
        let e = err(&svc("  clusterIP: 10.1.2.3\n  ports: [{port: 80}]"));
        assert!(e.contains("spec.clusterIP: 10.1.2.3 is outside"), "{e}");
        let e = err(&svc("  clusterIP: banana\n  ports: [{port: 80}]"));
        assert!(e.contains("spec.clusterIP: \"banana\""), "{e}");
        let e = err(&svc(
            "  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]",
        ));
        assert!(e.contains("cannot be headless"), "{e}");
    }

    #[test]
    fn manifests_with_bad_fields_name_the_document_and_path() {
        let parse = |t: &str| crate::api::manifest::parse(t).unwrap_err().to_string();
        let e = parse("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: 80\n    targetport: 8080\n");
        assert!(
            e.contains("document 1: spec.ports[0].targetport: unknown field"),
            "{e}"
        );
        assert!(e.contains("targetPort"), "{e}");
        let e = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: i}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: Balancer, ports: [{port: 80}]}\n");
        assert!(e.contains("document 2: spec.type"), "{e}");
        let e = parse("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 99999}]}\n");
        assert!(
            e.contains("spec.ports[0].port: 99999 must be between 1 and 65535"),
            "{e}"
        );
        let e = parse("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: site}\nspec:\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Prefixx, backend: {service: {name: a, port: {number: 80}}}}\n");
        assert!(e.contains("spec.rules[0].http.paths[0].pathType"), "{e}");
        let e = parse("apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: site}\n");
        assert!(
            e.contains("apiVersion: Ingress is served as networking.k8s.io/v1"),
            "{e}"
        );
        let ok = crate::api::manifest::parse("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: None, selector: {app: web}}\n").unwrap();
        assert!(matches!(&ok[0], crate::api::Object::Service(s) if s.is_headless()));
    }

    #[test]
    fn port_names_follow_iana_rules() {
        assert!(validate_port_name("http").is_ok());
        assert!(validate_port_name("web-8080").is_ok());
        assert!(validate_port_name("8080").is_err());
        assert!(validate_port_name("a--b").is_err());
        assert!(validate_port_name("abcdefghijklmnop").is_err());
    }
}

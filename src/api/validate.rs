//! Validation of typed objects, each error naming its field path.
//!
//! Validation reports every problem at once, so a user fixes a manifest in one round trip. The
//! name checks are exported for the API server and node registration, which need the same
//! rules as manifests.

use std::collections::{BTreeMap, HashSet};

use super::pod::{Container, Pod};
use super::quantity::{parse_bytes, parse_cpu_millis, QuantityError};

/// One problem, at one field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldError {
    /// Like `spec.containers[1].name`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in an object; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.errors))]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(FieldError::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_VALUE_MAX: usize = 63;

fn is_dns1123_label_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

/// A DNS-1123 label: container names, namespaces, node names.
///
/// The error is a message without the value or path; callers add both.
pub fn validate_dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > DNS1123_LABEL_MAX {
        return Err(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    let b = s.as_bytes();
    if !b.iter().all(|&c| is_dns1123_label_char(c)) || b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Err(format!(
            "{s:?} must consist of lowercase letters, digits and '-', and start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain: object names.
pub fn validate_dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        return Err(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if s.split('.')
        .any(|part| validate_dns1123_label(part).is_err())
    {
        return Err(format!(
            "{s:?} must consist of lowercase letters, digits, '-' and '.', and each dot-separated part must start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// The `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?` shape shared by label names and values.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at most
/// 63 characters.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if let Err(m) = validate_dns1123_subdomain(prefix) {
            return Err(format!("key {key:?}: prefix {m}"));
        }
    }
    if name.is_empty() {
        return Err(format!("key {key:?}: name part must not be empty"));
    }
    if name.len() > LABEL_VALUE_MAX {
        return Err(format!(
            "key {key:?}: name part must be no more than {LABEL_VALUE_MAX} characters"
        ));
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "key {key:?}: name part must consist of letters, digits, '-', '_' or '.', and start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 characters of the label-name shape.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > LABEL_VALUE_MAX {
        return Err(format!(
            "value {value:?} must be no more than {LABEL_VALUE_MAX} characters"
        ));
    }
    if !is_qualified_name_part(value) {
        return Err(format!(
            "value {value:?} must consist of letters, digits, '-', '_' or '.', and start and end with a letter or digit"
        ));
    }
    Ok(())
}

/// `path.key` for plain keys, `path[key]` for keys holding dots, slashes or odd characters, so
/// the path stays unambiguous.
pub(crate) fn key_path(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("{base}.{key}")
    } else {
        format!("{base}[{key}]")
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.add(path, message);
        }
    }
}

/// Checks a pod as submitted; server-owned fields (uid, status, ...) are not looked at.
pub fn validate_pod(pod: &Pod) -> Result<(), ValidationError> {
    let mut errs = Errors::default();
    let meta = &pod.metadata;
    if meta.name.is_empty() {
        errs.add("metadata.name", "is required");
    } else {
        errs.check("metadata.name", validate_dns1123_subdomain(&meta.name));
    }
    if let Some(ns) = &meta.namespace {
        errs.check("metadata.namespace", validate_dns1123_label(ns));
    }
    validate_labels(&mut errs, "metadata.labels", &meta.labels);
    for key in meta.annotations.keys() {
        errs.check(
            key_path("metadata.annotations", key),
            validate_label_key(key),
        );
    }

    let spec = &pod.spec;
    if spec.containers.is_empty() {
        errs.add("spec.containers", "at least one container is required");
    }
    let mut names = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        if c.name.is_empty() {
            errs.add(format!("{path}.name"), "is required");
        } else if let Err(m) = validate_dns1123_label(&c.name) {
            errs.add(format!("{path}.name"), m);
        } else if !names.insert(c.name.as_str()) {
            errs.add(
                format!("{path}.name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        validate_container(&mut errs, &path, c);
    }
    for (i, c) in spec.init_containers.iter().enumerate() {
        let path = format!("spec.initContainers[{i}]");
        if c.name.is_empty() {
            errs.add(format!("{path}.name"), "is required");
        } else if let Err(m) = validate_dns1123_label(&c.name) {
            errs.add(format!("{path}.name"), m);
        } else if !names.insert(c.name.as_str()) {
            errs.add(
                format!("{path}.name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        for (field, set) in [
            ("livenessProbe", c.liveness_probe.is_some()),
            ("readinessProbe", c.readiness_probe.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
        ] {
            if set {
                errs.add(
                    format!("{path}.{field}"),
                    "must not be set for init containers",
                );
            }
        }
        validate_container(&mut errs, &path, c);
    }
    let mut host_ports = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, p) in c.ports.iter().enumerate() {
            if let Some(h) = p.host_port {
                if !host_ports.insert((h, p.protocol)) {
                    errs.add(
                        format!("spec.containers[{i}].ports[{j}].hostPort"),
                        format!("duplicate hostPort {h}/{:?}", p.protocol),
                    );
                }
            }
        }
    }
    if let Some(g) = spec.termination_grace_period_seconds {
        if g < 0 {
            errs.add(
                "spec.terminationGracePeriodSeconds",
                format!("must be greater than or equal to 0, got {g}"),
            );
        }
    }
    validate_labels(&mut errs, "spec.nodeSelector", &spec.node_selector);
    if let Some(node) = &spec.node_name {
        errs.check("spec.nodeName", validate_dns1123_subdomain(node));
    }
    errs.0
        .extend(super::validate_scheduling::validate_scheduling(spec));
    errs.0
        .extend(super::validate_security::validate_security(spec));
    errs.0.extend(super::volume::validate_volumes(spec));

    if errs.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationError { errors: errs.0 })
    }
}

fn validate_labels(errs: &mut Errors, base: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        let path = key_path(base, key);
        errs.check(path.as_str(), validate_label_key(key));
        errs.check(path, validate_label_value(value));
    }
}

fn validate_container(errs: &mut Errors, path: &str, c: &Container) {
    if c.image.trim().is_empty() {
        errs.add(format!("{path}.image"), "is required");
    } else if c.image.chars().any(char::is_whitespace) {
        errs.add(
            format!("{path}.image"),
            format!("{:?} must not contain whitespace", c.image),
        );
    }
    for (j, env) in c.env.iter().enumerate() {
        if !is_env_var_name(&env.name) {
            errs.add(
                format!("{path}.env[{j}].name"),
                format!(
                    "{:?} must consist of letters, digits, '_', '-' or '.', and must not start with a digit",
                    env.name
                ),
            );
        }
    }
    if let Some(dir) = &c.working_dir {
        if !dir.is_empty() && !dir.starts_with('/') {
            errs.add(
                format!("{path}.workingDir"),
                format!("{dir:?} must be an absolute path"),
            );
        }
    }

    let base = format!("{path}.resources");
    let requests = quantities(errs, &format!("{base}.requests"), &c.resources.requests);
    let limits = quantities(errs, &format!("{base}.limits"), &c.resources.limits);
    for (resource, request) in &requests {
        if let Some(limit) = limits.get(resource) {
            if request > limit {
                errs.add(
                    format!("{base}.requests.{resource}"),
                    format!("must be less than or equal to {resource} limit"),
                );
            }
        }
    }
    validate_ports_and_probes(errs, path, c);
}

/// The rules live in `probe` next to the types; this adds the container's path.
fn validate_ports_and_probes(errs: &mut Errors, path: &str, c: &Container) {
    use super::probe::{port_problems, problems, ProbeKind};
    for (sub, message) in port_problems(&c.ports) {
        errs.add(format!("{path}{sub}"), message);
    }
    for (kind, probe) in [
        (ProbeKind::Liveness, &c.liveness_probe),
        (ProbeKind::Readiness, &c.readiness_probe),
        (ProbeKind::Startup, &c.startup_probe),
    ] {
        let Some(probe) = probe else { continue };
        for (sub, message) in problems(probe, kind, &c.ports) {
            errs.add(format!("{path}.{}{sub}", kind.field()), message);
        }
    }
}

fn is_env_var_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(first) if first.is_ascii_alphabetic() || matches!(first, b'-' | b'.' | b'_') => b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')),
        _ => false,
    }
}

/// Parses `cpu` and `memory`, reporting anything else, and returns the parsed amounts by name.
fn quantities<'a>(
    errs: &mut Errors,
    base: &str,
    map: &'a BTreeMap<String, String>,
) -> BTreeMap<&'a str, u64> {
    let mut out = BTreeMap::new();
    for (name, value) in map {
        let path = key_path(base, name);
        let parsed: Result<u64, QuantityError> = match name.as_str() {
            "cpu" => parse_cpu_millis(value),
            "memory" => parse_bytes(value),
            "ephemeral-storage" => {
                errs.add(path, "not supported yet");
                continue;
            }
            n if n.starts_with("hugepages-") => {
                errs.add(path, "not supported yet");
                continue;
            }
            _ => {
                errs.add(
                    path,
                    format!("unknown resource {name:?} (supported: cpu, memory)"),
                );
                continue;
            }
        };
        match parsed {
            Ok(v) => {
                out.insert(name.as_str(), v);
            }
            Err(e) => errs.add(path, e.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::{EnvVar, ResourceRequirements};
    use crate::api::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: "web".into(),
                ..Default::default()
            },
            spec: crate::api::PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: "nginx:1.27".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn paths(p: &Pod) -> Vec<String> {
        match validate_pod(p) {
            Ok(()) => vec![],
            Err(e) => e.errors.into_iter().map(|e| e.path).collect(),
        }
    }

    #[test]
    fn init_containers_share_the_name_space_and_take_no_probes() {
        let mut p = pod();
        let mut init = p.spec.containers[0].clone();
        p.spec.init_containers.push(init.clone());
        init.name = "setup".into();
        init.readiness_probe = Some(Default::default());
        p.spec.init_containers.push(init);
        let ps = paths(&p);
        assert!(
            ps.contains(&"spec.initContainers[0].name".to_string()),
            "{ps:?}"
        );
        assert!(
            ps.contains(&"spec.initContainers[1].readinessProbe".to_string()),
            "{ps:?}"
        );
    }

    #[test]
    fn host_ports_must_be_in_range_and_unique_per_protocol() {
        use crate::api::pod::{ContainerPort, Protocol};
        let mut p = pod();
        let port = |c: i32, h: i32, protocol| ContainerPort {
            container_port: c,
            host_port: Some(h),
            protocol,
            ..Default::default()
        };
        p.spec.containers[0].ports = vec![
            port(80, 8080, Protocol::TCP),
            port(81, 8080, Protocol::UDP),
            port(82, 8080, Protocol::TCP),
            port(83, 70000, Protocol::TCP),
        ];
        assert_eq!(
            paths(&p),
            [
                "spec.containers[0].ports[3].hostPort",
                "spec.containers[0].ports[2].hostPort"
            ]
        );
    }

    #[test]
    fn a_minimal_pod_is_valid() {
        assert_eq!(validate_pod(&pod()), Ok(()));
    }

    #[test]
    fn dns1123_labels_accept_lowercase_alnum_and_inner_dashes_only() {
        for ok in ["a", "web-1", "0abc", &"a".repeat(63)] {
            assert_eq!(validate_dns1123_label(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "Web", "a.b", "a_b", &"a".repeat(64), "é"] {
            assert!(validate_dns1123_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns1123_subdomains_allow_dots_between_labels() {
        for ok in ["web", "web.example.com", "a-b.c"] {
            assert_eq!(validate_dns1123_subdomain(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "A.b", "a_b", &"a".repeat(254)] {
            assert!(validate_dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_take_an_optional_dns_prefix() {
        for ok in [
            "app",
            "app.kubernetes.io/name",
            "A_b.c-D",
            "herd.io/arch-variant",
        ] {
            assert_eq!(validate_label_key(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "Bad.Prefix/a",
            "a/b/c",
            "-a",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(validate_label_key(bad).is_err(), "{bad}");
        }
        assert_eq!(validate_label_value(""), Ok(()));
        assert_eq!(validate_label_value("v1.2_3-X"), Ok(()));
        assert!(validate_label_value("a/b").is_err());
        assert!(validate_label_value("-a").is_err());
        assert!(validate_label_value(&"a".repeat(64)).is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut p = pod();
        p.metadata.name = String::new();
        p.metadata.namespace = Some("Bad_NS".into());
        p.metadata.labels.insert("bad key".into(), "ok".into());
        p.metadata.labels.insert("app".into(), "-bad".into());
        p.metadata
            .annotations
            .insert("example.com/".into(), String::new());
        p.spec.containers.push(Container {
            name: "app".into(),
            image: "two words".into(),
            env: vec![EnvVar {
                name: "1BAD".into(),
                value: String::new(),
            }],
            working_dir: Some("relative".into()),
            ..Default::default()
        });
        p.spec.containers.push(Container {
            name: "Caps".into(),
            image: String::new(),
            ..Default::default()
        });
        p.spec.termination_grace_period_seconds = Some(-1);
        p.spec.node_selector.insert("zone".into(), "a b".into());
        assert_eq!(
            paths(&p),
            [
                "metadata.name",
                "metadata.namespace",
                "metadata.labels.app",
                "metadata.labels[bad key]",
                "metadata.annotations[example.com/]",
                "spec.containers[1].name",
                "spec.containers[1].image",
                "spec.containers[1].env[0].name",
                "spec.containers[1].workingDir",
                "spec.containers[2].name",
                "spec.containers[2].image",
                "spec.terminationGracePeriodSeconds",
                "spec.nodeSelector.zone",
            ]
        );
        let msg = validate_pod(&p).unwrap_err().to_string();
        assert!(
            msg.starts_with("metadata.name: is required; metadata.namespace: "),
            "{msg}"
        );
        assert!(
            msg.contains("spec.containers[1].name: duplicate container name \"app\""),
            "{msg}"
        );
    }

    #[test]
    fn a_pod_without_containers_is_invalid() {
        let mut p = pod();
        p.spec.containers.clear();
        assert_eq!(paths(&p), ["spec.containers"]);
    }

    #[test]
    fn resources_must_be_cpu_or_memory_with_requests_within_limits() {
        let mut p = pod();
        let res = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        p.spec.containers[0].resources = ResourceRequirements {
            requests: res(&[
                ("cpu", "500m"),
                ("memory", "128Mi"),
                ("nvidia.com/gpu", "1"),
            ]),
            limits: res(&[
                ("cpu", "1"),
                ("memory", "64Mi"),
                ("hugepages-2Mi", "1Gi"),
                ("ephemeral-storage", "1Gi"),
            ]),
        };
        let err = validate_pod(&p).unwrap_err();
        let got: Vec<String> = err.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "spec.containers[0].resources.requests[nvidia.com/gpu]: unknown resource \"nvidia.com/gpu\" (supported: cpu, memory)",
                "spec.containers[0].resources.limits.ephemeral-storage: not supported yet",
                "spec.containers[0].resources.limits.hugepages-2Mi: not supported yet",
                "spec.containers[0].resources.requests.memory: must be less than or equal to memory limit",
            ]
        );
    }

    #[test]
    fn negative_or_malformed_quantities_name_their_field() {
        let mut p = pod();
        p.spec.containers[0]
            .resources
            .limits
            .insert("memory".into(), "-1Gi".into());
        p.spec.containers[0]
            .resources
            .requests
            .insert("cpu".into(), "lots".into());
        let err = validate_pod(&p).unwrap_err().to_string();
        assert_eq!(
            err,
            "spec.containers[0].resources.requests.cpu: quantity \"lots\" is not valid (expected a number with an optional suffix like 100m, 0.5, 64Mi, 1G or 1e3); \
             spec.containers[0].resources.limits.memory: quantity \"-1Gi\" must not be negative"
        );
    }
}

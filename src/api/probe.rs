//! Container probes (`livenessProbe`, `readinessProbe`, `startupProbe`), Kubernetes-shaped.
//!
//! Defaults are applied on input and always printed, as the Kubernetes API server does, so a
//! `get -o yaml` shows the timing a probe really runs with. `grpc` is not supported yet (see
//! `manifest`); `scheme: HTTPS` parses but fails validation the same way.

use serde::{Deserialize, Serialize};

use super::apps::IntOrString;
use super::pod::ContainerPort;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(default)]
    pub initial_delay_seconds: i32,
    #[serde(default = "default_period")]
    pub period_seconds: i32,
    #[serde(default = "default_one")]
    pub timeout_seconds: i32,
    #[serde(default = "default_one")]
    pub success_threshold: i32,
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: i32,
    /// Grace for a kill caused by this probe; the pod's grace period when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

fn default_period() -> i32 {
    10
}
fn default_one() -> i32 {
    1
}
fn default_failure_threshold() -> i32 {
    3
}

impl Default for Probe {
    /// Kubernetes' defaults, with no handler.
    fn default() -> Self {
        Probe {
            exec: None,
            http_get: None,
            tcp_socket: None,
            initial_delay_seconds: 0,
            period_seconds: default_period(),
            timeout_seconds: default_one(),
            success_threshold: default_one(),
            failure_threshold: default_failure_threshold(),
            termination_grace_period_seconds: None,
        }
    }
}

impl Probe {
    /// How many handlers are set; validation requires exactly one.
    pub fn handler_count(&self) -> usize {
        usize::from(self.exec.is_some())
            + usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub port: IntOrString,
    /// Empty: the pod's address, which is the container's own loopback until pod networking.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default)]
    pub scheme: UriScheme,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum UriScheme {
    #[default]
    HTTP,
    HTTPS,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    pub port: IntOrString,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// A probe's port as a number: an integer in 1-65535, or the name of one of the container's
/// TCP ports. Shared by validation and the prober so both agree on what a name means.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{n} must be between 1 and 65535")),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<i32>() {
                // Kubernetes accepts "8080" as a port given as a string.
                return resolve_port(&IntOrString::Int(n), ports);
            }
            let found = ports
                .iter()
                .find(|p| !p.name.is_empty() && p.name == *name)
                .ok_or_else(|| {
                    format!("{name:?} is not the name of one of the container's ports")
                })?;
            u16::try_from(found.container_port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    format!(
                        "{name:?} names port {}, which is not between 1 and 65535",
                        found.container_port
                    )
                })
        }
    }
}

/// Which of a container's probes; the rules differ slightly between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    /// The manifest field name.
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Startup => "startupProbe",
        }
    }

    /// As in kubelet's messages ("Liveness probe failed: ...").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// Problems with one probe as `(path below the probe, message)`, in field order; `validate`
/// prefixes the container's path. Kept here so the rules sit next to the types.
pub fn problems(probe: &Probe, kind: ProbeKind, ports: &[ContainerPort]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |path: &str, msg: String| out.push((path.to_string(), msg));
    match probe.handler_count() {
        0 => add(
            "",
            "must specify a handler: exec, httpGet or tcpSocket".into(),
        ),
        1 => {}
        _ => add("", "may not specify more than one handler".into()),
    }
    if let Some(exec) = &probe.exec {
        if exec.command.is_empty() {
            add(".exec.command", "is required".into());
        }
    }
    if let Some(http) = &probe.http_get {
        if let Err(m) = resolve_port(&http.port, ports) {
            add(".httpGet.port", m);
        }
        if !http.path.is_empty() && !http.path.starts_with('/') {
            add(
                ".httpGet.path",
                format!("{:?} must start with '/'", http.path),
            );
        }
        if http.path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            add(
                ".httpGet.path",
                format!(
                    "{:?} must not contain spaces or control characters",
                    http.path
                ),
            );
        }
        if let Err(m) = host(&http.host) {
            add(".httpGet.host", m);
        }
        if http.scheme == UriScheme::HTTPS {
            add(".httpGet.scheme", "HTTPS: not supported yet".into());
        }
        for (i, h) in http.http_headers.iter().enumerate() {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if h.name.is_empty() || !h.name.bytes().all(token) {
                add(
                    &format!(".httpGet.httpHeaders[{i}].name"),
                    format!("{:?} must be a valid HTTP header name", h.name),
                );
            }
            // A CR or LF would let a manifest smuggle extra headers or requests.
            if h.value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                add(
                    &format!(".httpGet.httpHeaders[{i}].value"),
                    "must not contain control characters".into(),
                );
            }
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        if let Err(m) = resolve_port(&tcp.port, ports) {
            add(".tcpSocket.port", m);
        }
        if let Err(m) = host(&tcp.host) {
            add(".tcpSocket.host", m);
        }
    }
    let at_least = |v: i32, min: i32| (v < min).then(|| format!("must be at least {min}, got {v}"));
    for (field, value, min) in [
        ("initialDelaySeconds", probe.initial_delay_seconds, 0),
        ("periodSeconds", probe.period_seconds, 1),
        ("timeoutSeconds", probe.timeout_seconds, 1),
        ("successThreshold", probe.success_threshold, 1),
        ("failureThreshold", probe.failure_threshold, 1),
    ] {
        if let Some(m) = at_least(value, min) {
            add(&format!(".{field}"), m);
        }
    }
    if kind != ProbeKind::Readiness && probe.success_threshold > 1 {
        add(
            ".successThreshold",
            format!(
                "must be 1 for a {}, got {}",
                kind.field(),
                probe.success_threshold
            ),
        );
    }
    match (kind, probe.termination_grace_period_seconds) {
        (ProbeKind::Readiness, Some(_)) => add(
            ".terminationGracePeriodSeconds",
            "must not be set for a readinessProbe (it never kills)".into(),
        ),
        (_, Some(g)) if g < 1 => add(
            ".terminationGracePeriodSeconds",
            format!("must be at least 1, got {g}"),
        ),
        _ => {}
    }
    out
}

/// Probes connect from inside the container's network namespace, where no resolver is set
/// up: only an IP literal (or nothing, meaning loopback) can be honoured.
fn host(h: &str) -> Result<(), String> {
    if h.is_empty() || h.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!(
            "{h:?} must be an IP address (host names are not supported yet)"
        ))
    }
}

/// Problems with a container's `ports` as `(path below the container, message)`.
pub fn port_problems(ports: &[ContainerPort]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        if !(1..=65535).contains(&p.container_port) {
            out.push((
                format!(".ports[{i}].containerPort"),
                format!("must be between 1 and 65535, got {}", p.container_port),
            ));
        }
        if let Some(h) = p.host_port {
            if !(1..=65535).contains(&h) {
                out.push((
                    format!(".ports[{i}].hostPort"),
                    format!("must be between 1 and 65535, got {h}"),
                ));
            }
        }
        if p.name.is_empty() {
            continue;
        }
        // IANA service name, as Kubernetes requires for named ports.
        let b = p.name.as_bytes();
        let shape = b.len() <= 15
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b.iter().any(u8::is_ascii_lowercase)
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && !p.name.contains("--");
        if !shape {
            out.push((
                format!(".ports[{i}].name"),
                format!(
                    "{:?} must be at most 15 lowercase letters, digits and single inner '-', with at least one letter",
                    p.name
                ),
            ));
        } else if !names.insert(p.name.as_str()) {
            out.push((
                format!(".ports[{i}].name"),
                format!("duplicate port name {:?}", p.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::api::manifest::parse;
    use crate::api::validate::validate_pod;
    use crate::api::Object;

    const POD: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: app
    image: busybox
    ports:
    - {name: http, containerPort: 8080}
    - {containerPort: 9090, protocol: UDP}
";

    fn parse_pod(extra: &str) -> Result<crate::api::Pod, crate::api::manifest::ManifestError> {
        let mut objects = parse(&format!("{POD}{extra}"))?;
        match objects.pop() {
            Some(Object::Pod(p)) => Ok(*p),
            other => panic!("expected a pod, got {other:?}"),
        }
    }

    /// Validation errors of the base pod with `extra` (YAML) added to its container, checked
    /// by `validate_pod` directly so every error shows, not only the first.
    fn errors(extra: &str) -> Vec<String> {
        let pod: crate::api::Pod = yaml_serde::from_str(&format!("{POD}{extra}")).unwrap();
        match validate_pod(&pod) {
            Ok(()) => vec![],
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_manifest_with_all_three_probes_and_named_ports_parses() {
        let pod = parse_pod(
            "    livenessProbe:
      exec: {command: [test, -f, /tmp/healthy]}
      periodSeconds: 1
      terminationGracePeriodSeconds: 2
    readinessProbe:
      httpGet:
        path: /healthz
        port: http
        httpHeaders: [{name: X-Probe, value: herd}]
      successThreshold: 2
    startupProbe:
      tcpSocket: {port: 9090}
      failureThreshold: 30
",
        )
        .unwrap();
        let c = &pod.spec.containers[0];
        assert_eq!(c.ports[0].container_port, 8080);
        assert_eq!(c.ports[1].protocol, crate::api::pod::Protocol::UDP);
        let live = c.liveness_probe.as_ref().unwrap();
        assert_eq!(live.exec.as_ref().unwrap().command[0], "test");
        assert_eq!((live.period_seconds, live.failure_threshold), (1, 3));
        let ready = c.readiness_probe.as_ref().unwrap();
        let http = ready.http_get.as_ref().unwrap();
        assert_eq!(http.port, IntOrString::String("http".into()));
        assert_eq!(resolve_port(&http.port, &c.ports), Ok(8080));
        assert_eq!(c.startup_probe.as_ref().unwrap().failure_threshold, 30);
    }

    #[test]
    fn unsupported_probe_and_port_fields_are_named() {
        for (extra, path, message) in [
            (
                "    readinessProbe: {grpc: {port: 9}}\n",
                "spec.containers[0].readinessProbe.grpc",
                "not supported yet",
            ),
            (
                "    startupProbe: {exec: {command: [x]}, grpc: {port: 9}}\n",
                "spec.containers[0].startupProbe.grpc",
                "not supported yet",
            ),
            (
                "    livenessProbe: {exec: {command: [x]}, periodSecond: 1}\n",
                "spec.containers[0].livenessProbe.periodSecond",
                "unknown field (did you mean periodSeconds?)",
            ),
        ] {
            let err = parse_pod(extra).unwrap_err();
            assert_eq!(err.path, path, "{err}");
            assert!(err.message.contains(message), "{err}");
        }
        let err = parse(&POD.replace(
            "{name: http, containerPort: 8080}",
            "{name: http, containerPort: 8080, hostIP: 1.2.3.4}",
        ))
        .unwrap_err();
        assert_eq!(
            (err.path.as_str(), err.message.as_str()),
            ("spec.containers[0].ports[0].hostIP", "not supported yet")
        );
        // Init containers take the same fields, with the same "not supported yet".
        let p = parse_pod("  initContainers:\n  - {name: setup, image: busybox}\n").unwrap();
        assert_eq!(p.spec.init_containers[0].name, "setup");
        let err = parse_pod("  initContainers:\n  - {name: setup, image: b, lifecycle: {}}\n")
            .unwrap_err();
        assert_eq!(
            (err.path.as_str(), err.message.as_str()),
            ("spec.initContainers[0].lifecycle", "not supported yet")
        );
    }

    #[test]
    fn probe_validation_names_every_bad_field() {
        let cases: &[(&str, &[&str])] = &[
            (
                "    livenessProbe: {periodSeconds: 1}\n",
                &["spec.containers[0].livenessProbe: must specify a handler: exec, httpGet or tcpSocket"],
            ),
            (
                "    livenessProbe: {exec: {command: [x]}, tcpSocket: {port: 1}}\n",
                &["spec.containers[0].livenessProbe: may not specify more than one handler"],
            ),
            (
                "    readinessProbe: {exec: {command: []}}\n",
                &["spec.containers[0].readinessProbe.exec.command: is required"],
            ),
            (
                "    readinessProbe: {tcpSocket: {port: 0}}\n",
                &["spec.containers[0].readinessProbe.tcpSocket.port: 0 must be between 1 and 65535"],
            ),
            (
                "    readinessProbe: {tcpSocket: {port: metrics}}\n",
                &["spec.containers[0].readinessProbe.tcpSocket.port: \"metrics\" is not the name of one of the container's ports"],
            ),
            (
                "    readinessProbe: {httpGet: {port: 70000, path: healthz, scheme: HTTPS, host: example.com}}\n",
                &[
                    "spec.containers[0].readinessProbe.httpGet.port: 70000 must be between 1 and 65535",
                    "spec.containers[0].readinessProbe.httpGet.path: \"healthz\" must start with '/'",
                    "spec.containers[0].readinessProbe.httpGet.host: \"example.com\" must be an IP address (host names are not supported yet)",
                    "spec.containers[0].readinessProbe.httpGet.scheme: HTTPS: not supported yet",
                ],
            ),
            (
                "    readinessProbe: {httpGet: {port: 80, httpHeaders: [{name: \"X Bad\", value: \"a\\r\\nHost: evil\"}]}}\n",
                &[
                    "spec.containers[0].readinessProbe.httpGet.httpHeaders[0].name: \"X Bad\" must be a valid HTTP header name",
                    "spec.containers[0].readinessProbe.httpGet.httpHeaders[0].value: must not contain control characters",
                ],
            ),
            (
                "    livenessProbe: {exec: {command: [x]}, initialDelaySeconds: -1, periodSeconds: 0, timeoutSeconds: 0, successThreshold: 2, failureThreshold: 0}\n",
                &[
                    "spec.containers[0].livenessProbe.initialDelaySeconds: must be at least 0, got -1",
                    "spec.containers[0].livenessProbe.periodSeconds: must be at least 1, got 0",
                    "spec.containers[0].livenessProbe.timeoutSeconds: must be at least 1, got 0",
                    "spec.containers[0].livenessProbe.failureThreshold: must be at least 1, got 0",
                    "spec.containers[0].livenessProbe.successThreshold: must be 1 for a livenessProbe, got 2",
                ],
            ),
            (
                "    startupProbe: {exec: {command: [x]}, successThreshold: 3, terminationGracePeriodSeconds: 0}\n",
                &[
                    "spec.containers[0].startupProbe.successThreshold: must be 1 for a startupProbe, got 3",
                    "spec.containers[0].startupProbe.terminationGracePeriodSeconds: must be at least 1, got 0",
                ],
            ),
            (
                "    readinessProbe: {exec: {command: [x]}, successThreshold: 3, terminationGracePeriodSeconds: 5}\n",
                &["spec.containers[0].readinessProbe.terminationGracePeriodSeconds: must not be set for a readinessProbe (it never kills)"],
            ),
            ("    readinessProbe: {exec: {command: [x]}, successThreshold: 3}\n", &[]),
        ];
        for (extra, want) in cases {
            assert_eq!(errors(extra), *want, "{extra}");
        }
    }

    #[test]
    fn container_ports_must_be_in_range_with_unique_service_names() {
        let base = POD.split("    ports:").next().unwrap_or(POD).to_string();
        let check = |yaml: &str| {
            let text = format!("{base}    ports: {yaml}\n");
            match parse(&text) {
                Ok(_) => vec![],
                Err(e) => vec![format!("{}: {}", e.path, e.message)],
            }
        };
        assert_eq!(
            check("[{containerPort: 80}, {name: web, containerPort: 81}]"),
            Vec::<String>::new()
        );
        assert_eq!(
            check("[{containerPort: 0}]"),
            ["spec.containers[0].ports[0].containerPort: must be between 1 and 65535, got 0"]
        );
        assert_eq!(
            check("[{name: web, containerPort: 80}, {name: web, containerPort: 81}]"),
            ["spec.containers[0].ports[1].name: duplicate port name \"web\""]
        );
        assert_eq!(
            check("[{name: Web_1, containerPort: 80}]"),
            ["spec.containers[0].ports[0].name: \"Web_1\" must be at most 15 lowercase letters, digits and single inner '-', with at least one letter"]
        );
    }

    #[test]
    fn omitted_timing_fields_take_kubernetes_defaults() {
        let p: Probe = serde_json::from_str(r#"{"exec":{"command":["true"]}}"#).unwrap();
        assert_eq!(
            (
                p.initial_delay_seconds,
                p.period_seconds,
                p.timeout_seconds,
                p.success_threshold,
                p.failure_threshold
            ),
            (0, 10, 1, 1, 3)
        );
        assert_eq!(p.handler_count(), 1);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["periodSeconds"], 10);
    }

    #[test]
    fn ports_resolve_by_number_or_by_name() {
        let ports = [ContainerPort {
            name: "http".into(),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &ports),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("81".into()), &ports),
            Ok(81)
        );
        assert!(resolve_port(&IntOrString::Int(0), &ports).is_err());
        assert!(resolve_port(&IntOrString::Int(65536), &ports).is_err());
        assert!(resolve_port(&IntOrString::String("web".into()), &ports).is_err());
    }
}

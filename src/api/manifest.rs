//! Manifest parsing: multi-document YAML and JSON into typed objects, with errors that name
//! the document and field path.
//!
//! Each document is first read into a generic tree under a size budget (so an alias bomb
//! fails fast instead of exhausting memory), then dispatched on `apiVersion`/`kind` and
//! deserialized into the typed resource with the path of any failure tracked. Unknown fields
//! are split into Kubernetes fields herd does not implement yet ("not supported yet") and
//! plain typos ("unknown field", with a suggestion), because the first needs a different
//! manifest and the second a spelling fix.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_path_to_error::Segment;
use yaml_serde::{Mapping, Number, Value};

use super::pod::Pod;
use super::validate::{key_path, validate_pod};
use super::Object;

#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    /// 1-based index of the document in the input.
    pub doc: usize,
    /// Field path like `spec.containers[0].livenessProbe`; empty for whole-document errors.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "document {}: {}", self.doc, self.message)
        } else {
            write!(f, "document {}: {}: {}", self.doc, self.path, self.message)
        }
    }
}

/// Largest manifest accepted; real manifests are a few KB.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Deepest `[`/`{` nesting accepted. The YAML parser's cost grows with flow nesting (and
/// worse than linearly inside a flow mapping), so a 4 MiB run of brackets would keep the
/// master busy for minutes before the deserializer's own depth limit of 128 is reached.
const MAX_FLOW_DEPTH: usize = 1000;
/// Values (scalars, sequences, mappings) one input may expand to after aliases are resolved.
const MAX_NODES: usize = 1_000_000;
/// String bytes one input may expand to after aliases are resolved.
const MAX_EXPANDED_BYTES: usize = 4 * MAX_MANIFEST_BYTES;

/// Parses every document of a YAML (multi-document) or JSON input, applies defaults and
/// validates each object.
///
/// Empty documents are skipped, so an empty input gives an empty list; the caller decides
/// whether that is an error. `namespace` is left unset: the server applies the default.
pub fn parse(text: &str) -> Result<Vec<Object>, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError {
            doc: 1,
            path: String::new(),
            message: format!(
                "manifest is {} bytes, more than the limit of {MAX_MANIFEST_BYTES}",
                text.len()
            ),
        });
    }
    if flow_depth_exceeds(text, MAX_FLOW_DEPTH) {
        return Err(doc_error(
            1,
            "",
            format!("brackets nest deeper than {MAX_FLOW_DEPTH} levels"),
        ));
    }
    let mut out = Vec::new();
    if text.trim_start().starts_with('{') {
        match read_json(text) {
            Ok(value) => {
                decode_document(1, value, &mut out)?;
                return Ok(out);
            }
            // A flow-style YAML mapping also starts with `{`; only when it is not valid YAML
            // either is the JSON error the useful one.
            Err(json_err) => match read_yaml(text) {
                Ok(docs) => {
                    for (i, value) in docs.into_iter().enumerate() {
                        decode_document(i + 1, value, &mut out)?;
                    }
                    return Ok(out);
                }
                Err(_) => return Err(json_err),
            },
        }
    }
    for (i, value) in read_yaml(text)?.into_iter().enumerate() {
        decode_document(i + 1, value, &mut out)?;
    }
    Ok(out)
}

/// Counts brackets without regard to quoting: a conservative bound that only a pathological
/// manifest (hundreds of unclosed brackets inside strings) could trip falsely.
fn flow_depth_exceeds(text: &str, max: usize) -> bool {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn doc_error(doc: usize, path: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError {
        doc,
        path: path.into(),
        message: message.into(),
    }
}

fn read_json(text: &str) -> Result<Value, ManifestError> {
    let budget = Budget::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Build { budget: &budget }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| doc_error(1, "", limit_hint(format!("invalid JSON: {e}"))))?;
    Ok(value)
}

/// Reads all documents before decoding any, so a syntax error anywhere is reported before
/// objects are built.
fn read_yaml(text: &str) -> Result<Vec<Value>, ManifestError> {
    let budget = Budget::default();
    let mut docs = Vec::new();
    // The iterator keeps yielding the same failure after an error, so stop at the first one.
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let mut value = Build { budget: &budget }
            .deserialize(doc)
            .map_err(|e| doc_error(i + 1, "", limit_hint(format!("invalid YAML: {e}"))))?;
        value
            .apply_merge()
            .map_err(|e| doc_error(i + 1, "", limit_hint(format!("invalid YAML: {e}"))))?;
        docs.push(value);
    }
    Ok(docs)
}

/// The parsers' limit messages say which limit, not what in the input tripped it.
fn limit_hint(message: String) -> String {
    if message.contains("repetition limit exceeded") {
        format!("{message} (aliases expand too many times: an alias bomb?)")
    } else if message.contains("recursion limit exceeded") {
        format!("{message} (values nest deeper than 128 levels)")
    } else {
        message
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "an object",
        Value::Tagged(_) => "a tagged value",
    }
}

fn join_path(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Reads `apiVersion` and `kind`, which every object must carry.
fn type_meta(doc: usize, prefix: &str, map: &Mapping) -> Result<(String, String), ManifestError> {
    let field = |name: &str| match map.get(name) {
        None | Some(Value::Null) => Err(doc_error(doc, join_path(prefix, name), "is required")),
        Some(Value::String(s)) if s.is_empty() => {
            Err(doc_error(doc, join_path(prefix, name), "is required"))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(doc_error(
            doc,
            join_path(prefix, name),
            format!("must be a string, found {}", type_name(other)),
        )),
    };
    Ok((field("apiVersion")?, field("kind")?))
}

fn decode_document(doc: usize, value: Value, out: &mut Vec<Object>) -> Result<(), ManifestError> {
    let mut map = match value {
        Value::Null => return Ok(()),
        Value::Mapping(map) => map,
        other => {
            return Err(doc_error(
                doc,
                "",
                format!(
                    "expected an object with apiVersion and kind, found {}",
                    type_name(&other)
                ),
            ))
        }
    };
    let (api_version, kind) = type_meta(doc, "", &map)?;
    if !is_list(&api_version, &kind) {
        out.push(decode_object(doc, "", &api_version, &kind, map)?);
        return Ok(());
    }
    let items = match map.remove("items") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            return Err(doc_error(
                doc,
                "items",
                format!("must be a list, found {}", type_name(&other)),
            ))
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let prefix = format!("items[{i}]");
        let Value::Mapping(item) = item else {
            return Err(doc_error(
                doc,
                prefix,
                format!("expected an object, found {}", type_name(&item)),
            ));
        };
        let (api_version, kind) = type_meta(doc, &prefix, &item)?;
        if is_list(&api_version, &kind) {
            return Err(doc_error(
                doc,
                join_path(&prefix, "kind"),
                "a List inside a List is not supported",
            ));
        }
        out.push(decode_object(doc, &prefix, &api_version, &kind, item)?);
    }
    Ok(())
}

/// `kubectl get -o yaml` prints `List`; the raw API prints `PodList`.
fn is_list(api_version: &str, kind: &str) -> bool {
    api_version == "v1" && matches!(kind, "List" | "PodList")
}

fn decode_object(
    doc: usize,
    prefix: &str,
    api_version: &str,
    kind: &str,
    mut map: Mapping,
) -> Result<Object, ManifestError> {
    // Server-owned: accepted so that `get -o yaml` output re-applies, and ignored.
    map.remove("status");
    if let Some(Value::Mapping(meta)) = map.get_mut("metadata") {
        meta.remove("managedFields");
        meta.remove("selfLink");
    }
    match (api_version, kind) {
        ("v1", "Pod") => {
            let pod: Pod = typed(doc, prefix, Value::Mapping(map))?;
            validate_pod(&pod).map_err(|e| {
                let mut errors = e.errors.into_iter();
                let first = errors.next().unwrap_or_default();
                let mut message = first.message;
                for rest in errors {
                    message.push_str(&format!(
                        "; {}: {}",
                        join_path(prefix, &rest.path),
                        rest.message
                    ));
                }
                doc_error(doc, join_path(prefix, &first.path), message)
            })?;
            Ok(Object::Pod(Box::new(pod)))
        }
        ("apps/v1", "ReplicaSet") => {
            let rs: super::apps::ReplicaSet = typed(doc, prefix, Value::Mapping(map))?;
            super::validate_apps::validate_replicaset(&rs)
                .map_err(|e| validation_error(doc, prefix, e))?;
            Ok(Object::ReplicaSet(Box::new(rs)))
        }
        ("apps/v1", "Deployment") => {
            let d: super::apps::Deployment = typed(doc, prefix, Value::Mapping(map))?;
            super::validate_apps::validate_deployment(&d)
                .map_err(|e| validation_error(doc, prefix, e))?;
            Ok(Object::Deployment(Box::new(d)))
        }
        ("v1", "Secret") => {
            let sec: super::secret::Secret = typed(doc, prefix, Value::Mapping(map))?;
            super::secret::validate_secret(&sec).map_err(|e| validation_error(doc, prefix, e))?;
            Ok(Object::Secret(Box::new(sec)))
        }
        ("v1", "ConfigMap") => {
            let cm: super::configmap::ConfigMap = typed(doc, prefix, Value::Mapping(map))?;
            super::configmap::validate_configmap(&cm)
                .map_err(|e| validation_error(doc, prefix, e))?;
            Ok(Object::ConfigMap(Box::new(cm)))
        }
        ("v1", "PersistentVolumeClaim") => {
            let c: super::pvc::PersistentVolumeClaim = typed(doc, prefix, Value::Mapping(map))?;
            super::pvc::validate_claim(&c).map_err(|e| validation_error(doc, prefix, e))?;
            Ok(Object::PersistentVolumeClaim(Box::new(c)))
        }
        ("v1", "Service") => {
            let svc: super::service::Service = typed(doc, prefix, Value::Mapping(map))?;
            super::service::validate_service(&svc).map_err(|e| validation_error(doc, prefix, e))?;
            Ok(Object::Service(Box::new(svc)))
        }
        (super::ingress::API_VERSION, "Ingress") => {
            let ing: super::ingress::Ingress = typed(doc, prefix, Value::Mapping(map))?;
            super::ingress::validate_ingress(&ing).map_err(|e| validation_error(doc, prefix, e))?;
            Ok(Object::Ingress(Box::new(ing)))
        }
        (_, "Ingress") => Err(doc_error(
            doc,
            join_path(prefix, "apiVersion"),
            format!("Ingress is served as networking.k8s.io/v1, not {api_version}"),
        )),
        (_, "ReplicaSet" | "Deployment") => Err(doc_error(
            doc,
            join_path(prefix, "apiVersion"),
            format!("{kind} is served as apps/v1, not {api_version}"),
        )),
        _ => Err(doc_error(
            doc,
            join_path(prefix, "kind"),
            format!("kind {kind} (apiVersion {api_version}) is not supported"),
        )),
    }
}

/// All validation problems as one error: the first names the path, the rest follow.
fn validation_error(
    doc: usize,
    prefix: &str,
    e: super::validate::ValidationError,
) -> ManifestError {
    let mut errors = e.errors.into_iter();
    let first = errors.next().unwrap_or_default();
    let mut message = first.message;
    for rest in errors {
        message.push_str(&format!(
            "; {}: {}",
            join_path(prefix, &rest.path),
            rest.message
        ));
    }
    doc_error(doc, join_path(prefix, &first.path), message)
}

fn typed<T: de::DeserializeOwned>(
    doc: usize,
    prefix: &str,
    value: Value,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let message = err.inner().to_string();
        let (path, message) = explain(&segments, &message);
        doc_error(doc, join_path(prefix, &path), message)
    })
}

fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for seg in segments {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } if out.is_empty() => {
                out.push_str(key)
            }
            Segment::Map { key } | Segment::Enum { variant: key } => out = key_path(&out, key),
            Segment::Unknown => out = join_path(&out, "?"),
        }
    }
    out
}

/// The backtick-quoted words of a serde message: for "unknown field `x`, expected one of `a`,
/// `b`" that is the field, then the fields that would have been accepted.
fn quoted(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// Turns a serde error at a path into the path and message a user should see.
fn explain(segments: &[Segment], message: &str) -> (String, String) {
    let path = render(segments);
    if message.starts_with("unknown field `") {
        let words = quoted(message);
        let field = words.first().copied().unwrap_or_default();
        let parent = &segments[..segments.len().saturating_sub(1)];
        if unsupported_fields(parent).contains(&field) {
            return (path, "not supported yet".into());
        }
        if is_volume(parent) && crate::api::volume::UNSUPPORTED_SOURCES.contains(&field) {
            return (
                path,
                format!(
                    "volume type {field} is not supported by herd (supported: emptyDir, hostPath, configMap, secret, persistentVolumeClaim)"
                ),
            );
        }
        let known = words.get(1..).unwrap_or_default();
        let message = match closest(field, known) {
            Some(s) => format!("unknown field (did you mean {s}?)"),
            None => "unknown field".into(),
        };
        return (path, message);
    }
    if message.starts_with("missing field `") {
        let field = quoted(message).first().copied().unwrap_or_default();
        return (join_path(&path, field), "is required".into());
    }
    (path, message.to_string())
}

/// True when `parent` is a pod's (or pod template's) `spec.volumes[i]`.
fn is_volume(parent: &[Segment]) -> bool {
    let keys: Vec<&str> = parent
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    matches!(
        keys.as_slice(),
        ["spec", "volumes"] | ["spec", "template", "spec", "volumes"]
    )
}

/// Kubernetes fields of each type that herd does not implement yet, found by the shape of the
/// path to the object holding them (indices ignored).
fn unsupported_fields(parent: &[Segment]) -> &'static [&'static str] {
    let shape: Vec<&str> = parent
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    // A workload's pod template holds a pod's metadata and spec: same tables.
    let shape = match shape.as_slice() {
        ["spec", "template", rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    // Init containers take the fields of containers (probes are refused by validation).
    let shape: Vec<&str> = shape
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == 1 && *s == "initContainers" {
                "containers"
            } else {
                *s
            }
        })
        .collect();
    match shape.as_slice() {
        [] => &[],
        ["metadata"] => &["generateName", "finalizers", "deletionGracePeriodSeconds"],
        ["spec"] => &[
            "activeDeadlineSeconds",
            "automountServiceAccountToken",
            "dnsConfig",
            "dnsPolicy",
            "enableServiceLinks",
            "ephemeralContainers",
            "hostAliases",
            "hostIPC",
            "hostPID",
            "hostUsers",
            "hostname",
            "imagePullSecrets",
            "os",
            "overhead",
            "preemptionPolicy",
            "priority",
            "priorityClassName",
            "readinessGates",
            "resourceClaims",
            "resources",
            "runtimeClassName",
            "schedulerName",
            "schedulingGates",
            "serviceAccount",
            "serviceAccountName",
            "setHostnameAsFQDN",
            "shareProcessNamespace",
            "subdomain",
        ],
        ["spec", "affinity"] => &["podAffinity"],
        ["spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"]
        | ["spec", "affinity", "nodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "preference"] => {
            &["matchFields"]
        }
        ["spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution"]
        | ["spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", "podAffinityTerm"] => {
            &[
                "namespaces",
                "namespaceSelector",
                "matchLabelKeys",
                "mismatchLabelKeys",
            ]
        }
        ["spec", "topologySpreadConstraints"] => &[
            "minDomains",
            "nodeAffinityPolicy",
            "nodeTaintsPolicy",
            "matchLabelKeys",
        ],
        ["spec", "containers"] => &[
            "envFrom",
            "lifecycle",
            "resizePolicy",
            "restartPolicy",
            "stdin",
            "stdinOnce",
            "terminationMessagePath",
            "terminationMessagePolicy",
            "tty",
            "volumeDevices",
        ],
        ["spec", "containers", "volumeMounts"] => {
            &["mountPropagation", "recursiveReadOnly", "subPathExpr"]
        }
        ["spec", "securityContext"] => &[
            "appArmorProfile",
            "fsGroupChangePolicy",
            "seLinuxChangePolicy",
            "seLinuxOptions",
            "supplementalGroupsPolicy",
            "sysctls",
            "windowsOptions",
        ],
        ["spec", "containers", "securityContext"] => &[
            "appArmorProfile",
            "procMount",
            "seLinuxOptions",
            "windowsOptions",
        ],
        ["spec", "securityContext", "seccompProfile"]
        | ["spec", "containers", "securityContext", "seccompProfile"] => &["localhostProfile"],
        ["spec", "containers", "env"] => &["valueFrom"],
        ["spec", "containers", "ports"] => &["hostIP"],
        ["spec", "containers", "livenessProbe" | "readinessProbe" | "startupProbe"] => &["grpc"],
        ["spec", "containers", "resources"] => &["claims"],
        _ => &[],
    }
}

/// The known field nearest to a misspelt one, when it is close enough to be a typo.
fn closest<'a>(field: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(&field.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// What one input may still expand to; shared by all its documents.
#[derive(Default)]
struct Budget {
    nodes: Cell<usize>,
    bytes: Cell<usize>,
}

impl Budget {
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        self.nodes.set(self.nodes.get() + 1);
        self.bytes.set(self.bytes.get().saturating_add(bytes));
        if self.nodes.get() > MAX_NODES || self.bytes.get() > MAX_EXPANDED_BYTES {
            return Err(E::custom(format!(
                "document expands to more than {MAX_NODES} values or {MAX_EXPANDED_BYTES} bytes (too many aliases: an alias bomb?)"
            )));
        }
        Ok(())
    }
}

/// Builds a `Value` while charging the budget, and rejects duplicate keys (which a plain
/// `Value` would silently collapse, hiding the first of two conflicting settings).
#[derive(Clone, Copy)]
struct Build<'a> {
    budget: &'a Budget,
}

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML or JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Number(Number::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.charge(v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.charge(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.charge(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.charge(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.charge(0)?;
        let mut out = Mapping::new();
        while let Some(key) = map.next_key_seed(self)? {
            let value = map.next_value_seed(self)?;
            let shown = match &key {
                Value::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            if out.insert(key, value).is_some() {
                return Err(de::Error::custom(format!("duplicate key {shown}")));
            }
        }
        Ok(Value::Mapping(out))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(de::Error::custom("YAML tags are not supported"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::api::RestartPolicy;

    const GOOD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  restartPolicy: OnFailure
  nodeSelector:
    kubernetes.io/arch: arm64
  containers:
  - name: app
    image: nginx:1.27
    command: [nginx, -g, daemon off;]
    env:
    - name: MODE
      value: prod
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {memory: 64Mi}
";

    #[test]
    fn quantities_may_be_plain_numbers_as_kubernetes_allows() {
        let text = GOOD
            .replace(
                "requests: {cpu: 100m, memory: 32Mi}",
                "requests: {cpu: 1, memory: 33554432}",
            )
            .replace("limits: {memory: 64Mi}", "limits: {cpu: 1.5}");
        let objects = parse(&text).unwrap();
        let r = &pod(&objects, 0).spec.containers[0].resources;
        assert_eq!(r.requests["cpu"], "1");
        assert_eq!(r.requests["memory"], "33554432");
        assert_eq!(r.limits["cpu"], "1.5");
        let neg = GOOD.replace("limits: {memory: 64Mi}", "limits: {cpu: -1}");
        let err = parse(&neg).unwrap_err();
        assert_eq!(err.path, "spec.containers[0].resources.limits.cpu");
        assert!(err.message.contains("must not be negative"), "{err}");
    }

    fn pod(objects: &[Object], i: usize) -> &Pod {
        match &objects[i] {
            Object::Pod(p) => p,
            other => panic!("expected a pod, got {}", other.kind()),
        }
    }

    const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox
";

    #[test]
    fn a_deployment_and_a_replicaset_parse_with_their_templates() {
        let objs = parse(&format!(
            "{DEPLOYMENT}---\n{}",
            DEPLOYMENT.replace("Deployment", "ReplicaSet").replace(
                "  strategy:\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}\n",
                ""
            )
        ))
        .unwrap();
        let Object::Deployment(d) = &objs[0] else {
            panic!("{objs:?}")
        };
        assert_eq!(d.spec.replicas(), 3);
        assert_eq!(d.spec.template.spec.containers[0].image, "busybox");
        assert!(matches!(&objs[1], Object::ReplicaSet(r) if r.spec.replicas() == 3));
    }

    #[test]
    fn workload_errors_name_paths_inside_the_template() {
        let cases = [
            (
                DEPLOYMENT.replace(
                    "image: busybox",
                    "image: busybox\n        livenessProbee: {}",
                ),
                "spec.template.spec.containers[0].livenessProbee",
            ),
            (
                DEPLOYMENT.replace("labels: {app: web}", "labels: {app: db}"),
                "spec.template.metadata.labels",
            ),
            (
                DEPLOYMENT.replace("maxSurge: 1", "maxSurge: lots"),
                "spec.strategy.rollingUpdate.maxSurge",
            ),
            (
                DEPLOYMENT.replace("replicas: 3", "replicas: -2"),
                "spec.replicas",
            ),
            (
                DEPLOYMENT.replace("apps/v1", "extensions/v1beta1"),
                "apiVersion",
            ),
            (
                DEPLOYMENT.replace("  template:", "  hostAliases: []\n  template:"),
                "spec.hostAliases",
            ),
            (
                DEPLOYMENT.replace(
                    "image: busybox",
                    "image: busybox\n      volumes: [{name: v, gitRepo: {repository: x}}]",
                ),
                "spec.template.spec.volumes[0].gitRepo",
            ),
            (
                DEPLOYMENT.replace(
                    "image: busybox",
                    "image: busybox\n        securityContext: {runAsUser: -1}",
                ),
                "spec.template.spec.containers[0].securityContext.runAsUser",
            ),
            (
                DEPLOYMENT.replace(
                    "image: busybox",
                    "image: busybox\n        securityContext: {procMount: Unmasked}",
                ),
                "spec.template.spec.containers[0].securityContext.procMount",
            ),
        ];
        for (text, path) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.path, path, "{e}");
        }
    }

    #[test]
    fn security_contexts_parse_and_unsupported_parts_are_named() {
        let text = with(
            "  restartPolicy: OnFailure\n",
            "  restartPolicy: OnFailure
  securityContext:
    runAsUser: 1000
    runAsNonRoot: true
    fsGroup: 2000
    supplementalGroups: [3000]
    seccompProfile: {type: RuntimeDefault}
",
        )
        .replace(
            "    image: nginx:1.27\n",
            "    image: nginx:1.27
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
",
        );
        let objects = parse(&text).unwrap();
        let p = pod(&objects, 0);
        let psc = p.spec.security_context.as_ref().unwrap();
        assert_eq!((psc.run_as_user, psc.fs_group), (Some(1000), Some(2000)));
        let sc = p.spec.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.capabilities.as_ref().unwrap().add, ["NET_BIND_SERVICE"]);

        let cases = [
            (
                "  securityContext: {sysctls: []}\n",
                "spec.securityContext.sysctls",
                "not supported yet",
            ),
            (
                "  securityContext: {seccompProfile: {type: Localhost, localhostProfile: x.json}}\n",
                "spec.securityContext.seccompProfile.localhostProfile",
                "not supported yet",
            ),
            (
                "  securityContext: {seccompProfile: {type: Localhost}}\n",
                "spec.securityContext.seccompProfile.type",
                "Localhost is not supported yet",
            ),
            (
                "  securityContext: {runAsGroup: 2147483648}\n",
                "spec.securityContext.runAsGroup",
                "must be <= 2147483647",
            ),
            (
                "  securityContext: {runAsUsr: 1}\n",
                "spec.securityContext.runAsUsr",
                "unknown field (did you mean runAsUser?)",
            ),
        ];
        for (line, path, message) in cases {
            let text = with("  restartPolicy: OnFailure\n", line);
            let e = parse(&text).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains(message), "{e}");
        }
        let container_cases = [
            (
                "    securityContext: {seLinuxOptions: {level: s0}}\n",
                "spec.containers[0].securityContext.seLinuxOptions",
                "not supported yet",
            ),
            (
                "    securityContext: {privilegd: true}\n",
                "spec.containers[0].securityContext.privilegd",
                "did you mean privileged?",
            ),
            (
                "    securityContext: {capabilities: {drop: [EVERYTHING]}}\n",
                "spec.containers[0].securityContext.capabilities.drop[0]",
                "unknown capability \"EVERYTHING\"",
            ),
            (
                "    securityContext: {privileged: true, allowPrivilegeEscalation: false}\n",
                "spec.containers[0].securityContext.allowPrivilegeEscalation",
                "cannot be false when privileged is true",
            ),
        ];
        for (line, path, message) in container_cases {
            let text = with(
                "    image: nginx:1.27\n",
                &format!("    image: nginx:1.27\n{line}"),
            );
            let e = parse(&text).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(e.message.contains(message), "{e}");
        }
    }

    #[test]
    fn a_good_yaml_pod_parses_into_a_typed_pod() {
        let objects = parse(GOOD).unwrap();
        assert_eq!(objects.len(), 1);
        let p = pod(&objects, 0);
        assert_eq!(p.metadata.name, "web");
        assert_eq!(p.metadata.namespace, None);
        assert_eq!(p.spec.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(p.spec.containers[0].command, ["nginx", "-g", "daemon off;"]);
        assert_eq!(p.spec.containers[0].resources.limits["memory"], "64Mi");
        assert_eq!(p.spec.node_selector["kubernetes.io/arch"], "arm64");
    }

    #[test]
    fn a_multi_document_file_skips_empty_documents() {
        let text = format!(
            "---\n# only a comment\n---\n{GOOD}---\n{}\n---\n",
            GOOD.replace("name: web", "name: api")
        );
        let objects = parse(&text).unwrap();
        let names: Vec<&str> = objects.iter().map(|o| o.metadata().name.as_str()).collect();
        assert_eq!(names, ["web", "api"]);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("---\n---\n").unwrap().is_empty());
    }

    #[test]
    fn json_objects_and_json_lists_parse() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},
            "spec":{"containers":[{"name":"c","image":"busybox","args":["sleep","1"]}]}}"#;
        assert_eq!(parse(json).unwrap()[0].metadata().name, "j");
        let list = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{json},{}]}}",
            json.replace("\"j\"", "\"k\"")
        );
        let objects = parse(&list).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].metadata().name, "k");
        // Tabs are fine in JSON even though YAML forbids them for indentation.
        assert_eq!(
            parse("{\n\t\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": []\n}")
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn a_yaml_list_and_a_flow_style_document_parse() {
        let text = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n",
            "{apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [{name: c, image: x}]}}"
        );
        assert_eq!(parse(&text).unwrap()[0].metadata().name, "a");
        let flow = "{apiVersion: v1, kind: Pod, metadata: {name: b}, spec: {containers: [{name: c, image: x}]}}";
        assert_eq!(parse(flow).unwrap()[0].metadata().name, "b");
    }

    #[test]
    fn server_owned_fields_and_status_are_accepted_and_ignored() {
        let text = format!(
            "{}status:\n  phase: Running\n  qosClass: Burstable\n  containerStatuses: [{{bogus: 1}}]\n",
            GOOD.replace(
                "  name: web\n",
                "  name: web\n  uid: \"1234\"\n  resourceVersion: \"7\"\n  creationTimestamp: \"2024-01-01T00:00:00Z\"\n  selfLink: /api/v1/x\n  managedFields: [{manager: kubectl}]\n"
            )
        );
        let objects = parse(&text).unwrap();
        let p = pod(&objects, 0);
        assert_eq!(p.metadata.uid, "1234");
        assert_eq!(p.status, crate::api::PodStatus::default());
    }

    #[test]
    fn yaml_merge_keys_are_applied() {
        let text = "\
apiVersion: v1
kind: Pod
metadata: {name: m}
spec:
  containers:
  - &base {name: a, image: busybox}
  - <<: *base
    name: b
";
        let objects = parse(text).unwrap();
        assert_eq!(pod(&objects, 0).spec.containers[1].image, "busybox");
    }

    fn with(field_line: &str, replace: &str) -> String {
        GOOD.replace(field_line, replace)
    }

    #[test]
    fn bad_manifests_name_the_document_and_field() {
        let second = |s: String| format!("{GOOD}---\n{s}");
        let cases: Vec<(String, usize, &str, &str)> = vec![
            (
                with("    image: nginx:1.27\n", "    image: nginx:1.27\n    livenessProbe: {grpc: {port: 9}}\n"),
                1,
                "spec.containers[0].livenessProbe.grpc",
                "not supported yet",
            ),
            (
                second(with("    image: nginx:1.27\n", "    image: x\n    ports: [{containerPort: 80, hostIP: 1.2.3.4}]\n")),
                2,
                "spec.containers[0].ports[0].hostIP",
                "not supported yet",
            ),
            (
                with("  restartPolicy: OnFailure\n", "  hostAliases: []\n"),
                1,
                "spec.hostAliases",
                "not supported yet",
            ),
            (
                with(
                    "  restartPolicy: OnFailure\n",
                    "  volumes: [{name: n, nfs: {server: x, path: /}}]\n",
                ),
                1,
                "spec.volumes[0].nfs",
                "volume type nfs is not supported by herd",
            ),
            (
                with(
                    "    image: nginx:1.27\n",
                    "    image: nginx:1.27\n    volumeMounts: [{name: v, mountPath: /v, mountPropagation: Bidirectional}]\n",
                ),
                1,
                "spec.containers[0].volumeMounts[0].mountPropagation",
                "not supported yet",
            ),
            (
                with(
                    "  restartPolicy: OnFailure\n",
                    "  volumes: [{name: v, emptyDir: {}}]\n",
                )
                .replace(
                    "    image: nginx:1.27\n",
                    "    image: nginx:1.27\n    volumeMounts: [{name: w, mountPath: /v}]\n",
                ),
                1,
                "spec.containers[0].volumeMounts[0].name",
                "volume \"w\" is not in spec.volumes",
            ),
            (
                with("  labels:\n", "  finalizers: []\n  labels:\n"),
                1,
                "metadata.finalizers",
                "not supported yet",
            ),
            (
                with("      value: prod\n", "      valueFrom: {}\n"),
                1,
                "spec.containers[0].env[0].valueFrom",
                "not supported yet",
            ),
            (
                with("    image: nginx:1.27\n", "    imagee: nginx:1.27\n"),
                1,
                "spec.containers[0].imagee",
                "unknown field (did you mean image?)",
            ),
            (
                with("  restartPolicy: OnFailure\n", "  replicas: 3\n"),
                1,
                "spec.replicas",
                "unknown field",
            ),
            (
                with("  name: web\n", "  name: Web_1\n"),
                1,
                "metadata.name",
                "must consist of lowercase",
            ),
            (
                with("  name: web\n", "  namespace: x\n"),
                1,
                "metadata.name",
                "is required",
            ),
            (
                with(
                    "    env:\n",
                    "  - name: app\n    image: other\n    env:\n",
                ),
                1,
                "spec.containers[1].name",
                "duplicate container name",
            ),
            (
                with("      limits: {memory: 64Mi}\n", "      limits: {memory: 64Mx}\n"),
                1,
                "spec.containers[0].resources.limits.memory",
                "quantity \"64Mx\" is not valid",
            ),
            (
                with("      limits: {memory: 64Mi}\n", "      limits: {memory: -64Mi}\n"),
                1,
                "spec.containers[0].resources.limits.memory",
                "must not be negative",
            ),
            (
                with("      limits: {memory: 64Mi}\n", "      limits: {memory: 16Mi}\n"),
                1,
                "spec.containers[0].resources.requests.memory",
                "must be less than or equal to memory limit",
            ),
            (
                with("    app: web\n", "    -bad/key: web\n"),
                1,
                "metadata.labels[-bad/key]",
                "prefix",
            ),
            (
                with("  restartPolicy: OnFailure\n", "  terminationGracePeriodSeconds: \"x\"\n"),
                1,
                "spec.terminationGracePeriodSeconds",
                "invalid type: string \"x\"",
            ),
            (
                with("  restartPolicy: OnFailure\n", "  restartPolicy: Sometimes\n"),
                1,
                "spec.restartPolicy",
                "unknown variant `Sometimes`",
            ),
            (
                with("  containers:\n", "  containers: nope\n  x:\n"),
                1,
                "spec.containers",
                "invalid type: string \"nope\", expected a sequence",
            ),
            (
                with("    image: nginx:1.27\n", "    image: [nginx\n"),
                1,
                "",
                "invalid YAML: ",
            ),
            (
                second(GOOD.replace("kind: Pod", "kind: StatefulSet").replace("apiVersion: v1", "apiVersion: apps/v1")),
                2,
                "kind",
                "kind StatefulSet (apiVersion apps/v1) is not supported",
            ),
            (GOOD.replace("apiVersion: v1\n", ""), 1, "apiVersion", "is required"),
            (GOOD.replace("kind: Pod\n", "kind: [Pod]\n"), 1, "kind", "must be a string, found a list"),
            (
                with("    image: nginx:1.27\n", "    image: \"\"\n"),
                1,
                "spec.containers[0].image",
                "is required",
            ),
            (
                with("    - name: MODE\n      value: prod\n", "    - value: prod\n"),
                1,
                "spec.containers[0].env[0].name",
                "is required",
            ),
            (
                with("    - name: MODE\n", "    - name: 1MODE\n"),
                1,
                "spec.containers[0].env[0].name",
                "must not start with a digit",
            ),
            (
                with("    kubernetes.io/arch: arm64\n", "    kubernetes.io/arch: \"arm 64\"\n"),
                1,
                "spec.nodeSelector[kubernetes.io/arch]",
                "value \"arm 64\"",
            ),
            (
                with("      requests: {cpu: 100m, memory: 32Mi}\n", "      requests: {cpu: 100m, nvidia.com/gpu: 1}\n"),
                1,
                "spec.containers[0].resources.requests[nvidia.com/gpu]",
                "unknown resource \"nvidia.com/gpu\"",
            ),
            (
                with("    image: nginx:1.27\n", "    image: nginx:1.27\n    image: nginx:2\n"),
                1,
                "",
                "duplicate key image",
            ),
            (
                with("  labels:\n", "  labels:\n    version: 2\n"),
                1,
                "metadata.labels.version",
                "invalid type: integer `2`, expected a string",
            ),
            ("- just\n- a list\n".into(), 1, "", "expected an object with apiVersion and kind, found a list"),
            (
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: x}\n  spec: {containers: [{name: c, image: i, tty: true}]}\n".into(),
                1,
                "items[0].spec.containers[0].tty",
                "not supported yet",
            ),
            (
                "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"x\"},\"spec\":{\"containers\":[]}}".into(),
                1,
                "spec.containers",
                "at least one container",
            ),
            (
                "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",".into(),
                1,
                "",
                "invalid JSON: EOF while parsing a value at line 1 column 32",
            ),
        ];
        assert!(cases.len() >= 20);
        for (text, doc, path, message) in &cases {
            let err = match parse(text) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => e,
            };
            assert_eq!(
                (err.doc, err.path.as_str()),
                (*doc, *path),
                "{err}\n---\n{text}"
            );
            assert!(err.message.contains(message), "{err}\n---\n{text}");
        }
    }

    #[test]
    fn errors_display_document_path_and_message() {
        let err = parse(&format!(
            "{GOOD}---\n{}",
            with(
                "    image: nginx:1.27\n",
                "    image: x\n    startupProbe: {grpc: {port: 9}}\n"
            )
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "document 2: spec.containers[0].startupProbe.grpc: not supported yet"
        );
        let err = parse("a: [").unwrap_err();
        assert!(
            err.to_string().starts_with("document 1: invalid YAML: "),
            "{err}"
        );
    }

    #[test]
    fn several_validation_problems_are_reported_together() {
        let err = parse(
            &with("  name: web\n", "  name: Bad\n").replace("image: nginx:1.27", "image: \"\""),
        )
        .unwrap_err();
        assert_eq!(err.path, "metadata.name");
        assert!(
            err.message
                .contains("; spec.containers[0].image: is required"),
            "{err}"
        );
    }

    #[test]
    fn a_tab_used_for_indentation_is_reported_with_its_line() {
        let text = GOOD.replace("    image: nginx:1.27\n", "\timage: nginx:1.27\n");
        let err = parse(&text).unwrap_err();
        assert_eq!((err.doc, err.path.as_str()), (1, ""));
        assert!(err.message.contains("line 13"), "{err}");
    }

    #[test]
    fn a_billion_laughs_document_fails_fast() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (i, c) in ('b'..='i').enumerate() {
            let prev = (b'a' + i as u8) as char;
            text.push_str(&format!(
                "{c}: &{c} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            ));
        }
        let start = Instant::now();
        let err = parse(&text).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        assert!(
            err.message.contains("limit exceeded") || err.message.contains("expands"),
            "{err}"
        );
    }

    #[test]
    fn wide_alias_fan_out_hits_the_expansion_budget() {
        // Few jumps, each copying a large list: the parser's own repetition limit allows this.
        let big = vec!["x"; 20_000].join(",");
        let refs = vec!["*a"; 2_000].join(",");
        let text = format!("a: &a [{big}]\nb: [{refs}]\n");
        let start = Instant::now();
        let err = parse(&text).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        assert!(err.message.contains("expands to more than"), "{err}");
    }

    #[test]
    fn deep_nesting_is_rejected_quickly_without_overflowing_the_stack() {
        let start = Instant::now();
        for text in [
            format!("{}{}", "[".repeat(500), "]".repeat(500)),
            format!("{{\"a\":{}{}}}", "[".repeat(500), "]".repeat(500)),
            format!("{}a: 1\n", "- ".repeat(20_000)),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.message.contains("recursion limit exceeded"), "{err}");
        }
        for text in [
            format!("{}{}", "[".repeat(2_000_000), "]".repeat(2_000_000)),
            format!(
                "{{\"a\":{}{}}}",
                "[".repeat(2_000_000),
                "]".repeat(2_000_000)
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.message.contains("nest deeper than"), "{err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn oversized_input_is_rejected_before_parsing() {
        let text = format!("{GOOD}#{}\n", "x".repeat(MAX_MANIFEST_BYTES));
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("more than the limit"), "{err}");
    }

    #[test]
    fn typo_suggestions_need_an_edit_distance_of_two_or_less() {
        assert_eq!(closest("imagee", &["name", "image"]), Some("image"));
        assert_eq!(closest("comand", &["command", "args"]), Some("command"));
        assert_eq!(closest("Env", &["env"]), Some("env"));
        assert_eq!(closest("xyzzy", &["name", "image"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}

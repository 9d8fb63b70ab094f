//! Hostile input, as a table: each entry is a bad input, the channel it arrives by, and the
//! words the refusal must contain (naming the field or the problem).
//!
//! - manifests go to a real master both as a raw HTTP body and through `herd apply`;
//! - HTTP entries are raw requests (wrong shapes, types, sizes, headers, paths);
//! - MQTT entries are published with `mosquitto_pub` as a joined node onto the master's broker;
//!   the refusal is read from the master's log (or the publisher's, when the broker drops it);
//! - archives go through `herd image import` into a worker data dir.
//!
//! After every entry: the master still answers, and the stored pods are exactly as before; for
//! archives, the image listing and everything in the data dir outside unreferenced blobs are as
//! before, and nothing escaped the sandbox.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{self, Req};
use common::tarball::{docker_archive, sha256_hex, tar_of, Entry, RawTar};
use common::Cluster;

enum Input {
    /// YAML POSTed to `path` (a collection under the default namespace) and applied with
    /// `herd apply -f -`.
    Manifest { path: &'static str, text: String },
    /// A raw request; `path` is relative to the API root.
    Http {
        method: &'static str,
        path: String,
        content_type: Option<&'static str>,
        body: Vec<u8>,
    },
    /// Published by the joined node `rogue` (its client id and credentials unless `login`
    /// overrides them: client id, username, password).
    Mqtt {
        topic: String,
        payload: Vec<u8>,
        login: Option<(&'static str, &'static str, &'static str)>,
    },
    /// Imported with `herd image import`.
    Archive(Vec<u8>),
}

struct Case {
    name: &'static str,
    input: Input,
    /// Words the refusal must contain.
    expect: String,
}

fn case(name: &'static str, input: Input, expect: &str) -> Case {
    Case {
        name,
        input,
        expect: expect.to_string(),
    }
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn pod(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn container(extra: &str) -> String {
    format!("  containers:\n  - name: a\n    image: busybox\n{extra}")
}

fn manifest(path: &'static str, text: String) -> Input {
    Input::Manifest { path, text }
}

fn pod_manifest(spec: &str) -> Input {
    manifest(PODS, pod("x", spec))
}

fn deployment(spec: &str) -> Input {
    manifest(
        DEPLOYMENTS,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n{spec}  \
             template:\n    metadata:\n      labels: {{app: d}}\n    spec:\n      containers:\n      \
             - {{name: a, image: busybox}}\n"
        ),
    )
}

fn http_req(method: &'static str, path: &str, ct: Option<&'static str>, body: &[u8]) -> Input {
    Input::Http {
        method,
        path: path.to_string(),
        content_type: ct,
        body: body.to_vec(),
    }
}

fn mqtt(topic: &str, payload: &[u8]) -> Input {
    Input::Mqtt {
        topic: topic.to_string(),
        payload: payload.to_vec(),
        login: None,
    }
}

/// Nine levels of nine-fold aliases: 9^9 strings if expanded.
fn billion_laughs() -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: []\nlol0: &l0 \
         [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        s.push_str(&format!(
            "lol{i}: &l{i} [*l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}, *l{p}]\n"
        ));
    }
    s
}

fn deep_block_yaml(levels: usize) -> String {
    let mut s = String::from("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n");
    for i in 0..levels {
        s.push_str(&" ".repeat(2 * (i + 1)));
        s.push_str(&format!("k{i}:\n"));
    }
    s.push_str(&" ".repeat(2 * (levels + 1)));
    s.push_str("v: 1\n");
    s
}

/// Manifests and HTTP bodies: the API's inputs.
fn api_cases() -> Vec<Case> {
    let res = |q: &str| pod_manifest(&container(&format!("    resources:\n{q}")));
    vec![
        // Parser limits.
        case(
            "yaml alias bomb",
            manifest(PODS, billion_laughs()),
            "alias bomb",
        ),
        case(
            "document over the size limit",
            manifest(
                PODS,
                format!("{}# {}\n", pod("x", &container("")), "x".repeat(5 << 20)),
            ),
            "the limit of",
        ),
        case(
            "flow nesting 2000 deep",
            manifest(
                PODS,
                format!(
                    "{}{}{}\n",
                    pod("x", "  x: "),
                    "[".repeat(2000),
                    "]".repeat(2000)
                ),
            ),
            "nest deeper than 1000 levels",
        ),
        case(
            "block nesting 300 deep",
            manifest(PODS, deep_block_yaml(300)),
            "nest deeper than 128 levels",
        ),
        case(
            "yaml syntax: tab indentation",
            manifest(
                PODS,
                "apiVersion: v1\nkind: Pod\nmetadata:\n\tname: x\n".into(),
            ),
            "invalid YAML",
        ),
        case(
            "a bare number as the document",
            manifest(PODS, "42\n".into()),
            "expected an object with apiVersion and kind, found a number",
        ),
        case(
            "a list as the document",
            manifest(PODS, "- a\n- b\n".into()),
            "expected an object with apiVersion and kind, found a list",
        ),
        // Types, kinds, unknown fields.
        case(
            "containers is a string",
            pod_manifest("  containers: \"abc\"\n"),
            "spec.containers: invalid type: string",
        ),
        case(
            "metadata is a string",
            manifest(PODS, "apiVersion: v1\nkind: Pod\nmetadata: x\n".into()),
            "metadata: invalid type: string",
        ),
        case(
            "kind is a number",
            manifest(
                PODS,
                "apiVersion: v1\nkind: 7\nmetadata: {name: x}\n".into(),
            ),
            "kind: must be a string",
        ),
        case(
            "unknown kind",
            manifest(
                PODS,
                pod("x", &container("")).replace("kind: Pod", "kind: Gadget"),
            ),
            "kind Gadget (apiVersion v1) is not supported",
        ),
        case(
            "unknown apiVersion",
            manifest(
                PODS,
                pod("x", &container("")).replace("apiVersion: v1", "apiVersion: v9"),
            ),
            "kind Pod (apiVersion v9) is not supported",
        ),
        case(
            "unknown field (typo)",
            pod_manifest(&format!("  restartPolcy: Always\n{}", container(""))),
            "spec.restartPolcy: unknown field (did you mean restartPolicy?)",
        ),
        // Quantities.
        case(
            "cpu: -1",
            res("      limits:\n        cpu: -1\n"),
            "resources.limits.cpu: quantity \"-1\" must not be negative",
        ),
        case(
            "memory: -1Gi",
            res("      requests:\n        memory: -1Gi\n"),
            "resources.requests.memory: quantity \"-1Gi\" must not be negative",
        ),
        case(
            "memory overflowing u64",
            res("      requests:\n        memory: 99999999999999999999Ti\n"),
            "resources.requests.memory: quantity \"99999999999999999999Ti\" is too large",
        ),
        case(
            "cpu 1e400",
            res("      limits:\n        cpu: \"1e400\"\n"),
            "resources.limits.cpu: quantity \"1e400\" is too large",
        ),
        case(
            "cpu 1.5.3",
            res("      limits:\n        cpu: 1.5.3\n"),
            "resources.limits.cpu: quantity \"1.5.3\" is not valid",
        ),
        case(
            "unknown resource",
            res("      limits:\n        nvidia.com/gpu: 1\n"),
            "unknown resource \"nvidia.com/gpu\"",
        ),
        // Names and labels (DNS-1123).
        case(
            "uppercase and underscore in the name",
            manifest(PODS, pod("Bad_Name", &container(""))),
            "metadata.name: \"Bad_Name\" must consist of lowercase letters",
        ),
        case(
            "name of 300 characters",
            manifest(PODS, pod(&"a".repeat(300), &container(""))),
            "metadata.name: must be no more than 253 characters",
        ),
        case(
            "label key with a space",
            manifest(
                PODS,
                pod("x", &container(""))
                    .replace("  name: x\n", "  name: x\n  labels:\n    \"bad key!\": v\n"),
            ),
            "metadata.labels[bad key!]: key \"bad key!\"",
        ),
        case(
            "label value of 64 characters",
            manifest(
                PODS,
                pod("x", &container("")).replace(
                    "  name: x\n",
                    &format!("  name: x\n  labels:\n    app: {}\n", "v".repeat(64)),
                ),
            ),
            "metadata.labels.app: value",
        ),
        case(
            "container name with uppercase",
            pod_manifest("  containers:\n  - name: A_B\n    image: busybox\n"),
            "spec.containers[0].name: \"A_B\" must consist of lowercase letters",
        ),
        case(
            "env var name starting with a digit",
            pod_manifest(&container(
                "    env:\n    - name: \"1BAD\"\n      value: x\n",
            )),
            "spec.containers[0].env[0].name",
        ),
        case(
            "image with whitespace",
            pod_manifest("  containers:\n  - name: a\n    image: \"UPPER CASE\"\n"),
            "spec.containers[0].image: \"UPPER CASE\" must not contain whitespace",
        ),
        // Pod structure.
        case(
            "duplicate container names",
            pod_manifest(
                "  containers:\n  - name: a\n    image: busybox\n  - name: a\n    image: busybox\n",
            ),
            "spec.containers[1].name: duplicate container name \"a\"",
        ),
        case(
            "empty containers list",
            pod_manifest("  containers: []\n"),
            "spec.containers: at least one container is required",
        ),
        case(
            "container without image",
            pod_manifest("  containers:\n  - name: a\n"),
            "spec.containers[0].image: is required",
        ),
        case(
            "bad restartPolicy",
            pod_manifest(&format!("  restartPolicy: Sometimes\n{}", container(""))),
            "spec.restartPolicy: unknown variant `Sometimes`",
        ),
        case(
            "negative grace period",
            pod_manifest(&format!(
                "  terminationGracePeriodSeconds: -5\n{}",
                container("")
            )),
            "spec.terminationGracePeriodSeconds: must be greater than or equal to 0",
        ),
        case(
            "port 70000",
            pod_manifest(&container("    ports:\n    - containerPort: 70000\n")),
            "containerPort: must be between 1 and 65535, got 70000",
        ),
        case(
            "port 0",
            pod_manifest(&container("    ports:\n    - containerPort: 0\n")),
            "containerPort: must be between 1 and 65535, got 0",
        ),
        case(
            "empty liveness probe",
            pod_manifest(&container("    livenessProbe: {}\n")),
            "spec.containers[0].livenessProbe",
        ),
        case(
            "node selector key with a space",
            pod_manifest(&format!(
                "  nodeSelector:\n    \"a b\": c\n{}",
                container("")
            )),
            "spec.nodeSelector[a b]",
        ),
        // Workloads and selectors.
        case(
            "replicas over i32",
            deployment("  replicas: 99999999999\n  selector: {matchLabels: {app: d}}\n"),
            "spec.replicas: invalid value: integer `99999999999`",
        ),
        case(
            "negative replicas",
            deployment("  replicas: -1\n  selector: {matchLabels: {app: d}}\n"),
            "spec.replicas: must be greater than or equal to 0",
        ),
        case(
            "selector not matching the template",
            deployment("  selector: {matchLabels: {app: other}}\n"),
            "`selector` does not match template `labels`",
        ),
        case(
            "selector operator unknown",
            deployment(
                "  selector: {matchExpressions: [{key: app, operator: Near, values: [d]}]}\n",
            ),
            "spec.selector.matchExpressions[0].operator: unknown variant `Near`",
        ),
        case(
            "selector In without values",
            deployment("  selector: {matchExpressions: [{key: app, operator: In}]}\n"),
            "spec.selector.matchExpressions[0].values: must be specified",
        ),
        case(
            "empty selector",
            deployment("  selector: {}\n"),
            "spec.selector: is required",
        ),
        case(
            "bad strategy",
            deployment("  strategy: {type: Sideways}\n  selector: {matchLabels: {app: d}}\n"),
            "spec.strategy.type: unknown variant `Sideways`",
        ),
        // HTTP bodies and requests.
        case(
            "body is not JSON",
            http_req("POST", PODS, Some("application/json"), b"{not json at all"),
            "invalid JSON",
        ),
        case(
            "body is not UTF-8",
            http_req("POST", PODS, Some("application/json"), b"\xff\xfe\xfd"),
            "request body is not UTF-8",
        ),
        case(
            "JSON array body",
            http_req("POST", PODS, Some("application/json"), b"[1,2,3]"),
            "expected an object with apiVersion and kind, found a list",
        ),
        case(
            "JSON string body",
            http_req("POST", PODS, Some("application/json"), b"\"hello\""),
            "expected an object with apiVersion and kind, found a string",
        ),
        case(
            "empty body",
            http_req("POST", PODS, Some("application/json"), b""),
            "expected one object, got 0",
        ),
        case(
            "two documents in one create",
            http_req(
                "POST",
                PODS,
                Some("application/yaml"),
                format!(
                    "{}---\n{}",
                    pod("x", &container("")),
                    pod("y", &container(""))
                )
                .as_bytes(),
            ),
            "expected one object, got 2",
        ),
        case(
            "form content type",
            http_req(
                "POST",
                PODS,
                Some("application/x-www-form-urlencoded"),
                pod("x", &container("")).as_bytes(),
            ),
            "Content-Type \"application/x-www-form-urlencoded\" is not supported",
        ),
        case(
            "text/plain content type",
            http_req(
                "POST",
                PODS,
                Some("text/plain"),
                pod("x", &container("")).as_bytes(),
            ),
            "is not supported: send application/json or application/yaml",
        ),
        case(
            "3 MiB body",
            http_req(
                "POST",
                PODS,
                Some("application/json"),
                format!("{{\"x\":\"{}\"}}", "a".repeat(3 << 20)).as_bytes(),
            ),
            "request body exceeds the limit of 1048576 bytes",
        ),
        case(
            "pod posted to the deployments path",
            http_req(
                "POST",
                DEPLOYMENTS,
                Some("application/yaml"),
                pod("x", &container("")).as_bytes(),
            ),
            "expected kind Deployment",
        ),
        case(
            "name in the body differs from the path",
            http_req(
                "PUT",
                &format!("{PODS}/keep"),
                Some("application/yaml"),
                pod("other", &container("")).as_bytes(),
            ),
            "metadata.name: \"other\" does not match the name in the URL \"keep\"",
        ),
        case(
            "namespace in the body differs from the path",
            http_req(
                "POST",
                PODS,
                Some("application/yaml"),
                pod("x", &container(""))
                    .replace("  name: x\n", "  name: x\n  namespace: other\n")
                    .as_bytes(),
            ),
            "metadata.namespace: \"other\" does not match the request namespace \"default\"",
        ),
        case(
            "invalid namespace in the path",
            http_req(
                "POST",
                "/api/v1/namespaces/Bad_NS/pods",
                Some("application/yaml"),
                pod("x", &container("")).as_bytes(),
            ),
            "namespace: \"Bad_NS\"",
        ),
        case(
            "create over an existing pod",
            http_req(
                "POST",
                PODS,
                Some("application/yaml"),
                pod("keep", "  containers:\n  - name: a\n    image: evil\n").as_bytes(),
            ),
            "already exists",
        ),
        case(
            "replace with an invalid spec",
            http_req(
                "PUT",
                &format!("{PODS}/keep"),
                Some("application/yaml"),
                pod("keep", "  containers:\n  - name: a\n").as_bytes(),
            ),
            "spec.containers[0].image: is required",
        ),
        case(
            "PATCH is not served",
            http_req(
                "PATCH",
                &format!("{PODS}/keep"),
                Some("application/json"),
                b"{}",
            ),
            "method PATCH is not allowed",
        ),
        case(
            "bad label selector query",
            http_req("GET", "/api/v1/pods?labelSelector=a%20in%20(", None, b""),
            "unbalanced parentheses",
        ),
        case(
            "non-numeric query parameter",
            http_req("GET", &format!("{PODS}/keep/log?tailLines=abc"), None, b""),
            "tailLines: invalid digit",
        ),
        case(
            "negative grace period on delete",
            http_req(
                "DELETE",
                &format!("{PODS}/keep?gracePeriodSeconds=-5"),
                None,
                b"",
            ),
            "gracePeriodSeconds: must be >= 0",
        ),
        case(
            "eviction body of the wrong shape",
            http_req(
                "POST",
                &format!("{PODS}/keep/eviction"),
                Some("application/json"),
                b"{zz",
            ),
            "eviction body",
        ),
        case(
            "node label key with a space",
            http_req(
                "PUT",
                "/api/v1/nodes/n1",
                Some("application/json"),
                br#"{"metadata":{"name":"n1","labels":{"a b":"c"}}}"#,
            ),
            "metadata.labels[a b]",
        ),
        case(
            "token request with an unknown role",
            http_req(
                "POST",
                "/apis/herd.io/v1/tokens",
                Some("application/json"),
                br#"{"role":"root"}"#,
            ),
            "unknown variant `root`, expected one of `admin`, `read-only`, `join`",
        ),
        case(
            "token request with a control character",
            http_req(
                "POST",
                "/apis/herd.io/v1/tokens",
                Some("application/json"),
                br#"{"description":"a\u0007b"}"#,
            ),
            "description: must not contain control characters",
        ),
        case(
            "join with a number for a token",
            http_req(
                "POST",
                "/apis/herd.io/v1/join",
                Some("application/json"),
                br#"{"token":1,"nodeName":"x"}"#,
            ),
            "join request: invalid type: integer `1`, expected a string",
        ),
        case(
            "join with an invalid node name",
            http_req(
                "POST",
                "/apis/herd.io/v1/join",
                Some("application/json"),
                br#"{"token":"a.b","nodeName":"Bad Name"}"#,
            ),
            "nodeName: \"Bad Name\"",
        ),
        case(
            "join as the master's own MQTT user",
            http_req(
                "POST",
                "/apis/herd.io/v1/join",
                Some("application/json"),
                br#"{"token":"a.b","nodeName":"herd-master"}"#,
            ),
            "nodeName: reserved name",
        ),
    ]
}

/// MQTT payloads published by the joined node `rogue`; `keep_uid` is the stored pod's uid.
fn mqtt_cases(keep_uid: &str) -> Vec<Case> {
    let t = |s: &str| format!("herd/v1/nodes/rogue/{s}");
    let observed = format!(
        r#"{{"v":1,"uid":"{keep_uid}","generation":1,"gone":false,"status":{{"phase":"Running"}}}}"#
    );
    let gone = format!(r#"{{"v":1,"uid":"{keep_uid}","generation":1,"gone":true,"status":{{}}}}"#);
    let other_info = r#"{"v":1,"node":{"metadata":{"name":"w1"},"status":{}}}"#;
    vec![
        case(
            "mqtt: garbage node info",
            mqtt(&t("info"), b"garbage{"),
            "topic herd/v1/nodes/rogue/info: payload is not valid JSON for NodeInfo",
        ),
        case(
            "mqtt: node info naming another node",
            mqtt(&t("info"), other_info.as_bytes()),
            "node info names \"w1\"",
        ),
        case(
            "mqtt: heartbeat of protocol version 2",
            mqtt(&t("heartbeat"), br#"{"v":2,"stamp":1}"#),
            "unsupported protocol version 2",
        ),
        case(
            "mqtt: heartbeat of the wrong shape",
            mqtt(&t("heartbeat"), b"[]"),
            "payload is not valid JSON for Heartbeat",
        ),
        case(
            "mqtt: online neither true nor false",
            mqtt(&t("online"), b"maybe"),
            "topic herd/v1/nodes/rogue/online: payload must be true or false",
        ),
        case(
            "mqtt: status for a pod bound to no node of ours",
            mqtt(&t("observed/default/keep"), observed.as_bytes()),
            "pod is not bound to this node",
        ),
        case(
            "mqtt: a 'gone' report for another node's pod",
            mqtt(&t("observed/default/keep"), gone.as_bytes()),
            "pod is not bound to this node",
        ),
        case(
            "mqtt: status that is not UTF-8",
            mqtt(&t("observed/default/keep"), b"\xff\xfe\x00"),
            "payload is not valid JSON for ObservedPod",
        ),
        case(
            "mqtt: garbage rpc response",
            mqtt(&t("rpc/resp/abc"), b"zzz"),
            "dropping malformed rpc response",
        ),
        case(
            "mqtt: payload over the protocol limit",
            mqtt(&t("heartbeat"), &vec![b' '; (1 << 20) + 100]),
            "payload of 1048676 bytes exceeds the 1048576 byte limit",
        ),
        case(
            "mqtt: payload over the broker's packet limit",
            mqtt(&t("heartbeat"), &vec![b'x'; 3 << 20]),
            "packet of 3145761 bytes exceeds the limit",
        ),
        case(
            "mqtt: wrong password",
            Input::Mqtt {
                topic: t("heartbeat"),
                payload: b"{}".to_vec(),
                login: Some(("rogue", "rogue", "not-the-password")),
            },
            "mqtt login refused: bad credentials",
        ),
        case(
            "mqtt: client id of another node",
            Input::Mqtt {
                topic: t("heartbeat"),
                payload: b"{}".to_vec(),
                login: Some(("w1", "intruder", "whatever")),
            },
            // The MQTT gate refuses it before the broker sees it.
            "client id \"w1\" differs from username \"intruder\"",
        ),
    ]
}

/// An archive entry, an image layer, or a whole archive, each hostile.
fn archive_cases(outside: &Path) -> Vec<Case> {
    let layer = |entries: &[Entry]| tar_of(entries);
    let image = |entries: &[Entry]| Input::Archive(docker_archive(&[&layer(entries)], "evil:1"));
    let ok_layer = layer(&[Entry::file("hello", b"hi\n")]);
    let outside = outside.display().to_string();
    let mut zstd = vec![0x28, 0xb5, 0x2f, 0xfd];
    zstd.extend_from_slice(&[0u8; 600]);
    let mut gzip_junk = vec![0x1f, 0x8b, 0x08, 0x00];
    gzip_junk.extend_from_slice(b"definitely not deflate data");
    let mut many = RawTar::new();
    for i in 0..100_001 {
        many.push(&Entry::dir(&format!("d{i}/")));
    }
    let mut truncated = RawTar::new();
    truncated.push(&Entry {
        size: Some(1 << 20),
        ..Entry::file("manifest.json", b"[")
    });
    // A config stored under a name that is not its digest.
    let renamed = {
        let config = common::tarball::config_for(&[&ok_layer]);
        let name = format!("{}.json", "0".repeat(64));
        let mut t = RawTar::new();
        t.file(&name, &config);
        t.file("l0/layer.tar", &ok_layer);
        t.file(
            "manifest.json",
            serde_json::json!([{"Config": name, "RepoTags": ["x:1"], "Layers": ["l0/layer.tar"]}])
                .to_string()
                .as_bytes(),
        );
        t.finish()
    };
    let bad_manifest = {
        let mut t = RawTar::new();
        t.file(
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["missing/layer.tar"]}]"#,
        );
        t.file("c.json", &common::tarball::config_for(&[&ok_layer]));
        t.finish()
    };
    let mismatched_layer = {
        // A config naming the good layer, shipped with another.
        let other = layer(&[Entry::file("evil", b"swapped\n")]);
        let config = common::tarball::config_for(&[&ok_layer]);
        let name = format!("{}.json", sha256_hex(&config));
        let mut t = RawTar::new();
        t.file(&name, &config);
        t.file("l0/layer.tar", &other);
        t.file(
            "manifest.json",
            serde_json::json!([{"Config": name, "RepoTags": ["x:1"], "Layers": ["l0/layer.tar"]}])
                .to_string()
                .as_bytes(),
        );
        t.finish()
    };
    vec![
        case(
            "archive: not a tar at all",
            Input::Archive(b"this is not a tar archive, just words\n".repeat(40)),
            "truncated or corrupt",
        ),
        case(
            "archive: empty file",
            Input::Archive(Vec::new()),
            "neither a docker save archive (no manifest.json) nor an OCI layout",
        ),
        case(
            "archive: zstd compressed",
            Input::Archive(zstd),
            "zstd compression is not supported",
        ),
        case(
            "archive: gzip header over junk",
            Input::Archive(gzip_junk),
            "truncated or corrupt",
        ),
        case(
            "archive: entry named ../escape",
            Input::Archive(tar_of(&[Entry::file("../escape", b"x")])),
            "archive entry ../escape: path escapes the archive",
        ),
        case(
            "archive: absolute entry name",
            Input::Archive(tar_of(&[Entry::file(&format!("{outside}/abs"), b"x")])),
            "path escapes the archive",
        ),
        case(
            "archive: manifest.json an absolute symlink",
            Input::Archive(tar_of(&[Entry::link(
                "manifest.json",
                tar::EntryType::Symlink,
                "/etc/passwd",
            )])),
            "symlink to \"/etc/passwd\" is absolute",
        ),
        case(
            "archive: layer symlink climbing out",
            Input::Archive(tar_of(&[Entry::link(
                "l0/layer.tar",
                tar::EntryType::Symlink,
                "../../../../etc/shadow",
            )])),
            "leaves the archive",
        ),
        case(
            "archive: hard link leaving the archive",
            Input::Archive(tar_of(&[Entry::link(
                "l0/layer.tar",
                tar::EntryType::Link,
                "../outside",
            )])),
            "hard link to \"../outside\" leaves the archive",
        ),
        case(
            "archive: entry claiming 20 GiB",
            Input::Archive(tar_of(&[Entry {
                size: Some(20 << 30),
                ..Entry::file("blob", b"")
            }])),
            "archive entry blob is larger than the limit",
        ),
        case(
            "archive: truncated in the middle of an entry",
            Input::Archive(truncated.unterminated()),
            "truncated",
        ),
        case(
            "archive: 100001 entries",
            Input::Archive(many.finish()),
            "has more than 100000 entries (the limit)",
        ),
        case(
            "archive: manifest.json is not JSON",
            Input::Archive(tar_of(&[Entry::file("manifest.json", b"{{{")])),
            "manifest.json",
        ),
        case(
            "archive: manifest.json of 9 MiB",
            Input::Archive(tar_of(&[Entry::file(
                "manifest.json",
                &vec![b' '; 9 << 20],
            )])),
            "manifest.json is larger than the limit",
        ),
        case(
            "archive: manifest naming a missing layer",
            Input::Archive(bad_manifest),
            "archive has no entry missing/layer.tar",
        ),
        case(
            "archive: config that does not match its name",
            Input::Archive(renamed),
            "content has sha256:",
        ),
        case(
            "archive: layer that does not match the config's diff id",
            Input::Archive(mismatched_layer),
            "diff id",
        ),
        case(
            "layer: entry named ../../escape",
            image(&[Entry::file("../../escape", b"x")]),
            "entry ../../escape: path escapes the layer",
        ),
        case(
            "layer: absolute symlink, then a file through it",
            image(&[
                Entry::link("etc", tar::EntryType::Symlink, &outside),
                Entry::file("etc/evil", b"written outside\n"),
            ]),
            "is not a directory (a symlink or file); refusing to write through it",
        ),
        case(
            "layer: relative symlink up, then a file through it",
            image(&[
                Entry::link("up", tar::EntryType::Symlink, "../../../../../../.."),
                Entry::file("up/evil", b"written outside\n"),
            ]),
            "refusing to write through it",
        ),
        case(
            "layer: hard link to a host path",
            image(&[Entry::link("shadow", tar::EntryType::Link, "/etc/shadow")]),
            "hard link target /etc/shadow is not in the layer",
        ),
        case(
            "layer: hard link climbing out",
            image(&[Entry::link(
                "x",
                tar::EntryType::Link,
                "../../../etc/shadow",
            )]),
            "hard link target escapes the layer",
        ),
        case(
            "layer: block device 8:0",
            image(&[
                Entry::dir("dev/"),
                Entry {
                    device: (8, 0),
                    mode: 0o666,
                    ..Entry::new("dev/sda", tar::EntryType::Block)
                },
            ]),
            "entry dev/sda: block device 8:0 refused",
        ),
        case(
            "layer: character device 1:1 (/dev/mem)",
            image(&[Entry {
                device: (1, 1),
                mode: 0o666,
                ..Entry::new("mem", tar::EntryType::Char)
            }]),
            "character device 1:1 refused",
        ),
        case(
            "layer: entry claiming 40 GiB",
            image(&[Entry {
                size: Some(40 << 30),
                ..Entry::file("big", b"")
            }]),
            "truncated",
        ),
    ]
}

/// Every case, for the count (each test runs its own part).
fn table_len() -> usize {
    let tmp = tempfile::tempdir().unwrap();
    api_cases().len() + mqtt_cases("u").len() + archive_cases(tmp.path()).len()
}

#[test]
fn the_table_has_at_least_40_entries() {
    let n = table_len();
    assert!(n >= 40, "only {n} hostile inputs");
    eprintln!("{n} hostile inputs in the table");
}

/// The stored pods, as the API lists them.
fn pods_snapshot(api: &str, token: &str) -> serde_json::Value {
    let r = http::get(&format!("{api}/api/v1/pods"), token);
    assert_eq!(r.code, 200, "the master stopped answering: {}", r.text());
    r.json()["items"].clone()
}

fn deployments_snapshot(api: &str, token: &str) -> serde_json::Value {
    let r = http::get(&format!("{api}/apis/apps/v1/deployments"), token);
    assert_eq!(r.code, 200, "the master stopped answering: {}", r.text());
    r.json()["items"].clone()
}

/// The refusal text for one API case, or why the case failed.
fn run_api_case(c: &Cluster, token: &str, case: &Case) -> Result<(), String> {
    let check = |what: &str, code: u16, text: &str| -> Result<(), String> {
        if !(400..500).contains(&code) {
            return Err(format!("{what}: HTTP {code}, expected a 4xx: {text}"));
        }
        if !text.contains(&case.expect) {
            return Err(format!("{what}: {text:?} does not say {:?}", case.expect));
        }
        Ok(())
    };
    match &case.input {
        Input::Manifest { path, text } => {
            let r = http::send(&Req {
                method: "POST",
                url: format!("{}{path}", c.api_url),
                token: Some(token),
                content_type: Some("application/yaml"),
                body: Some(text.as_bytes()),
                ..Default::default()
            });
            check("POST", r.code, &r.message())?;
            let (ok, out, err) = c.herd(&["apply", "-f", "-"], Some(text));
            if ok {
                return Err(format!("herd apply accepted it: {out}"));
            }
            if !err.contains(&case.expect) {
                return Err(format!(
                    "herd apply: {err:?} does not say {:?}",
                    case.expect
                ));
            }
            Ok(())
        }
        Input::Http {
            method,
            path,
            content_type,
            body,
        } => {
            let r = http::send(&Req {
                method,
                url: format!("{}{path}", c.api_url),
                token: Some(token),
                content_type: *content_type,
                body: (!body.is_empty() || *method == "POST").then_some(body.as_slice()),
                ..Default::default()
            });
            if r.json()["kind"] != "Status" {
                return Err(format!("HTTP {}: not a Status body: {}", r.code, r.text()));
            }
            check(method, r.code, &r.message())
        }
        _ => Err("not an API case".into()),
    }
}

#[test]
fn hostile_api_and_mqtt_inputs_are_refused_clearly_and_change_nothing() {
    let c = Cluster::start(&[]);
    let token = http::admin_token(&c.config());
    let keep = pod("keep", "  containers:\n  - name: a\n    image: busybox\n");
    assert!(c.herd(&["apply", "-f", "-"], Some(&keep)).0);
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: keepd\nspec:\n  \
                  replicas: 0\n  selector: {matchLabels: {app: keepd}}\n  template:\n    \
                  metadata:\n      labels: {app: keepd}\n    spec:\n      containers:\n      - \
                  {name: a, image: busybox}\n";
    assert!(c.herd(&["apply", "-f", "-"], Some(deploy)).0);
    // Let the controllers settle (the pod gets its PodScheduled condition, the deployment its
    // status) before taking the picture everything is compared with.
    let settled = || {
        let a = (
            pods_snapshot(&c.api_url, &token),
            deployments_snapshot(&c.api_url, &token),
        );
        std::thread::sleep(Duration::from_millis(1500));
        let b = (
            pods_snapshot(&c.api_url, &token),
            deployments_snapshot(&c.api_url, &token),
        );
        (a == b && a.0[0]["status"]["conditions"].is_array()).then_some(b)
    };
    let before = c.wait("stored objects to settle", Duration::from_secs(30), settled);
    let keep_uid = before.0[0]["metadata"]["uid"].as_str().unwrap().to_string();

    let mut failures = Vec::new();
    let cases = api_cases();
    for case in &cases {
        if let Err(e) = run_api_case(&c, &token, case) {
            failures.push(format!("{}: {e}", case.name));
        }
        let now = (
            pods_snapshot(&c.api_url, &token),
            deployments_snapshot(&c.api_url, &token),
        );
        if now != before {
            failures.push(format!("{}: the stored objects changed", case.name));
        }
    }

    // MQTT: the joined node `rogue` publishes; the master logs each refusal and keeps going.
    let joined = http::send(&Req {
        method: "POST",
        url: format!("{}/apis/herd.io/v1/join", c.api_url),
        content_type: Some("application/json"),
        body: Some(
            serde_json::json!({"token": c.token, "nodeName": "rogue"})
                .to_string()
                .as_bytes(),
        ),
        ..Default::default()
    })
    .json();
    let password = joined["password"]
        .as_str()
        .expect("join password")
        .to_string();
    let mqtt_url = joined["mqttUrl"].as_str().expect("mqtt url").to_string();
    let mut port = vec![
        "-p".to_string(),
        mqtt_url.rsplit(':').next().unwrap_or("").to_string(),
    ];
    if mqtt_url.starts_with("mqtts://") {
        port.push("--cafile".into());
        port.push(c.master.data_dir.join("pki/ca.crt").display().to_string());
    }
    let log = c.tmp.path().join("master.log");
    let mqtt = mqtt_cases(&keep_uid);
    for case in &mqtt {
        let Input::Mqtt {
            topic,
            payload,
            login,
        } = &case.input
        else {
            continue;
        };
        let (id, user, pass) = login.unwrap_or(("rogue", "rogue", password.as_str()));
        let mark = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let published = publish(&port, id, user, pass, topic, payload);
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let text = published.clone() + &log_since(&log, mark);
            if text.contains(&case.expect) {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if !found {
            failures.push(format!(
                "{}: neither the publisher nor the master said {:?}; master: {:?}, publisher: {published:?}",
                case.name,
                case.expect,
                log_since(&log, mark)
            ));
        }
        let now = (
            pods_snapshot(&c.api_url, &token),
            deployments_snapshot(&c.api_url, &token),
        );
        if now != before {
            failures.push(format!("{}: the stored objects changed", case.name));
        }
    }
    // The master's MQTT side still works: a well-formed message is processed.
    let mark = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    publish(
        &port,
        "rogue",
        "rogue",
        &password,
        "herd/v1/nodes/rogue/online",
        b"false",
    );
    c.wait(
        "the master to process a good message",
        Duration::from_secs(5),
        || {
            log_since(&log, mark)
                .contains("node went offline")
                .then_some(())
        },
    );
    let nodes = c.get_json(&["get", "nodes"]).unwrap();
    assert_eq!(nodes["items"].as_array().map(Vec::len), Some(0), "{nodes}");

    eprintln!(
        "{} API and {} MQTT hostile inputs checked",
        cases.len(),
        mqtt.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Publishes one message at QoS 1 (so a dropped connection is noticed); returns what the
/// publisher printed.
/// `endpoint`: `-p PORT` and, for MQTTS, `--cafile CA`.
fn publish(
    endpoint: &[String],
    id: &str,
    user: &str,
    pass: &str,
    topic: &str,
    payload: &[u8],
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("payload");
    std::fs::write(&f, payload).unwrap();
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1"])
        .args(endpoint)
        .args(["-i", id, "-u", user, "-P", pass])
        .args(["-q", "1", "-t", topic, "-f"])
        .arg(&f)
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn log_since(path: &Path, mark: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = (mark as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Every path under `root` (except under `skip`) with type, mode and size.
fn tree(root: &Path, skip: &Path) -> BTreeMap<PathBuf, (u32, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p == skip {
                continue;
            }
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            out.insert(p.clone(), (m.mode(), if m.is_dir() { 0 } else { m.size() }));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

fn image_ls(data: &Path) -> String {
    let out = Command::new(common::HERD)
        .args(["image", "ls", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn hostile_image_archives_are_refused_clearly_and_change_nothing() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (device nodes, ownership)");
        return;
    }
    // The data dir sits eight levels deep, so an entry climbing out with `..` still lands in
    // the sandbox, where the snapshot sees it; `outside` is where absolute links point.
    let sandbox = tempfile::Builder::new()
        .prefix("herd-hostile-")
        .tempdir()
        .unwrap();
    let outside = sandbox.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let mut data = sandbox.path().to_path_buf();
    for level in 0..8 {
        data.push(level.to_string());
    }
    let data = data.join("worker");
    std::fs::create_dir_all(&data).unwrap();
    let image = common::busybox_tar(sandbox.path());
    let ok = Command::new(common::HERD)
        .args(["image", "import"])
        .arg(&image)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Unreferenced blobs a failed import leaves are garbage for GC, not stored state.
    let blobs = data.join("images/blobs");
    let listing = image_ls(&data);
    let before = tree(sandbox.path(), &blobs);

    let mut failures = Vec::new();
    let cases = archive_cases(&outside);
    for (i, case) in cases.iter().enumerate() {
        let Input::Archive(bytes) = &case.input else {
            continue;
        };
        let file = sandbox.path().join(format!("case-{i}.tar"));
        std::fs::write(&file, bytes).unwrap();
        let start = Instant::now();
        let out = Command::new(common::HERD)
            .args(["image", "import"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        std::fs::remove_file(&file).unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            failures.push(format!(
                "{}: imported: {}",
                case.name,
                String::from_utf8_lossy(&out.stdout)
            ));
        } else if !err.contains(&case.expect) {
            failures.push(format!(
                "{}: {err:?} does not say {:?}",
                case.name, case.expect
            ));
        }
        if start.elapsed() > Duration::from_secs(60) {
            failures.push(format!("{}: took {:?}", case.name, start.elapsed()));
        }
        let after = tree(sandbox.path(), &blobs);
        if after != before {
            let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
            let lost: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
            failures.push(format!(
                "{}: the sandbox changed: added {added:?}, lost {lost:?}",
                case.name
            ));
        }
        if image_ls(&data) != listing {
            failures.push(format!("{}: the image listing changed", case.name));
        }
        let mounted = mounts_under(sandbox.path());
        if !mounted.is_empty() {
            failures.push(format!("{}: left mounts {mounted:?}", case.name));
        }
    }
    eprintln!("{} hostile archives checked", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

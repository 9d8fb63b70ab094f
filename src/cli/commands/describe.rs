//! `herd describe`: the kubectl-style multi-line view of one pod, node, deployment or replica
//! set (the workload views are in `describe_workload`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::describe_workload::{describe_deployment, describe_replica_set};
use super::get::node_roles;
use super::{age, or_none, Out, Session};
use crate::api::apps::{Deployment, ReplicaSet};
use crate::api::node::Node;
use crate::api::pod::{ContainerState, ContainerStatus};
use crate::api::{Condition, Container, List, Pod, PodPhase};
use crate::cli::args::{DescribeArgs, GlobalArgs};
use crate::cli::kind::Kind;
use crate::cli::table;

pub async fn run(args: &DescribeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // A typo in the kind is reported even without a config or a server.
    Kind::with_name(&args.kind, args.name.as_deref())?;
    let session = Session::open(global)?;
    describe(&session, args, &mut std::io::stdout()).await
}

pub async fn describe(s: &Session, args: &DescribeArgs, out: Out<'_>) -> anyhow::Result<()> {
    let (kind, name) = Kind::with_name(&args.kind, args.name.as_deref())?;
    let name = name.ok_or_else(|| anyhow::anyhow!("describe needs a NAME (or KIND/NAME)"))?;
    let ns = s.ns(args.namespace.as_deref());
    let text = match kind {
        Kind::Pod => {
            let pod: Pod = s.client.get(&kind.object_path(&ns, &name)).await?;
            describe_pod(&pod)
        }
        Kind::Node => {
            let node: Node = s.client.get(&kind.object_path(&ns, &name)).await?;
            let pods: List<Pod> = s.client.get(&Kind::Pod.collection_path(None)).await?;
            describe_node(&node, &pods.items)
        }
        Kind::Deployment => {
            let d: Deployment = s.client.get(&kind.object_path(&ns, &name)).await?;
            let rss: List<ReplicaSet> = s
                .client
                .get(&Kind::ReplicaSet.collection_path(Some(&ns)))
                .await?;
            describe_deployment(&d, &rss.items)
        }
        Kind::ReplicaSet => {
            let rs: ReplicaSet = s.client.get(&kind.object_path(&ns, &name)).await?;
            let pods: List<Pod> = s.client.get(&Kind::Pod.collection_path(Some(&ns))).await?;
            describe_replica_set(&rs, &pods.items)
        }
        Kind::Secret => {
            let x: crate::api::secret::Secret = s.client.get(&kind.object_path(&ns, &name)).await?;
            describe_secret(&x)
        }
        Kind::ConfigMap => {
            let x: crate::api::configmap::ConfigMap =
                s.client.get(&kind.object_path(&ns, &name)).await?;
            describe_configmap(&x)
        }
        Kind::PersistentVolumeClaim => {
            let x: crate::api::pvc::PersistentVolumeClaim =
                s.client.get(&kind.object_path(&ns, &name)).await?;
            describe_claim(&x)
        }
        Kind::Service => {
            let x: crate::api::service::Service =
                s.client.get(&kind.object_path(&ns, &name)).await?;
            let eps: Option<crate::api::service::Endpoints> = s
                .client
                .get(&Kind::Endpoints.object_path(&ns, &name))
                .await
                .ok();
            super::net_tables::describe_service(&x, eps.as_ref())
        }
        Kind::Endpoints => {
            let x: crate::api::service::Endpoints =
                s.client.get(&kind.object_path(&ns, &name)).await?;
            yaml_serde::to_string(&x)?
        }
        Kind::Ingress => {
            let x: crate::api::ingress::Ingress =
                s.client.get(&kind.object_path(&ns, &name)).await?;
            super::net_tables::describe_ingress(&x)
        }
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Like kubectl: every key with its value (a ConfigMap is not secret); binary keys by size.
fn describe_configmap(x: &crate::api::configmap::ConfigMap) -> String {
    use base64::Engine;
    let mut out = String::new();
    kv(&mut out, 0, 14, "Name", &x.metadata.name);
    kv(&mut out, 0, 14, "Namespace", x.metadata.ns());
    kv(
        &mut out,
        0,
        14,
        "Immutable",
        if x.immutable == Some(true) {
            "true"
        } else {
            "false"
        },
    );
    out.push_str("\nData\n====\n");
    for (k, v) in &x.data {
        out.push_str(&format!("{k}:\n----\n{v}\n\n"));
    }
    out.push_str("\nBinaryData\n====\n");
    for (k, v) in &x.binary_data {
        let n = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_or(0, |b| b.len());
        out.push_str(&format!("{k}: {n} bytes\n"));
    }
    out
}

fn describe_claim(x: &crate::api::pvc::PersistentVolumeClaim) -> String {
    let mut out = String::new();
    kv(&mut out, 0, 14, "Name", &x.metadata.name);
    kv(&mut out, 0, 14, "Namespace", x.metadata.ns());
    kv(&mut out, 0, 14, "StorageClass", "local-path");
    kv(&mut out, 0, 14, "Status", x.phase());
    kv(&mut out, 0, 14, "Node", x.node().unwrap_or("<none>"));
    kv(
        &mut out,
        0,
        14,
        "Capacity",
        x.spec
            .resources
            .requests
            .get("storage")
            .map_or("<unset>", String::as_str),
    );
    kv(
        &mut out,
        0,
        14,
        "Access Modes",
        &x.spec.access_modes.join(","),
    );
    kv(&mut out, 0, 14, "VolumeMode", "Filesystem");
    if x.node().is_some() {
        kv(
            &mut out,
            0,
            14,
            "Path on node",
            &format!("<worker data>/volumes/pvc/{}", x.dir_name()),
        );
    }
    out
}

/// Like kubectl: key names and sizes, never the values.
fn describe_secret(x: &crate::api::secret::Secret) -> String {
    use base64::Engine;
    let mut out = String::new();
    kv(&mut out, 0, 14, "Name", &x.metadata.name);
    kv(&mut out, 0, 14, "Namespace", x.metadata.ns());
    kv(&mut out, 0, 14, "Type", &x.type_);
    out.push_str("\nData\n====\n");
    for (k, v) in &x.data {
        let n = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_or(0, |b| b.len());
        out.push_str(&format!("{k}:  {n} bytes\n"));
    }
    out
}

/// Writes `key:` padded to `width` then the value, at `indent` spaces.
pub(super) fn kv(out: &mut String, indent: usize, width: usize, key: &str, value: &str) {
    let key = format!("{key}:");
    let width = width.max(key.chars().count() + 2);
    let line = format!("{:indent$}{key:<width$}{value}", "");
    let _ = writeln!(out, "{}", line.trim_end());
}

/// Labels as `k=v` lines, the first after the key and the rest aligned under it.
pub(super) fn map_block(out: &mut String, width: usize, key: &str, map: &BTreeMap<String, String>) {
    map_block_at(out, 0, width, key, map, "=");
}

/// Annotations as `k: v` lines, as kubectl prints them.
pub(super) fn annotations_block(
    out: &mut String,
    width: usize,
    key: &str,
    map: &BTreeMap<String, String>,
) {
    map_block_at(out, 0, width, key, map, ": ");
}

/// A map as `k{sep}v` lines at `indent`, the first after the key and the rest aligned under
/// it; `<none>` when empty.
pub(super) fn map_block_at(
    out: &mut String,
    indent: usize,
    width: usize,
    key: &str,
    map: &BTreeMap<String, String>,
    sep: &str,
) {
    if map.is_empty() {
        kv(out, indent, width, key, "<none>");
        return;
    }
    let width = width.max(key.chars().count() + 3);
    for (i, (k, v)) in map.iter().enumerate() {
        if i == 0 {
            kv(out, indent, width, key, &format!("{k}{sep}{v}"));
        } else {
            let line = format!("{:w$}{k}{sep}{v}", "", w = indent + width);
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

const W: usize = 18;

pub fn describe_pod(p: &Pod) -> String {
    let mut o = String::new();
    kv(&mut o, 0, W, "Name", &p.metadata.name);
    kv(&mut o, 0, W, "Namespace", p.metadata.ns());
    let node = match (&p.spec.node_name, &p.status.host_ip) {
        (Some(n), Some(ip)) => format!("{n}/{ip}"),
        (Some(n), None) => n.clone(),
        (None, _) => "<none>".to_string(),
    };
    kv(&mut o, 0, W, "Node", &node);
    kv(
        &mut o,
        0,
        W,
        "Start Time",
        &or_none(p.status.start_time.as_deref()),
    );
    map_block(&mut o, W, "Labels", &p.metadata.labels);
    annotations_block(&mut o, W, "Annotations", &p.metadata.annotations);
    let status = match p.metadata.deletion_timestamp.as_deref() {
        Some(ts) => format!("Terminating (since {ts})"),
        None => p.status.phase.to_string(),
    };
    kv(&mut o, 0, W, "Status", &status);
    if !p.status.reason.is_empty() {
        kv(&mut o, 0, W, "Reason", &p.status.reason);
    }
    if !p.status.message.is_empty() {
        kv(&mut o, 0, W, "Message", &p.status.message);
    }
    kv(&mut o, 0, W, "IP", &or_none(p.status.pod_ip.as_deref()));
    kv(
        &mut o,
        0,
        W,
        "Restart Policy",
        &format!("{:?}", p.spec.restart_policy),
    );
    o.push_str("Containers:\n");
    for c in &p.spec.containers {
        let st = p
            .status
            .container_statuses
            .iter()
            .find(|s| s.name == c.name);
        describe_container(&mut o, c, st);
    }
    o.push_str("Conditions:\n");
    if p.status.conditions.is_empty() {
        o.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = p
            .status
            .conditions
            .iter()
            .map(|c| vec![c.type_.clone(), c.status.clone()])
            .collect();
        indent_table(&mut o, &["Type", "Status"], &rows);
    }
    describe_volumes(&mut o, &p.spec.volumes);
    o
}

fn describe_container(o: &mut String, c: &Container, st: Option<&ContainerStatus>) {
    const CW: usize = 16;
    let _ = writeln!(o, "  {}:", c.name);
    if let Some(id) = st
        .map(|s| s.container_id.as_str())
        .filter(|i| !i.is_empty())
    {
        kv(o, 4, CW, "Container ID", id);
    }
    kv(o, 4, CW, "Image", &c.image);
    if let Some(id) = st.map(|s| s.image_id.as_str()).filter(|i| !i.is_empty()) {
        kv(o, 4, CW, "Image ID", id);
    }
    if c.security_context
        .as_ref()
        .is_some_and(|sc| sc.is_privileged())
    {
        kv(
            o,
            4,
            CW,
            "Privileged",
            "true (all capabilities, no seccomp filter, host devices)",
        );
    }
    for (key, list) in [("Command", &c.command), ("Args", &c.args)] {
        if !list.is_empty() {
            let _ = writeln!(o, "    {key}:");
            for a in list {
                let _ = writeln!(o, "      {a}");
            }
        }
    }
    if let Some(s) = st {
        state_block(o, "State", &s.state);
        if !s.last_state.is_empty() {
            state_block(o, "Last State", &s.last_state);
        }
        kv(o, 4, CW, "Ready", if s.ready { "True" } else { "False" });
        kv(o, 4, CW, "Restart Count", &s.restart_count.to_string());
    } else {
        kv(o, 4, CW, "State", "Waiting");
        kv(o, 4, CW, "Ready", "False");
        kv(o, 4, CW, "Restart Count", "0");
    }
    for (key, map) in [
        ("Limits", &c.resources.limits),
        ("Requests", &c.resources.requests),
    ] {
        if !map.is_empty() {
            let _ = writeln!(o, "    {key}:");
            let w = map.keys().map(|k| k.len()).max().unwrap_or(0) + 3;
            for (k, v) in map {
                kv(o, 6, w, k, v);
            }
        }
    }
    if c.env.is_empty() {
        kv(o, 4, CW, "Environment", "<none>");
    } else {
        let _ = writeln!(o, "    Environment:");
        let w = c.env.iter().map(|e| e.name.len()).max().unwrap_or(0) + 3;
        for e in &c.env {
            kv(o, 6, w, &e.name, &e.value);
        }
    }
    if c.volume_mounts.is_empty() {
        kv(o, 4, CW, "Mounts", "<none>");
    } else {
        let _ = writeln!(o, "    Mounts:");
        for m in &c.volume_mounts {
            let sub = if m.sub_path.is_empty() {
                String::new()
            } else {
                format!(", path = {:?}", m.sub_path)
            };
            let mode = if m.read_only { "ro" } else { "rw" };
            let _ = writeln!(o, "      {} from {} ({mode}{sub})", m.mount_path, m.name);
        }
    }
}

/// kubectl's Volumes block: each volume with its source.
fn describe_volumes(o: &mut String, volumes: &[crate::api::volume::Volume]) {
    use crate::api::volume::Source;
    o.push_str("Volumes:\n");
    if volumes.is_empty() {
        o.push_str("  <none>\n");
    }
    const VW: usize = 12;
    for v in volumes {
        let _ = writeln!(o, "  {}:", v.name);
        match v.source() {
            Some(Source::EmptyDir(e)) => {
                kv(
                    o,
                    4,
                    VW,
                    "Type",
                    "EmptyDir (a temporary directory that shares a pod's lifetime)",
                );
                kv(o, 4, VW, "Medium", &e.medium);
                kv(
                    o,
                    4,
                    VW,
                    "SizeLimit",
                    e.size_limit.as_deref().unwrap_or("<unset>"),
                );
            }
            Some(Source::HostPath(h)) => {
                kv(o, 4, VW, "Type", "HostPath (bare host directory volume)");
                kv(o, 4, VW, "Path", &h.path);
                kv(o, 4, VW, "HostPathType", &h.type_);
            }
            Some(Source::ConfigMap(c)) => {
                kv(
                    o,
                    4,
                    VW,
                    "Type",
                    "ConfigMap (a volume populated by a ConfigMap)",
                );
                kv(o, 4, VW, "Name", &c.name);
                kv(
                    o,
                    4,
                    VW,
                    "Optional",
                    if c.optional == Some(true) {
                        "true"
                    } else {
                        "false"
                    },
                );
            }
            Some(Source::Secret(s)) => {
                kv(o, 4, VW, "Type", "Secret (a volume populated by a Secret)");
                kv(o, 4, VW, "SecretName", &s.secret_name);
                kv(
                    o,
                    4,
                    VW,
                    "Optional",
                    if s.optional == Some(true) {
                        "true"
                    } else {
                        "false"
                    },
                );
            }
            Some(Source::Claim(c)) => {
                kv(o, 4, VW, "Type", "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)");
                kv(o, 4, VW, "ClaimName", &c.claim_name);
                kv(
                    o,
                    4,
                    VW,
                    "ReadOnly",
                    if c.read_only { "true" } else { "false" },
                );
            }
            None => kv(o, 4, VW, "Type", "<none>"),
        }
    }
}

fn state_block(o: &mut String, key: &str, s: &ContainerState) {
    const CW: usize = 16;
    const SW: usize = 14;
    if let Some(r) = &s.running {
        kv(o, 4, CW, key, "Running");
        kv(o, 6, SW, "Started", &or_none(r.started_at.as_deref()));
    } else if let Some(t) = &s.terminated {
        kv(o, 4, CW, key, "Terminated");
        kv(o, 6, SW, "Reason", &or_none(Some(&t.reason)));
        if !t.message.is_empty() {
            kv(o, 6, SW, "Message", &t.message);
        }
        kv(o, 6, SW, "Exit Code", &t.exit_code.to_string());
        if let Some(sig) = t.signal {
            kv(o, 6, SW, "Signal", &sig.to_string());
        }
        kv(o, 6, SW, "Started", &or_none(t.started_at.as_deref()));
        kv(o, 6, SW, "Finished", &or_none(t.finished_at.as_deref()));
    } else if let Some(w) = &s.waiting {
        kv(o, 4, CW, key, "Waiting");
        if !w.reason.is_empty() {
            kv(o, 6, SW, "Reason", &w.reason);
        }
        if !w.message.is_empty() {
            kv(o, 6, SW, "Message", &w.message);
        }
    } else {
        kv(o, 4, CW, key, "<none>");
    }
}

/// A table indented by two spaces, with kubectl's dashed underline row.
pub(super) fn indent_table(o: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut all = vec![header.iter().map(|h| "-".repeat(h.len())).collect()];
    all.extend(rows.iter().cloned());
    for line in table::render(header, &all).lines() {
        let _ = writeln!(o, "  {line}");
    }
}

fn conditions_table(o: &mut String, conds: &[Condition]) {
    let rows: Vec<Vec<String>> = conds
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                or_none(c.last_heartbeat_time.as_deref()),
                or_none(c.last_transition_time.as_deref()),
                or_none(Some(&c.reason)),
                or_none(Some(&c.message)),
            ]
        })
        .collect();
    let header = [
        "Type",
        "Status",
        "LastHeartbeatTime",
        "LastTransitionTime",
        "Reason",
        "Message",
    ];
    indent_table(o, &header, &rows);
}

pub fn describe_node(n: &Node, all_pods: &[Pod]) -> String {
    let mut o = String::new();
    kv(&mut o, 0, W, "Name", &n.metadata.name);
    kv(&mut o, 0, W, "Roles", &node_roles(n));
    map_block(&mut o, W, "Labels", &n.metadata.labels);
    annotations_block(&mut o, W, "Annotations", &n.metadata.annotations);
    kv(
        &mut o,
        0,
        W,
        "CreationTimestamp",
        &or_none(n.metadata.creation_timestamp.as_deref()),
    );
    kv(
        &mut o,
        0,
        W,
        "Unschedulable",
        &n.spec.unschedulable.to_string(),
    );
    o.push_str("Conditions:\n");
    if n.status.conditions.is_empty() {
        o.push_str("  <none>\n");
    } else {
        conditions_table(&mut o, &n.status.conditions);
    }
    o.push_str("Addresses:\n");
    let w = n
        .status
        .addresses
        .iter()
        .map(|a| a.type_.len())
        .max()
        .unwrap_or(0)
        + 3;
    for a in &n.status.addresses {
        kv(&mut o, 2, w, &a.type_, &a.address);
    }
    for (key, map) in [
        ("Capacity", &n.status.capacity),
        ("Allocatable", &n.status.allocatable),
    ] {
        let _ = writeln!(o, "{key}:");
        let w = map.keys().map(|k| k.len()).max().unwrap_or(0) + 3;
        for (k, v) in map {
            kv(&mut o, 2, w, k, v);
        }
    }
    let i = &n.status.node_info;
    o.push_str("System Info:\n");
    let arch = match i.variant.as_str() {
        "" => i.architecture.clone(),
        v => format!("{}/{v}", i.architecture),
    };
    for (k, v) in [
        ("Machine ID", &i.machine_id),
        ("Kernel Version", &i.kernel_version),
        ("OS Image", &i.os_image),
        ("Operating System", &i.operating_system),
        ("Architecture", &arch),
        ("Container Runtime Version", &i.container_runtime_version),
        ("Kubelet Version", &i.kubelet_version),
    ] {
        kv(&mut o, 2, 28, k, v);
    }
    let pods: Vec<&Pod> = all_pods
        .iter()
        .filter(|p| p.spec.node_name.as_deref() == Some(n.metadata.name.as_str()))
        .filter(|p| !matches!(p.status.phase, PodPhase::Succeeded | PodPhase::Failed))
        .collect();
    kv(
        &mut o,
        0,
        W,
        "Non-terminated Pods",
        &format!("({} in total)", pods.len()),
    );
    if !pods.is_empty() {
        let sum = |p: &Pod, which: fn(&Container) -> &BTreeMap<String, String>, key: &str| {
            let vals: Vec<&str> = p
                .spec
                .containers
                .iter()
                .filter_map(|c| which(c).get(key).map(String::as_str))
                .collect();
            if vals.is_empty() {
                "0".to_string()
            } else {
                vals.join("+")
            }
        };
        fn req(c: &Container) -> &BTreeMap<String, String> {
            &c.resources.requests
        }
        fn lim(c: &Container) -> &BTreeMap<String, String> {
            &c.resources.limits
        }
        let rows: Vec<Vec<String>> = pods
            .iter()
            .map(|p| {
                vec![
                    p.metadata.ns().to_string(),
                    p.metadata.name.clone(),
                    sum(p, req, "cpu"),
                    sum(p, lim, "cpu"),
                    sum(p, req, "memory"),
                    sum(p, lim, "memory"),
                    age(p.metadata.creation_timestamp.as_deref()),
                ]
            })
            .collect();
        let header = [
            "Namespace",
            "Name",
            "CPU Requests",
            "CPU Limits",
            "Memory Requests",
            "Memory Limits",
            "Age",
        ];
        indent_table(&mut o, &header, &rows);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::node::NodeAddress;
    use crate::api::pod::{EnvVar, StateRunning, StateTerminated};

    fn web() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.metadata.labels.insert("app".into(), "web".into());
        p.metadata.labels.insert("tier".into(), "front".into());
        p.spec.node_name = Some("pi1".into());
        p.status.host_ip = Some("10.0.0.2".into());
        p.status.phase = PodPhase::Running;
        p.status.pod_ip = Some("10.42.0.5".into());
        let mut c = Container {
            name: "app".into(),
            image: "busybox:1".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec!["sleep 1000".into()],
            env: vec![EnvVar {
                name: "MODE".into(),
                value: "prod".into(),
            }],
            ..Container::default()
        };
        c.resources.limits.insert("memory".into(), "64Mi".into());
        p.spec.containers.push(c);
        p.status.container_statuses.push(ContainerStatus {
            name: "app".into(),
            ready: true,
            restart_count: 2,
            state: ContainerState {
                running: Some(StateRunning {
                    started_at: Some("2026-01-01T00:00:00Z".into()),
                }),
                ..ContainerState::default()
            },
            last_state: ContainerState {
                terminated: Some(StateTerminated {
                    exit_code: 137,
                    reason: "OOMKilled".into(),
                    ..StateTerminated::default()
                }),
                ..ContainerState::default()
            },
            ..ContainerStatus::default()
        });
        p.status.conditions.push(Condition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Condition::default()
        });
        p
    }

    #[test]
    fn pod_description_shows_node_labels_containers_and_last_state() {
        let d = describe_pod(&web());
        for want in [
            "Name:             web\n",
            "Namespace:        default\n",
            "Node:             pi1/10.0.0.2\n",
            "Labels:           app=web\n                  tier=front\n",
            "Annotations:      <none>\n",
            "IP:               10.42.0.5\n",
            "  app:\n",
            "    Image:          busybox:1\n",
            "    Command:\n      sh\n      -c\n",
            "    State:          Running\n",
            "    Last State:     Terminated\n      Reason:       OOMKilled\n      Exit Code:    137\n",
            "    Restart Count:  2\n",
            "    Limits:\n      memory:  64Mi\n",
            "    Environment:\n      MODE:  prod\n",
            "Conditions:\n  Type   Status\n  ----   ------\n  Ready  True\n",
        ] {
            assert!(d.contains(want), "missing {want:?} in\n{d}");
        }
    }

    #[test]
    fn mounts_and_volumes_are_listed_like_kubectl() {
        use crate::api::volume::{ConfigMapSource, Volume, VolumeMount};
        let mut p = web();
        p.spec.volumes = vec![Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapSource {
                name: "app".into(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        p.spec.containers[0].volume_mounts = vec![VolumeMount {
            name: "cfg".into(),
            mount_path: "/etc/app".into(),
            read_only: true,
            sub_path: String::new(),
        }];
        let d = describe_pod(&p);
        for want in [
            "    Mounts:\n      /etc/app from cfg (ro)\n",
            "Volumes:\n  cfg:\n    Type:       ConfigMap (a volume populated by a ConfigMap)\n    Name:       app\n",
        ] {
            assert!(d.contains(want), "missing {want:?} in\n{d}");
        }
        assert!(describe_pod(&web()).contains("Volumes:\n  <none>\n"));
    }

    #[test]
    fn a_privileged_container_is_flagged() {
        assert!(!describe_pod(&web()).contains("Privileged"));
        let mut p = web();
        p.spec.containers[0].security_context = Some(crate::api::SecurityContext {
            privileged: Some(true),
            ..Default::default()
        });
        let d = describe_pod(&p);
        assert!(
            d.contains(
                "    Privileged:     true (all capabilities, no seccomp filter, host devices)\n"
            ),
            "{d}"
        );
    }

    #[test]
    fn node_description_lists_only_its_running_pods() {
        let mut n = Node::default();
        n.metadata.name = "pi1".into();
        n.status.addresses.push(NodeAddress {
            type_: "InternalIP".into(),
            address: "10.0.0.2".into(),
        });
        n.status.capacity.insert("cpu".into(), "4".into());
        n.status.node_info.architecture = "arm64".into();
        let mut elsewhere = web();
        elsewhere.metadata.name = "other".into();
        elsewhere.spec.node_name = Some("pi2".into());
        let mut done = web();
        done.metadata.name = "done".into();
        done.status.phase = PodPhase::Succeeded;
        let d = describe_node(&n, &[web(), elsewhere, done]);
        assert!(d.contains("Addresses:\n  InternalIP:  10.0.0.2\n"), "{d}");
        assert!(d.contains("Capacity:\n  cpu:  4\n"), "{d}");
        assert!(d.contains("  Architecture:               arm64\n"), "{d}");
        assert!(d.contains("Non-terminated Pods:  (1 in total)\n"), "{d}");
        assert!(
            d.contains("  default    web   0             0           0                64Mi"),
            "{d}"
        );
        assert!(!d.contains("other") && !d.contains("done"), "{d}");
    }
}

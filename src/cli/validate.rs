//! `herd validate -f FILE`: parses, defaults and validates manifests offline, exactly as
//! `herd apply` does before it sends anything, with no config and no server. With
//! `--nodes FILE` the pods are then run through the real scheduler against the Node objects in
//! that file, in order, each placement counting for the next: a dry run of where they would
//! land. cross/smoke uses both to exercise a cross-built binary under qemu.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use serde::Deserialize as _;

use super::commands::{read_manifests, source_name, Out};
use super::kind::Kind;
use crate::api::{Node, Object};
use crate::master::scheduler::{Decision, Snapshot};

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Manifest file (YAML or JSON, multi-document); `-` reads stdin (repeatable)
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub filenames: Vec<PathBuf>,
    /// Also schedule the pods onto the Node objects of FILE (YAML, multi-document)
    #[arg(long, value_name = "FILE")]
    pub nodes: Option<PathBuf>,
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<()> {
    let objects = read_manifests(&args.filenames)?;
    let nodes = args.nodes.as_deref().map(read_nodes).transpose()?;
    validate(objects, nodes.as_deref(), &mut std::io::stdout())
}

/// Prints `KIND/NAME valid` for every object, then, given nodes, one line per pod:
/// `scheduled to NODE`, `bound to NODE (spec.nodeName)` or `unschedulable: WHY`.
pub fn validate(objects: Vec<Object>, nodes: Option<&[Node]>, out: Out<'_>) -> anyhow::Result<()> {
    for obj in &objects {
        writeln!(
            out,
            "{} valid",
            Kind::of(obj).ref_name(&obj.metadata().name)
        )?;
    }
    let Some(nodes) = nodes else {
        return Ok(());
    };
    let mut snap = Snapshot::new(nodes, &[]);
    for obj in objects {
        let Object::Pod(pod) = obj else {
            continue;
        };
        let name = Kind::Pod.ref_name(&pod.metadata.name);
        if let Some(node) = &pod.spec.node_name {
            // Not scheduled, but it holds its node's resources like any placed pod.
            anyhow::ensure!(snap.add_pod(&pod, node), "{name}: no node {node:?}");
            writeln!(out, "{name} bound to {node} (spec.nodeName)")?;
            continue;
        }
        match snap.schedule(&pod, None) {
            Decision::Bind { node } => {
                snap.add_pod(&pod, &node);
                writeln!(out, "{name} scheduled to {node}")?;
            }
            Decision::Unschedulable { message } => {
                writeln!(out, "{name} unschedulable: {message}")?;
            }
        }
    }
    Ok(())
}

/// Node objects from a (multi-document) YAML file; empty documents are skipped.
fn read_nodes(path: &Path) -> anyhow::Result<Vec<Node>> {
    let name = source_name(path);
    let text = std::fs::read_to_string(path).with_context(|| name.clone())?;
    let mut nodes = Vec::new();
    for (i, doc) in yaml_serde::Deserializer::from_str(&text).enumerate() {
        let at = || format!("{name}: document {}", i + 1);
        let value = yaml_serde::Value::deserialize(doc).with_context(at)?;
        if value.is_null() {
            continue;
        }
        let node: Node = yaml_serde::from_value(value).with_context(at)?;
        anyhow::ensure!(
            node.kind == "Node",
            "{}: kind {:?} is not Node",
            at(),
            node.kind
        );
        anyhow::ensure!(
            !node.metadata.name.is_empty(),
            "{}: the node has no name",
            at()
        );
        nodes.push(node);
    }
    anyhow::ensure!(!nodes.is_empty(), "no nodes in {name}");
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "
kind: Node
metadata: {name: big}
status:
  conditions: [{type: Ready, status: 'True'}]
  allocatable: {cpu: '4', memory: 4Gi}
---
kind: Node
metadata: {name: small}
status:
  conditions: [{type: Ready, status: 'True'}]
  allocatable: {cpu: '1', memory: 1Gi}
";

    const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  containers:
  - {name: c, image: busybox, resources: {requests: {memory: 3Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: b}
spec:
  containers:
  - {name: c, image: busybox, resources: {requests: {memory: 3Gi}}}
";

    #[test]
    fn pods_are_validated_then_placed_one_after_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let nodes_file = dir.path().join("nodes.yaml");
        std::fs::write(&nodes_file, NODES).unwrap();
        let nodes = read_nodes(&nodes_file).unwrap();
        let objects = crate::api::manifest::parse(PODS).unwrap();
        let mut out = Vec::new();
        validate(objects, Some(&nodes), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[..3],
            ["pod/a valid", "pod/b valid", "pod/a scheduled to big"]
        );
        assert!(
            lines[3].starts_with("pod/b unschedulable: 0/2 nodes are available"),
            "{out}"
        );
    }

    #[test]
    fn a_nodes_file_of_something_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nodes.yaml");
        std::fs::write(&file, "kind: Pod\nmetadata: {name: x}\n").unwrap();
        let err = read_nodes(&file).unwrap_err();
        assert!(format!("{err:#}").contains("is not Node"), "{err:#}");
    }
}

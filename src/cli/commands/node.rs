//! `herd cordon NODE` / `herd uncordon NODE`: flip `spec.unschedulable`; `herd node rm NODE`:
//! remove a node and revoke its credentials.
//!
//! The node is read and written back as raw JSON, so fields this client does not model (taints
//! the server may add) survive the round trip untouched.

use super::{Out, Session};
use crate::cli::args::{GlobalArgs, NodeArgs, NodeRmArgs};
use crate::cli::kind::Kind;

pub async fn run(args: &NodeArgs, cordon: bool, global: &GlobalArgs) -> anyhow::Result<()> {
    let node = node_name(&args.node)?;
    let session = Session::open(global)?;
    set_unschedulable(&session, &node, cordon, &mut std::io::stdout()).await
}

pub async fn run_rm(args: &NodeRmArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let names = args
        .nodes
        .iter()
        .map(|n| node_name(n))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let session = Session::open(global)?;
    remove(&session, &names, &mut std::io::stdout()).await
}

/// Deletes each node (the server revokes its MQTT credentials and cuts its session); keeps
/// going past an error and fails at the end, like `herd delete`.
pub async fn remove(s: &Session, nodes: &[String], out: Out<'_>) -> anyhow::Result<()> {
    let mut failed = 0;
    for node in nodes {
        let path = Kind::Node.object_path("", node);
        match s.client.delete::<serde_json::Value>(&path, &[]).await {
            Ok(_) => writeln!(
                out,
                "node/{node} removed; its credentials are revoked (it can come back only by \
                 joining with a new token)"
            )?,
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(super::delete::Silent.into());
    }
    Ok(())
}

/// `pi1` or `node/pi1`.
pub fn node_name(arg: &str) -> anyhow::Result<String> {
    match arg.split_once('/') {
        Some(_) => {
            let (kind, name) = Kind::with_name(arg, None)?;
            anyhow::ensure!(kind == Kind::Node, "expected a node, got {arg:?}");
            Ok(name.unwrap_or_default())
        }
        None if arg.is_empty() => anyhow::bail!("node name may not be empty"),
        None => Ok(arg.to_string()),
    }
}

/// Prints `node/pi1 cordoned` (or `uncordoned`), or `already ...` when there was nothing to do.
pub async fn set_unschedulable(
    s: &Session,
    node: &str,
    on: bool,
    out: Out<'_>,
) -> anyhow::Result<()> {
    let word = if on { "cordoned" } else { "uncordoned" };
    let path = Kind::Node.object_path("", node);
    let mut v: serde_json::Value = s.client.get(&path).await?;
    if unschedulable(&v) == on {
        writeln!(out, "node/{node} already {word}")?;
        return Ok(());
    }
    set_flag(&mut v, on)?;
    let _: serde_json::Value = s.client.put(&path, &v).await?;
    writeln!(out, "node/{node} {word}")?;
    Ok(())
}

fn unschedulable(node: &serde_json::Value) -> bool {
    node.pointer("/spec/unschedulable")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

fn set_flag(node: &mut serde_json::Value, on: bool) -> anyhow::Result<()> {
    let obj = node
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("the server sent a node that is not a JSON object"))?;
    let spec = obj.entry("spec").or_insert_with(|| serde_json::json!({}));
    if spec.is_null() {
        *spec = serde_json::json!({});
    }
    let spec = spec
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("the server sent a node whose spec is not an object"))?;
    spec.insert("unschedulable".into(), serde_json::Value::Bool(on));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_come_bare_or_as_node_slash_name() {
        assert_eq!(node_name("pi1").unwrap(), "pi1");
        assert_eq!(node_name("node/pi1").unwrap(), "pi1");
        assert_eq!(node_name("no/pi1").unwrap(), "pi1");
        assert!(node_name("pod/pi1").is_err());
        assert!(node_name("").is_err());
    }

    #[test]
    fn the_flag_is_set_without_touching_other_fields() {
        let mut v = serde_json::json!({"metadata": {"name": "pi1"},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}});
        assert!(!unschedulable(&v));
        set_flag(&mut v, true).unwrap();
        assert!(unschedulable(&v));
        assert_eq!(v["spec"]["taints"][0]["key"], "k");
        let mut bare = serde_json::json!({"metadata": {"name": "pi1"}});
        set_flag(&mut bare, true).unwrap();
        assert!(unschedulable(&bare));
        assert!(set_flag(&mut serde_json::json!([1]), true).is_err());
    }
}

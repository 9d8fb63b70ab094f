//! `herd drain NODE`: cordon the node, then evict every pod still running on it through the
//! eviction endpoint (which refuses, with 429, an eviction that would take a Deployment below
//! its allowed availability), retrying refused ones every second, and wait until they are
//! gone. Pods no controller would recreate are refused unless `--force`.

use std::time::Duration;

use super::node::{node_name, set_unschedulable};
use super::{Out, Session};
use crate::api::{List, Pod, PodPhase};
use crate::cli::args::{DrainArgs, GlobalArgs};
use crate::cli::client::ApiError;
use crate::cli::kind::Kind;

/// Pause between rounds: retrying refused evictions and checking evicted pods are gone.
const RETRY: Duration = Duration::from_secs(1);

pub async fn run(args: &DrainArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    node_name(&args.node)?;
    let session = Session::open(global)?;
    drain(
        &session,
        args,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await
}

/// A pod to evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Has a controller owner reference (something will recreate it elsewhere).
    pub managed: bool,
}

impl Victim {
    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The pods bound to `node` that have not finished, in name order.
pub fn victims(node: &str, pods: &[Pod]) -> Vec<Victim> {
    let mut v: Vec<Victim> = pods
        .iter()
        .filter(|p| p.spec.node_name.as_deref() == Some(node))
        .filter(|p| !matches!(p.status.phase, PodPhase::Succeeded | PodPhase::Failed))
        .map(|p| Victim {
            namespace: p.metadata.ns().to_string(),
            name: p.metadata.name.clone(),
            uid: p.metadata.uid.clone(),
            managed: p.metadata.controller_ref().is_some(),
        })
        .collect();
    v.sort_by_key(Victim::key);
    v
}

/// kubectl's refusal for unmanaged pods without `--force`, or its warning with it.
pub fn unmanaged_check(victims: &[Victim], force: bool) -> Result<Option<String>, String> {
    let unmanaged: Vec<String> = victims
        .iter()
        .filter(|v| !v.managed)
        .map(Victim::key)
        .collect();
    if unmanaged.is_empty() {
        return Ok(None);
    }
    let list = unmanaged.join(", ");
    if force {
        Ok(Some(format!(
            "Warning: deleting Pods that declare no controller: {list}"
        )))
    } else {
        Err(format!(
            "cannot delete Pods that declare no controller (use --force to override): {list}"
        ))
    }
}

/// The `policy/v1 Eviction` body; a grace period rides in `deleteOptions` as in Kubernetes.
pub fn eviction_body(v: &Victim, grace: Option<i64>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": v.name, "namespace": v.namespace},
    });
    if let Some(g) = grace {
        body["deleteOptions"] = serde_json::json!({ "gracePeriodSeconds": g });
    }
    body
}

/// Cordons, evicts and waits; prints progress to `out` and retry notices to `err`.
pub async fn drain(
    s: &Session,
    args: &DrainArgs,
    out: Out<'_>,
    err: Out<'_>,
) -> anyhow::Result<()> {
    let node = node_name(&args.node)?;
    set_unschedulable(s, &node, true, out).await?;
    let pods: List<Pod> = s.client.get(&Kind::Pod.collection_path(None)).await?;
    let mut pending = victims(&node, &pods.items);
    match unmanaged_check(&pending, args.force) {
        Ok(Some(warning)) => writeln!(err, "{warning}")?,
        Ok(None) => {}
        Err(refusal) => anyhow::bail!("unable to drain node {node:?}: {refusal}"),
    }
    let grace = (args.grace_period >= 0).then_some(args.grace_period);
    let deadline = (!args.timeout.is_zero()).then(|| tokio::time::Instant::now() + args.timeout);
    let mut leaving: Vec<Victim> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    loop {
        let mut refused = Vec::new();
        for v in pending.drain(..) {
            writeln!(out, "evicting pod {}", v.key())?;
            let path = format!("{}/eviction", Kind::Pod.object_path(&v.namespace, &v.name));
            match s
                .client
                .post_discard(&path, &eviction_body(&v, grace))
                .await
            {
                Ok(()) => leaving.push(v),
                Err(e) if e.is_not_found() => leaving.push(v),
                Err(ApiError::Status(st)) if st.code == 429 => {
                    writeln!(
                        err,
                        "error when evicting pods/{:?} -n {:?} (will retry after {}s): {}",
                        v.name,
                        v.namespace,
                        RETRY.as_secs(),
                        st.message
                    )?;
                    refused.push(v);
                }
                Err(e) => {
                    writeln!(
                        err,
                        "error when evicting pods/{:?} -n {:?}: {e}",
                        v.name, v.namespace
                    )?;
                    failed.push(v.key());
                }
            }
        }
        pending = refused;
        let mut still = Vec::new();
        for v in leaving.drain(..) {
            if gone(s, &v).await? {
                writeln!(out, "pod/{} evicted", v.name)?;
            } else {
                still.push(v);
            }
        }
        leaving = still;
        if pending.is_empty() && leaving.is_empty() {
            break;
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            let left: Vec<String> = pending.iter().chain(&leaving).map(Victim::key).collect();
            anyhow::bail!(
                "unable to drain node {node:?}: timed out after {}s waiting for {}",
                args.timeout.as_secs(),
                left.join(", ")
            );
        }
        tokio::time::sleep(RETRY).await;
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "unable to drain node {node:?}: could not evict {}",
            failed.join(", ")
        );
    }
    writeln!(out, "node/{node} drained")?;
    Ok(())
}

/// True once the pod is deleted (or replaced by a new pod of the same name).
async fn gone(s: &Session, v: &Victim) -> anyhow::Result<bool> {
    let path = Kind::Pod.object_path(&v.namespace, &v.name);
    match s.client.get::<Pod>(&path).await {
        Ok(p) => Ok(!v.uid.is_empty() && p.metadata.uid != v.uid),
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::meta::OwnerReference;

    fn pod(name: &str, node: &str, phase: PodPhase, owned: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.uid = format!("{name}-uid");
        p.spec.node_name = Some(node.into());
        p.status.phase = phase;
        if owned {
            p.metadata.owner_references.push(OwnerReference {
                kind: "ReplicaSet".into(),
                uid: "rs".into(),
                controller: Some(true),
                ..OwnerReference::default()
            });
        }
        p
    }

    #[test]
    fn victims_are_the_unfinished_pods_of_the_node() {
        let pods = [
            pod("web-b", "pi1", PodPhase::Running, true),
            pod("web-a", "pi1", PodPhase::Pending, true),
            pod("done", "pi1", PodPhase::Succeeded, true),
            pod("failed", "pi1", PodPhase::Failed, false),
            pod("elsewhere", "pi2", PodPhase::Running, true),
        ];
        let names: Vec<String> = victims("pi1", &pods).iter().map(Victim::key).collect();
        assert_eq!(names, ["default/web-a", "default/web-b"]);
    }

    #[test]
    fn unmanaged_pods_are_refused_without_force_and_named_with_it() {
        let pods = [
            pod("web-a", "pi1", PodPhase::Running, true),
            pod("x", "pi1", PodPhase::Running, false),
        ];
        let v = victims("pi1", &pods);
        assert_eq!(
            unmanaged_check(&v, false),
            Err(
                "cannot delete Pods that declare no controller (use --force to override): \
                 default/x"
                    .into()
            )
        );
        assert_eq!(
            unmanaged_check(&v, true),
            Ok(Some(
                "Warning: deleting Pods that declare no controller: default/x".into()
            ))
        );
        assert_eq!(unmanaged_check(&v[..1], false), Ok(None));
    }

    #[test]
    fn the_eviction_body_carries_the_grace_period_only_when_given() {
        let v = &victims("pi1", &[pod("web-a", "pi1", PodPhase::Running, true)])[0];
        let b = eviction_body(v, None);
        assert_eq!(
            b,
            serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": "web-a", "namespace": "default"}})
        );
        assert_eq!(
            eviction_body(v, Some(0))["deleteOptions"]["gracePeriodSeconds"],
            0
        );
    }
}

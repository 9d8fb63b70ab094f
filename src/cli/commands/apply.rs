//! `herd apply -f`: create what is missing, update what exists, and say which it was.

use super::{read_manifests, Out, Session};
use crate::api::{Object, Pod};
use crate::cli::args::{ApplyArgs, GlobalArgs};
use crate::cli::kind::Kind;

pub async fn run(args: &ApplyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // Parse everything before connecting: a bad file must not leave half a change behind,
    // and should be reported even when the server is down.
    let objects = read_manifests(&args.filenames)?;
    let session = Session::open(global)?;
    apply(
        &session,
        objects,
        args.namespace.as_deref(),
        &mut std::io::stdout(),
    )
    .await
}

/// Applies each object in order, printing `pod/NAME created|configured|unchanged`.
pub async fn apply(
    s: &Session,
    objects: Vec<Object>,
    ns_flag: Option<&str>,
    out: Out<'_>,
) -> anyhow::Result<()> {
    let default_ns = s.ns(ns_flag);
    // Check namespaces up front, for the same all-or-nothing reason as parsing.
    for obj in &objects {
        if let (Some(flag), Some(own)) = (ns_flag, obj.metadata().namespace.as_deref()) {
            anyhow::ensure!(
                flag == own,
                "the namespace from the provided object {own:?} does not match the namespace \
                 {flag:?}: remove one of them"
            );
        }
    }
    for obj in objects {
        match obj {
            Object::Pod(mut pod) => {
                let ns = pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_ns.clone());
                pod.metadata.namespace = Some(ns.clone());
                let name = pod.metadata.name.clone();
                let verb = apply_pod(s, &ns, *pod).await?;
                writeln!(out, "pod/{name} {verb}")?;
            }
        }
    }
    Ok(())
}

/// GET, then POST if absent or PUT if present; the generation tells whether the spec changed.
async fn apply_pod(s: &Session, ns: &str, mut pod: Pod) -> anyhow::Result<&'static str> {
    let path = Kind::Pod.object_path(ns, &pod.metadata.name);
    let existing: Pod = match s.client.get(&path).await {
        Ok(p) => p,
        Err(e) if e.is_not_found() => {
            let _created: Pod = s
                .client
                .post(&Kind::Pod.collection_path(Some(ns)), &pod)
                .await?;
            return Ok("created");
        }
        Err(e) => return Err(e.into()),
    };
    // Carry over what the server owns so the PUT replaces only what the manifest says: the
    // scheduler's binding (a manifest rarely names a node) and the identity fields.
    if pod.spec.node_name.is_none() {
        pod.spec.node_name = existing.spec.node_name.clone();
    }
    pod.metadata.uid = existing.metadata.uid.clone();
    pod.metadata.resource_version = existing.metadata.resource_version.clone();
    pod.metadata.creation_timestamp = existing.metadata.creation_timestamp.clone();
    pod.metadata.generation = existing.metadata.generation;
    pod.status = existing.status.clone();
    let updated: Pod = s.client.put(&path, &pod).await?;
    // Labels and annotations do not bump the generation but are still a change to report.
    let meta_changed = updated.metadata.labels != existing.metadata.labels
        || updated.metadata.annotations != existing.metadata.annotations;
    Ok(
        if updated.metadata.generation != existing.metadata.generation || meta_changed {
            "configured"
        } else {
            "unchanged"
        },
    )
}

//! `herd apply -f`: create what is missing, update what exists, and say which it was.

use super::{read_manifests, Out, Session};
use crate::api::Object;
use crate::cli::args::{ApplyArgs, GlobalArgs};
use crate::cli::kind::Kind;
use crate::cli::resource::Resource;

pub async fn run(args: &ApplyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    // Parse everything before connecting: a bad file must not leave half a change behind,
    // and should be reported even when the server is down.
    let objects = read_manifests(&args.filenames)?;
    let session = Session::open(global)?;
    let default_ns = session.ns(args.namespace.as_deref());
    let targets: Vec<super::apply_wait::Target> = objects
        .iter()
        .filter_map(|o| {
            let ns = o.metadata().namespace.as_deref().unwrap_or(&default_ns);
            super::apply_wait::Target::of(o, ns)
        })
        .collect();
    apply(
        &session,
        objects,
        args.namespace.as_deref(),
        &mut std::io::stdout(),
    )
    .await?;
    if args.wait {
        super::apply_wait::wait(&session, &targets, args.timeout).await?;
    }
    Ok(())
}

/// Applies each object in order, printing `pod/NAME created|configured|unchanged` (or
/// `deployment.apps/NAME ...`).
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
        let kind = Kind::of(&obj);
        let ns = obj
            .metadata()
            .namespace
            .clone()
            .unwrap_or_else(|| default_ns.clone());
        let name = obj.metadata().name.clone();
        let verb = match obj {
            Object::Pod(p) => apply_one(s, &ns, *p).await?,
            Object::Deployment(d) => apply_one(s, &ns, *d).await?,
            Object::ReplicaSet(r) => apply_one(s, &ns, *r).await?,
            Object::Secret(sec) => apply_one(s, &ns, *sec).await?,
        };
        writeln!(out, "{} {verb}", kind.ref_name(&name))?;
    }
    Ok(())
}

/// GET, then POST if absent or PUT if present; the generation tells whether the spec changed.
pub async fn apply_one<T: Resource>(
    s: &Session,
    ns: &str,
    mut obj: T,
) -> anyhow::Result<&'static str> {
    obj.meta_mut().namespace = Some(ns.to_string());
    let path = T::KIND.object_path(ns, obj.name());
    let existing: T = match s.client.get(&path).await {
        Ok(p) => p,
        Err(e) if e.is_not_found() => {
            let _created: T = s
                .client
                .post(&T::KIND.collection_path(Some(ns)), &obj)
                .await?;
            return Ok("created");
        }
        Err(e) => return Err(e.into()),
    };
    // Carry over what the server owns so the PUT replaces only what the manifest says.
    obj.keep_server_fields(&existing);
    let updated: T = s.client.put(&path, &obj).await?;
    // Labels and annotations do not bump the generation but are still a change to report.
    let (old, new) = (existing.meta(), updated.meta());
    let meta_changed = new.labels != old.labels || new.annotations != old.annotations;
    Ok(if new.generation != old.generation || meta_changed {
        "configured"
    } else {
        "unchanged"
    })
}

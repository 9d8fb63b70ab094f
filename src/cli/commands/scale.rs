//! `herd scale deploy/web --replicas N`: set a workload's desired replica count.

use super::{modify, one_of, Out, Session};
use crate::api::apps::{Deployment, ReplicaSet};
use crate::cli::args::{GlobalArgs, ScaleArgs};
use crate::cli::kind::Kind;

const SCALABLE: &[Kind] = &[Kind::Deployment, Kind::ReplicaSet];

pub async fn run(args: &ScaleArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    one_of("scale", &args.kind, args.name.as_deref(), SCALABLE)?;
    let session = Session::open(global)?;
    scale(&session, args, &mut std::io::stdout()).await
}

/// Prints `deployment.apps/web scaled`.
pub async fn scale(s: &Session, args: &ScaleArgs, out: Out<'_>) -> anyhow::Result<()> {
    let (kind, name) = one_of("scale", &args.kind, args.name.as_deref(), SCALABLE)?;
    let ns = s.ns(args.namespace.as_deref());
    let n = args.replicas;
    match kind {
        Kind::Deployment => {
            modify(s, &ns, &name, |d: &mut Deployment| {
                d.spec.replicas = Some(n);
                Ok(())
            })
            .await?;
        }
        _ => {
            modify(s, &ns, &name, |r: &mut ReplicaSet| {
                r.spec.replicas = Some(n);
                Ok(())
            })
            .await?;
        }
    }
    writeln!(out, "{} scaled", kind.ref_name(&name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_workloads_scale() {
        let e = one_of("scale", "pod/web", None, SCALABLE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "scale is not supported for pods: it works on deployments and replicasets"
        );
        assert!(one_of("scale", "deploy", None, SCALABLE).is_err());
        assert_eq!(
            one_of("scale", "rs", Some("web-1"), SCALABLE).unwrap(),
            (Kind::ReplicaSet, "web-1".to_string())
        );
    }
}

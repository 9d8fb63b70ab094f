//! `herd set image deploy/web main=img:2 [side=img:3]`: change container images in a
//! workload's pod template (`*=IMG` changes every container), which starts a rollout.

use super::{modify, one_of, Out, Session};
use crate::api::apps::{Deployment, ReplicaSet};
use crate::cli::args::{GlobalArgs, SetImageArgs};
use crate::cli::kind::Kind;
use crate::cli::workload::{parse_image_args, set_images, ImageArgs};

const WITH_TEMPLATE: &[Kind] = &[Kind::Deployment, Kind::ReplicaSet];

pub async fn run_image(args: &SetImageArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    resolve(args)?;
    let session = Session::open(global)?;
    image(&session, args, &mut std::io::stdout()).await
}

fn resolve(args: &SetImageArgs) -> anyhow::Result<(Kind, String, ImageArgs)> {
    let parsed = parse_image_args(&args.args).map_err(anyhow::Error::msg)?;
    let (kind, name) = one_of(
        "set image",
        &parsed.kind,
        parsed.name.as_deref(),
        WITH_TEMPLATE,
    )?;
    Ok((kind, name, parsed))
}

/// Prints `deployment.apps/web image updated`.
pub async fn image(s: &Session, args: &SetImageArgs, out: Out<'_>) -> anyhow::Result<()> {
    let (kind, name, parsed) = resolve(args)?;
    let ns = s.ns(args.namespace.as_deref());
    let images = &parsed.images;
    match kind {
        Kind::Deployment => {
            modify(s, &ns, &name, |d: &mut Deployment| {
                set_images(&mut d.spec.template.spec, images).map_err(anyhow::Error::msg)
            })
            .await?;
        }
        _ => {
            modify(s, &ns, &name, |r: &mut ReplicaSet| {
                set_images(&mut r.spec.template.spec, images).map_err(anyhow::Error::msg)
            })
            .await?;
        }
    }
    writeln!(out, "{} image updated", kind.ref_name(&name))?;
    Ok(())
}

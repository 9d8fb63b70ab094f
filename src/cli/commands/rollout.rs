//! `herd rollout status|history|undo|pause|resume|restart deploy/web`, as kubectl does them:
//! status polls the Deployment's status, history reads the revisions of the ReplicaSets it
//! owns, and undo copies an old ReplicaSet's template back into the Deployment (client-side).

use std::time::Duration;

use super::describe_workload::pod_template;
use super::{modify, one_of, Out, Session};
use crate::api::apps::{Deployment, ReplicaSet, RESTARTED_AT};
use crate::api::List;
use crate::cli::args::{
    GlobalArgs, RolloutCommand, RolloutHistoryArgs, RolloutStatusArgs, RolloutTarget,
    RolloutUndoArgs,
};
use crate::cli::kind::Kind;
use crate::cli::table;
use crate::cli::workload::{
    owned_by, revision, roll_back_to, rollback_target, rollout_status, Rollout, CHANGE_CAUSE,
};

/// How often `rollout status` looks again (the API has no watch).
const POLL: Duration = Duration::from_millis(500);

pub async fn run(cmd: &RolloutCommand, global: &GlobalArgs) -> anyhow::Result<()> {
    target(target_of(cmd))?;
    let session = Session::open(global)?;
    let out = &mut std::io::stdout();
    match cmd {
        RolloutCommand::Status(a) => status(&session, a, out).await,
        RolloutCommand::History(a) => history(&session, a, out).await,
        RolloutCommand::Undo(a) => undo(&session, a, out).await,
        RolloutCommand::Pause(t) => pause(&session, t, true, out).await,
        RolloutCommand::Resume(t) => pause(&session, t, false, out).await,
        RolloutCommand::Restart(t) => restart(&session, t, out).await,
    }
}

fn target_of(cmd: &RolloutCommand) -> &RolloutTarget {
    match cmd {
        RolloutCommand::Status(a) => &a.target,
        RolloutCommand::History(a) => &a.target,
        RolloutCommand::Undo(a) => &a.target,
        RolloutCommand::Pause(t) | RolloutCommand::Resume(t) | RolloutCommand::Restart(t) => t,
    }
}

/// The deployment's name; rollouts exist for deployments only.
fn target(t: &RolloutTarget) -> anyhow::Result<String> {
    Ok(one_of("rollout", &t.kind, t.name.as_deref(), &[Kind::Deployment])?.1)
}

/// Prints each new progress message until the rollout is done; fails when the progress
/// deadline passed or `--timeout` ran out. `--watch=false` prints the current state once.
pub async fn status(s: &Session, args: &RolloutStatusArgs, out: Out<'_>) -> anyhow::Result<()> {
    let name = target(&args.target)?;
    let ns = s.ns(args.target.namespace.as_deref());
    let path = Kind::Deployment.object_path(&ns, &name);
    let deadline = (!args.timeout.is_zero()).then(|| tokio::time::Instant::now() + args.timeout);
    let mut last = String::new();
    loop {
        let d: Deployment = s.client.get(&path).await?;
        match rollout_status(&d).map_err(anyhow::Error::msg)? {
            Rollout::Done(msg) => {
                writeln!(out, "{msg}")?;
                return Ok(());
            }
            Rollout::Waiting(msg) => {
                if msg != last {
                    writeln!(out, "{msg}")?;
                    out.flush()?;
                    last = msg;
                }
            }
        }
        if !args.watch {
            return Ok(());
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            anyhow::bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The deployment and the replica sets it controls, oldest revision first.
async fn deployment_and_sets(
    s: &Session,
    ns: &str,
    name: &str,
) -> anyhow::Result<(Deployment, Vec<ReplicaSet>)> {
    let d: Deployment = s
        .client
        .get(&Kind::Deployment.object_path(ns, name))
        .await?;
    let all: List<ReplicaSet> = s
        .client
        .get(&Kind::ReplicaSet.collection_path(Some(ns)))
        .await?;
    let owned = owned_by(&d.metadata.uid, &all.items)
        .into_iter()
        .cloned()
        .collect();
    Ok((d, owned))
}

/// `REVISION CHANGE-CAUSE` per owned replica set, or one revision's pod template.
pub async fn history(s: &Session, args: &RolloutHistoryArgs, out: Out<'_>) -> anyhow::Result<()> {
    let name = target(&args.target)?;
    let ns = s.ns(args.target.namespace.as_deref());
    let (_, owned) = deployment_and_sets(s, &ns, &name).await?;
    write!(out, "{}", render_history(&name, &owned, args.revision)?)?;
    Ok(())
}

pub fn render_history(
    name: &str,
    owned: &[ReplicaSet],
    want: Option<i64>,
) -> anyhow::Result<String> {
    let head = Kind::Deployment.ref_name(name);
    if let Some(n) = want {
        let rs = owned
            .iter()
            .find(|rs| revision(&rs.metadata) == Some(n))
            .ok_or_else(|| anyhow::anyhow!("unable to find the specified revision {n}"))?;
        let mut o = format!("{head} with revision #{n}\n");
        pod_template(&mut o, &rs.spec.template);
        return Ok(o);
    }
    let rows: Vec<Vec<String>> = owned
        .iter()
        .filter_map(|rs| {
            let r = revision(&rs.metadata)?;
            let cause = rs.metadata.annotations.get(CHANGE_CAUSE);
            Some(vec![
                r.to_string(),
                super::or_none(cause.map(String::as_str)),
            ])
        })
        .collect();
    if rows.is_empty() {
        return Ok("No rollout history found.\n".to_string());
    }
    Ok(format!(
        "{head}\n{}",
        table::render(&["REVISION", "CHANGE-CAUSE"], &rows)
    ))
}

/// Puts the chosen revision's template back and PUTs the deployment (the controller then
/// rolls out to it, as to any template change).
pub async fn undo(s: &Session, args: &RolloutUndoArgs, out: Out<'_>) -> anyhow::Result<()> {
    let name = target(&args.target)?;
    let ns = s.ns(args.target.namespace.as_deref());
    let (mut d, owned) = deployment_and_sets(s, &ns, &name).await?;
    let refname = Kind::Deployment.ref_name(&name);
    if d.spec.paused {
        anyhow::bail!(
            "you cannot rollback a paused deployment; resume it first with \
             'herd rollout resume {refname}' and try again"
        );
    }
    let owned_refs: Vec<&ReplicaSet> = owned.iter().collect();
    let rs = rollback_target(&name, &owned_refs, args.to_revision).map_err(anyhow::Error::msg)?;
    if !roll_back_to(&mut d, rs) {
        let r = revision(&rs.metadata).unwrap_or_default();
        writeln!(
            out,
            "{refname} skipped rollback (current template already matches revision {r})"
        )?;
        return Ok(());
    }
    let _: Deployment = s
        .client
        .put(&Kind::Deployment.object_path(&ns, &name), &d)
        .await?;
    writeln!(out, "{refname} rolled back")?;
    Ok(())
}

/// `rollout pause` (`on`) and `rollout resume`.
pub async fn pause(s: &Session, t: &RolloutTarget, on: bool, out: Out<'_>) -> anyhow::Result<()> {
    let name = target(t)?;
    let ns = s.ns(t.namespace.as_deref());
    modify(s, &ns, &name, |d: &mut Deployment| {
        if d.spec.paused == on {
            let state = if on { "already paused" } else { "not paused" };
            anyhow::bail!("deployments.apps {name:?} is {state}");
        }
        d.spec.paused = on;
        Ok(())
    })
    .await?;
    let word = if on { "paused" } else { "resumed" };
    writeln!(out, "{} {word}", Kind::Deployment.ref_name(&name))?;
    Ok(())
}

/// Stamps the template with the time, so every pod is replaced by a normal rollout.
pub async fn restart(s: &Session, t: &RolloutTarget, out: Out<'_>) -> anyhow::Result<()> {
    let name = target(t)?;
    let ns = s.ns(t.namespace.as_deref());
    let now = crate::util::time::now_rfc3339();
    modify(s, &ns, &name, |d: &mut Deployment| {
        if d.spec.paused {
            anyhow::bail!(
                "deployments.apps {name:?} can't restart paused deployment (run rollout resume \
                 first)"
            );
        }
        d.spec
            .template
            .metadata
            .annotations
            .insert(RESTARTED_AT.to_string(), now.clone());
        Ok(())
    })
    .await?;
    writeln!(out, "{} restarted", Kind::Deployment.ref_name(&name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apps::REVISION_ANNOTATION;
    use crate::api::Container;

    fn rs(rev: &str, cause: Option<&str>, image: &str) -> ReplicaSet {
        let mut r = ReplicaSet::default();
        r.metadata.name = format!("web-{rev}");
        r.metadata
            .annotations
            .insert(REVISION_ANNOTATION.into(), rev.into());
        if let Some(c) = cause {
            r.metadata.annotations.insert(CHANGE_CAUSE.into(), c.into());
        }
        r.spec.template.spec.containers.push(Container {
            name: "main".into(),
            image: image.into(),
            ..Container::default()
        });
        r
    }

    #[test]
    fn history_lists_revisions_with_their_change_cause() {
        let owned = [
            rs("1", None, "img:1"),
            rs("2", Some("set image to 2"), "img:2"),
        ];
        assert_eq!(
            render_history("web", &owned, None).unwrap(),
            "deployment.apps/web\nREVISION  CHANGE-CAUSE\n1         <none>\n2         set image to 2\n"
        );
        let one = render_history("web", &owned, Some(2)).unwrap();
        assert!(
            one.starts_with("deployment.apps/web with revision #2\nPod Template:\n"),
            "{one}"
        );
        assert!(one.contains("    Image:        img:2\n"), "{one}");
        let err = render_history("web", &owned, Some(5)).unwrap_err();
        assert_eq!(err.to_string(), "unable to find the specified revision 5");
        assert_eq!(
            render_history("web", &[], None).unwrap(),
            "No rollout history found.\n"
        );
    }

    #[test]
    fn rollouts_are_for_deployments_only() {
        let t = |kind: &str, name: Option<&str>| RolloutTarget {
            kind: kind.into(),
            name: name.map(str::to_string),
            namespace: None,
        };
        assert_eq!(target(&t("deploy/web", None)).unwrap(), "web");
        assert_eq!(target(&t("deployment", Some("web"))).unwrap(), "web");
        let e = target(&t("rs/web-1", None)).unwrap_err().to_string();
        assert_eq!(
            e,
            "rollout is not supported for replicasets: it works on deployments"
        );
    }
}

//! `herd delete`: delete by kind and name or from a file, and by default wait until the object
//! is really gone (a pod lingers while its containers get their grace period). Deleting a
//! deployment or replica set cascades on the server: the pods go in the background.

use std::time::Duration;

use super::{read_manifests, Out, Session};
use crate::api::pod::DEFAULT_GRACE_SECONDS;
use crate::cli::args::{DeleteArgs, GlobalArgs};
use crate::cli::client::ApiError;
use crate::cli::kind::Kind;

/// How often `--wait` polls.
const POLL: Duration = Duration::from_millis(250);
/// Slack on top of the grace period for the worker to report back.
const WAIT_SLACK_SECONDS: u64 = 30;

pub async fn run(args: &DeleteArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let targets = targets(args)?;
    let session = Session::open(global)?;
    delete(&session, &targets, args, &mut std::io::stdout()).await
}

/// One object to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// `None`: the session's (or `-n`) namespace.
    pub namespace: Option<String>,
    pub name: String,
}

/// What the arguments name: the objects of the files, or KIND NAME.
pub fn targets(args: &DeleteArgs) -> anyhow::Result<Vec<Target>> {
    if !args.filenames.is_empty() {
        return Ok(read_manifests(&args.filenames)?
            .into_iter()
            .map(|o| Target {
                kind: Kind::of(&o),
                namespace: o.metadata().namespace.clone(),
                name: o.metadata().name.clone(),
            })
            .collect());
    }
    let kind = args.kind.as_deref().unwrap_or_default();
    let (kind, name) = Kind::with_name(kind, args.name.as_deref())?;
    let name = name
        .ok_or_else(|| anyhow::anyhow!("resource(s) were provided, but no name was specified"))?;
    Ok(vec![Target {
        kind,
        namespace: None,
        name,
    }])
}

/// Sends every delete, then waits for each, so several pods shut down in parallel. Keeps going
/// past an error (like kubectl) and fails at the end if any target failed.
pub async fn delete(
    s: &Session,
    targets: &[Target],
    args: &DeleteArgs,
    out: Out<'_>,
) -> anyhow::Result<()> {
    let default_ns = s.ns(args.namespace.as_deref());
    let grace = args.grace_period.filter(|g| *g >= 0);
    let query: Vec<(&str, String)> = grace
        .iter()
        .map(|g| ("gracePeriodSeconds", g.to_string()))
        .collect();
    let mut failed = 0usize;
    let mut pending = Vec::new();
    for t in targets {
        let ns = t.namespace.clone().unwrap_or_else(|| default_ns.clone());
        let path = t.kind.object_path(&ns, &t.name);
        match s.client.delete::<serde_json::Value>(&path, &query).await {
            Ok(obj) => pending.push((t, path, wait_budget(grace, &obj))),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    for (t, path, budget) in pending {
        if args.wait {
            if let Err(e) = wait_gone(s, &path, budget).await {
                eprintln!("error: {} {:?}: {e}", t.kind.qualified(), t.name);
                failed += 1;
                continue;
            }
        }
        writeln!(out, "{} {:?} deleted", t.kind.qualified(), t.name)?;
    }
    anyhow::ensure!(failed == 0, Silent);
    Ok(())
}

/// Marker error: details were already printed per object, only the exit status is left.
#[derive(Debug, thiserror::Error)]
#[error("some deletions failed")]
pub struct Silent;

/// The grace period in effect (flag, else the pod's own, else the default) plus slack.
fn wait_budget(flag: Option<i64>, deleted: &serde_json::Value) -> Duration {
    let own = deleted
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(serde_json::Value::as_i64);
    let grace = flag.or(own).unwrap_or(DEFAULT_GRACE_SECONDS).max(0);
    Duration::from_secs(grace.unsigned_abs() + WAIT_SLACK_SECONDS)
}

/// Polls until the GET says 404, or `budget` runs out.
async fn wait_gone(s: &Session, path: &str, budget: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + budget;
    loop {
        match s.client.get::<serde_json::Value>(path).await {
            Err(ApiError::Status(st)) if st.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "still present after {}s; it is being deleted, check `herd get` later",
                budget.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command};
    use clap::Parser;

    fn args(argv: &[&str]) -> DeleteArgs {
        let mut v = vec!["herd", "delete"];
        v.extend_from_slice(argv);
        match Cli::parse_from(v).command {
            Command::Delete(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kind_and_name_make_one_target_in_either_form() {
        let want = vec![Target {
            kind: Kind::Pod,
            namespace: None,
            name: "web".into(),
        }];
        assert_eq!(targets(&args(&["pod", "web"])).unwrap(), want);
        assert_eq!(targets(&args(&["po/web"])).unwrap(), want);
        assert!(targets(&args(&["pods"])).is_err());
    }

    #[test]
    fn the_wait_budget_is_the_grace_period_plus_slack() {
        let pod = serde_json::json!({"spec": {"terminationGracePeriodSeconds": 5}});
        assert_eq!(wait_budget(None, &pod), Duration::from_secs(35));
        assert_eq!(wait_budget(Some(0), &pod), Duration::from_secs(30));
        assert_eq!(
            wait_budget(None, &serde_json::json!({})),
            Duration::from_secs(60)
        );
    }
}

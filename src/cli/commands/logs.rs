//! `herd logs`: stream a container's output to stdout as the server sends it.

use super::{Out, Session};
use crate::cli::args::{GlobalArgs, LogsArgs};
use crate::cli::client::ApiError;
use crate::cli::kind::Kind;

pub async fn run(args: &LogsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    logs(&session, args, &mut std::io::stdout()).await
}

/// The query string the server expects; `--tail -1` (kubectl's "all") sends no tailLines.
pub fn query(args: &LogsArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(c) = &args.container {
        q.push(("container", c.clone()));
    }
    if let Some(n) = args.tail.filter(|n| *n >= 0) {
        q.push(("tailLines", n.to_string()));
    }
    if args.follow {
        q.push(("follow", "true".to_string()));
    }
    if args.previous {
        q.push(("previous", "true".to_string()));
    }
    q
}

/// Copies each chunk to `out` and flushes it, so `-f` shows lines as they happen.
pub async fn logs(s: &Session, args: &LogsArgs, out: Out<'_>) -> anyhow::Result<()> {
    let name = match args.pod.split_once('/') {
        Some((k, n)) => {
            anyhow::ensure!(
                Kind::parse(k)? == Kind::Pod,
                "logs are only available for pods, not {k:?}"
            );
            n
        }
        None => args.pod.as_str(),
    };
    let ns = s.ns(args.namespace.as_deref());
    let path = format!("{}/log", Kind::Pod.object_path(&ns, name));
    let mut resp = s.client.get_stream(&path, &query(args)).await?;
    loop {
        let chunk = resp.chunk().await.map_err(|source| ApiError::Transport {
            method: "GET",
            url: path.clone(),
            source,
        })?;
        let Some(bytes) = chunk else { break };
        match out.write_all(&bytes).and_then(|()| out.flush()) {
            Ok(()) => {}
            // `herd logs -f | head` closing the pipe is a normal way to stop.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command};
    use clap::Parser;

    #[test]
    fn logs_flags_become_the_servers_query_parameters() {
        let Command::Logs(a) = Cli::parse_from([
            "herd", "logs", "web", "-c", "app", "--tail", "5", "-f", "-p",
        ])
        .command
        else {
            panic!("not logs")
        };
        assert_eq!(
            query(&a),
            [
                ("container", "app".to_string()),
                ("tailLines", "5".to_string()),
                ("follow", "true".to_string()),
                ("previous", "true".to_string()),
            ]
        );
        let Command::Logs(a) = Cli::parse_from(["herd", "logs", "web", "--tail=-1"]).command else {
            panic!("not logs")
        };
        assert!(query(&a).is_empty());
    }
}

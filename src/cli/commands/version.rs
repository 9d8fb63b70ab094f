//! `herd version`: client version always, server version when a config points at one.

use serde::Deserialize;
use std::io::Write as _;

use super::{Out, Session};
use crate::cli::args::{GlobalArgs, VersionArgs};
use crate::cli::kubeconfig::ConfigError;

/// `GET /version`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerVersion {
    pub git_version: String,
    #[serde(default)]
    pub platform: String,
}

pub const CLIENT_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

pub async fn run(args: &VersionArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "Client Version: {CLIENT_VERSION}")?;
    if args.client {
        return Ok(());
    }
    // No config at all is normal on a fresh machine: show the client version only. A config
    // that exists but is broken, or a server that does not answer, is an error as in kubectl.
    let session = match Session::open(global) {
        Ok(s) => s,
        Err(e) if matches!(e.downcast_ref::<ConfigError>(), Some(ConfigError::NoConfig)) => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    server(&session, &mut out).await
}

pub async fn server(s: &Session, out: Out<'_>) -> anyhow::Result<()> {
    let v: ServerVersion = s.client.get("/version").await?;
    if v.platform.is_empty() {
        writeln!(out, "Server Version: {}", v.git_version)?;
    } else {
        writeln!(out, "Server Version: {} ({})", v.git_version, v.platform)?;
    }
    Ok(())
}

//! `herd token create`: ask the master for a join token.

use serde::{Deserialize, Serialize};

use super::{Out, Session};
use crate::cli::args::{GlobalArgs, TokenCreateArgs};

/// Body of `POST /apis/herd.io/v1/tokens`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    token: String,
}

pub async fn run(args: &TokenCreateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    create(&session, args, &mut std::io::stdout()).await
}

/// Prints the token alone on the last line of stdout, so scripts can take `tail -n1`; the
/// join hint goes to stderr for the same reason.
pub async fn create(s: &Session, args: &TokenCreateArgs, out: Out<'_>) -> anyhow::Result<()> {
    let req = TokenRequest {
        ttl_seconds: args.ttl.map(|d| d.as_secs()),
    };
    let resp: TokenResponse = s.client.post("/apis/herd.io/v1/tokens", &req).await?;
    eprintln!(
        "join a worker with: herd worker --join {} --token <token below>",
        s.client.server()
    );
    writeln!(out, "{}", resp.token)?;
    Ok(())
}

//! `herd token create|ls|revoke`: bearer tokens on the master. Join tokens let workers join;
//! admin and read-only tokens go into a kubeconfig user entry.

use super::{Out, Session};
use crate::cli::args::{
    GlobalArgs, OutputFormat, TokenCreateArgs, TokenLsArgs, TokenRevokeArgs, TokenRole,
};
use crate::cli::table;
use crate::master::server::{TokenCreated, TokenList, TokenRequest, TokenView};
use crate::master::store::Role;

const TOKENS: &str = "/apis/herd.io/v1/tokens";

pub async fn run(args: &TokenCreateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    create(&session, args, &mut std::io::stdout()).await
}

pub async fn run_ls(args: &TokenLsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    ls(&session, args, &mut std::io::stdout()).await
}

pub async fn run_revoke(args: &TokenRevokeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    revoke(&session, args, &mut std::io::stdout()).await
}

fn role(r: TokenRole) -> Role {
    match r {
        TokenRole::Admin => Role::Admin,
        TokenRole::ReadOnly => Role::ReadOnly,
        TokenRole::Join => Role::Join,
    }
}

/// The request for `args`; flags that cannot work together fail here, before any request.
pub fn request(args: &TokenCreateArgs) -> anyhow::Result<TokenRequest> {
    anyhow::ensure!(
        !args.single_use || args.role == TokenRole::Join,
        "--single-use is for join tokens only (a {} token serves many requests)",
        role(args.role)
    );
    Ok(TokenRequest {
        role: Some(role(args.role)),
        ttl_seconds: args
            .ttl
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        single_use: args.single_use,
        description: args.description.clone().unwrap_or_default(),
    })
}

/// Prints the token alone on the last line of stdout, so scripts can take `tail -n1`; hints
/// go to stderr for the same reason.
pub async fn create(s: &Session, args: &TokenCreateArgs, out: Out<'_>) -> anyhow::Result<()> {
    let req = request(args)?;
    let resp: TokenCreated = s.client.post(TOKENS, &req).await?;
    let expiry = match &resp.info.expires_at {
        Some(t) => format!("expires {t}"),
        None => "never expires".to_string(),
    };
    let id = &resp.info.id;
    match resp.info.role {
        Role::Join => eprintln!(
            "join a worker with: herd worker --join {} --token <token below>\n\
             ({}token {id}, {expiry}; revoke with `herd token revoke {id}`)",
            s.client.server(),
            if resp.info.single_use {
                "single-use "
            } else {
                ""
            },
        ),
        r => eprintln!(
            "{r} token {id} ({expiry}): use it as the token of a kubeconfig user; revoke \
             with `herd token revoke {id}`"
        ),
    }
    writeln!(out, "{}", resp.token)?;
    Ok(())
}

/// TTL column: time left, `<forever>`, or the status for a token no longer usable.
fn ttl_cell(t: &TokenView, now: chrono::DateTime<chrono::Utc>) -> String {
    if t.status != "active" {
        return format!("<{}>", t.status);
    }
    match t
        .expires_at
        .as_deref()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
    {
        Some(e) => {
            crate::util::time::human_age((e.with_timezone(&chrono::Utc) - now).num_seconds())
        }
        None => "<forever>".to_string(),
    }
}

pub fn render(list: &TokenList, now: chrono::DateTime<chrono::Utc>) -> String {
    let rows: Vec<Vec<String>> = list
        .items
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.role.to_string(),
                ttl_cell(t, now),
                t.expires_at.clone().unwrap_or_else(|| "<never>".into()),
                if t.single_use {
                    format!("{}/1", t.uses)
                } else {
                    t.uses.to_string()
                },
                super::or_none(Some(&t.description)),
            ]
        })
        .collect();
    table::render(
        &["ID", "ROLE", "TTL", "EXPIRES", "USES", "DESCRIPTION"],
        &rows,
    )
}

pub async fn ls(s: &Session, args: &TokenLsArgs, out: Out<'_>) -> anyhow::Result<()> {
    let list: TokenList = s.client.get(TOKENS).await?;
    match args.output {
        Some(OutputFormat::Json) => writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?,
        Some(OutputFormat::Yaml) => write!(out, "{}", yaml_serde::to_string(&list)?)?,
        Some(other) => anyhow::bail!("token ls prints a table, json or yaml, not {other:?}"),
        None => write!(out, "{}", render(&list, chrono::Utc::now()))?,
    }
    Ok(())
}

/// `abc123` or a whole `abc123.secret`: only the id is ever sent.
pub fn token_id(arg: &str) -> anyhow::Result<&str> {
    let id = arg.split_once('.').map_or(arg, |(id, _)| id);
    anyhow::ensure!(
        crate::master::store::valid_token_id(id),
        "{arg:?} is not a token id (letters and digits, as `herd token ls` shows)"
    );
    Ok(id)
}

/// Revokes each id; keeps going past an error and fails at the end, like `herd delete`.
pub async fn revoke(s: &Session, args: &TokenRevokeArgs, out: Out<'_>) -> anyhow::Result<()> {
    let mut failed = 0;
    for arg in &args.ids {
        let result = async {
            let id = token_id(arg)?;
            let v: TokenView = s.client.delete(&format!("{TOKENS}/{id}"), &[]).await?;
            anyhow::Ok(v)
        }
        .await;
        match result {
            Ok(v) => writeln!(out, "token {} ({}) revoked", v.id, v.role)?,
            Err(e) => {
                match crate::cli::error_message(&e) {
                    Some(m) => eprintln!("{m}"),
                    None => eprintln!("error: {e:#}"),
                }
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(super::delete::Silent.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, status: &str, expires: Option<&str>, single: bool, uses: i64) -> TokenView {
        TokenView {
            id: id.into(),
            role: Role::Join,
            status: status.into(),
            description: String::new(),
            created_at: "2026-11-24T00:00:00Z".into(),
            expires_at: expires.map(str::to_string),
            single_use: single,
            uses,
            revoked_at: None,
        }
    }

    #[test]
    fn the_table_shows_time_left_uses_and_never_a_secret() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut admin = view("a1b2c3", "active", None, false, 0);
        admin.role = Role::Admin;
        admin.description = "laptop".into();
        let list = TokenList {
            api_version: "herd.io/v1".into(),
            kind: "TokenList".into(),
            items: vec![
                admin,
                view("d4e5f6", "active", Some("2026-11-25T00:00:00Z"), true, 0),
                view("0a0b0c", "used", Some("2026-11-25T00:00:00Z"), true, 1),
                view("9f8e7d", "revoked", None, false, 4),
            ],
        };
        assert_eq!(
            render(&list, now),
            "ID      ROLE   TTL        EXPIRES               USES  DESCRIPTION\n\
             a1b2c3  admin  <forever>  <never>               0     laptop\n\
             d4e5f6  join   24h        2026-11-25T00:00:00Z  0/1   <none>\n\
             0a0b0c  join   <used>     2026-11-25T00:00:00Z  1/1   <none>\n\
             9f8e7d  join   <revoked>  <never>               4     <none>\n"
        );
    }

    #[test]
    fn a_whole_token_is_cut_to_its_id_and_junk_is_refused() {
        assert_eq!(token_id("abc123").unwrap(), "abc123");
        assert_eq!(token_id("abc123.secretpart").unwrap(), "abc123");
        assert!(token_id("../x").is_err());
        assert!(token_id("").is_err());
    }

    #[test]
    fn single_use_is_refused_for_api_tokens_before_any_request() {
        let args = TokenCreateArgs {
            role: TokenRole::Admin,
            single_use: true,
            ..Default::default()
        };
        assert!(request(&args)
            .unwrap_err()
            .to_string()
            .contains("--single-use"));
        let args = TokenCreateArgs {
            ttl: Some(std::time::Duration::from_secs(90)),
            description: Some("pi zero".into()),
            ..Default::default()
        };
        let r = request(&args).unwrap();
        assert_eq!(r.role, Some(Role::Join));
        assert_eq!(r.ttl_seconds, Some(90));
        assert_eq!(r.description, "pi zero");
    }
}

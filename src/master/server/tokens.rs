//! `/apis/herd.io/v1/tokens`: create, list and revoke bearer tokens (admin only; the auth
//! middleware enforces that). Secrets appear once, in the create response, never in a list.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{blocking, ApiError, AppState};
use crate::master::store::{valid_token_id, Role, TokenCheck, TokenInfo, TokenSpec};
use crate::util::time::now_rfc3339;

/// Tokens live 24 h unless asked otherwise, like kubeadm's join tokens.
pub const DEFAULT_TOKEN_TTL: i64 = 24 * 3600;
/// Longest TTL accepted; 0 asks for a token that never expires instead.
const MAX_TTL: i64 = 100 * 365 * 24 * 3600;
const MAX_DESCRIPTION: usize = 256;

/// Body of `POST /apis/herd.io/v1/tokens`; every field optional.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// Default: join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Default: 24 h; 0: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_use: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A token as the API shows it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub role: Role,
    /// active, expired, revoked or used.
    pub status: String,
    #[serde(default)]
    pub description: String,
    pub created_at: String,
    /// RFC 3339; absent: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub single_use: bool,
    #[serde(default)]
    pub uses: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl TokenView {
    pub fn of(t: &TokenInfo, now: i64) -> TokenView {
        let status = match t.state_at(now) {
            TokenCheck::Valid(_) => "active",
            TokenCheck::Expired => "expired",
            TokenCheck::Revoked => "revoked",
            TokenCheck::Used => "used",
            TokenCheck::Unknown => "unknown",
        };
        TokenView {
            id: t.id.clone(),
            role: t.role,
            status: status.to_string(),
            description: t.description.clone(),
            created_at: t.created_at.clone(),
            expires_at: t.expires_at.and_then(|e| {
                chrono::DateTime::from_timestamp(e, 0)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }),
            single_use: t.single_use,
            uses: t.uses,
            revoked_at: t.revoked_at.clone(),
        }
    }
}

/// The create response: the secret-bearing token, once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    pub token: String,
    /// The lifetime granted; absent: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
    #[serde(flatten)]
    pub info: TokenView,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenList {
    pub api_version: String,
    pub kind: String,
    pub items: Vec<TokenView>,
}

/// Checks a request and turns it into what to store; errors name the field.
pub fn spec_of(req: TokenRequest) -> Result<TokenSpec, String> {
    let role = req.role.unwrap_or(Role::Join);
    let ttl = match req.ttl_seconds {
        None => Some(DEFAULT_TOKEN_TTL),
        Some(0) => None,
        Some(t) if t < 0 => {
            return Err(format!(
                "ttlSeconds: {t} is negative (0 means never expires)"
            ))
        }
        Some(t) if t > MAX_TTL => {
            return Err(format!(
                "ttlSeconds: {t} is more than 100 years (0 means never expires)"
            ))
        }
        Some(t) => Some(t),
    };
    if req.single_use && role != Role::Join {
        return Err(format!(
            "singleUse: only join tokens can be single-use, not {role} tokens"
        ));
    }
    if req.description.chars().count() > MAX_DESCRIPTION {
        return Err(format!(
            "description: longer than {MAX_DESCRIPTION} characters"
        ));
    }
    if req.description.chars().any(char::is_control) {
        return Err("description: must not contain control characters".into());
    }
    Ok(TokenSpec {
        role,
        ttl_seconds: ttl,
        single_use: req.single_use,
        description: req.description,
    })
}

pub async fn create(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<TokenCreated>), ApiError> {
    let req: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("token request: {e}")))?
    };
    let spec = spec_of(req).map_err(ApiError::bad_request)?;
    let store = st.store.clone();
    let now = chrono::Utc::now().timestamp();
    let issued = blocking(move || Ok(store.issue_token(&spec, &now_rfc3339(), now)?)).await?;
    tracing::info!(id = %issued.info.id, role = %issued.info.role, "token created");
    Ok((
        axum::http::StatusCode::CREATED,
        Json(TokenCreated {
            ttl_seconds: issued.info.expires_at.map(|e| e - now),
            info: TokenView::of(&issued.info, now),
            token: issued.token,
        }),
    ))
}

pub async fn list(State(st): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let store = st.store.clone();
    let tokens = blocking(move || Ok(store.list_tokens()?)).await?;
    let now = chrono::Utc::now().timestamp();
    Ok(Json(TokenList {
        api_version: "herd.io/v1".into(),
        kind: "TokenList".into(),
        items: tokens.iter().map(|t| TokenView::of(t, now)).collect(),
    }))
}

pub async fn revoke(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    if !valid_token_id(&id) {
        return Err(ApiError::not_found("token", &id));
    }
    let store = st.store.clone();
    let i = id.clone();
    let info = blocking(move || Ok(store.revoke_token(&i, &now_rfc3339())?))
        .await?
        .ok_or_else(|| ApiError::not_found("token", &id))?;
    tracing::info!(id = %info.id, role = %info.role, "token revoked");
    Ok(Json(TokenView::of(&info, chrono::Utc::now().timestamp())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<TokenSpec, String> {
        let r: TokenRequest = serde_json::from_str(json).map_err(|e| e.to_string())?;
        spec_of(r)
    }

    #[test]
    fn defaults_are_a_reusable_join_token_for_a_day() {
        let s = req("{}").unwrap();
        assert_eq!(s.role, Role::Join);
        assert_eq!(s.ttl_seconds, Some(DEFAULT_TOKEN_TTL));
        assert!(!s.single_use && s.description.is_empty());
        assert_eq!(req(r#"{"ttlSeconds":0}"#).unwrap().ttl_seconds, None);
        let ro = req(r#"{"role":"read-only","description":"grafana"}"#).unwrap();
        assert_eq!(
            (ro.role, ro.description.as_str()),
            (Role::ReadOnly, "grafana")
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        for (body, field) in [
            (r#"{"ttlSeconds":-5}"#, "ttlSeconds"),
            (r#"{"ttlSeconds":9999999999999}"#, "ttlSeconds"),
            (r#"{"role":"admin","singleUse":true}"#, "singleUse"),
            (r#"{"role":"root"}"#, "unknown variant `root`"),
            (r#"{"rol":"admin"}"#, "unknown field `rol`"),
            (r#"{"description":"a\nb"}"#, "description"),
        ] {
            let e = req(body).unwrap_err();
            assert!(e.contains(field), "{body}: {e}");
        }
        let long = format!(r#"{{"description":"{}"}}"#, "x".repeat(300));
        assert!(req(&long).unwrap_err().contains("description"));
    }

    #[test]
    fn a_view_never_carries_the_secret_and_says_the_status() {
        let info = TokenInfo {
            id: "abc123".into(),
            role: Role::Join,
            description: "pi".into(),
            created_at: "2026-11-24T00:00:00Z".into(),
            expires_at: Some(1_795_478_400 + 60),
            single_use: true,
            uses: 1,
            revoked_at: None,
        };
        let v = TokenView::of(&info, 1_795_478_400);
        assert_eq!(v.status, "used");
        assert_eq!(v.expires_at.as_deref(), Some("2026-11-24T00:01:00Z"));
        let json = serde_json::to_string(&v).unwrap();
        assert!(
            !json.contains("secret") && !json.contains("token\""),
            "{json}"
        );
        assert_eq!(TokenView::of(&info, 1_795_478_400 + 61).status, "expired");
    }
}

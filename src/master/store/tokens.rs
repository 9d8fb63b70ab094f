//! Bearer tokens (admin, read-only, join) and per-node MQTT credentials, stored as SHA-256
//! hashes.
//!
//! Secrets are 128+ random bits, so a plain hash is enough (no password stretching needed):
//! a leaked database does not leak usable tokens. A token is `id.secret`; the id is public
//! (listed, revoked by), the secret never leaves the response that created it.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};
use crate::util::fsutil::random_hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Full API access.
    Admin,
    /// Reads only: get, list, watch and logs; no writes, no token management.
    ReadOnly,
    /// May only call the join endpoint.
    Join,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
            Role::Join => "join",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "read-only" => Some(Role::ReadOnly),
            "join" => Some(Role::Join),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a presented token is worth now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(Role),
    Expired,
    Revoked,
    /// A single-use token that already served its join.
    Used,
    /// Malformed, no such id, or the secret does not match (not told apart: that would help
    /// guessing).
    Unknown,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub role: Role,
    /// `None`: never expires.
    pub ttl_seconds: Option<i64>,
    /// Consumed by its first successful join (join tokens only).
    pub single_use: bool,
    pub description: String,
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub role: Role,
    pub description: String,
    pub created_at: String,
    /// Unix seconds; `None`: never.
    pub expires_at: Option<i64>,
    pub single_use: bool,
    /// Successful joins made with it (API requests are not counted: that would be a disk
    /// write per request).
    pub uses: i64,
    pub revoked_at: Option<String>,
}

impl TokenInfo {
    /// The verdict for this (already authenticated) token at `now` (unix seconds). Revocation
    /// wins over expiry, expiry over use, so the message names the most deliberate cause.
    pub fn state_at(&self, now: i64) -> TokenCheck {
        if self.revoked_at.is_some() {
            TokenCheck::Revoked
        } else if self.expires_at.is_some_and(|e| e < now) {
            TokenCheck::Expired
        } else if self.single_use && self.uses > 0 {
            TokenCheck::Used
        } else {
            TokenCheck::Valid(self.role)
        }
    }
}

/// A new token: the secret-bearing string, shown once, and what is stored about it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub info: TokenInfo,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Splits `id.secret`; both parts non-empty ASCII alphanumerics of bounded length.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    (ok(id, 32) && ok(secret, 128)).then_some((id, secret))
}

/// Token ids are 6 hex digits; anything else cannot name one.
pub fn valid_token_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

const TOKEN_COLUMNS: &str =
    "id, role, description, created_at, expires_at, single_use, uses, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenInfoRow, String)> {
    Ok((
        TokenInfoRow {
            id: r.get(0)?,
            role: r.get(1)?,
            description: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            single_use: r.get(5)?,
            uses: r.get(6)?,
            revoked_at: r.get(7)?,
        },
        r.get::<_, Option<String>>(8)?.unwrap_or_default(),
    ))
}

/// A row as SQLite has it (role still a string).
struct TokenInfoRow {
    id: String,
    role: String,
    description: String,
    created_at: String,
    expires_at: Option<i64>,
    single_use: bool,
    uses: i64,
    revoked_at: Option<String>,
}

impl TokenInfoRow {
    /// `None` for a role this build does not know (a newer master wrote it): such a token
    /// grants nothing.
    fn into_info(self) -> Option<TokenInfo> {
        Some(TokenInfo {
            role: Role::parse(&self.role)?,
            id: self.id,
            description: self.description,
            created_at: self.created_at,
            expires_at: self.expires_at,
            single_use: self.single_use,
            uses: self.uses,
            revoked_at: self.revoked_at,
        })
    }
}

/// Looks a presented token up: its stored info if the secret matches.
fn lookup(conn: &rusqlite::Connection, token: &str) -> Result<Option<TokenInfo>, StoreError> {
    let Some((id, secret)) = split_token(token) else {
        return Ok(None);
    };
    let row = conn
        .query_row(
            &format!("SELECT {TOKEN_COLUMNS}, secret_sha256 FROM tokens WHERE id = ?1"),
            params![id],
            token_row,
        )
        .optional()?;
    Ok(match row {
        Some((info, hash)) if hash == sha256_hex(secret) => info.into_info(),
        _ => None,
    })
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Store {
    /// Creates a token (`id.secret`, kubeadm-like) and returns it; only its hash is kept.
    /// The expiry counts from the wall clock.
    pub fn create_token(
        &self,
        role: Role,
        ttl_seconds: Option<i64>,
        now: &str,
    ) -> Result<String, StoreError> {
        let spec = TokenSpec {
            role,
            ttl_seconds,
            single_use: false,
            description: String::new(),
        };
        Ok(self.issue_token(&spec, now, now_unix())?.token)
    }

    /// Creates a token as `spec` says; `now_unix` is the clock its TTL counts from.
    pub fn issue_token(
        &self,
        spec: &TokenSpec,
        now: &str,
        now_unix: i64,
    ) -> Result<IssuedToken, StoreError> {
        let id = random_hex(3);
        let secret = random_hex(16);
        let expires_at = spec.ttl_seconds.map(|t| now_unix.saturating_add(t));
        self.lock().execute(
            "INSERT INTO tokens (id, secret_sha256, role, created_at, expires_at, description,
                                 single_use)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                sha256_hex(&secret),
                spec.role.as_str(),
                now,
                expires_at,
                spec.description,
                spec.single_use
            ],
        )?;
        Ok(IssuedToken {
            token: format!("{id}.{secret}"),
            info: TokenInfo {
                id,
                role: spec.role,
                description: spec.description.clone(),
                created_at: now.to_string(),
                expires_at,
                single_use: spec.single_use,
                uses: 0,
                revoked_at: None,
            },
        })
    }

    pub fn check_token(&self, token: &str) -> Result<TokenCheck, StoreError> {
        self.check_token_at(token, now_unix())
    }

    /// What `token` is worth at `now` (unix seconds).
    pub fn check_token_at(&self, token: &str, now: i64) -> Result<TokenCheck, StoreError> {
        Ok(lookup(&self.lock(), token)?.map_or(TokenCheck::Unknown, |t| t.state_at(now)))
    }

    /// Joins `node` with `token` in one transaction: checks the token, counts the use (which
    /// consumes a single-use token) and sets the node's MQTT password. Of two concurrent joins
    /// with one single-use token exactly one succeeds. Only admin and join tokens may join;
    /// for any other verdict nothing is written and the verdict is returned.
    pub fn join_with_token(
        &self,
        token: &str,
        node: &str,
        password: &str,
        now: &str,
        now_unix: i64,
    ) -> Result<TokenCheck, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let Some(info) = lookup(&tx, token)? else {
            return Ok(TokenCheck::Unknown);
        };
        let check = info.state_at(now_unix);
        if !matches!(check, TokenCheck::Valid(Role::Join | Role::Admin)) {
            return Ok(check);
        }
        tx.execute(
            "UPDATE tokens SET uses = uses + 1 WHERE id = ?1",
            params![info.id],
        )?;
        set_password(&tx, node, password, now)?;
        tx.commit()?;
        Ok(check)
    }

    /// Every token, oldest first, without secrets.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TOKEN_COLUMNS}, NULL FROM tokens ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], token_row)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(info) = row?.0.into_info() {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Revokes token `id` (kept, so using it says "revoked"); `None` if there is no such
    /// token. Revoking twice keeps the first time.
    pub fn revoke_token(&self, id: &str, now: &str) -> Result<Option<TokenInfo>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )?;
        let row = tx
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS}, NULL FROM tokens WHERE id = ?1"),
                params![id],
                token_row,
            )
            .optional()?;
        tx.commit()?;
        Ok(row.and_then(|(r, _)| r.into_info()))
    }

    /// Sets (replaces) a node's MQTT password; returns nothing, the caller holds the secret.
    pub fn set_node_password(
        &self,
        node: &str,
        password: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        set_password(&self.lock(), node, password, now)
    }

    /// (node, mosquitto password hash) of every node that has one, by name.
    pub fn mosquitto_credentials(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT node, mosquitto_hash FROM node_credentials
             WHERE mosquitto_hash IS NOT NULL ORDER BY node",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn check_node_password(&self, node: &str, password: &str) -> Result<bool, StoreError> {
        let hash: Option<String> = self
            .lock()
            .query_row(
                "SELECT password_sha256 FROM node_credentials WHERE node = ?1",
                params![node],
                |r| r.get(0),
            )
            .optional()?;
        Ok(hash.is_some_and(|h| h == sha256_hex(password)))
    }

    /// Whether `node` holds MQTT credentials (it joined and was not removed since).
    pub fn has_node_credentials(&self, node: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT 1 FROM node_credentials WHERE node = ?1",
                params![node],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn remove_node_password(&self, node: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "DELETE FROM node_credentials WHERE node = ?1",
            params![node],
        )?;
        Ok(())
    }
}

fn set_password(
    conn: &rusqlite::Connection,
    node: &str,
    password: &str,
    now: &str,
) -> Result<(), StoreError> {
    let mosquitto = crate::master::mosquitto::password_hash(password);
    conn.execute(
        "INSERT INTO node_credentials (node, password_sha256, created_at, mosquitto_hash)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(node) DO UPDATE SET password_sha256 = excluded.password_sha256,
         created_at = excluded.created_at, mosquitto_hash = excluded.mosquitto_hash",
        params![node, sha256_hex(password), now, mosquitto],
    )?;
    Ok(())
}

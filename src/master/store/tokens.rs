//! Bearer tokens (admin, join) and per-node MQTT credentials, stored as SHA-256 hashes.
//!
//! Secrets are 128+ random bits, so a plain hash is enough (no password stretching needed):
//! a leaked database does not leak usable tokens.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};
use crate::util::fsutil::random_hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Full API access.
    Admin,
    /// May only call the join endpoint.
    Join,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Join => "join",
        }
    }
    fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "join" => Some(Role::Join),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(Role),
    Expired,
    Unknown,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Splits `id.secret`; both parts non-empty lowercase hex/alnum.
fn split_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    (ok(id, 32) && ok(secret, 128)).then_some((id, secret))
}

impl Store {
    /// Creates a token (`id.secret`, kubeadm-like) and returns it; only its hash is kept.
    pub fn create_token(
        &self,
        role: Role,
        ttl_seconds: Option<i64>,
        now: &str,
    ) -> Result<String, StoreError> {
        let id = random_hex(3);
        let secret = random_hex(16);
        let expires = ttl_seconds.map(|t| chrono::Utc::now().timestamp() + t);
        self.lock().execute(
            "INSERT INTO tokens (id, secret_sha256, role, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, sha256_hex(&secret), role.as_str(), now, expires],
        )?;
        Ok(format!("{id}.{secret}"))
    }

    pub fn check_token(&self, token: &str) -> Result<TokenCheck, StoreError> {
        let Some((id, secret)) = split_token(token) else {
            return Ok(TokenCheck::Unknown);
        };
        let row: Option<(String, String, Option<i64>)> = self
            .lock()
            .query_row(
                "SELECT secret_sha256, role, expires_at FROM tokens WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((hash, role, expires)) = row else {
            return Ok(TokenCheck::Unknown);
        };
        if hash != sha256_hex(secret) {
            return Ok(TokenCheck::Unknown);
        }
        if expires.is_some_and(|e| e < chrono::Utc::now().timestamp()) {
            return Ok(TokenCheck::Expired);
        }
        Ok(Role::parse(&role).map_or(TokenCheck::Unknown, TokenCheck::Valid))
    }

    /// Sets (replaces) a node's MQTT password; returns nothing, the caller holds the secret.
    pub fn set_node_password(
        &self,
        node: &str,
        password: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        let mosquitto = crate::master::mosquitto::password_hash(password);
        self.lock().execute(
            "INSERT INTO node_credentials (node, password_sha256, created_at, mosquitto_hash)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(node) DO UPDATE SET password_sha256 = excluded.password_sha256,
             created_at = excluded.created_at, mosquitto_hash = excluded.mosquitto_hash",
            params![node, sha256_hex(password), now, mosquitto],
        )?;
        Ok(())
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

    pub fn remove_node_password(&self, node: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "DELETE FROM node_credentials WHERE node = ?1",
            params![node],
        )?;
        Ok(())
    }
}

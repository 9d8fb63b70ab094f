//! Joining a master: trade the join token for per-node MQTT credentials, kept in the data dir
//! (0600) so restarts do not need the token again.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::master::server::{JoinRequest, JoinResponse};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("join {url}: cannot reach the master: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("join {url}: master refused: {message}")]
    Refused { url: String, message: String },
    #[error("credentials file {path}: {message}")]
    File { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub master: String,
    pub node_name: String,
    pub mqtt_url: String,
    pub username: String,
    pub password: String,
}

pub fn load(path: &Path) -> Result<Option<Credentials>, JoinError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| JoinError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JoinError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

pub async fn join(
    master: &str,
    token: &str,
    node_name: &str,
    path: &Path,
) -> Result<Credentials, JoinError> {
    let url = format!("{}/apis/herd.io/v1/join", master.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&JoinRequest {
            token: token.to_string(),
            node_name: node_name.to_string(),
        })
        .timeout(std::time::Duration::from_secs(15))
        .send()
        .await
        .map_err(|source| JoinError::Unreachable {
            url: url.clone(),
            source,
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let message = body
            .get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| status.to_string(), str::to_string);
        return Err(JoinError::Refused { url, message });
    }
    let r: JoinResponse = resp.json().await.map_err(|e| JoinError::Refused {
        url: url.clone(),
        message: format!("bad join response: {e}"),
    })?;
    let creds = Credentials {
        master: master.to_string(),
        node_name: r.node_name,
        mqtt_url: r.mqtt_url,
        username: r.username,
        password: r.password,
    };
    let data = serde_json::to_vec_pretty(&creds).unwrap_or_default();
    crate::util::fsutil::write_atomic(path, &data, 0o600).map_err(|e| JoinError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(creds)
}

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
    #[error("join {url}: the master is https: pass --ca-hash (printed in the master's join line) so this worker can tell the real master from an impostor")]
    NeedCaHash { url: String },
    #[error("join {url}: {source}")]
    Pki {
        url: String,
        source: crate::pki::PkiError,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub master: String,
    pub node_name: String,
    pub mqtt_url: String,
    pub username: String,
    pub password: String,
    /// The cluster CA (PEM), pinned at join: every later TLS session (MQTTS) trusts only it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
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

/// The HTTP client a worker uses towards `master`: for https, one that trusts only the cluster
/// CA, fetched first over an unverified connection and accepted only if its hash is the one
/// the operator pinned (kubeadm's discovery). Returns the CA's PEM too.
async fn pinned_client(
    master: &str,
    ca_hash: Option<&str>,
) -> Result<(reqwest::Client, Option<String>), JoinError> {
    let base = master.trim_end_matches('/');
    crate::pki::install_provider();
    if !base.starts_with("https://") {
        return Ok((reqwest::Client::new(), None));
    }
    let pki_err = |source| JoinError::Pki {
        url: base.to_string(),
        source,
    };
    let Some(pin) = ca_hash else {
        return Err(JoinError::NeedCaHash {
            url: base.to_string(),
        });
    };
    let pin = crate::pki::parse_ca_hash(pin).map_err(pki_err)?;
    let url = format!("{base}{}", crate::master::server::CA_PATH);
    let unreachable = |source| JoinError::Unreachable {
        url: url.clone(),
        source,
    };
    // Unverified on purpose: what comes back is trusted only if it matches the pin.
    let discovery = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(unreachable)?;
    let pem = discovery
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(unreachable)?
        .text()
        .await
        .map_err(unreachable)?;
    let der = crate::pki::der_from_pem(&pem, Path::new(&url)).map_err(pki_err)?;
    let actual = crate::pki::ca_hash(&der);
    if actual != pin {
        return Err(pki_err(crate::pki::PkiError::HashMismatch {
            expected: pin,
            actual,
        }));
    }
    let tls = crate::pki::client_config(&der).map_err(pki_err)?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .map_err(unreachable)?;
    Ok((client, Some(pem)))
}

pub async fn join(
    master: &str,
    token: &str,
    ca_hash: Option<&str>,
    node_name: &str,
    path: &Path,
) -> Result<Credentials, JoinError> {
    let (http, ca_cert) = pinned_client(master, ca_hash).await?;
    let url = format!("{}/apis/herd.io/v1/join", master.trim_end_matches('/'));
    let resp = http
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
        ca_cert,
    };
    let data = serde_json::to_vec_pretty(&creds).unwrap_or_default();
    crate::util::fsutil::write_atomic(path, &data, 0o600).map_err(|e| JoinError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(creds)
}

//! Loads the service ruleset with `nft -f -` (one transaction: the table is replaced whole),
//! skipping the load when the text equals what was last loaded. Blocking: call from
//! `spawn_blocking`.

use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft -f: {0}")]
    Spawn(std::io::Error),
    #[error("nft -f failed: {0}")]
    Failed(String),
}

/// Runs `nft -f -` with `script` on stdin.
pub fn load(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Remembers the last ruleset loaded, so an unchanged table costs nothing.
#[derive(Default)]
pub struct Loader {
    last: Option<String>,
}

impl Loader {
    /// Loads `script` unless it is what was last loaded; true when it loaded.
    pub fn apply(&mut self, script: &str) -> Result<bool, NftError> {
        if self.last.as_deref() == Some(script) {
            return Ok(false);
        }
        // Forget the old text first: after a failure the next call must retry.
        self.last = None;
        load(script)?;
        self.last = Some(script.to_string());
        Ok(true)
    }
}

/// Makes the service range routable from the node itself when nothing routes it (a node
/// without a default route, as on an isolated LAN): locally sent packets need a route before
/// the output hook's DNAT runs. Through the bridge, so the source is the bridge address,
/// which every pod and node can answer. Never replaces a route that exists. Blocking.
pub fn ensure_service_route(bridge: std::net::Ipv4Addr) -> Result<bool, NftError> {
    let (net, bits) = crate::api::service::SERVICE_CIDR;
    let probe = std::net::Ipv4Addr::from(u32::from(net) + 1).to_string();
    let routed = Command::new("ip")
        .args(["-4", "route", "get", &probe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(NftError::Spawn)?
        .success();
    if routed {
        return Ok(false);
    }
    let out = Command::new("ip")
        .args([
            "-4",
            "route",
            "add",
            &format!("{net}/{bits}"),
            "dev",
            super::super::net::sandbox::BRIDGE,
            "src",
            &bridge.to_string(),
        ])
        .output()
        .map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(NftError::Failed(format!(
            "ip route add {net}/{bits}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

//! The embedded MQTT broker (rumqttd), configured in code and run on its own thread.
//!
//! rumqttd has no shutdown API and no way to report the port it bound, so the caller picks a
//! free port first (port 0 in tests) and the broker lives as long as the process.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use super::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("mqtt listen address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded broker thread: {0}")]
    Spawn(std::io::Error),
}

/// The username the master's own MQTT client uses; every other username is a node name.
pub const MASTER_USER: &str = "herd-master";

/// Refused logins are logged once a minute per username: a removed node retries every few
/// seconds forever. Bounded: past `CAP` names the table starts over.
#[derive(Default)]
struct RefusalLog {
    last: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

impl RefusalLog {
    const CAP: usize = 1024;
    const EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    fn should_log(&self, user: &str, now: std::time::Instant) -> bool {
        let mut map = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = map.get(user) {
            if now.duration_since(*t) < Self::EVERY {
                return false;
            }
        }
        if map.len() >= Self::CAP {
            map.clear();
        }
        map.insert(user.to_string(), now);
        true
    }
}

/// Resolves port 0 to a concrete free port, since rumqttd cannot tell us what it bound.
pub fn resolve_port(addr: SocketAddr) -> Result<SocketAddr, BrokerError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let l = TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?;
    l.local_addr()
        .map_err(|source| BrokerError::Bind { addr, source })
}

/// Starts rumqttd on `addr`. Clients authenticate with username/password: the master with
/// `MASTER_USER`, a node with its name and the password it got at join (checked against the
/// store's hash). A node's client id must equal its name, so one node cannot take over
/// another's session.
pub fn start(
    addr: SocketAddr,
    store: Arc<Store>,
    master_password: String,
) -> Result<(), BrokerError> {
    // Fail early and clearly if the port is taken, instead of inside the broker thread.
    drop(TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?);
    let mut connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: crate::proto::MAX_PAYLOAD + 4096,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let refusals = Arc::new(RefusalLog::default());
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        let store = store.clone();
        let master_password = master_password.clone();
        let refusals = refusals.clone();
        async move {
            if user == MASTER_USER {
                return pass == master_password;
            }
            if client_id != user {
                if refusals.should_log(&user, std::time::Instant::now()) {
                    tracing::warn!(%client_id, %user, "mqtt login refused: client id must equal node name");
                }
                return false;
            }
            match store.check_node_password(&user, &pass) {
                Ok(ok) => {
                    if !ok && refusals.should_log(&user, std::time::Instant::now()) {
                        tracing::warn!(node = %user, "mqtt login refused: bad credentials (repeats are logged once a minute)");
                    }
                    ok
                }
                Err(e) => {
                    tracing::error!(error = %e, "mqtt login check failed");
                    false
                }
            }
        }
    });
    let server = rumqttd::ServerSettings {
        name: "v4-1".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            // Small segments: rumqttd keeps them in memory and its RSS grows with them.
            max_segment_size: 1 << 20,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded mqtt broker stopped");
            }
        })
        .map_err(BrokerError::Spawn)?;
    // The broker binds on its own thread; wait (bounded) until it accepts, so the master's
    // own client does not start with a refused connection.
    let probe = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect_timeout(&probe, std::time::Duration::from_millis(200))
        .is_err()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn refused_logins_are_logged_once_a_minute_per_name_in_a_bounded_table() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        assert!(log.should_log("w1", t0));
        assert!(!log.should_log("w1", t0 + Duration::from_secs(2)));
        assert!(log.should_log("w2", t0 + Duration::from_secs(2)));
        assert!(log.should_log("w1", t0 + Duration::from_secs(61)));
        for i in 0..5000 {
            log.should_log(&format!("n{i}"), t0);
        }
        assert!(log.last.lock().unwrap().len() <= RefusalLog::CAP);
    }
}

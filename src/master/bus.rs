//! The master's MQTT side: one client session to the broker (embedded or external), publishing
//! desired state and consuming what workers report.
//!
//! Departure from ARCHITECTURE.md: the master reaches even the embedded broker over a loopback
//! TCP session instead of rumqttd's in-process link, so the embedded and external broker modes
//! run the same code (and the same reconnect path) — the in-process link would be a second
//! client implementation to test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};

use crate::proto::{self, topics, RpcCall, RpcRequest, RpcResponse};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("mqtt: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("{0}")]
    Url(#[from] crate::util::mqtt_url::UrlError),
    #[error("mqtt session: {0}")]
    Session(String),
}

/// A message from a worker, already split by topic; the ingest side decides what it means.
#[derive(Debug)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
}

pub struct Bus {
    client: AsyncClient,
    /// The session's options, reused (with another client id) to cut a node's session.
    options: MqttOptions,
    rpc_waiters: Mutex<HashMap<String, mpsc::Sender<RpcResponse>>>,
    /// Bumped at every (re)connect: the desired-state publisher republishes everything, since
    /// a restarted broker may have lost its retained store.
    sessions: watch::Sender<u64>,
    /// Whether the session is up now: node liveness is not judged while the master itself
    /// cannot hear anyone (a broker outage is not every node's failure).
    connected: watch::Sender<bool>,
}

impl Bus {
    /// Creates the client; nothing is sent until `run` polls the event loop.
    pub fn new(broker_url: &str, password: &str) -> Result<(Arc<Bus>, EventLoop), BusError> {
        let (host, port) = crate::util::mqtt_url::parse(broker_url)?;
        let mut opts = MqttOptions::new(super::broker::MASTER_USER, host, port);
        opts.set_credentials(super::broker::MASTER_USER, password);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(true);
        opts.set_max_packet_size(proto::MAX_PAYLOAD + 4096, proto::MAX_PAYLOAD + 4096);
        let (client, mut eventloop) = AsyncClient::new(opts.clone(), 1024);
        crate::util::mqtt_net::tune(&mut eventloop);
        let (sessions, _) = watch::channel(0);
        let (connected, _) = watch::channel(false);
        Ok((
            Arc::new(Bus {
                client,
                options: opts,
                rpc_waiters: Mutex::new(HashMap::new()),
                sessions,
                connected,
            }),
            eventloop,
        ))
    }

    pub fn sessions(&self) -> watch::Receiver<u64> {
        self.sessions.subscribe()
    }

    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.subscribe()
    }

    /// Asks a node to report its info and every pod's status again (fire and forget): after a
    /// new session the master may have missed reports sent while it was away (QoS 0, not
    /// retained), e.g. when only the master restarted behind an external broker.
    pub async fn request_resync(&self, node: &str) -> Result<(), BusError> {
        let req = RpcRequest {
            v: proto::VERSION,
            id: crate::util::fsutil::random_hex(8),
            call: RpcCall::Resync,
        };
        self.client
            .publish(
                topics::rpc_request(node),
                QoS::AtLeastOnce,
                false,
                proto::encode(&req),
            )
            .await?;
        Ok(())
    }

    /// QoS 0 on purpose: the whole desired picture is republished on every new session, so a
    /// message lost with a dropped connection is resent anyway; and QoS 1's PUBACK from the
    /// broker (which does not set TCP_NODELAY) stalls the broker's next write to us behind our
    /// delayed ACK for ~40 ms — the status report that follows a bind.
    pub async fn publish_retained(&self, topic: String, payload: Vec<u8>) -> Result<(), BusError> {
        self.client
            .publish(topic, QoS::AtMostOnce, true, payload)
            .await?;
        Ok(())
    }

    /// Ends `node`'s live session, if it has one: a brief connection under the node's client id
    /// (with the master's credentials) makes the broker drop the node's connection, since an
    /// MQTT client id has one session at a time; then it disconnects. Used once the node's
    /// credentials are gone, so its reconnect is refused. Bounded by a few seconds.
    pub async fn cut_session(&self, node: &str) -> Result<(), BusError> {
        let mut opts = self.options.clone();
        opts.set_client_id(node.to_string());
        opts.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 8);
        let connected = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        let _ = client.try_disconnect();
        // Flush the DISCONNECT; the broker then closes, which ends the poll with an error.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
        match connected {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BusError::Session(e.to_string())),
            Err(_) => Err(BusError::Session(
                "no answer from the broker within 5 s".into(),
            )),
        }
    }

    /// Sends an RPC to a node; answers arrive on the returned channel until `eof`.
    pub async fn rpc(
        &self,
        node: &str,
        call: RpcCall,
    ) -> Result<(String, mpsc::Receiver<RpcResponse>), BusError> {
        let id = crate::util::fsutil::random_hex(8);
        let (tx, rx) = mpsc::channel(64);
        self.waiters().insert(id.clone(), tx);
        let req = RpcRequest {
            v: proto::VERSION,
            id: id.clone(),
            call,
        };
        if let Err(e) = self
            .client
            .publish(
                topics::rpc_request(node),
                QoS::AtLeastOnce,
                false,
                proto::encode(&req),
            )
            .await
        {
            self.waiters().remove(&id);
            return Err(e.into());
        }
        Ok((id, rx))
    }

    /// Stops routing answers for `id` (the HTTP client went away) and tells the node.
    pub async fn cancel_rpc(&self, node: &str, id: &str) {
        self.waiters().remove(id);
        let req = RpcRequest {
            v: proto::VERSION,
            id: crate::util::fsutil::random_hex(8),
            call: RpcCall::Cancel {
                target: id.to_string(),
            },
        };
        let _ = self
            .client
            .publish(
                topics::rpc_request(node),
                QoS::AtLeastOnce,
                false,
                proto::encode(&req),
            )
            .await;
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<RpcResponse>>> {
        self.rpc_waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn route_rpc(&self, topic: &str, payload: &[u8]) {
        let resp: RpcResponse = match proto::decode(topic, payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "dropping malformed rpc response");
                return;
            }
        };
        let tx = self.waiters().get(&resp.id).cloned();
        let Some(tx) = tx else { return };
        let eof = resp.eof;
        let id = resp.id.clone();
        if tx.try_send(resp).is_err() || eof {
            // A reader that cannot keep up or has gone loses the stream rather than stalling
            // the event loop that every node's traffic goes through.
            self.waiters().remove(&id);
        }
    }

    /// Drives the MQTT session forever: reconnects with backoff, resubscribes, and hands
    /// worker messages to `inbox`.
    pub async fn run(self: Arc<Self>, mut eventloop: EventLoop, inbox: mpsc::Sender<Incoming>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(200);
                    tracing::info!("connected to mqtt broker");
                    for f in topics::master_filters() {
                        if let Err(e) = self.client.subscribe(f, QoS::AtLeastOnce).await {
                            tracing::error!(error = %e, "mqtt subscribe failed");
                        }
                    }
                    self.connected.send_replace(true);
                    self.sessions.send_modify(|n| *n += 1);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    tracing::trace!(topic = %p.topic, "mqtt message");
                    if p.topic.contains("/rpc/resp/") {
                        self.route_rpc(&p.topic, &p.payload);
                        continue;
                    }
                    let msg = Incoming {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    };
                    if inbox.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.connected.send_replace(false);
                    tracing::warn!(error = %e, retry_in = ?backoff, "mqtt connection lost");
                    tokio::time::sleep(backoff).await;
                    // Capped like the agents' (1.6 s): after a broker outage the master is
                    // back as soon as its nodes, not up to 5 s later.
                    backoff = (backoff * 2).min(Duration::from_millis(1600));
                }
            }
        }
    }
}

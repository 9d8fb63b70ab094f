//! The MQTT gate: the only MQTT listener the LAN sees when the broker is embedded. It ends
//! TLS and enforces per-node topic ACLs, then forwards to rumqttd on a loopback port.
//!
//! Why a gate: rumqttd has no topic ACLs (NOTES.md) and its TLS stack is a second rustls
//! version. The gate reads each packet a client sends (rumqttc's MQTT 3.1.1 codec), checks
//! CONNECT (a login is required; the will must be the node's own `online` topic), PUBLISH
//! and SUBSCRIBE against the client's identity, and forwards the original bytes. What the
//! broker sends back is copied untouched. A violation closes the connection: MQTT 3.1.1 has
//! no way to refuse a single PUBLISH, and a node that tries is misbehaving anyway. The
//! password itself is still checked by the broker's auth handler.

use std::net::SocketAddr;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::broker::MASTER_USER;
use crate::proto::topics::{self, Topic};

/// Who a connection authenticated as (its CONNECT username).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Master,
    Node(String),
}

impl Identity {
    fn of(username: &str) -> Identity {
        if username == MASTER_USER {
            Identity::Master
        } else {
            Identity::Node(username.to_string())
        }
    }
}

/// Pure: may `id` publish on `topic`? A node only on the topics a worker reports on, and
/// only under its own name (never another's, never desired state or RPC requests).
pub fn may_publish(id: &Identity, topic: &str) -> bool {
    let Identity::Node(me) = id else { return true };
    match topics::parse(topic) {
        Some(
            Topic::Online { node }
            | Topic::Info { node }
            | Topic::Heartbeat { node }
            | Topic::Observed { node, .. }
            | Topic::RpcResponse { node, .. },
        ) => node == me,
        _ => false,
    }
}

/// Pure: may `id` subscribe to `filter`? A node only to its own desired state and RPC
/// requests, and to the cluster-wide service and ingress trees every node needs for its
/// service rules, DNS and ingress proxy (read-only: `may_publish` refuses them). The node's
/// name cannot hold `+` or `#` (DNS-1123), so a filter that starts with its own prefix
/// cannot reach beyond it, wildcards or not.
pub fn may_subscribe(id: &Identity, filter: &str) -> bool {
    let Identity::Node(me) = id else { return true };
    let within = |prefix: &str| filter == prefix || filter.starts_with(&format!("{prefix}/"));
    within(&topics::desired_index(me))
        || filter == topics::rpc_request(me)
        || within(crate::proto::services::SERVICES)
        || within(crate::proto::services::INGRESSES)
        || filter == topics::net_routes()
}

/// Why a connection was cut (logged with the node's name).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Denied {
    #[error("no username: anonymous clients are refused")]
    Anonymous,
    #[error("client id {client_id:?} differs from username {user:?}")]
    ClientId { client_id: String, user: String },
    #[error("will on {0:?}: a node's will must be its own online topic")]
    Will(String),
    #[error("publish to {0:?} denied")]
    Publish(String),
    #[error("subscribe to {0:?} denied")]
    Subscribe(String),
    #[error("first packet must be CONNECT")]
    NotConnect,
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("packet of {size} bytes exceeds the limit of {max}")]
    TooBig { size: usize, max: usize },
}

/// Pure: checks the first packet and returns the identity it establishes.
pub fn admit(connect: &Packet) -> Result<Identity, Denied> {
    let Packet::Connect(c) = connect else {
        return Err(Denied::NotConnect);
    };
    let Some(login) = c.login.as_ref().filter(|l| !l.username.is_empty()) else {
        return Err(Denied::Anonymous);
    };
    let id = Identity::of(&login.username);
    if let Identity::Node(n) = &id {
        if &c.client_id != n {
            return Err(Denied::ClientId {
                client_id: c.client_id.clone(),
                user: n.clone(),
            });
        }
        if let Some(w) = &c.last_will {
            if w.topic != topics::online(n) {
                return Err(Denied::Will(w.topic.clone()));
            }
        }
    }
    Ok(id)
}

/// Pure: checks one later packet from the client.
pub fn check(id: &Identity, packet: &Packet) -> Result<(), Denied> {
    match packet {
        Packet::Publish(p) if !may_publish(id, &p.topic) => Err(Denied::Publish(p.topic.clone())),
        Packet::Subscribe(s) => match s.filters.iter().find(|f| !may_subscribe(id, &f.path)) {
            Some(f) => Err(Denied::Subscribe(f.path.clone())),
            None => Ok(()),
        },
        Packet::Connect(_) => Err(Denied::Malformed("second CONNECT".into())),
        _ => Ok(()),
    }
}

/// Cuts one complete frame off `buf` (None: need more bytes) and parses a copy of it.
fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<(BytesMut, Packet)>, Denied> {
    let header = match rumqttc::mqttbytes::check(buf.iter(), max) {
        Ok(h) => h,
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size)) => {
            return Err(Denied::TooBig { size, max })
        }
        Err(e) => return Err(Denied::Malformed(format!("{e:?}"))),
    };
    let frame = buf.split_to(header.frame_length());
    let packet =
        Packet::read(&mut frame.clone(), max).map_err(|e| Denied::Malformed(format!("{e:?}")))?;
    Ok(Some((frame, packet)))
}

const MAX_PACKET: usize = crate::proto::MAX_PAYLOAD + 4096;

/// Serves `listen` forever, forwarding each admitted connection to the broker at `upstream`.
pub async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "mqtt gate: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        tokio::spawn(async move {
            let res = match tls {
                Some(acceptor) => {
                    // A client that never finishes its handshake must not hold a task forever.
                    let hs = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    )
                    .await;
                    match hs {
                        Ok(Ok(stream)) => relay(stream, peer, upstream).await,
                        Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
                None => relay(tcp, peer, upstream).await,
            };
            if let Err(e) = res {
                tracing::warn!(%peer, "mqtt gate: {e}");
            }
        });
    }
}

async fn relay<S>(client: S, peer: SocketAddr, upstream: SocketAddr) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let mut buf = BytesMut::with_capacity(4096);
    // CONNECT first, within the broker's own connection timeout.
    let (frame, packet) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if let Some(f) = next_frame(&mut buf, MAX_PACKET).map_err(|e| e.to_string())? {
                return Ok::<_, String>(f);
            }
            if from_client
                .read_buf(&mut buf)
                .await
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("closed before CONNECT".into());
            }
        }
    })
    .await
    .map_err(|_| "no CONNECT within 5 s".to_string())??;
    let id = admit(&packet).map_err(|e| format!("refused: {e}"))?;
    let who = match &id {
        Identity::Master => MASTER_USER.to_string(),
        Identity::Node(n) => n.clone(),
    };
    tracing::debug!(node = %who, %peer, "mqtt gate: admitted");
    let broker = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("broker at {upstream}: {e}"))?;
    let _ = broker.set_nodelay(true);
    let (mut from_broker, mut to_broker) = broker.into_split();
    to_broker
        .write_all(&frame)
        .await
        .map_err(|e| e.to_string())?;
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_broker, &mut to_client).await;
        let _ = to_client.shutdown().await;
    });
    let up = async {
        loop {
            while let Some((frame, packet)) = next_frame(&mut buf, MAX_PACKET)? {
                check(&id, &packet)?;
                to_broker
                    .write_all(&frame)
                    .await
                    .map_err(|e| Denied::Malformed(e.to_string()))?;
            }
            match from_client.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            }
        }
    };
    let res: Result<(), Denied> = up.await;
    // Either side ending ends both.
    down.abort();
    let _ = to_broker.shutdown().await;
    res.map_err(|e| format!("node {who}: connection cut: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::{Connect, LastWill, Login, Publish, Subscribe, SubscribeFilter};
    use rumqttc::mqttbytes::QoS;

    fn node(n: &str) -> Identity {
        Identity::Node(n.into())
    }

    #[test]
    fn a_node_publishes_only_its_own_reports() {
        let a = node("a");
        for t in [
            "herd/v1/nodes/a/online",
            "herd/v1/nodes/a/info",
            "herd/v1/nodes/a/heartbeat",
            "herd/v1/nodes/a/observed/default/web",
            "herd/v1/nodes/a/rpc/resp/abc",
        ] {
            assert!(may_publish(&a, t), "{t}");
        }
        for t in [
            "herd/v1/nodes/b/observed/default/web",
            "herd/v1/nodes/b/heartbeat",
            "herd/v1/nodes/a/desired",
            "herd/v1/nodes/a/desired/default/web",
            "herd/v1/nodes/a/rpc/req",
            "herd/v1/nodes/a",
            "elsewhere",
            "herd/v1/nodes/+/online",
        ] {
            assert!(!may_publish(&a, t), "{t}");
        }
        assert!(may_publish(&Identity::Master, "herd/v1/nodes/a/desired"));
    }

    #[test]
    fn no_node_may_publish_services_or_ingresses() {
        for t in [
            "herd/v1/services",
            "herd/v1/services/default/web",
            "herd/v1/ingresses/default/site",
        ] {
            assert!(!may_publish(&node("a"), t), "{t}");
            assert!(may_publish(&Identity::Master, t), "{t}");
        }
    }

    #[test]
    fn a_node_subscribes_only_to_its_own_desired_state_and_requests() {
        let a = node("a");
        for f in [
            "herd/v1/nodes/a/desired",
            "herd/v1/nodes/a/desired/#",
            "herd/v1/nodes/a/desired/default/web",
            "herd/v1/nodes/a/rpc/req",
            "herd/v1/services/#",
            "herd/v1/services",
            "herd/v1/services/default/web",
            "herd/v1/ingresses/#",
        ] {
            assert!(may_subscribe(&a, f), "{f}");
        }
        for f in [
            "#",
            "herd/#",
            "herd/v1/nodes/+/desired/#",
            "herd/v1/nodes/b/desired/#",
            "herd/v1/nodes/a/observed/#",
            "herd/v1/nodes/a/#",
            "herd/v1/nodes/a/desiredX",
            "herd/v1/nodes/a/rpc/#",
            "herd/v1/servicesX",
            "herd/v1/+/default/web",
            "herd/v1/#",
        ] {
            assert!(!may_subscribe(&a, f), "{f}");
        }
        assert!(may_subscribe(
            &Identity::Master,
            "herd/v1/nodes/+/observed/#"
        ));
    }

    #[test]
    fn every_node_reads_the_pod_routes_and_none_writes_them() {
        for n in ["a", "b"] {
            assert!(may_subscribe(&node(n), "herd/v1/net/routes"));
            assert!(!may_publish(&node(n), "herd/v1/net/routes"));
        }
        for f in ["herd/v1/net/#", "herd/v1/net/+", "herd/v1/net/routes/#"] {
            assert!(!may_subscribe(&node("a"), f), "{f}");
        }
        assert!(may_publish(&Identity::Master, "herd/v1/net/routes"));
    }

    fn connect(client_id: &str, user: Option<&str>, will: Option<&str>) -> Packet {
        let mut c = Connect::new(client_id);
        c.login = user.map(|u| Login::new(u, "pw"));
        c.last_will = will.map(|t| LastWill::new(t, "false", QoS::AtLeastOnce, true));
        Packet::Connect(c)
    }

    #[test]
    fn connect_needs_a_login_a_matching_client_id_and_an_own_will() {
        assert_eq!(
            admit(&connect("a", Some("a"), Some("herd/v1/nodes/a/online"))),
            Ok(node("a"))
        );
        assert_eq!(
            admit(&connect("x", Some(MASTER_USER), None)),
            Ok(Identity::Master)
        );
        assert_eq!(admit(&connect("a", None, None)), Err(Denied::Anonymous));
        assert!(matches!(
            admit(&connect("b", Some("a"), None)),
            Err(Denied::ClientId { .. })
        ));
        assert!(matches!(
            admit(&connect("a", Some("a"), Some("herd/v1/nodes/b/online"))),
            Err(Denied::Will(_))
        ));
        assert_eq!(admit(&Packet::PingReq), Err(Denied::NotConnect));
    }

    #[test]
    fn frames_are_cut_whole_and_checked() {
        let a = node("a");
        let mut buf = BytesMut::new();
        let publish = Publish::new("herd/v1/nodes/b/heartbeat", QoS::AtMostOnce, vec![1, 2, 3]);
        Packet::Publish(publish)
            .write(&mut buf, MAX_PACKET)
            .unwrap();
        let sub = Subscribe {
            pkid: 1,
            filters: vec![SubscribeFilter::new(
                "herd/v1/nodes/a/rpc/req".into(),
                QoS::AtLeastOnce,
            )],
        };
        Packet::Subscribe(sub).write(&mut buf, MAX_PACKET).unwrap();
        let whole = buf.len();
        // A partial frame waits for more bytes.
        let mut part = BytesMut::from(&buf[..3]);
        assert!(next_frame(&mut part, MAX_PACKET).unwrap().is_none());
        let (f1, p1) = next_frame(&mut buf, MAX_PACKET).unwrap().unwrap();
        assert!(matches!(check(&a, &p1), Err(Denied::Publish(_))));
        let (f2, p2) = next_frame(&mut buf, MAX_PACKET).unwrap().unwrap();
        assert_eq!(check(&a, &p2), Ok(()));
        assert_eq!(
            f1.len() + f2.len(),
            whole,
            "frames are forwarded byte for byte"
        );
        assert!(buf.is_empty());
        let mut junk = BytesMut::from(&[0xF0u8, 0x00][..]);
        assert!(next_frame(&mut junk, MAX_PACKET).is_err());
    }
}

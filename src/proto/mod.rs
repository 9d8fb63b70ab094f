//! MQTT topic names and message types shared by master and worker (protocol version 1).
//!
//! Payloads are JSON with a `v` field. Unknown fields are ignored so that a newer peer can add
//! fields; a payload that does not decode is an error the caller logs and drops.

pub mod services;
pub mod topics;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::{Node, Pod, PodStatus};

pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("topic {topic}: payload is not valid JSON for {what}: {source}")]
    Decode {
        topic: String,
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("topic {topic}: unsupported protocol version {v} (this build speaks {VERSION})")]
    Version { topic: String, v: u32 },
    #[error("topic {topic}: payload of {len} bytes exceeds the {max} byte limit")]
    TooLarge {
        topic: String,
        len: usize,
        max: usize,
    },
}

/// Largest payload either side accepts; a pod spec is a few KB.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Every node's pod subnet and the address to route it through: `net/routes`, retained,
/// published by the master whenever a node joins, changes address or leaves. Workers add a
/// route per other node (host-gw) and learn their own subnet from their own entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetRoutes {
    pub v: u32,
    /// The whole pod address block (`--cluster-cidr`): traffic to it is not masqueraded.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    /// Sorted by node name; nodes without a subnet are left out, `nodeIP` is empty for a
    /// node that reported no address (no route to it, but it still learns its subnet).
    pub routes: Vec<NodeRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRoute {
    pub node: String,
    #[serde(rename = "nodeIP")]
    pub node_ip: String,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
}

/// One pod the master wants on a node: `nodes/{node}/desired/{ns}/{pod}`, retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredPod {
    pub v: u32,
    pub pod: Pod,
    /// What the pod's volumes reference, so a node only ever receives the ConfigMaps and
    /// Secrets of pods bound to it (the gate limits it to its own desired topics). A change of
    /// a referenced object changes this payload, which is how updates reach the node.
    #[serde(default, skip_serializing_if = "VolumeSources::is_empty")]
    pub sources: VolumeSources,
}

/// Content the master resolved for a pod's volumes, by the name the pod uses. `None` = the
/// object does not exist (the worker keeps the container waiting unless `optional`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSources {
    /// ConfigMap name → key → base64 bytes (`data` and `binaryData` merged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_maps: BTreeMap<String, Option<BTreeMap<String, String>>>,
    /// Secret name → key → base64 bytes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Option<BTreeMap<String, String>>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, Option<BoundClaim>>,
    /// Set instead of the ConfigMap/Secret content when it cannot be sent (the message would
    /// exceed `MAX_PAYLOAD`); the worker shows it as the reason the container waits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl VolumeSources {
    pub fn is_empty(&self) -> bool {
        self.config_maps.is_empty()
            && self.secrets.is_empty()
            && self.claims.is_empty()
            && self.error.is_empty()
    }
}

/// A claim as a node needs it: its uid (part of the directory name) and where it is bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundClaim {
    pub uid: String,
    /// `None` while the claim is Pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The full set of pods the master wants on a node: `nodes/{node}/desired`, retained.
///
/// Retained per-pod messages alone cannot tell a worker that reconnects which pods were deleted
/// meanwhile; this index can. A pod runs only when it is in the index *and* its spec arrived.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredIndex {
    pub v: u32,
    /// `(namespace, name, uid)` of every pod assigned to the node.
    pub pods: Vec<PodKey>,
    /// Directory names (`<ns>-<claim>-<uid>`) of every claim bound to the node. A claim
    /// directory on the node that is not listed and not used by a running pod is deleted
    /// (reclaim policy Delete). `None` from a master that does not send it: delete nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What a worker saw of one pod: `nodes/{node}/observed/{ns}/{pod}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedPod {
    pub v: u32,
    pub uid: String,
    /// The pod generation the report is about.
    pub generation: i64,
    /// True once the worker has stopped and removed every container of the pod after the
    /// master withdrew it; the master then deletes the row.
    #[serde(default)]
    pub gone: bool,
    #[serde(default)]
    pub status: PodStatus,
}

/// Node registration: `nodes/{node}/info`, retained, sent on every connect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub v: u32,
    pub node: Node,
}

/// `nodes/{node}/heartbeat`: kept in master memory only (SD-card wear).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub v: u32,
    /// Worker's wall clock, RFC 3339.
    pub time: String,
    pub pods_running: u32,
    pub memory_used_bytes: u64,
    pub load1: f64,
}

/// A request relayed from the master API to a worker: `nodes/{node}/rpc/req`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcRequest {
    pub v: u32,
    /// Random id; the worker answers on `nodes/{node}/rpc/resp/{id}`.
    pub id: String,
    pub call: RpcCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RpcCall {
    /// Send container logs; with `follow`, keep sending until `Cancel` or the container is gone.
    #[serde(rename_all = "camelCase")]
    Logs {
        namespace: String,
        pod: String,
        uid: String,
        container: String,
        tail_lines: Option<u64>,
        follow: bool,
        #[serde(default)]
        previous: bool,
    },
    /// Stop a streaming call.
    Cancel { target: String },
    /// Re-publish `info` and every observed pod.
    Resync,
}

/// One chunk of an RPC answer: `nodes/{node}/rpc/resp/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcResponse {
    pub v: u32,
    pub id: String,
    /// Sequence number, so the master can detect loss on QoS 1 redelivery.
    pub seq: u64,
    #[serde(default)]
    pub data: String,
    #[serde(default)]
    pub error: Option<String>,
    /// Last chunk.
    #[serde(default)]
    pub eof: bool,
}

/// Decodes a JSON payload, bounding its size and checking the protocol version.
pub fn decode<T: serde::de::DeserializeOwned + Versioned>(
    topic: &str,
    payload: &[u8],
) -> Result<T, ProtoError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ProtoError::TooLarge {
            topic: topic.to_string(),
            len: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    // The version first: a message from another protocol version may differ in any field,
    // and "unsupported version 2" says more than the field it happens to lack.
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    if let Ok(VersionOnly { v }) = serde_json::from_slice(payload) {
        if v != VERSION {
            return Err(ProtoError::Version {
                topic: topic.to_string(),
                v,
            });
        }
    }
    let msg: T = serde_json::from_slice(payload).map_err(|source| ProtoError::Decode {
        topic: topic.to_string(),
        what: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("message"),
        source,
    })?;
    if msg.version() != VERSION {
        return Err(ProtoError::Version {
            topic: topic.to_string(),
            v: msg.version(),
        });
    }
    Ok(msg)
}

/// For sibling modules' message types.
macro_rules! versioned {
    ($($t:ty),*) => {$(impl $crate::proto::Versioned for $t { fn version(&self) -> u32 { self.v } })*};
}
pub(crate) use versioned;

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no custom
    // serializers that return errors.
    serde_json::to_vec(msg).unwrap_or_default()
}

pub trait Versioned {
    fn version(&self) -> u32;
}

macro_rules! versioned_impl {
    ($($t:ty),*) => {$(impl Versioned for $t { fn version(&self) -> u32 { self.v } })*};
}
versioned_impl!(
    NetRoutes,
    DesiredPod,
    DesiredIndex,
    ObservedPod,
    NodeInfo,
    Heartbeat,
    RpcRequest,
    RpcResponse
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_encode_and_decode() {
        let obs = ObservedPod {
            v: VERSION,
            uid: "u".into(),
            generation: 3,
            gone: false,
            status: PodStatus {
                message: "hi".into(),
                ..Default::default()
            },
        };
        let back: ObservedPod = decode("t", &encode(&obs)).unwrap();
        assert_eq!(back, obs);
        let req = RpcRequest {
            v: VERSION,
            id: "abc".into(),
            call: RpcCall::Logs {
                namespace: "default".into(),
                pod: "p".into(),
                uid: "u".into(),
                container: "c".into(),
                tail_lines: Some(5),
                follow: true,
                previous: false,
            },
        };
        let back: RpcRequest = decode("t", &encode(&req)).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn unknown_fields_are_ignored_so_newer_peers_can_add_them() {
        let hb: Heartbeat = decode(
            "t",
            br#"{"v":1,"time":"x","pods_running":1,"memory_used_bytes":2,"load1":0.5,"future":true}"#,
        )
        .unwrap();
        assert_eq!(hb.pods_running, 1);
    }

    #[test]
    fn bad_payloads_are_errors_that_name_the_topic() {
        let e = decode::<Heartbeat>("herd/v1/nodes/a/heartbeat", b"{nope").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("topic herd/v1/nodes/a/heartbeat:"),
            "{e}"
        );
        assert!(matches!(
            decode::<DesiredIndex>("t", br#"{"v":2,"pods":[]}"#),
            Err(ProtoError::Version { v: 2, .. })
        ));
        // A newer message shaped differently is still reported by its version.
        assert!(matches!(
            decode::<Heartbeat>("t", br#"{"v":2,"stamp":1}"#),
            Err(ProtoError::Version { v: 2, .. })
        ));
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert!(matches!(
            decode::<DesiredIndex>("t", &big),
            Err(ProtoError::TooLarge { .. })
        ));
        assert!(decode::<DesiredPod>("t", br#"{"v":1,"pod":42}"#).is_err());
        assert!(decode::<RpcRequest>("t", br#"{"v":1,"id":"x","call":{"kind":"nope"}}"#).is_err());
    }
}

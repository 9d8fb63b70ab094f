//! Everything a worker (or anyone holding broker credentials) publishes reaches the master's
//! ingest. Whatever the topic and payload, ingest, the payload decoders and the topic parser
//! must answer `Ok` or `Err`, never panic.
//!
//! Input layout: byte 0 picks a topic shape (see [`topic`]); the raw-topic shapes take byte 1
//! as the topic's length and the next that many bytes as its text; the rest is the payload.
//! The text `@UID@` in a payload is replaced by the uid of the pod the store holds, so the
//! fuzzer can reach status updates without guessing a random uid.
//!
//! Each iteration starts from a fresh in-memory store holding node `w1` and pod `default/web`
//! bound to it (cheap, and keeps every input reproducible on its own).
//!
//! Invariants checked on top of "no panic":
//! - a topic that parses prints back to the same string;
//! - ingest refuses topics that are not herd v1 or that workers never publish to;
//! - a node cannot change a pod bound to another node, nor register under another's name;
//! - a decoded message has the current protocol version and survives encode + decode.
#![no_main]

use herd::api::pod::Container;
use herd::api::{Node, Pod};
use herd::master::bus::Incoming;
use herd::master::ingest::{handle, Liveness};
use herd::master::store::Store;
use herd::proto::topics::{self, Topic};
use herd::proto::{self, Versioned};
use libfuzzer_sys::fuzz_target;

const NODE: &str = "w1";
const OTHER: &str = "w2";
const NS: &str = "default";
const POD: &str = "web";

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let (topic, payload) = topic(shape, rest);
    check_topic(&topic);
    check_decoders(&topic, &payload);
    check_ingest(topic, payload);
});

/// The topic for `shape`, and the bytes left for the payload.
fn topic(shape: u8, rest: &[u8]) -> (String, Vec<u8>) {
    let named = match shape % 14 {
        0 => topics::online(NODE),
        1 => topics::info(NODE),
        2 => topics::heartbeat(NODE),
        3 => topics::observed(NODE, NS, POD),
        4 => topics::observed(OTHER, NS, POD),
        5 => topics::observed(NODE, NS, "missing"),
        6 => topics::desired_index(NODE),
        7 => topics::desired(NODE, NS, POD),
        8 => topics::rpc_request(NODE),
        9 => topics::rpc_response(NODE, "abc"),
        10 => topics::info(OTHER),
        11 => topics::online(OTHER),
        12 => return raw_topic(&format!("{}/nodes/", topics::PREFIX), rest),
        _ => return raw_topic("", rest),
    };
    (named, rest.to_vec())
}

fn raw_topic(prefix: &str, rest: &[u8]) -> (String, Vec<u8>) {
    let Some((&len, rest)) = rest.split_first() else {
        return (prefix.to_string(), Vec::new());
    };
    let len = usize::from(len).min(rest.len());
    let (name, payload) = rest.split_at(len);
    let topic = format!("{prefix}{}", String::from_utf8_lossy(name));
    (topic, payload.to_vec())
}

fn check_topic(topic: &str) {
    let Some(parsed) = topics::parse(topic) else {
        return;
    };
    let rebuilt = match &parsed {
        Topic::Online { node } => topics::online(node),
        Topic::Info { node } => topics::info(node),
        Topic::Heartbeat { node } => topics::heartbeat(node),
        Topic::DesiredIndex { node } => topics::desired_index(node),
        Topic::Desired { node, ns, pod } => topics::desired(node, ns, pod),
        Topic::Observed { node, ns, pod } => topics::observed(node, ns, pod),
        Topic::RpcRequest { node } => topics::rpc_request(node),
        Topic::RpcResponse { node, id } => topics::rpc_response(node, id),
        Topic::NetRoutes => topics::net_routes(),
    };
    assert_eq!(rebuilt, topic, "topic parsed as {parsed:?}");
}

fn check_decoders(topic: &str, payload: &[u8]) {
    round_trip::<proto::DesiredPod>(topic, payload);
    round_trip::<proto::DesiredIndex>(topic, payload);
    round_trip::<proto::ObservedPod>(topic, payload);
    round_trip::<proto::NodeInfo>(topic, payload);
    round_trip::<proto::RpcRequest>(topic, payload);
    round_trip::<proto::RpcResponse>(topic, payload);
    // The one float: serde_json's default float parser may land one ulp off after printing,
    // so compare heartbeats field by field with a tolerance on `load1`.
    if let Ok(hb) = proto::decode::<proto::Heartbeat>(topic, payload) {
        assert_eq!(hb.v, proto::VERSION);
        let back: proto::Heartbeat = match proto::decode(topic, &proto::encode(&hb)) {
            Ok(back) => back,
            Err(e) => panic!("heartbeat {hb:?} does not decode after encode: {e}"),
        };
        assert_eq!(
            (&back.time, back.pods_running, back.memory_used_bytes),
            (&hb.time, hb.pods_running, hb.memory_used_bytes)
        );
        let tolerance = hb.load1.abs() * 1e-12;
        assert!(
            (back.load1 - hb.load1).abs() <= tolerance,
            "{hb:?} -> {back:?}"
        );
    }
}

fn round_trip<T>(topic: &str, payload: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + Versioned + PartialEq + std::fmt::Debug,
{
    let Ok(msg) = proto::decode::<T>(topic, payload) else {
        return;
    };
    assert_eq!(msg.version(), proto::VERSION);
    let encoded = proto::encode(&msg);
    match proto::decode::<T>(topic, &encoded) {
        Ok(back) => assert_eq!(back, msg, "changed on encode + decode"),
        Err(e) => panic!(
            "{msg:?} does not decode after encode: {e}\nencoded: {}",
            String::from_utf8_lossy(&encoded)
        ),
    }
}

/// A store with node `w1` (joined) and pod `default/web` bound to it; returns the pod's uid.
fn seeded_store() -> (Store, String) {
    let store = Store::open_in_memory().expect("in-memory store opens");
    let mut node = Node {
        api_version: "v1".into(),
        kind: "Node".into(),
        ..Default::default()
    };
    node.metadata.name = NODE.into();
    store.create(node, "t").expect("seed node is valid");
    // It joined: the master accepts reports only from nodes holding credentials.
    store
        .set_node_password(NODE, "pw", "t")
        .expect("seed credentials are stored");
    let mut pod = Pod::default();
    pod.metadata.name = POD.into();
    pod.metadata.namespace = Some(NS.into());
    pod.spec.node_name = Some(NODE.into());
    pod.spec.containers.push(Container {
        name: "c".into(),
        image: "busybox".into(),
        ..Default::default()
    });
    let pod = store.create(pod, "t").expect("seed pod is valid");
    (store, pod.metadata.uid)
}

fn check_ingest(topic: String, payload: Vec<u8>) {
    let (store, uid) = seeded_store();
    let payload = replace(&payload, b"@UID@", uid.as_bytes());
    let liveness = Liveness::default();
    let pod_before: Option<Pod> = store.get(NS, POD).expect("store reads");
    let msg = Incoming { topic, payload };
    let result = handle(&store, &liveness, &msg);

    let Some(parsed) = topics::parse(&msg.topic) else {
        assert!(result.is_err(), "accepted a foreign topic {:?}", msg.topic);
        return;
    };
    let (speaker, worker_topic) = match &parsed {
        Topic::Online { node }
        | Topic::Info { node }
        | Topic::Heartbeat { node }
        | Topic::Observed { node, .. } => (*node, true),
        Topic::DesiredIndex { node }
        | Topic::Desired { node, .. }
        | Topic::RpcRequest { node }
        | Topic::RpcResponse { node, .. } => (*node, false),
        // The master's own cluster-wide message: no node may publish it.
        Topic::NetRoutes => {
            assert!(result.is_err(), "accepted a node's publish on {parsed:?}");
            return;
        }
    };
    if !worker_topic {
        assert!(
            result.is_err(),
            "accepted {parsed:?}: workers never publish there"
        );
    }
    // Only the pod's own node may change it.
    if speaker != NODE {
        let pod_after: Option<Pod> = store.get(NS, POD).expect("store reads");
        assert_eq!(
            pod_after, pod_before,
            "{parsed:?} changed a pod bound to {NODE}"
        );
    }
    // A node registers itself only under its own name.
    for node in store.list::<Node>(None).expect("store reads") {
        let name = node.metadata.name.as_str();
        assert!(
            name == NODE || name == speaker,
            "{parsed:?} registered node {name:?}"
        );
    }
    if matches!(parsed, Topic::Info { .. }) && result.is_ok() && !msg.payload.is_empty() {
        let stored: Option<Node> = store.get("", speaker).expect("store reads");
        assert!(
            stored.is_some_and(|n| n.is_ready()),
            "accepted info for {speaker:?} but the node is not ready"
        );
    }
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

//! What the master does with worker messages: node registration and liveness, pod status.
//!
//! Every message is checked against its topic (a node may only speak about itself and about
//! pods bound to it) and malformed ones are logged and dropped, never a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::bus::Incoming;
use super::store::{Store, StoreError};
use crate::api::meta::set_condition;
use crate::api::{Condition, Node, Pod};
use crate::proto::{self, topics::Topic, NodeInfo, ObservedPod};
use crate::util::time::now_rfc3339;

/// Heartbeats live here, in memory only: writing them to SQLite would wear SD cards for no
/// state change.
#[derive(Default)]
pub struct Liveness {
    last_beat: Mutex<HashMap<String, Instant>>,
}

impl Liveness {
    pub fn beat(&self, node: &str) {
        self.map().insert(node.to_string(), Instant::now());
    }
    pub fn forget(&self, node: &str) {
        self.map().remove(node);
    }
    /// Nodes whose last heartbeat is older than `timeout`.
    pub fn silent_for(&self, timeout: Duration) -> Vec<String> {
        let now = Instant::now();
        self.map()
            .iter()
            .filter(|(_, t)| now.duration_since(**t) > timeout)
            .map(|(n, _)| n.clone())
            .collect()
    }
    /// Restarts every node's clock: while the master's own broker session is down it hears no
    /// one, and silence it cannot hear is no evidence against a node.
    pub fn excuse_all(&self) {
        let now = Instant::now();
        for t in self.map().values_mut() {
            *t = now;
        }
    }
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.last_beat.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn ready_condition(status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        ..Default::default()
    }
}

/// Marks a node NotReady (status Unknown: the master lost contact, it does not know the
/// board's real state). Writes only if it was not already so.
pub fn mark_node_lost(store: &Store, node: &str, why: &str) -> Result<(), StoreError> {
    let now = now_rfc3339();
    match store.update::<Node, StoreError>("", node, |n| {
        if n.status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "Unknown")
        {
            return Ok(());
        }
        set_condition(
            &mut n.status.conditions,
            ready_condition("Unknown", "NodeStatusUnknown", why),
            &now,
        );
        Ok(())
    }) {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn run(store: Arc<Store>, liveness: Arc<Liveness>, mut inbox: mpsc::Receiver<Incoming>) {
    while let Some(msg) = inbox.recv().await {
        let store = store.clone();
        let liveness = liveness.clone();
        // SQLite calls block (fsync); keep them off the async workers.
        let res = tokio::task::spawn_blocking(move || handle(&store, &liveness, &msg)).await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "dropping worker message");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Proto(#[from] proto::ProtoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("topic {topic}: {problem}")]
    Refused { topic: String, problem: String },
}

fn refused(topic: &str, problem: impl Into<String>) -> IngestError {
    IngestError::Refused {
        topic: topic.to_string(),
        problem: problem.into(),
    }
}

pub fn handle(store: &Store, liveness: &Liveness, msg: &Incoming) -> Result<(), IngestError> {
    let topic = msg.topic.as_str();
    let Some(parsed) = crate::proto::topics::parse(topic) else {
        return Err(refused(topic, "not a herd v1 topic"));
    };
    match parsed {
        Topic::Online { node } => match msg.payload.as_slice() {
            b"false" => {
                let _span = tracing::info_span!("node", node).entered();
                tracing::info!("node went offline (mqtt last will)");
                liveness.forget(node);
                mark_node_lost(store, node, "node's MQTT session ended (last will)")?;
                Ok(())
            }
            b"true" | b"" => Ok(()),
            _ => Err(refused(topic, "payload must be true or false")),
        },
        Topic::Info { node } => {
            if msg.payload.is_empty() {
                return Ok(());
            }
            let info: NodeInfo = proto::decode(topic, &msg.payload)?;
            if info.node.metadata.name != node {
                return Err(refused(
                    topic,
                    format!("node info names {:?}", info.node.metadata.name),
                ));
            }
            register(store, info.node).map_err(|e| match e {
                RegisterError::NotJoined => refused(
                    topic,
                    "node holds no credentials (never joined, or removed): not registered",
                ),
                RegisterError::Store(e) => e.into(),
            })?;
            liveness.beat(node);
            Ok(())
        }
        Topic::Heartbeat { node } => {
            let _hb: proto::Heartbeat = proto::decode(topic, &msg.payload)?;
            liveness.beat(node);
            // A node that was marked lost and beats again is back.
            let now = now_rfc3339();
            match store.update::<Node, StoreError>("", node, |n| {
                if !n.is_ready() {
                    set_condition(
                        &mut n.status.conditions,
                        ready_condition(
                            "True",
                            "KubeletReady",
                            "herd worker is posting ready status",
                        ),
                        &now,
                    );
                }
                Ok(())
            }) {
                Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Topic::Observed { node, ns, pod } => {
            let obs: ObservedPod = proto::decode(topic, &msg.payload)?;
            tracing::debug!(%pod, phase = %obs.status.phase, "observed status received");
            observe(store, node, ns, pod, obs)
        }
        _ => Err(refused(topic, "not a topic workers publish to")),
    }
}

#[derive(Debug, thiserror::Error)]
enum RegisterError {
    #[error("node has not joined")]
    NotJoined,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Updates the node row from the worker's self-description; creates it if the node joined but
/// never registered before. A node without credentials (removed, or never joined: an external
/// broker may let anyone publish) is not created: a late or retained message from a removed
/// node must not bring it back.
fn register(store: &Store, reported: Node) -> Result<(), RegisterError> {
    let name = reported.metadata.name.clone();
    let now = now_rfc3339();
    let apply = |n: &mut Node| {
        for (k, v) in &reported.metadata.labels {
            n.metadata.labels.insert(k.clone(), v.clone());
        }
        n.status.node_info = reported.status.node_info.clone();
        n.status.capacity = reported.status.capacity.clone();
        n.status.allocatable = reported.status.allocatable.clone();
        n.status.addresses = reported.status.addresses.clone();
        set_condition(
            &mut n.status.conditions,
            ready_condition(
                "True",
                "KubeletReady",
                "herd worker is posting ready status",
            ),
            &now,
        );
    };
    match store.update::<Node, StoreError>("", &name, |n| {
        apply(n);
        Ok(())
    }) {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound { .. }) => {
            if !store.has_node_credentials(&name)? {
                return Err(RegisterError::NotJoined);
            }
            let mut n = Node {
                api_version: "v1".into(),
                kind: "Node".into(),
                ..Default::default()
            };
            n.metadata.name = name;
            apply(&mut n);
            Ok(store.create(n, &now).map(|_| ())?)
        }
        Err(e) => Err(e.into()),
    }
}

fn observe(
    store: &Store,
    node: &str,
    ns: &str,
    name: &str,
    obs: ObservedPod,
) -> Result<(), IngestError> {
    let topic = crate::proto::topics::observed(node, ns, name);
    let Some(pod) = store.get::<Pod>(ns, name)? else {
        return Ok(()); // already gone: a late report
    };
    if pod.metadata.uid != obs.uid {
        return Ok(()); // about an older pod of the same name
    }
    if pod.spec.node_name.as_deref() != Some(node) {
        return Err(refused(&topic, "pod is not bound to this node"));
    }
    // Behind an external broker a removed node may still be connected: its word no longer
    // counts, even about pods still bound to it.
    if !store.has_node_credentials(node)? {
        return Err(refused(
            &topic,
            "node holds no credentials (removed): status not accepted",
        ));
    }
    let _span = tracing::info_span!("pod", pod = %format!("{ns}/{name}"), node).entered();
    if obs.gone {
        if pod.metadata.deletion_timestamp.is_some() {
            store.delete::<Pod>(ns, name, Some(&obs.uid))?;
            tracing::info!("pod deleted after the worker stopped it");
        }
        return Ok(());
    }
    let host_ip = store
        .get::<Node>("", node)?
        .and_then(|n| n.internal_ip().map(str::to_string));
    // Workers re-send observed state after every reconnect: a soft (no-fsync) commit is enough.
    store.update_soft::<Pod, StoreError>(ns, name, |p| {
        let scheduled: Vec<Condition> = p
            .status
            .conditions
            .iter()
            .filter(|c| c.type_ == "PodScheduled")
            .cloned()
            .collect();
        let mut status = obs.status.clone();
        status.conditions.retain(|c| c.type_ != "PodScheduled");
        status.conditions.splice(0..0, scheduled);
        if status.host_ip.is_none() {
            status.host_ip = host_ip.clone();
        }
        status.observed_generation = Some(obs.generation);
        p.status = status;
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::Container;

    fn msg(topic: String, payload: &[u8]) -> Incoming {
        Incoming {
            topic,
            payload: payload.to_vec(),
        }
    }

    fn node_info(name: &str) -> Vec<u8> {
        let mut n = Node::default();
        n.metadata.name = name.into();
        n.status.node_info.architecture = "amd64".into();
        proto::encode(&NodeInfo { v: 1, node: n })
    }

    #[test]
    fn a_registered_node_is_ready_and_its_last_will_makes_it_unknown() {
        let s = Store::open_in_memory().unwrap();
        s.set_node_password("w1", "pw", "t").unwrap();
        let l = Liveness::default();
        handle(
            &s,
            &l,
            &msg(crate::proto::topics::info("w1"), &node_info("w1")),
        )
        .unwrap();
        let n: Node = s.get("", "w1").unwrap().unwrap();
        assert!(n.is_ready());
        handle(&s, &l, &msg(crate::proto::topics::online("w1"), b"false")).unwrap();
        let n: Node = s.get("", "w1").unwrap().unwrap();
        assert!(!n.is_ready());
    }

    #[test]
    fn malformed_payloads_and_foreign_topics_are_errors_not_panics() {
        let s = Store::open_in_memory().unwrap();
        let l = Liveness::default();
        for (t, p) in [
            (crate::proto::topics::info("w1"), &b"{not json"[..]),
            (crate::proto::topics::info("w1"), &node_info("w2")[..]),
            (crate::proto::topics::heartbeat("w1"), b"[]"),
            (crate::proto::topics::online("w1"), b"maybe"),
            (
                crate::proto::topics::observed("w1", "default", "x"),
                b"\xff\xfe",
            ),
            ("herd/v1/nodes/w1/desired".to_string(), b"{}"),
            ("random/topic".to_string(), b"{}"),
        ] {
            assert!(handle(&s, &l, &msg(t.clone(), p)).is_err(), "{t}");
        }
        assert!(s.list::<Node>(None).unwrap().is_empty());
    }

    #[test]
    fn a_node_without_credentials_is_not_registered_by_its_info() {
        let s = Store::open_in_memory().unwrap();
        let l = Liveness::default();
        let e = handle(
            &s,
            &l,
            &msg(crate::proto::topics::info("gone"), &node_info("gone")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no credentials"), "{e}");
        assert!(s.list::<Node>(None).unwrap().is_empty());
        assert!(l.silent_for(Duration::ZERO).is_empty());
        // A node that joined and registered keeps updating after its row exists.
        s.set_node_password("w1", "pw", "t").unwrap();
        let info = msg(crate::proto::topics::info("w1"), &node_info("w1"));
        handle(&s, &l, &info).unwrap();
        s.remove_node_password("w1").unwrap();
        s.delete::<Node>("", "w1", None).unwrap();
        assert!(handle(&s, &l, &info).is_err(), "a removed node came back");
        assert!(s.list::<Node>(None).unwrap().is_empty());
    }

    #[test]
    fn a_node_cannot_report_on_a_pod_bound_elsewhere() {
        let s = Store::open_in_memory().unwrap();
        let l = Liveness::default();
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.spec.node_name = Some("w1".into());
        p.spec.containers.push(Container::default());
        let p = s.create(p, "t").unwrap();
        let obs = ObservedPod {
            v: 1,
            uid: p.metadata.uid.clone(),
            generation: 1,
            gone: false,
            status: Default::default(),
        };
        s.set_node_password("w1", "pw", "t").unwrap();
        s.set_node_password("w2", "pw", "t").unwrap();
        let t = crate::proto::topics::observed("w2", "default", "web");
        assert!(handle(&s, &l, &msg(t, &proto::encode(&obs))).is_err());
        let t = crate::proto::topics::observed("w1", "default", "web");
        let mut running = obs.clone();
        running.status.phase = crate::api::PodPhase::Running;
        handle(&s, &l, &msg(t, &proto::encode(&running))).unwrap();
        let got: Pod = s.get("default", "web").unwrap().unwrap();
        assert_eq!(got.status.phase, crate::api::PodPhase::Running);
        // Once removed, its reports no longer count.
        s.remove_node_password("w1").unwrap();
        let mut failed = running.clone();
        failed.status.phase = crate::api::PodPhase::Failed;
        let t = crate::proto::topics::observed("w1", "default", "web");
        let e = handle(&s, &l, &msg(t, &proto::encode(&failed))).unwrap_err();
        assert!(e.to_string().contains("no credentials"), "{e}");
        let got: Pod = s.get("default", "web").unwrap().unwrap();
        assert_eq!(got.status.phase, crate::api::PodPhase::Running);
    }
}

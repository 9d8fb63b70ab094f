//! Publishes each node's desired pods as retained MQTT messages, level-triggered: it computes
//! the whole desired picture from the store and publishes only what differs from what it last
//! published; after every broker (re)connect it republishes everything, because a restarted
//! broker may have lost its retained store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::api::{Pod, PodStatus};
use crate::master::bus::Bus;
use crate::master::store::{Store, StoreError};
use crate::proto::{self, topics, DesiredIndex, DesiredPod, PodKey};

/// node → (ns, name) → payload bytes; plus the index payload per node.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Picture {
    pub pods: BTreeMap<String, BTreeMap<(String, String), Vec<u8>>>,
    pub index: BTreeMap<String, Vec<u8>>,
}

/// Pure: the retained messages the store implies. Status is stripped (it flows the other way).
pub fn picture(pods: &[Pod], nodes: &BTreeSet<String>) -> Picture {
    let mut pic = Picture::default();
    for n in nodes {
        pic.pods.entry(n.clone()).or_default();
    }
    for p in pods {
        let Some(node) = p.spec.node_name.clone() else {
            continue;
        };
        let mut desired = p.clone();
        desired.status = PodStatus::default();
        // Every status write bumps the resource version; it must not make the desired
        // message differ, or each status report would be echoed back to the worker.
        desired.metadata.resource_version = String::new();
        let payload = proto::encode(&DesiredPod {
            v: proto::VERSION,
            pod: desired,
        });
        pic.pods.entry(node).or_default().insert(
            (p.metadata.ns().to_string(), p.metadata.name.clone()),
            payload,
        );
    }
    // One map, not a search per entry: the picture is rebuilt on every store change.
    let uids: std::collections::HashMap<(&str, &str), &str> = pods
        .iter()
        .map(|p| {
            (
                (p.metadata.ns(), p.metadata.name.as_str()),
                p.metadata.uid.as_str(),
            )
        })
        .collect();
    for (node, set) in &pic.pods {
        let keys = set
            .keys()
            .map(|(ns, name)| {
                let uid = uids
                    .get(&(ns.as_str(), name.as_str()))
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                PodKey {
                    namespace: ns.clone(),
                    name: name.clone(),
                    uid,
                }
            })
            .collect();
        pic.index.insert(
            node.clone(),
            proto::encode(&DesiredIndex {
                v: proto::VERSION,
                pods: keys,
            }),
        );
    }
    pic
}

/// Pure: the (topic, payload) publishes that take the broker from `old` to `new`; an empty
/// payload clears a retained message. Pod messages go before the index so a worker never sees
/// an index entry whose spec cannot have arrived.
pub fn diff(old: &Picture, new: &Picture) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let empty = BTreeMap::new();
    let nodes: BTreeSet<&String> = old.pods.keys().chain(new.pods.keys()).collect();
    for node in &nodes {
        let o = old.pods.get(*node).unwrap_or(&empty);
        let n = new.pods.get(*node).unwrap_or(&empty);
        for (key, payload) in n {
            if o.get(key) != Some(payload) {
                out.push((topics::desired(node, &key.0, &key.1), payload.clone()));
            }
        }
    }
    for node in &nodes {
        if let Some(idx) = new.index.get(*node) {
            if old.index.get(*node) != Some(idx) {
                out.push((topics::desired_index(node), idx.clone()));
            }
        }
    }
    for node in &nodes {
        let o = old.pods.get(*node).unwrap_or(&empty);
        let n = new.pods.get(*node).unwrap_or(&empty);
        for key in o.keys() {
            if !n.contains_key(key) {
                out.push((topics::desired(node, &key.0, &key.1), Vec::new()));
            }
        }
    }
    out
}

fn load(store: &Store) -> Result<Picture, StoreError> {
    let pods: Vec<Pod> = store.list(None)?;
    let nodes: BTreeSet<String> = store
        .list::<crate::api::Node>(None)?
        .into_iter()
        .map(|n| n.metadata.name)
        .collect();
    Ok(picture(&pods, &nodes))
}

pub async fn run(store: Arc<Store>, bus: Arc<Bus>) {
    let mut changes = store.subscribe();
    let mut sessions = bus.sessions();
    let mut published = Picture::default();
    let mut session = 0;
    let mut resync_pending = false;
    loop {
        let current_session = *sessions.borrow_and_update();
        if current_session != session {
            // New broker session: assume it knows nothing.
            published = Picture::default();
            session = current_session;
            resync_pending = true;
        }
        if session > 0 {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || load(&s)).await {
                Ok(Ok(new)) => {
                    let mut ok = true;
                    for (topic, payload) in diff(&published, &new) {
                        if let Err(e) = bus.publish_retained(topic, payload).await {
                            tracing::warn!(error = %e, "publishing desired state failed");
                            ok = false;
                            break;
                        }
                    }
                    if ok && resync_pending {
                        // Desired state first, so a node answering the resync already has it.
                        for node in new.pods.keys() {
                            if let Err(e) = bus.request_resync(node).await {
                                tracing::warn!(%node, error = %e, "resync request failed");
                                ok = false;
                                break;
                            }
                        }
                        resync_pending = !ok;
                    }
                    if ok {
                        published = new;
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "reading desired state failed"),
                Err(e) => tracing::error!(error = %e, "desired-state pass panicked"),
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            r = sessions.changed() => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>, uid: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.uid = uid.into();
        p.spec.node_name = node.map(Into::into);
        p
    }

    fn nodes(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn first_publish_sends_each_pod_then_the_index() {
        let new = picture(
            &[pod("a", Some("w1"), "u1"), pod("b", None, "u2")],
            &nodes(&["w1", "w2"]),
        );
        let out = diff(&Picture::default(), &new);
        let topics: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            topics,
            [
                "herd/v1/nodes/w1/desired/default/a",
                "herd/v1/nodes/w1/desired",
                "herd/v1/nodes/w2/desired"
            ]
        );
    }

    #[test]
    fn an_unchanged_picture_publishes_nothing_and_status_changes_do_not_count() {
        let p = pod("a", Some("w1"), "u1");
        let mut q = p.clone();
        q.status.message = "running".into();
        q.metadata.resource_version = "42".into();
        let old = picture(&[p], &nodes(&["w1"]));
        let new = picture(&[q], &nodes(&["w1"]));
        assert!(diff(&old, &new).is_empty());
    }

    #[test]
    fn a_removed_pod_clears_its_retained_message_after_the_index_drops_it() {
        let old = picture(&[pod("a", Some("w1"), "u1")], &nodes(&["w1"]));
        let new = picture(&[], &nodes(&["w1"]));
        let out = diff(&old, &new);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, "herd/v1/nodes/w1/desired");
        assert_eq!(
            out[1],
            ("herd/v1/nodes/w1/desired/default/a".to_string(), vec![])
        );
    }
}

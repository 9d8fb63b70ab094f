//! Publishes each node's desired pods as retained MQTT messages, level-triggered: it computes
//! the whole desired picture from the store and publishes only what differs from what it last
//! published; after every broker (re)connect it republishes everything, because a restarted
//! broker may have lost its retained store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;

use crate::api::configmap::ConfigMap;
use crate::api::pvc::PersistentVolumeClaim;
use crate::api::secret::Secret;
use crate::api::volume::references;
use crate::api::{Pod, PodStatus};
use crate::master::bus::Bus;
use crate::master::store::{Store, StoreError};
use crate::proto::{self, topics, BoundClaim, DesiredIndex, DesiredPod, PodKey, VolumeSources};

/// node → (ns, name) → payload bytes; plus the index payload per node.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Picture {
    pub pods: BTreeMap<String, BTreeMap<(String, String), Vec<u8>>>,
    pub index: BTreeMap<String, Vec<u8>>,
}

/// The objects pod volumes may reference, by (namespace, name).
#[derive(Default, Debug, Clone)]
pub struct Referenced {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
    pub claims: BTreeMap<(String, String), PersistentVolumeClaim>,
}

impl Referenced {
    pub fn new(
        config_maps: Vec<ConfigMap>,
        secrets: Vec<Secret>,
        claims: Vec<PersistentVolumeClaim>,
    ) -> Self {
        let key = |m: &crate::api::ObjectMeta| (m.ns().to_string(), m.name.clone());
        Referenced {
            config_maps: config_maps
                .into_iter()
                .map(|c| (key(&c.metadata), c))
                .collect(),
            secrets: secrets.into_iter().map(|s| (key(&s.metadata), s)).collect(),
            claims: claims.into_iter().map(|c| (key(&c.metadata), c)).collect(),
        }
    }
}

/// Pure: the content a pod's volumes reference, resolved in the pod's namespace.
pub fn sources_for(pod: &Pod, refs: &Referenced) -> VolumeSources {
    let b64 = base64::engine::general_purpose::STANDARD;
    let ns = pod.metadata.ns().to_string();
    let wanted = references(&pod.spec);
    let mut out = VolumeSources::default();
    for name in wanted.config_maps {
        let data = refs.config_maps.get(&(ns.clone(), name.clone())).map(|c| {
            c.files()
                .into_iter()
                .map(|(k, v)| (k, b64.encode(v)))
                .collect()
        });
        out.config_maps.insert(name, data);
    }
    for name in wanted.secrets {
        let data = refs
            .secrets
            .get(&(ns.clone(), name.clone()))
            .map(|s| s.data.clone());
        out.secrets.insert(name, data);
    }
    for name in wanted.claims {
        let bound = refs
            .claims
            .get(&(ns.clone(), name.clone()))
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .map(|c| BoundClaim {
                uid: c.metadata.uid.clone(),
                node: c.node().map(str::to_string),
            });
        out.claims.insert(name, bound);
    }
    out
}

/// Pure: the retained messages the store implies. Status is stripped (it flows the other way).
pub fn picture(pods: &[Pod], nodes: &BTreeSet<String>, refs: &Referenced) -> Picture {
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
        let mut msg = DesiredPod {
            v: proto::VERSION,
            sources: sources_for(&desired, refs),
            pod: desired,
        };
        let mut payload = proto::encode(&msg);
        if payload.len() > proto::MAX_PAYLOAD {
            // Never publish what the broker and worker would refuse (it would also stall every
            // other publish): send the pod without the content, and say why.
            let size = payload.len();
            msg.sources.config_maps.clear();
            msg.sources.secrets.clear();
            msg.sources.error = format!(
                "the ConfigMaps and Secrets this pod mounts are {size} bytes encoded, more than the {} byte message limit",
                proto::MAX_PAYLOAD
            );
            payload = proto::encode(&msg);
        }
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
    let mut claims: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in refs.claims.values() {
        if let Some(n) = c.node() {
            claims.entry(n).or_default().push(c.dir_name());
        }
    }
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
                claims: Some(claims.get(node.as_str()).cloned().unwrap_or_default()),
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
    // Secrets are decrypted to be listed: only when some pod mounts anything at all.
    let any_volumes = pods
        .iter()
        .any(|p| p.spec.node_name.is_some() && !p.spec.volumes.is_empty());
    let refs = if any_volumes {
        Referenced::new(store.list(None)?, store.list(None)?, store.list(None)?)
    } else {
        Referenced::new(Vec::new(), Vec::new(), store.list(None)?)
    };
    Ok(picture(&pods, &nodes, &refs))
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
            &Referenced::default(),
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
        let old = picture(&[p], &nodes(&["w1"]), &Referenced::default());
        let new = picture(&[q], &nodes(&["w1"]), &Referenced::default());
        assert!(diff(&old, &new).is_empty());
    }

    #[test]
    fn a_removed_pod_clears_its_retained_message_after_the_index_drops_it() {
        let old = picture(
            &[pod("a", Some("w1"), "u1")],
            &nodes(&["w1"]),
            &Referenced::default(),
        );
        let new = picture(&[], &nodes(&["w1"]), &Referenced::default());
        let out = diff(&old, &new);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, "herd/v1/nodes/w1/desired");
        assert_eq!(
            out[1],
            ("herd/v1/nodes/w1/desired/default/a".to_string(), vec![])
        );
    }

    #[test]
    fn a_changed_configmap_changes_only_the_payload_of_pods_using_it() {
        use crate::api::volume::{ConfigMapSource, SecretSource, Volume};
        let mut p = pod("a", Some("w1"), "u1");
        p.spec.volumes = vec![
            Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapSource {
                    name: "app".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "sec".into(),
                secret: Some(SecretSource {
                    secret_name: "db".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        let other = pod("b", Some("w2"), "u2");
        let mut cm = ConfigMap::default();
        cm.metadata.name = "app".into();
        cm.data.insert("k".into(), "one".into());
        let refs = Referenced::new(vec![cm.clone()], vec![], vec![]);
        let old = picture(&[p.clone(), other.clone()], &nodes(&["w1", "w2"]), &refs);
        let sent: DesiredPod =
            serde_json::from_slice(&old.pods["w1"][&("default".into(), "a".into())]).unwrap();
        assert_eq!(
            sent.sources.config_maps["app"].as_ref().unwrap()["k"],
            "b25l"
        );
        // The secret does not exist: sent as missing, so the worker can say so.
        assert_eq!(sent.sources.secrets["db"], None);
        cm.data.insert("k".into(), "two".into());
        let refs = Referenced::new(vec![cm], vec![], vec![]);
        let new = picture(&[p, other], &nodes(&["w1", "w2"]), &refs);
        let out = diff(&old, &new);
        let topics: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(topics, ["herd/v1/nodes/w1/desired/default/a"]);
    }

    #[test]
    fn content_over_the_message_limit_is_replaced_by_an_error() {
        use crate::api::volume::{SecretSource, Volume};
        let mut p = pod("a", Some("w1"), "u1");
        p.spec.volumes = vec![Volume {
            name: "sec".into(),
            secret: Some(SecretSource {
                secret_name: "big".into(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let mut s = Secret::default();
        s.metadata.name = "big".into();
        s.data.insert("k".into(), "A".repeat(proto::MAX_PAYLOAD));
        let pic = picture(
            &[p],
            &nodes(&["w1"]),
            &Referenced::new(vec![], vec![s], vec![]),
        );
        let payload = &pic.pods["w1"][&("default".into(), "a".into())];
        assert!(payload.len() < proto::MAX_PAYLOAD);
        let sent: DesiredPod = serde_json::from_slice(payload).unwrap();
        assert!(sent.sources.secrets.is_empty());
        assert!(
            sent.sources.error.contains("message limit"),
            "{}",
            sent.sources.error
        );
    }

    #[test]
    fn each_node_index_lists_the_claims_bound_to_it() {
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = "data".into();
        c.metadata.uid = "cu".into();
        c.metadata
            .annotations
            .insert(crate::api::pvc::SELECTED_NODE.into(), "w2".into());
        let refs = Referenced::new(vec![], vec![], vec![c]);
        let pic = picture(&[], &nodes(&["w1", "w2"]), &refs);
        let idx = |n: &str| -> DesiredIndex { serde_json::from_slice(&pic.index[n]).unwrap() };
        assert_eq!(idx("w1").claims, Some(vec![]));
        assert_eq!(idx("w2").claims, Some(vec!["default-data-cu".to_string()]));
    }
}

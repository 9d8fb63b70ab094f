//! The worker's picture of every Service and Ingress, built from the retained messages under
//! `herd/v1/services` and `herd/v1/ingresses` (pure: the agent feeds it topic + payload).

use std::collections::BTreeMap;

use crate::api::ingress::Ingress;
use crate::proto::services::{self, IngressState, NetIndex, NetTopic, ServiceState};

type Key = (String, String);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetTable {
    pub services: BTreeMap<Key, ServiceState>,
    pub ingresses: BTreeMap<Key, Ingress>,
    /// The last index received, if any since the agent started.
    pub index: Option<NetIndex>,
}

impl NetTable {
    /// Applies one message; true when the table changed. Malformed payloads are logged and
    /// dropped; a message whose body names another object than its topic is refused.
    pub fn apply(&mut self, topic: &str, payload: &[u8]) -> bool {
        let Some(t) = services::parse(topic) else {
            return false;
        };
        let before = self.clone();
        match t {
            NetTopic::Index => {
                if payload.is_empty() {
                    return false;
                }
                match crate::proto::decode::<NetIndex>(topic, payload) {
                    Ok(idx) => {
                        // Prune what the master no longer has (a clear we missed while away).
                        self.services.retain(|k, _| idx.services.contains(k));
                        self.ingresses.retain(|k, _| idx.ingresses.contains(k));
                        self.index = Some(idx);
                    }
                    Err(e) => tracing::warn!(error = %e, "dropping malformed service index"),
                }
            }
            NetTopic::Service { ns, name } => {
                let key = (ns.to_string(), name.to_string());
                if payload.is_empty() {
                    self.services.remove(&key);
                } else {
                    match crate::proto::decode::<ServiceState>(topic, payload) {
                        Ok(s) if s.namespace == ns && s.name == name => {
                            self.services.insert(key, s);
                        }
                        Ok(_) => {
                            tracing::warn!(%topic, "dropping service whose name does not match its topic")
                        }
                        Err(e) => tracing::warn!(error = %e, "dropping malformed service"),
                    }
                }
            }
            NetTopic::Ingress { ns, name } => {
                let key = (ns.to_string(), name.to_string());
                if payload.is_empty() {
                    self.ingresses.remove(&key);
                } else {
                    match crate::proto::decode::<IngressState>(topic, payload) {
                        Ok(s)
                            if s.ingress.metadata.ns() == ns && s.ingress.metadata.name == name =>
                        {
                            self.ingresses.insert(key, s.ingress);
                        }
                        Ok(_) => {
                            tracing::warn!(%topic, "dropping ingress whose name does not match its topic")
                        }
                        Err(e) => tracing::warn!(error = %e, "dropping malformed ingress"),
                    }
                }
            }
        }
        *self != before
    }

    /// Whether the table is the master's whole picture: an index arrived since the agent
    /// started and every service it names is here. Until then the rules a previous agent
    /// loaded stay (an agent restarting without its master must not wipe the services its
    /// pods use, nor load half of them while the retained messages stream in).
    pub fn synced(&self) -> bool {
        self.index
            .as_ref()
            .is_some_and(|i| i.services.iter().all(|k| self.services.contains_key(k)))
    }

    /// A service by namespace and name.
    pub fn service(&self, ns: &str, name: &str) -> Option<&ServiceState> {
        self.services.get(&(ns.to_string(), name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::services::service_topic;

    fn state(name: &str) -> Vec<u8> {
        crate::proto::encode(&ServiceState {
            v: 1,
            namespace: "default".into(),
            name: name.into(),
            ..Default::default()
        })
    }

    #[test]
    fn messages_add_replace_and_clear_and_the_index_prunes() {
        let mut t = NetTable::default();
        assert!(t.apply(&service_topic("default", "a"), &state("a")));
        assert!(!t.apply(&service_topic("default", "a"), &state("a")));
        assert!(t.apply(&service_topic("default", "b"), &state("b")));
        // A body naming another service than its topic is refused.
        assert!(!t.apply(&service_topic("default", "c"), &state("a")));
        assert!(!t.apply(&service_topic("default", "x"), b"{not json"));
        assert!(t.apply(&service_topic("default", "b"), b""));
        assert_eq!(t.services.len(), 1);
        let idx = crate::proto::encode(&NetIndex {
            v: 1,
            services: vec![],
            ingresses: vec![],
        });
        assert!(!t.synced());
        assert!(t.apply("herd/v1/services", &idx));
        assert!(t.services.is_empty());
        assert!(t.synced());
        let idx = crate::proto::encode(&NetIndex {
            v: 1,
            services: vec![("default".into(), "z".into())],
            ingresses: vec![],
        });
        assert!(t.apply("herd/v1/services", &idx));
        assert!(!t.synced(), "z has not arrived yet");
        assert!(t.apply(&service_topic("default", "z"), &state("z")));
        assert!(t.synced());
    }
}

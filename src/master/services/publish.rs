//! Publishes every Service (with its ready endpoints) and Ingress to all workers as retained
//! messages, level-triggered like `controllers::desired`: the whole picture is computed from
//! the store after each change, only differences are published, and everything is
//! republished after a broker (re)connect.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::api::ingress::Ingress;
use crate::api::service::{Endpoints, Service};
use crate::master::bus::Bus;
use crate::master::store::{Store, StoreError};
use crate::proto::services::{
    ingress_topic, service_topic, Backend, IngressState, NetIndex, PortState, ServiceState,
    SERVICES,
};
use crate::proto::{self};

/// topic → payload of every retained message under the service trees.
pub type Picture = BTreeMap<String, Vec<u8>>;

/// Pure: the data-plane view of one service given its Endpoints.
pub fn state(svc: &Service, eps: Option<&Endpoints>) -> ServiceState {
    let subsets = eps.map(|e| e.subsets.as_slice()).unwrap_or_default();
    let ports = svc
        .spec
        .ports
        .iter()
        .filter_map(|sp| {
            let mut endpoints: Vec<Backend> = subsets
                .iter()
                .filter_map(|ss| {
                    let ep = ss
                        .ports
                        .iter()
                        .find(|p| p.name == sp.name && p.protocol == sp.protocol)?;
                    Some((ss, u16::try_from(ep.port).ok()?))
                })
                .flat_map(|(ss, port)| {
                    ss.addresses.iter().filter_map(move |a| {
                        Some(Backend {
                            ip: a.ip.parse().ok()?,
                            port,
                        })
                    })
                })
                .collect();
            endpoints.sort();
            endpoints.dedup();
            Some(PortState {
                name: sp.name.clone(),
                protocol: sp.protocol,
                port: u16::try_from(sp.port).ok()?,
                node_port: sp.node_port.and_then(|n| u16::try_from(n).ok()),
                endpoints,
            })
        })
        .collect();
    let ready: BTreeSet<Ipv4Addr> = subsets
        .iter()
        .flat_map(|ss| ss.addresses.iter().filter_map(|a| a.ip.parse().ok()))
        .collect();
    ServiceState {
        v: proto::VERSION,
        namespace: svc.metadata.ns().to_string(),
        name: svc.metadata.name.clone(),
        cluster_ip: svc.cluster_ip(),
        headless: svc.is_headless(),
        ports,
        ready: ready.into_iter().collect(),
    }
}

/// Pure: every retained message the store implies, the index included.
pub fn picture(services: &[Service], endpoints: &[Endpoints], ingresses: &[Ingress]) -> Picture {
    let eps: BTreeMap<(&str, &str), &Endpoints> = endpoints
        .iter()
        .map(|e| ((e.metadata.ns(), e.metadata.name.as_str()), e))
        .collect();
    let mut pic = Picture::new();
    let mut index = NetIndex {
        v: proto::VERSION,
        ..Default::default()
    };
    for s in services {
        let (ns, name) = (s.metadata.ns(), s.metadata.name.as_str());
        let st = state(s, eps.get(&(ns, name)).copied());
        pic.insert(service_topic(ns, name), proto::encode(&st));
        index.services.push((ns.to_string(), name.to_string()));
    }
    for i in ingresses {
        let (ns, name) = (i.metadata.ns(), i.metadata.name.as_str());
        let mut ing = i.clone();
        // Bookkeeping that changes without the routes changing must not cause a publish.
        ing.metadata.resource_version.clear();
        ing.metadata.namespace = Some(ns.to_string());
        let st = IngressState {
            v: proto::VERSION,
            ingress: ing,
        };
        pic.insert(ingress_topic(ns, name), proto::encode(&st));
        index.ingresses.push((ns.to_string(), name.to_string()));
    }
    pic.insert(SERVICES.to_string(), proto::encode(&index));
    pic
}

/// Pure: publishes taking the broker from `old` to `new`: changed objects, then the index,
/// then clears (empty payload) for what is gone.
pub fn diff(old: &Picture, new: &Picture) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = new
        .iter()
        .filter(|(t, p)| t.as_str() != SERVICES && old.get(*t) != Some(p))
        .map(|(t, p)| (t.clone(), p.clone()))
        .collect();
    if let Some(idx) = new.get(SERVICES) {
        if old.get(SERVICES) != Some(idx) {
            out.push((SERVICES.to_string(), idx.clone()));
        }
    }
    out.extend(
        old.keys()
            .filter(|t| !new.contains_key(*t))
            .map(|t| (t.clone(), Vec::new())),
    );
    out
}

fn load(store: &Store) -> Result<Picture, StoreError> {
    Ok(picture(
        &store.list::<Service>(None)?,
        &store.list::<Endpoints>(None)?,
        &store.list::<Ingress>(None)?,
    ))
}

pub async fn run(store: Arc<Store>, bus: Arc<Bus>) {
    let mut changes = store.subscribe();
    let mut sessions = bus.sessions();
    let mut published = Picture::new();
    let mut session = 0;
    loop {
        let current = *sessions.borrow_and_update();
        if current != session {
            // New broker session: it may have lost its retained store.
            published = Picture::new();
            session = current;
        }
        if session > 0 {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || load(&s)).await {
                Ok(Ok(new)) => {
                    let mut ok = true;
                    for (topic, payload) in diff(&published, &new) {
                        if let Err(e) = bus.publish_retained(topic, payload).await {
                            tracing::warn!(error = %e, "publishing services failed");
                            ok = false;
                            break;
                        }
                    }
                    if ok {
                        published = new;
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "reading services failed"),
                Err(e) => tracing::error!(error = %e, "services pass panicked"),
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
    use crate::api::service::{
        EndpointAddress, EndpointPort, EndpointSubset, IntOrString, Protocol, ServicePort,
    };

    fn svc() -> Service {
        let mut s = Service::default();
        s.metadata.name = "web".into();
        s.spec.cluster_ip = Some("10.89.0.10".into());
        s.spec.ports.push(ServicePort {
            name: "http".into(),
            protocol: Protocol::TCP,
            port: 80,
            target_port: Some(IntOrString::Str("http".into())),
            node_port: Some(30080),
        });
        s
    }

    fn eps(groups: &[(&[&str], i32)]) -> Endpoints {
        let mut e = Endpoints::default();
        e.metadata.name = "web".into();
        for (ips, port) in groups {
            e.subsets.push(EndpointSubset {
                addresses: ips
                    .iter()
                    .map(|ip| EndpointAddress {
                        ip: ip.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                not_ready_addresses: vec![EndpointAddress {
                    ip: "10.88.9.9".into(),
                    ..Default::default()
                }],
                ports: vec![EndpointPort {
                    name: "http".into(),
                    port: *port,
                    protocol: Protocol::TCP,
                }],
            });
        }
        e
    }

    #[test]
    fn state_lists_only_ready_endpoints_with_each_subsets_port() {
        let st = state(
            &svc(),
            Some(&eps(&[(&["10.88.1.2"], 8080), (&["10.88.2.2"], 9090)])),
        );
        assert_eq!(st.cluster_ip, Some("10.89.0.10".parse().unwrap()));
        assert_eq!(st.ports[0].node_port, Some(30080));
        let b: Vec<String> = st.ports[0]
            .endpoints
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(b, ["10.88.1.2:8080", "10.88.2.2:9090"]);
        assert_eq!(st.ready.len(), 2);
    }

    #[test]
    fn diff_sends_changes_then_index_then_clears() {
        let old = picture(&[svc()], &[eps(&[(&["10.88.1.2"], 80)])], &[]);
        assert!(diff(&old, &old).is_empty());
        let changed = picture(&[svc()], &[eps(&[(&["10.88.1.3"], 80)])], &[]);
        let d = diff(&old, &changed);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "herd/v1/services/default/web");
        let gone = picture(&[], &[], &[]);
        let d = diff(&old, &gone);
        assert_eq!(d[0].0, "herd/v1/services");
        assert_eq!(d[1], ("herd/v1/services/default/web".to_string(), vec![]));
    }
}

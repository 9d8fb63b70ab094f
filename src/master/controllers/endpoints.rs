//! Endpoints controller: for every Service with a selector, the addresses of the pods it
//! selects, ready ones apart from not-ready ones, each with the service's target ports
//! resolved against that pod (a named `targetPort` may map to different numbers in different
//! pods). Level-triggered: every pass recomputes every Service's Endpoints from the store and
//! writes only what differs, so a pod failing readiness leaves rotation on the next pass.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::service::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, IntOrString, Service, TargetRef,
};
use crate::api::{Pod, PodPhase};
use crate::master::store::{Store, StoreError};
use crate::util::time::now_rfc3339;

/// Whether the pod's Ready condition is True.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pod's port for one service port: a number as is, a name looked up in its containers.
fn resolve(port: &crate::api::service::ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::Str(name)) => pod
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|cp| {
                &cp.name == name && format!("{:?}", cp.protocol) == port.protocol.to_string()
            })
            .map(|cp| cp.container_port),
    }
}

/// Pure: the subsets `svc` should have given every pod in the store. Pods count when they
/// are in the service's namespace, match its selector, are bound, have an IP, are not being
/// deleted and have not finished. Subsets are grouped by resolved ports and sorted, so the
/// result is stable and an unchanged world writes nothing.
pub fn subsets(svc: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    if svc.spec.selector.is_empty() {
        return Vec::new();
    }
    let ns = svc.metadata.ns();
    let mut groups: BTreeMap<
        Vec<EndpointPort>,
        (BTreeSet<EndpointAddress>, BTreeSet<EndpointAddress>),
    > = BTreeMap::new();
    for p in pods {
        if p.metadata.ns() != ns
            || p.metadata.deletion_timestamp.is_some()
            || matches!(p.status.phase, PodPhase::Succeeded | PodPhase::Failed)
            || !svc
                .spec
                .selector
                .iter()
                .all(|(k, v)| p.metadata.labels.get(k) == Some(v))
        {
            continue;
        }
        let Some(ip) = p.status.pod_ip.clone().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        let mut ports: Vec<EndpointPort> = svc
            .spec
            .ports
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone(),
                    port: resolve(sp, p)?,
                    protocol: sp.protocol,
                })
            })
            .collect();
        // A pod offering none of several ports serves nothing through this service.
        if ports.is_empty() && !svc.spec.ports.is_empty() {
            continue;
        }
        ports.sort();
        let addr = EndpointAddress {
            ip,
            node_name: p.spec.node_name.clone(),
            target_ref: Some(TargetRef {
                kind: "Pod".into(),
                namespace: ns.to_string(),
                name: p.metadata.name.clone(),
                uid: p.metadata.uid.clone(),
            }),
        };
        let g = groups.entry(ports).or_default();
        if pod_ready(p) {
            g.0.insert(addr);
        } else {
            g.1.insert(addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: ready.into_iter().collect(),
            not_ready_addresses: not_ready.into_iter().collect(),
            ports,
        })
        .collect()
}

/// What the store should hold: (namespace, name) → subsets, one entry per Service.
pub fn desired(
    services: &[Service],
    pods: &[Pod],
) -> BTreeMap<(String, String), Vec<EndpointSubset>> {
    services
        .iter()
        .map(|s| {
            (
                (s.metadata.ns().to_string(), s.metadata.name.clone()),
                subsets(s, pods),
            )
        })
        .collect()
}

/// One pass: creates, updates and deletes Endpoints to match `desired`.
pub fn reconcile(store: &Store) -> Result<(), StoreError> {
    let services: Vec<Service> = store.list(None)?;
    let pods: Vec<Pod> = store.list(None)?;
    let existing: Vec<Endpoints> = store.list(None)?;
    let want = desired(&services, &pods);
    let have: BTreeMap<(String, String), &Endpoints> = existing
        .iter()
        .map(|e| ((e.metadata.ns().to_string(), e.metadata.name.clone()), e))
        .collect();
    for ((ns, name), subsets) in &want {
        match have.get(&(ns.clone(), name.clone())) {
            Some(e) if &e.subsets == subsets => {}
            Some(_) => {
                let subsets = subsets.clone();
                store.update::<Endpoints, StoreError>(ns, name, |e| {
                    e.subsets = subsets;
                    Ok(())
                })?;
            }
            None => {
                let mut e = Endpoints {
                    api_version: "v1".into(),
                    kind: "Endpoints".into(),
                    subsets: subsets.clone(),
                    ..Default::default()
                };
                e.metadata.name = name.clone();
                e.metadata.namespace = Some(ns.clone());
                match store.create(e, &now_rfc3339()) {
                    Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for key in have.keys() {
        if !want.contains_key(key) {
            store.delete::<Endpoints>(&key.0, &key.1, None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::{Container, ContainerPort};
    use crate::api::service::{Protocol, ServicePort};
    use crate::api::Condition;

    fn pod(name: &str, ip: Option<&str>, ready: bool, http_port: i32) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.uid = format!("uid-{name}");
        p.metadata.labels.insert("app".into(), "web".into());
        p.spec.node_name = Some("w1".into());
        p.spec.containers.push(Container {
            name: "c".into(),
            ports: vec![ContainerPort {
                name: "http".into(),
                container_port: http_port,
                protocol: Default::default(),
                ..Default::default()
            }],
            ..Default::default()
        });
        p.status.phase = PodPhase::Running;
        p.status.pod_ip = ip.map(Into::into);
        p.status.conditions.push(Condition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        });
        p
    }

    fn svc(target: IntOrString) -> Service {
        let mut s = Service::default();
        s.metadata.name = "web".into();
        s.spec.selector.insert("app".into(), "web".into());
        s.spec.ports.push(ServicePort {
            name: "web".into(),
            protocol: Protocol::TCP,
            port: 80,
            target_port: Some(target),
            node_port: None,
        });
        s
    }

    fn ips(a: &[EndpointAddress]) -> Vec<&str> {
        a.iter().map(|x| x.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_pods_are_listed_apart_and_ipless_ones_left_out() {
        let pods = [
            pod("a", Some("10.88.1.2"), true, 8080),
            pod("b", Some("10.88.2.2"), false, 8080),
            pod("c", None, true, 8080),
        ];
        let s = subsets(&svc(IntOrString::Int(8080)), &pods);
        assert_eq!(s.len(), 1);
        assert_eq!(ips(&s[0].addresses), ["10.88.1.2"]);
        assert_eq!(ips(&s[0].not_ready_addresses), ["10.88.2.2"]);
        assert_eq!(s[0].ports[0].port, 8080);
        assert_eq!(s[0].addresses[0].target_ref.as_ref().unwrap().name, "a");
    }

    #[test]
    fn a_named_target_port_resolves_per_pod_into_separate_subsets() {
        let pods = [
            pod("a", Some("10.88.1.2"), true, 8080),
            pod("b", Some("10.88.1.3"), true, 9090),
        ];
        let s = subsets(&svc(IntOrString::Str("http".into())), &pods);
        let ports: Vec<i32> = s.iter().map(|x| x.ports[0].port).collect();
        assert_eq!(ports, [8080, 9090]);
    }

    #[test]
    fn other_namespaces_other_labels_finished_and_deleting_pods_do_not_count() {
        let mut other_ns = pod("a", Some("10.88.1.2"), true, 80);
        other_ns.metadata.namespace = Some("prod".into());
        let mut other_label = pod("b", Some("10.88.1.3"), true, 80);
        other_label
            .metadata
            .labels
            .insert("app".into(), "db".into());
        let mut done = pod("c", Some("10.88.1.4"), true, 80);
        done.status.phase = PodPhase::Succeeded;
        let mut deleting = pod("d", Some("10.88.1.5"), true, 80);
        deleting.metadata.deletion_timestamp = Some("2026-01-01T00:00:00Z".into());
        assert!(subsets(
            &svc(IntOrString::Int(80)),
            &[other_ns, other_label, done, deleting]
        )
        .is_empty());
    }

    #[test]
    fn reconcile_creates_follows_readiness_and_deletes_with_the_service() {
        let store = Store::open_in_memory().unwrap();
        let now = "2026-01-01T00:00:00Z";
        store.create(svc(IntOrString::Int(8080)), now).unwrap();
        store
            .create(pod("a", Some("10.88.1.2"), true, 8080), now)
            .unwrap();
        reconcile(&store).unwrap();
        let e: Endpoints = store.get("default", "web").unwrap().unwrap();
        assert_eq!(ips(&e.subsets[0].addresses), ["10.88.1.2"]);
        let rv = e.metadata.resource_version.clone();
        // Idempotent: a second pass writes nothing.
        reconcile(&store).unwrap();
        let again: Endpoints = store.get("default", "web").unwrap().unwrap();
        assert_eq!(again.metadata.resource_version, rv);

        store
            .update::<Pod, StoreError>("default", "a", |p| {
                p.status.conditions[0].status = "False".into();
                Ok(())
            })
            .unwrap();
        reconcile(&store).unwrap();
        let e: Endpoints = store.get("default", "web").unwrap().unwrap();
        assert!(e.subsets[0].addresses.is_empty());
        assert_eq!(ips(&e.subsets[0].not_ready_addresses), ["10.88.1.2"]);

        store.delete::<Service>("default", "web", None).unwrap();
        reconcile(&store).unwrap();
        assert!(store.get::<Endpoints>("default", "web").unwrap().is_none());
    }
}

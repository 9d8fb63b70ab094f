//! Pod networking on the master: gives every node a pod subnet (`spec.podCIDR`, kept in the
//! `pod_cidrs` table), frees the subnets of removed nodes, and publishes the cluster's routes
//! (`herd/v1/net/routes`, retained) whenever they change and after every broker (re)connect.
//! Level-triggered: each pass recomputes everything from the store.

use std::sync::Arc;

use crate::api::Node;
use crate::master::bus::Bus;
use crate::master::podcidr::Plan;
use crate::master::store::{Store, StoreError};
use crate::proto::{self, topics, NetRoutes, NodeRoute};

/// Pure: the routes message for these nodes.
pub fn routes(plan: &Plan, nodes: &[Node]) -> NetRoutes {
    let mut routes: Vec<NodeRoute> = nodes
        .iter()
        .filter_map(|n| {
            Some(NodeRoute {
                node: n.metadata.name.clone(),
                node_ip: n.internal_ip().unwrap_or_default().to_string(),
                pod_cidr: n.spec.pod_cidr.clone()?,
            })
        })
        .collect();
    routes.sort();
    NetRoutes {
        v: proto::VERSION,
        cluster_cidr: plan.cluster.to_string(),
        routes,
    }
}

/// Assigns missing subnets, frees orphaned ones; returns the routes message.
pub fn pass(store: &Store, plan: &Plan) -> Result<NetRoutes, StoreError> {
    let nodes: Vec<Node> = store.list(None)?;
    for (node, _) in store.pod_cidrs()? {
        if !nodes.iter().any(|n| n.metadata.name == node) {
            tracing::info!(%node, "pod subnet of a removed node freed");
            store.release_pod_cidr(&node)?;
        }
    }
    for n in &nodes {
        let name = &n.metadata.name;
        let want = store.assign_pod_cidr(name, plan)?.map(|c| c.to_string());
        if want.is_none() {
            tracing::warn!(node = %name, cluster = %plan.cluster, "cluster CIDR exhausted: node gets no pod subnet");
        }
        if n.spec.pod_cidr != want {
            let w = want.clone();
            match store.update::<Node, StoreError>("", name, move |n| {
                n.spec.pod_cidr = w.clone();
                Ok(())
            }) {
                Ok(_) => tracing::info!(node = %name, pod_cidr = ?want, "pod subnet assigned"),
                // Removed meanwhile: the next pass frees its subnet.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let nodes: Vec<Node> = store.list(None)?;
    Ok(routes(plan, &nodes))
}

pub async fn run(store: Arc<Store>, bus: Arc<Bus>, plan: Plan) {
    let mut changes = store.subscribe();
    let mut sessions = bus.sessions();
    let mut published: Option<(u64, NetRoutes)> = None;
    loop {
        let session = *sessions.borrow_and_update();
        let s = store.clone();
        match tokio::task::spawn_blocking(move || pass(&s, &plan)).await {
            Ok(Ok(r)) => {
                let stale = published
                    .as_ref()
                    .is_none_or(|(sess, old)| *sess != session || *old != r);
                if session > 0 && stale {
                    match bus
                        .publish_retained(topics::net_routes(), proto::encode(&r))
                        .await
                    {
                        Ok(()) => {
                            tracing::debug!(nodes = r.routes.len(), "pod routes published");
                            published = Some((session, r));
                        }
                        Err(e) => tracing::warn!(error = %e, "publishing pod routes failed"),
                    }
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "pod network pass failed"),
            Err(e) => tracing::error!(error = %e, "pod network pass panicked"),
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            r = sessions.changed() => if r.is_err() { return },
            // A failed publish is retried.
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::node::NodeAddress;

    fn node(name: &str, ip: Option<&str>) -> Node {
        let mut n = Node::default();
        n.metadata.name = name.into();
        if let Some(ip) = ip {
            n.status.addresses.push(NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            });
        }
        n
    }

    #[test]
    fn every_node_gets_a_subnet_and_a_route_and_removed_ones_free_theirs() {
        let s = Store::open_in_memory().unwrap();
        let now = "2026-01-01T00:00:00Z";
        s.create(node("b", Some("10.0.0.2")), now).unwrap();
        s.create(node("a", Some("10.0.0.1")), now).unwrap();
        s.create(node("c", None), now).unwrap();
        let plan = Plan::default();
        let r = pass(&s, &plan).unwrap();
        assert_eq!(r.cluster_cidr, "10.88.0.0/16");
        let names: Vec<&str> = r.routes.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(r.routes[2].node_ip, "");
        let mut cidrs: Vec<&str> = r.routes.iter().map(|r| r.pod_cidr.as_str()).collect();
        cidrs.sort();
        cidrs.dedup();
        assert_eq!(cidrs.len(), 3, "distinct subnets");
        let a: Node = s.get("", "a").unwrap().unwrap();
        assert_eq!(
            a.spec.pod_cidr.as_deref(),
            Some(r.routes[0].pod_cidr.as_str())
        );
        // A second pass changes nothing.
        assert_eq!(pass(&s, &plan).unwrap(), r);
        s.delete::<Node>("", "a", None).unwrap();
        let r2 = pass(&s, &plan).unwrap();
        assert_eq!(r2.routes.len(), 2);
        assert_eq!(s.pod_cidrs().unwrap().len(), 2);
    }
}

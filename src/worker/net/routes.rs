//! host-gw routes to the other nodes' pod subnets, via their node addresses. Every route herd
//! makes carries routing protocol number [`PROTO`], so reconciling lists and deletes only
//! herd's own routes and never touches one an administrator or another tool made.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::proto::NetRoutes;
use crate::util::cidr::Ipv4Cidr;

/// `proto 147` in `ip route`: unassigned in /etc/iproute2/rt_protos, herd's mark.
pub const PROTO: u8 = 147;

/// Destination subnet → gateway.
pub type RouteSet = BTreeMap<Ipv4Cidr, Ipv4Addr>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// Add, or change the gateway of, the route to a subnet.
    Replace(Ipv4Cidr, Ipv4Addr),
    Delete(Ipv4Cidr),
}

/// Pure: the routes this node wants from the cluster's routes message: one per other node
/// with an address and a subnet. Malformed entries are skipped (logged by the caller).
pub fn wanted(me: &str, msg: &NetRoutes) -> RouteSet {
    msg.routes
        .iter()
        .filter(|r| r.node != me)
        .filter_map(|r| Some((r.pod_cidr.parse().ok()?, r.node_ip.parse().ok()?)))
        .collect()
}

/// Pure: operations that turn `current` into `wanted`; deletions first, so a subnet that
/// moved to another node never has two routes.
pub fn diff(current: &RouteSet, wanted: &RouteSet) -> Vec<RouteOp> {
    let mut ops: Vec<RouteOp> = current
        .keys()
        .filter(|k| !wanted.contains_key(k))
        .map(|k| RouteOp::Delete(*k))
        .collect();
    ops.extend(
        wanted
            .iter()
            .filter(|(k, gw)| current.get(k) != Some(gw))
            .map(|(k, gw)| RouteOp::Replace(*k, *gw)),
    );
    ops
}

/// Pure: `ip -batch` lines for the operations.
pub fn batch(ops: &[RouteOp]) -> String {
    ops.iter()
        .map(|op| match op {
            RouteOp::Replace(dst, gw) => format!("route replace {dst} via {gw} proto {PROTO}\n"),
            RouteOp::Delete(dst) => format!("route del {dst} proto {PROTO}\n"),
        })
        .collect()
}

/// Pure: parses `ip -j route show proto 147`.
pub fn parse_current(json: &str) -> RouteSet {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let dst = r.get("dst")?.as_str()?;
                    let dst = if dst.contains('/') {
                        dst.to_string()
                    } else {
                        format!("{dst}/32")
                    };
                    Some((dst.parse().ok()?, r.get("gateway")?.as_str()?.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Brings the routing table to `wanted` (herd's routes only).
pub fn reconcile(wanted: &RouteSet) -> Result<usize, super::NetError> {
    let out = super::cmd::run(
        "ip",
        &["-j", "route", "show", "proto", &PROTO.to_string()],
        None,
    )?;
    let ops = diff(&parse_current(&out), wanted);
    if !ops.is_empty() {
        super::cmd::run("ip", &["-batch", "-"], Some(&batch(&ops)))?;
        for op in &ops {
            tracing::info!(?op, "pod route changed");
        }
    }
    Ok(ops.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::NodeRoute;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn wanted_routes_skip_this_node_and_nodes_without_an_address() {
        let msg = NetRoutes {
            v: 1,
            cluster_cidr: "10.88.0.0/16".into(),
            routes: vec![
                NodeRoute {
                    node: "a".into(),
                    node_ip: "10.77.0.2".into(),
                    pod_cidr: "10.88.0.0/24".into(),
                },
                NodeRoute {
                    node: "b".into(),
                    node_ip: "10.77.0.3".into(),
                    pod_cidr: "10.88.1.0/24".into(),
                },
                NodeRoute {
                    node: "c".into(),
                    node_ip: "".into(),
                    pod_cidr: "10.88.2.0/24".into(),
                },
                NodeRoute {
                    node: "d".into(),
                    node_ip: "10.77.0.5".into(),
                    pod_cidr: "garbage".into(),
                },
            ],
        };
        let w = wanted("a", &msg);
        assert_eq!(w, RouteSet::from([(c("10.88.1.0/24"), ip("10.77.0.3"))]));
    }

    #[test]
    fn diff_deletes_stale_adds_missing_and_moves_changed_gateways() {
        let current = RouteSet::from([
            (c("10.88.1.0/24"), ip("10.77.0.3")),
            (c("10.88.2.0/24"), ip("10.77.0.4")),
            (c("10.88.3.0/24"), ip("10.77.0.5")),
        ]);
        let wanted = RouteSet::from([
            (c("10.88.1.0/24"), ip("10.77.0.3")),
            (c("10.88.3.0/24"), ip("10.77.0.9")),
            (c("10.88.4.0/24"), ip("10.77.0.6")),
        ]);
        let ops = diff(&current, &wanted);
        assert_eq!(
            ops,
            vec![
                RouteOp::Delete(c("10.88.2.0/24")),
                RouteOp::Replace(c("10.88.3.0/24"), ip("10.77.0.9")),
                RouteOp::Replace(c("10.88.4.0/24"), ip("10.77.0.6")),
            ]
        );
        assert_eq!(
            batch(&ops),
            "route del 10.88.2.0/24 proto 147\n\
             route replace 10.88.3.0/24 via 10.77.0.9 proto 147\n\
             route replace 10.88.4.0/24 via 10.77.0.6 proto 147\n"
        );
        assert!(diff(&wanted, &wanted).is_empty());
    }

    #[test]
    fn parses_ip_json_output() {
        let j = r#"[{"dst":"10.88.1.0/24","gateway":"10.77.0.3","dev":"eth0","protocol":"147","flags":[]},
                   {"dst":"10.9.9.9","gateway":"10.77.0.4","flags":[]},{"dst":"default","flags":[]}]"#;
        assert_eq!(
            parse_current(j),
            RouteSet::from([
                (c("10.88.1.0/24"), ip("10.77.0.3")),
                (c("10.9.9.9/32"), ip("10.77.0.4")),
            ])
        );
        assert!(parse_current("").is_empty());
    }
}

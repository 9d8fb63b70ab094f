//! Pure allocation of ClusterIPs and NodePorts. The allocation lives in the Service object
//! itself (`spec.clusterIP`, `spec.ports[].nodePort`), so it is persisted with it and freed
//! only when the Service is deleted: an address is never handed to a second service while
//! the first one lives. The caller serialises allocations (one lock around read + write).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::api::service::{
    in_service_cidr, Service, ServiceType, NODE_PORT_MAX, NODE_PORT_MIN, SERVICE_CIDR,
};

/// Addresses below this offset are left for explicit requests (as Kubernetes keeps a static
/// band), so a manifest pinning e.g. 10.89.0.2 does not collide with a dynamic one.
const DYNAMIC_OFFSET: u32 = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("spec.clusterIP: {0} is already allocated to another service")]
    IpTaken(Ipv4Addr),
    #[error("spec.clusterIP: {0} is the network or broadcast address of the service range")]
    IpReserved(Ipv4Addr),
    #[error("spec.clusterIP: field is immutable (is {live:?}, request says {requested:?})")]
    IpImmutable { live: String, requested: String },
    #[error("spec.clusterIP: the service range is full")]
    IpExhausted,
    #[error("spec.ports[{index}].nodePort: {port} is already allocated")]
    PortTaken { index: usize, port: i32 },
    #[error("spec.ports[{index}].nodePort: no free port left in {NODE_PORT_MIN}-{NODE_PORT_MAX}")]
    PortsExhausted { index: usize },
}

/// Fills in `svc`'s clusterIP and nodePorts: kept from `live` (the stored version, on an
/// update) when the request leaves them out, honoured when requested and free, otherwise the
/// lowest free. `others` are every other stored service.
pub fn assign(
    svc: &mut Service,
    live: Option<&Service>,
    others: &[Service],
) -> Result<(), AllocError> {
    assign_ip(svc, live, others)?;
    assign_node_ports(svc, live, others)
}

fn assign_ip(
    svc: &mut Service,
    live: Option<&Service>,
    others: &[Service],
) -> Result<(), AllocError> {
    let requested = svc.spec.cluster_ip.clone().filter(|s| !s.is_empty());
    if let Some(live) = live {
        let live_ip = live.spec.cluster_ip.clone().unwrap_or_default();
        match requested {
            None => svc.spec.cluster_ip = Some(live_ip),
            Some(r) if r == live_ip => {}
            Some(r) => {
                return Err(AllocError::IpImmutable {
                    live: live_ip,
                    requested: r,
                })
            }
        }
    } else {
        match requested.as_deref() {
            Some("None") => {}
            Some(r) => {
                // Validation already checked it parses and lies in the range.
                if let Ok(ip) = r.parse::<Ipv4Addr>() {
                    let (net, bits) = SERVICE_CIDR;
                    let last = u32::from(net) | (u32::MAX >> bits);
                    if ip == net || u32::from(ip) == last || !in_service_cidr(ip) {
                        return Err(AllocError::IpReserved(ip));
                    }
                    if others.iter().any(|o| o.cluster_ip() == Some(ip)) {
                        return Err(AllocError::IpTaken(ip));
                    }
                }
            }
            None => {
                let used: BTreeSet<Ipv4Addr> =
                    others.iter().filter_map(|o| o.cluster_ip()).collect();
                svc.spec.cluster_ip = Some(lowest_free_ip(&used)?.to_string());
            }
        }
    }
    svc.spec.cluster_ips = svc.spec.cluster_ip.iter().cloned().collect();
    Ok(())
}

fn lowest_free_ip(used: &BTreeSet<Ipv4Addr>) -> Result<Ipv4Addr, AllocError> {
    let (net, bits) = SERVICE_CIDR;
    let base = u32::from(net);
    let size = 1u32 << (32 - bits);
    (DYNAMIC_OFFSET..size - 1)
        .map(|o| Ipv4Addr::from(base + o))
        .find(|ip| !used.contains(ip))
        .ok_or(AllocError::IpExhausted)
}

fn assign_node_ports(
    svc: &mut Service,
    live: Option<&Service>,
    others: &[Service],
) -> Result<(), AllocError> {
    if svc.spec.type_ != ServiceType::NodePort {
        for p in &mut svc.spec.ports {
            p.node_port = None;
        }
        return Ok(());
    }
    let mut used: BTreeSet<i32> = others
        .iter()
        .flat_map(|o| o.spec.ports.iter().filter_map(|p| p.node_port))
        .collect();
    let live_ports: Vec<(i32, crate::api::service::Protocol, i32)> = live
        .filter(|l| l.spec.type_ == ServiceType::NodePort)
        .map(|l| {
            l.spec
                .ports
                .iter()
                .filter_map(|p| Some((p.port, p.protocol, p.node_port?)))
                .collect()
        })
        .unwrap_or_default();
    // Requested (or kept) ports first, so a dynamic pick never takes one asked for later.
    for (index, p) in svc.spec.ports.iter_mut().enumerate() {
        if p.node_port.is_none() {
            p.node_port = live_ports
                .iter()
                .find(|(port, proto, _)| *port == p.port && *proto == p.protocol)
                .map(|(_, _, np)| *np);
        }
        if let Some(np) = p.node_port {
            if !used.insert(np) {
                return Err(AllocError::PortTaken { index, port: np });
            }
        }
    }
    for (index, p) in svc.spec.ports.iter_mut().enumerate() {
        if p.node_port.is_none() {
            let np = (i32::from(NODE_PORT_MIN)..=i32::from(NODE_PORT_MAX))
                .find(|n| !used.contains(n))
                .ok_or(AllocError::PortsExhausted { index })?;
            used.insert(np);
            p.node_port = Some(np);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::service::{Protocol, ServicePort};

    fn svc(name: &str, ip: Option<&str>, node_ports: &[Option<i32>]) -> Service {
        let mut s = Service::default();
        s.metadata.name = name.into();
        s.spec.cluster_ip = ip.map(Into::into);
        if !node_ports.is_empty() {
            s.spec.type_ = ServiceType::NodePort;
        }
        for (i, np) in node_ports.iter().enumerate() {
            s.spec.ports.push(ServicePort {
                name: format!("p{i}"),
                protocol: Protocol::TCP,
                port: 80 + i as i32,
                target_port: None,
                node_port: *np,
            });
        }
        s
    }

    #[test]
    fn dynamic_ips_skip_the_static_band_and_every_live_service() {
        let others = [
            svc("a", Some("10.89.0.10"), &[]),
            svc("b", Some("10.89.0.12"), &[]),
        ];
        let mut s = svc("c", None, &[]);
        assign(&mut s, None, &others).unwrap();
        assert_eq!(s.spec.cluster_ip.as_deref(), Some("10.89.0.11"));
        assert_eq!(s.spec.cluster_ips, vec!["10.89.0.11".to_string()]);
    }

    #[test]
    fn a_requested_ip_is_honoured_if_free_and_refused_if_taken() {
        let others = [svc("a", Some("10.89.0.2"), &[])];
        let mut s = svc("b", Some("10.89.0.3"), &[]);
        assign(&mut s, None, &others).unwrap();
        assert_eq!(s.spec.cluster_ip.as_deref(), Some("10.89.0.3"));
        let mut s = svc("b", Some("10.89.0.2"), &[]);
        assert_eq!(
            assign(&mut s, None, &others),
            Err(AllocError::IpTaken("10.89.0.2".parse().unwrap()))
        );
        let mut s = svc("b", Some("10.89.0.0"), &[]);
        assert!(matches!(
            assign(&mut s, None, &[]),
            Err(AllocError::IpReserved(_))
        ));
    }

    #[test]
    fn an_update_keeps_the_live_ip_and_refuses_to_change_it() {
        let live = svc("a", Some("10.89.0.44"), &[]);
        let mut s = svc("a", None, &[]);
        assign(&mut s, Some(&live), &[]).unwrap();
        assert_eq!(s.spec.cluster_ip.as_deref(), Some("10.89.0.44"));
        let mut s = svc("a", Some("10.89.0.45"), &[]);
        assert!(matches!(
            assign(&mut s, Some(&live), &[]),
            Err(AllocError::IpImmutable { .. })
        ));
        let mut s = svc("a", Some("None"), &[]);
        assert!(matches!(
            assign(&mut s, Some(&live), &[]),
            Err(AllocError::IpImmutable { .. })
        ));
    }

    #[test]
    fn headless_services_get_no_ip() {
        let mut s = svc("h", Some("None"), &[]);
        assign(&mut s, None, &[]).unwrap();
        assert_eq!(s.spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(s.cluster_ip(), None);
    }

    #[test]
    fn node_ports_are_allocated_lowest_free_kept_on_update_and_conflicts_refused() {
        let others = [svc("a", Some("10.89.0.10"), &[Some(30000), Some(30002)])];
        let mut s = svc("b", None, &[None, Some(30001), None]);
        assign(&mut s, None, &others).unwrap();
        let got: Vec<_> = s.spec.ports.iter().map(|p| p.node_port).collect();
        assert_eq!(got, [Some(30003), Some(30001), Some(30004)]);

        let live = s.clone();
        let mut upd = svc("b", None, &[None, None, None]);
        assign(&mut upd, Some(&live), &others).unwrap();
        assert_eq!(upd.spec.ports, live.spec.ports);

        let mut clash = svc("c", None, &[Some(30002)]);
        assert_eq!(
            assign(&mut clash, None, &others),
            Err(AllocError::PortTaken {
                index: 0,
                port: 30002
            })
        );
        let mut twice = svc("c", None, &[Some(31000), Some(31000)]);
        assert!(matches!(
            assign(&mut twice, None, &[]),
            Err(AllocError::PortTaken { index: 1, .. })
        ));
    }

    #[test]
    fn cluster_ip_services_drop_node_ports() {
        let mut s = svc("a", None, &[Some(30000)]);
        s.spec.type_ = ServiceType::ClusterIP;
        assign(&mut s, None, &[]).unwrap();
        assert_eq!(s.spec.ports[0].node_port, None);
    }
}

//! A pod's `/etc/hosts` and `/etc/resolv.conf`, written per pod and bind-mounted into every
//! container of it. Pure content builders.

use std::net::Ipv4Addr;

/// Kubernetes' cluster domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `/etc/hosts`: localhost entries, then the pod's own address and hostname.
pub fn hosts(pod_ip: Option<Ipv4Addr>, hostname: &str) -> String {
    let mut s = String::from(
        "# Managed by herd.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = pod_ip {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s
}

/// `/etc/resolv.conf` of a pod on the pod network: the node's DNS responder on its bridge
/// address, Kubernetes' search path and `ndots:5`.
pub fn resolv_conf(nameserver: Ipv4Addr, namespace: &str) -> String {
    format!(
        "# Managed by herd.\nnameserver {nameserver}\nsearch {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\noptions ndots:5\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_localhost_and_the_pod() {
        let h = hosts(Some(Ipv4Addr::new(10, 88, 1, 5)), "web-1");
        assert!(h.contains("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.88.1.5\tweb-1\n"));
        assert!(!hosts(None, "web-1").contains("web-1"));
    }

    #[test]
    fn resolv_conf_points_at_the_bridge_with_the_kubernetes_search_path() {
        assert_eq!(
            resolv_conf(Ipv4Addr::new(10, 88, 1, 1), "shop"),
            "# Managed by herd.\nnameserver 10.88.1.1\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }
}

//! herd's own nftables table, `ip herd-net`: masquerade for pod traffic leaving the cluster's
//! pod block, and hostPort DNAT. Always loaded whole and atomically (`nft -f`: create, delete,
//! define in one transaction), so the table is never half-written and no other table (e.g.
//! `herd-svc` for services) is touched.

use std::net::Ipv4Addr;

use crate::api::pod::Protocol;
use crate::util::cidr::Ipv4Cidr;

pub const TABLE: &str = "herd-net";

/// One `hostPort` of a running pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub host_port: u16,
    pub protocol: Protocol,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::TCP => "tcp",
        Protocol::UDP => "udp",
        Protocol::SCTP => "sctp",
    }
}

/// Pure: the complete `nft -f` input for the table.
pub fn ruleset(pod_cidr: Ipv4Cidr, cluster: Ipv4Cidr, ports: &[HostPort]) -> String {
    let mut dnat = String::new();
    let mut sorted = ports.to_vec();
    sorted.sort();
    // A pod reaching its own hostPort through the node's address comes back to itself:
    // masquerade exactly that (src = dst = the pod), so replies return through the node.
    let mut hairpin = String::new();
    let mut pods: Vec<Ipv4Addr> = sorted.iter().map(|p| p.pod_ip).collect();
    pods.sort();
    pods.dedup();
    for ip in pods {
        hairpin.push_str(&format!("\t\tip saddr {ip} ip daddr {ip} masquerade\n"));
    }
    for p in &sorted {
        dnat.push_str(&format!(
            "\t\tfib daddr type local {} dport {} dnat to {}:{}\n",
            proto(p.protocol),
            p.host_port,
            p.pod_ip,
            p.container_port
        ));
    }
    // nft 1.0.6: the output hook takes `priority -100`, not `dstnat` (NOTES.md).
    format!(
        "table ip {TABLE} {{}}\ndelete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n{dnat}\t}}\n\
         \tchain output {{\n\t\ttype nat hook output priority -100; policy accept;\n{dnat}\t}}\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {pod_cidr} ip daddr != {cluster} masquerade\n{hairpin}\
         \t}}\n}}\n"
    )
}

/// Loads the table.
pub fn apply(text: &str) -> Result<(), super::NetError> {
    super::cmd::run("nft", &["-f", "-"], Some(text)).map(|_| ())
}

/// Removes the table (idempotent).
pub fn remove() {
    let _ = super::cmd::run(
        "nft",
        &["-f", "-"],
        Some(&format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_masquerades_outbound_and_dnats_host_ports() {
        let t = ruleset(
            "10.88.1.0/24".parse().unwrap(),
            "10.88.0.0/16".parse().unwrap(),
            &[
                HostPort {
                    host_port: 8080,
                    protocol: Protocol::TCP,
                    pod_ip: Ipv4Addr::new(10, 88, 1, 5),
                    container_port: 80,
                },
                HostPort {
                    host_port: 53,
                    protocol: Protocol::UDP,
                    pod_ip: Ipv4Addr::new(10, 88, 1, 6),
                    container_port: 5353,
                },
            ],
        );
        assert!(t.starts_with("table ip herd-net {}\ndelete table ip herd-net\n"));
        assert!(t.contains("ip saddr 10.88.1.0/24 ip daddr != 10.88.0.0/16 masquerade"));
        // Sorted, in both the prerouting and output chains.
        assert_eq!(
            t.matches("fib daddr type local udp dport 53 dnat to 10.88.1.6:5353\n\t\tfib daddr type local tcp dport 8080 dnat to 10.88.1.5:80")
                .count(),
            2
        );
        assert!(t.contains("type nat hook output priority -100;"));
        assert!(t.contains("ip saddr 10.88.1.5 ip daddr 10.88.1.5 masquerade\n"));
        assert_eq!(t.matches(" masquerade\n").count(), 3);
    }
}

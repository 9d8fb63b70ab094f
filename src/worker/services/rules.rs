//! Pure: the nftables ruleset (table `ip herd-svc`) for a set of services, in kube-proxy's
//! pattern:
//! - nat `prerouting` (pods, the LAN) and `output` (the node itself; priority -100, which
//!   nft 1.0.6 needs instead of `dstnat` there) jump to `services`, which matches each
//!   ClusterIP:port and (with `fib daddr type local`) each NodePort;
//! - a service port's chain picks an endpoint with `numgen random mod N`; each endpoint chain
//!   DNATs, and first marks the packet when a pod reaches itself through the VIP (hairpin)
//!   so `postrouting` masquerades it, else the reply would skip conntrack's reverse NAT;
//! - NodePort traffic is marked too: a backend on another node must answer through this
//!   node, not straight to the client;
//! - a service port with no ready endpoint is rejected in the filter hooks (a fast refusal
//!   rather than a timeout); headless services get no rules.
//!
//! The text is loaded with `nft -f` as one transaction that replaces the whole table.

use std::fmt::Write as _;

use crate::proto::services::{PortState, ServiceState};

pub const TABLE: &str = "herd-svc";
/// Packet mark meaning "masquerade after DNAT" (kube-proxy uses the same bit).
pub const MASQ_MARK: u32 = 0x4000;

fn push(out: &mut String, line: impl AsRef<str>) {
    out.push_str(line.as_ref());
    out.push('\n');
}

/// One service port's rules, named by its position in the (sorted) input.
struct Entry<'a> {
    svc: &'a ServiceState,
    port: &'a PortState,
    chain: String,
}

/// The full `nft -f` script: creates the table if missing, deletes it (so nothing stale
/// survives) and defines it anew, all in one transaction. `services` should be sorted (the
/// agent's table is a BTreeMap) so equal input gives equal text and no reload.
pub fn ruleset(services: &[&ServiceState]) -> String {
    let mut out = String::new();
    push(&mut out, format!("table ip {TABLE} {{}}"));
    push(&mut out, format!("delete table ip {TABLE}"));
    push(&mut out, format!("table ip {TABLE} {{"));
    push(
        &mut out,
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }",
    );
    push(
        &mut out,
        "  chain output { type nat hook output priority -100; policy accept; jump services; }",
    );
    push(
        &mut out,
        format!(
            "  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept; meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} masquerade; }}"
        ),
    );
    for hook in ["input", "forward", "output"] {
        push(
            &mut out,
            format!(
                "  chain filter-{hook} {{ type filter hook {hook} priority filter; policy accept; jump no-endpoints; }}"
            ),
        );
    }
    let mut entries = Vec::new();
    for svc in services {
        if svc.headless {
            continue;
        }
        for port in &svc.ports {
            let chain = format!("svc-{}", entries.len());
            entries.push(Entry { svc, port, chain });
        }
    }
    // Matches: VIP first, NodePorts after (fib lookups cost more than an address compare).
    let mut services_chain = String::new();
    let mut reject = String::new();
    let mut chains = String::new();
    for e in &entries {
        let proto = e.port.protocol.lower();
        let what = format!("{}/{}:{}", e.svc.namespace, e.svc.name, e.port.port);
        let refuse = match proto {
            "tcp" => "reject with tcp reset",
            _ => "reject",
        };
        if let Some(vip) = e.svc.cluster_ip {
            if e.port.endpoints.is_empty() {
                let _ = writeln!(
                    reject,
                    "    ip daddr {vip} {proto} dport {} {refuse} comment \"{what} has no endpoints\"",
                    e.port.port
                );
            } else {
                let _ = writeln!(
                    services_chain,
                    "    ip daddr {vip} {proto} dport {} goto {} comment \"{what}\"",
                    e.port.port, e.chain
                );
            }
        }
    }
    for e in &entries {
        let Some(np) = e.port.node_port else { continue };
        let proto = e.port.protocol.lower();
        let what = format!(
            "{}/{}:{} nodePort",
            e.svc.namespace, e.svc.name, e.port.port
        );
        // Loopback is left out: DNAT from 127.0.0.1 to another host is a martian.
        let m = format!("fib daddr type local ip daddr != 127.0.0.0/8 {proto} dport {np}");
        if e.port.endpoints.is_empty() {
            let refuse = if proto == "tcp" {
                "reject with tcp reset"
            } else {
                "reject"
            };
            let _ = writeln!(
                reject,
                "    {m} {refuse} comment \"{what} has no endpoints\""
            );
        } else {
            let _ = writeln!(
                services_chain,
                "    {m} meta mark set meta mark | {MASQ_MARK:#x} goto {} comment \"{what}\"",
                e.chain
            );
        }
    }
    for e in &entries {
        if e.port.endpoints.is_empty() {
            continue;
        }
        let proto = e.port.protocol.lower();
        let n = e.port.endpoints.len();
        if n == 1 {
            let _ = writeln!(chains, "  chain {} {{ goto {}-0; }}", e.chain, e.chain);
        } else {
            let arms: Vec<String> = (0..n)
                .map(|i| format!("{i} : goto {}-{i}", e.chain))
                .collect();
            let _ = writeln!(
                chains,
                "  chain {} {{ numgen random mod {n} vmap {{ {} }}; }}",
                e.chain,
                arms.join(", ")
            );
        }
        for (i, b) in e.port.endpoints.iter().enumerate() {
            let _ = writeln!(
                chains,
                "  chain {}-{i} {{ ip saddr {} meta mark set meta mark | {MASQ_MARK:#x}; meta l4proto {proto} dnat to {}:{}; }}",
                e.chain, b.ip, b.ip, b.port
            );
        }
    }
    push(&mut out, "  chain services {");
    out.push_str(&services_chain);
    push(&mut out, "  }");
    push(&mut out, "  chain no-endpoints {");
    out.push_str(&reject);
    push(&mut out, "  }");
    out.push_str(&chains);
    push(&mut out, "}");
    out
}

/// The script that removes the table (and succeeds when it is already gone).
pub fn teardown() -> String {
    format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::service::Protocol;
    use crate::proto::services::Backend;

    fn svc(name: &str, vip: Option<&str>, eps: &[&str], node_port: Option<u16>) -> ServiceState {
        ServiceState {
            v: 1,
            namespace: "default".into(),
            name: name.into(),
            cluster_ip: vip.map(|v| v.parse().unwrap()),
            headless: vip.is_none(),
            ports: vec![PortState {
                name: String::new(),
                protocol: Protocol::TCP,
                port: 80,
                node_port,
                endpoints: eps
                    .iter()
                    .map(|e| Backend {
                        ip: e.parse().unwrap(),
                        port: 8080,
                    })
                    .collect(),
            }],
            ready: vec![],
        }
    }

    #[test]
    fn a_cluster_ip_spreads_over_its_endpoints_with_numgen() {
        let s = svc(
            "web",
            Some("10.89.0.10"),
            &["10.88.1.2", "10.88.2.2", "10.88.3.2"],
            None,
        );
        let r = ruleset(&[&s]);
        assert!(
            r.starts_with("table ip herd-svc {}\ndelete table ip herd-svc\n"),
            "{r}"
        );
        assert!(
            r.contains("ip daddr 10.89.0.10 tcp dport 80 goto svc-0 comment \"default/web:80\""),
            "{r}"
        );
        assert!(
            r.contains(
                "numgen random mod 3 vmap { 0 : goto svc-0-0, 1 : goto svc-0-1, 2 : goto svc-0-2 }"
            ),
            "{r}"
        );
        assert!(r.contains("chain svc-0-2 { ip saddr 10.88.3.2 meta mark set meta mark | 0x4000; meta l4proto tcp dnat to 10.88.3.2:8080; }"), "{r}");
        assert!(r.contains("type nat hook output priority -100"), "{r}");
        assert!(r.contains("meta mark & 0x4000 == 0x4000 masquerade"), "{r}");
    }

    #[test]
    fn node_ports_match_local_addresses_and_are_masqueraded() {
        let s = svc("web", Some("10.89.0.10"), &["10.88.1.2"], Some(30080));
        let r = ruleset(&[&s]);
        assert!(r.contains("fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 30080 meta mark set meta mark | 0x4000 goto svc-0"), "{r}");
        assert!(r.contains("chain svc-0 { goto svc-0-0; }"), "{r}");
    }

    #[test]
    fn no_endpoints_rejects_and_headless_gets_nothing() {
        let empty = svc("empty", Some("10.89.0.11"), &[], Some(30081));
        let headless = svc("db", None, &["10.88.1.5"], None);
        let r = ruleset(&[&empty, &headless]);
        assert!(
            r.contains("ip daddr 10.89.0.11 tcp dport 80 reject with tcp reset"),
            "{r}"
        );
        assert!(r.contains("tcp dport 30081 reject with tcp reset"), "{r}");
        assert!(!r.contains("10.88.1.5"), "{r}");
        assert!(!r.contains("chain svc-0 "), "{r}");
    }

    #[test]
    fn equal_input_gives_equal_text() {
        let a = svc("a", Some("10.89.0.10"), &["10.88.1.2"], None);
        let b = svc("b", Some("10.89.0.12"), &["10.88.1.3"], None);
        assert_eq!(ruleset(&[&a, &b]), ruleset(&[&a, &b]));
        assert_eq!(
            teardown(),
            "table ip herd-svc {}\ndelete table ip herd-svc\n"
        );
    }
}

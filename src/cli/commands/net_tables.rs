//! `get` tables and `describe` text for Services, Endpoints and Ingresses, in kubectl's
//! columns.

use super::age;
use crate::api::ingress::Ingress;
use crate::api::selector::format_labels;
use crate::api::service::{Endpoints, Service, ServiceType};
use crate::cli::args::OutputFormat;
use crate::cli::table;

fn with_ns_col(header: &mut Vec<&'static str>, rows: &mut [Vec<String>], ns: &[&str], on: bool) {
    if on {
        header.insert(0, "NAMESPACE");
        for (r, n) in rows.iter_mut().zip(ns) {
            r.insert(0, n.to_string());
        }
    }
}

/// `80/TCP`, `80:30080/TCP` for NodePorts, comma-separated.
pub fn service_ports(s: &Service) -> String {
    if s.spec.ports.is_empty() {
        return "<none>".into();
    }
    s.spec
        .ports
        .iter()
        .map(|p| match (s.spec.type_, p.node_port) {
            (ServiceType::NodePort, Some(np)) => format!("{}:{np}/{}", p.port, p.protocol),
            _ => format!("{}/{}", p.port, p.protocol),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE`; wide adds SELECTOR.
pub fn services_table(items: &[Service], fmt: Option<OutputFormat>, with_ns: bool) -> String {
    let wide = fmt == Some(OutputFormat::Wide);
    let mut header = vec![
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ];
    if wide {
        header.push("SELECTOR");
    }
    let mut rows: Vec<Vec<String>> = items
        .iter()
        .map(|s| {
            let mut row = vec![
                s.metadata.name.clone(),
                s.spec.type_.to_string(),
                s.spec
                    .cluster_ip
                    .clone()
                    .unwrap_or_else(|| "<pending>".into()),
                "<none>".into(),
                service_ports(s),
                age(s.metadata.creation_timestamp.as_deref()),
            ];
            if wide {
                let sel = format_labels(&s.spec.selector);
                row.push(if sel.is_empty() { "<none>".into() } else { sel });
            }
            row
        })
        .collect();
    let ns: Vec<&str> = items.iter().map(|s| s.metadata.ns()).collect();
    with_ns_col(&mut header, &mut rows, &ns, with_ns);
    table::render(&header, &rows)
}

/// Ready `ip:port` pairs, at most three then `+ N more...`, as kubectl prints them.
pub fn endpoints_summary(e: &Endpoints) -> String {
    let all: Vec<String> = e
        .subsets
        .iter()
        .flat_map(|ss| {
            ss.addresses.iter().flat_map(move |a| {
                let ports: Vec<String> = if ss.ports.is_empty() {
                    vec![a.ip.clone()]
                } else {
                    ss.ports
                        .iter()
                        .map(|p| format!("{}:{}", a.ip, p.port))
                        .collect()
                };
                ports
            })
        })
        .collect();
    match all.len() {
        0 => "<none>".into(),
        n if n <= 3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

pub fn endpoints_table(items: &[Endpoints], with_ns: bool) -> String {
    let mut header = vec!["NAME", "ENDPOINTS", "AGE"];
    let mut rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            vec![
                e.metadata.name.clone(),
                endpoints_summary(e),
                age(e.metadata.creation_timestamp.as_deref()),
            ]
        })
        .collect();
    let ns: Vec<&str> = items.iter().map(|s| s.metadata.ns()).collect();
    with_ns_col(&mut header, &mut rows, &ns, with_ns);
    table::render(&header, &rows)
}

/// `NAME CLASS HOSTS ADDRESS PORTS AGE`.
pub fn ingresses_table(items: &[Ingress], with_ns: bool) -> String {
    let mut header = vec!["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"];
    let mut rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let hosts: Vec<&str> = i
                .spec
                .rules
                .iter()
                .map(|r| r.host.as_deref().unwrap_or("*"))
                .collect();
            vec![
                i.metadata.name.clone(),
                i.spec
                    .ingress_class_name
                    .clone()
                    .unwrap_or_else(|| "<none>".into()),
                if hosts.is_empty() {
                    "*".into()
                } else {
                    hosts.join(",")
                },
                String::new(),
                "80".into(),
                age(i.metadata.creation_timestamp.as_deref()),
            ]
        })
        .collect();
    let ns: Vec<&str> = items.iter().map(|s| s.metadata.ns()).collect();
    with_ns_col(&mut header, &mut rows, &ns, with_ns);
    table::render(&header, &rows)
}

pub fn describe_service(s: &Service, eps: Option<&Endpoints>) -> String {
    let mut o = String::new();
    let w = 18;
    let kv = |o: &mut String, k: &str, v: &str| super::describe::kv(o, 0, w, k, v);
    kv(&mut o, "Name", &s.metadata.name);
    kv(&mut o, "Namespace", s.metadata.ns());
    kv(
        &mut o,
        "Labels",
        &or_none(format_labels(&s.metadata.labels)),
    );
    kv(
        &mut o,
        "Selector",
        &or_none(format_labels(&s.spec.selector)),
    );
    kv(&mut o, "Type", &s.spec.type_.to_string());
    kv(
        &mut o,
        "IP",
        s.spec.cluster_ip.as_deref().unwrap_or("<pending>"),
    );
    for p in &s.spec.ports {
        let name = if p.name.is_empty() {
            "<unset>"
        } else {
            &p.name
        };
        kv(
            &mut o,
            "Port",
            &format!("{name}  {}/{}", p.port, p.protocol),
        );
        let target = p
            .target_port
            .as_ref()
            .map(|t| t.to_string())
            .unwrap_or_else(|| p.port.to_string());
        kv(&mut o, "TargetPort", &format!("{target}/{}", p.protocol));
        if let Some(np) = p.node_port {
            kv(&mut o, "NodePort", &format!("{name}  {np}/{}", p.protocol));
        }
        kv(
            &mut o,
            "Endpoints",
            &eps.map(endpoints_summary)
                .unwrap_or_else(|| "<none>".into()),
        );
    }
    if let Some(e) = eps {
        let not_ready: Vec<&str> = e
            .subsets
            .iter()
            .flat_map(|ss| ss.not_ready_addresses.iter().map(|a| a.ip.as_str()))
            .collect();
        if !not_ready.is_empty() {
            kv(&mut o, "NotReady", &not_ready.join(","));
        }
    }
    o
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

pub fn describe_ingress(i: &Ingress) -> String {
    let mut o = String::new();
    let kv = |o: &mut String, k: &str, v: &str| super::describe::kv(o, 0, 18, k, v);
    kv(&mut o, "Name", &i.metadata.name);
    kv(&mut o, "Namespace", i.metadata.ns());
    let backend =
        |b: &crate::api::ingress::IngressBackend| format!("{}:{}", b.service.name, b.service.port);
    kv(
        &mut o,
        "Default backend",
        &i.spec
            .default_backend
            .as_ref()
            .map(backend)
            .unwrap_or_else(|| "<default>".into()),
    );
    o.push_str("Rules:\n  Host        Path  Backends\n  ----        ----  --------\n");
    for r in &i.spec.rules {
        let host = r.host.as_deref().unwrap_or("*");
        o.push_str(&format!("  {host}\n"));
        for p in r.http.iter().flat_map(|h| &h.paths) {
            o.push_str(&format!(
                "              {}  {} ({:?})\n",
                p.path.as_deref().unwrap_or("/"),
                backend(&p.backend),
                p.path_type
            ));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_table_has_kubectl_columns_and_node_ports() {
        let mut s: Service = yaml_serde::from_str(
            "metadata: {name: web}\nspec: {type: NodePort, clusterIP: 10.89.0.10, selector: {app: web}, ports: [{port: 80, nodePort: 30080}, {name: dns, port: 53, protocol: UDP}]}",
        )
        .unwrap();
        s.metadata.creation_timestamp = None;
        let t = services_table(&[s.clone()], Some(OutputFormat::Wide), false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{t}");
        for col in [
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR",
        ] {
            assert!(lines[0].contains(col), "{t}");
        }
        assert!(lines[1].contains("NodePort"), "{t}");
        assert!(lines[1].contains("80:30080/TCP,53/UDP"), "{t}");
        assert!(lines[1].contains("app=web"), "{t}");
        let t = services_table(&[s], None, true);
        assert!(t.starts_with("NAMESPACE"), "{t}");
    }

    #[test]
    fn endpoints_summary_caps_at_three() {
        let mut e = Endpoints::default();
        assert_eq!(endpoints_summary(&e), "<none>");
        e.subsets.push(crate::api::service::EndpointSubset {
            addresses: (1..=5)
                .map(|i| crate::api::service::EndpointAddress {
                    ip: format!("10.88.0.{i}"),
                    ..Default::default()
                })
                .collect(),
            not_ready_addresses: vec![],
            ports: vec![crate::api::service::EndpointPort {
                name: String::new(),
                port: 80,
                protocol: Default::default(),
            }],
        });
        assert_eq!(
            endpoints_summary(&e),
            "10.88.0.1:80,10.88.0.2:80,10.88.0.3:80 + 2 more..."
        );
    }
}

//! What every worker learns about Services and Ingresses: retained messages under
//! `herd/v1/services/{ns}/{name}` and `herd/v1/ingresses/{ns}/{name}`, plus an index at
//! `herd/v1/services` naming every live one (so a worker that missed a deletion while away
//! prunes it: a cleared retained message is not redelivered). Empty payload = deleted.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::api::ingress::Ingress;
use crate::api::service::Protocol;

pub const SERVICES: &str = "herd/v1/services";
pub const INGRESSES: &str = "herd/v1/ingresses";

pub fn service_topic(ns: &str, name: &str) -> String {
    format!("{SERVICES}/{ns}/{name}")
}
pub fn ingress_topic(ns: &str, name: &str) -> String {
    format!("{INGRESSES}/{ns}/{name}")
}
/// The filters a worker subscribes to (the first also matches the index itself).
pub fn filters() -> [String; 2] {
    [format!("{SERVICES}/#"), format!("{INGRESSES}/#")]
}

/// One incoming service-tree topic.
#[derive(Debug, PartialEq, Eq)]
pub enum NetTopic<'a> {
    Index,
    Service { ns: &'a str, name: &'a str },
    Ingress { ns: &'a str, name: &'a str },
}

fn two(rest: &str) -> Option<(&str, &str)> {
    let (ns, name) = rest.split_once('/')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then_some((ns, name))
}

pub fn parse(topic: &str) -> Option<NetTopic<'_>> {
    if topic == SERVICES {
        return Some(NetTopic::Index);
    }
    if let Some(rest) = topic
        .strip_prefix(SERVICES)
        .and_then(|r| r.strip_prefix('/'))
    {
        let (ns, name) = two(rest)?;
        return Some(NetTopic::Service { ns, name });
    }
    let rest = topic.strip_prefix(INGRESSES)?.strip_prefix('/')?;
    let (ns, name) = two(rest)?;
    Some(NetTopic::Ingress { ns, name })
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetIndex {
    pub v: u32,
    #[serde(default)]
    pub services: Vec<(String, String)>,
    #[serde(default)]
    pub ingresses: Vec<(String, String)>,
}

/// A service as the data plane needs it: its address, ports and where traffic goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceState {
    pub v: u32,
    pub namespace: String,
    pub name: String,
    /// None for a headless service (or one whose address is not allocated yet).
    #[serde(default)]
    pub cluster_ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub headless: bool,
    #[serde(default)]
    pub ports: Vec<PortState>,
    /// Every ready pod address, port-independent (DNS answers for headless services).
    #[serde(default)]
    pub ready: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortState {
    #[serde(default)]
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    #[serde(default)]
    pub node_port: Option<u16>,
    /// Ready endpoints for this port (the target port resolved per pod).
    #[serde(default)]
    pub endpoints: Vec<Backend>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngressState {
    pub v: u32,
    pub ingress: Ingress,
}

super::versioned!(NetIndex, ServiceState, IngressState);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_back() {
        assert_eq!(parse("herd/v1/services"), Some(NetTopic::Index));
        assert_eq!(
            parse(&service_topic("default", "web")),
            Some(NetTopic::Service {
                ns: "default",
                name: "web"
            })
        );
        assert_eq!(
            parse(&ingress_topic("prod", "site")),
            Some(NetTopic::Ingress {
                ns: "prod",
                name: "site"
            })
        );
        for bad in [
            "herd/v1/services/a",
            "herd/v1/services/a/b/c",
            "herd/v1/services//b",
            "herd/v1/ingresses",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

//! Topic names under `herd/v1/`, and parsing of incoming topics back into their parts.

pub const PREFIX: &str = "herd/v1";

pub fn online(node: &str) -> String {
    format!("{PREFIX}/nodes/{node}/online")
}
pub fn info(node: &str) -> String {
    format!("{PREFIX}/nodes/{node}/info")
}
pub fn heartbeat(node: &str) -> String {
    format!("{PREFIX}/nodes/{node}/heartbeat")
}
pub fn desired_index(node: &str) -> String {
    format!("{PREFIX}/nodes/{node}/desired")
}
pub fn desired(node: &str, ns: &str, pod: &str) -> String {
    format!("{PREFIX}/nodes/{node}/desired/{ns}/{pod}")
}
/// Everything a worker subscribes to for its desired state (also matches the index topic).
pub fn desired_filter(node: &str) -> String {
    format!("{PREFIX}/nodes/{node}/desired/#")
}
pub fn observed(node: &str, ns: &str, pod: &str) -> String {
    format!("{PREFIX}/nodes/{node}/observed/{ns}/{pod}")
}
pub fn rpc_request(node: &str) -> String {
    format!("{PREFIX}/nodes/{node}/rpc/req")
}
pub fn rpc_response(node: &str, id: &str) -> String {
    format!("{PREFIX}/nodes/{node}/rpc/resp/{id}")
}

/// The cluster's pod routes (one retained message from the master; every node reads it,
/// no node may publish it): `herd/v1/net/routes`, payload `proto::NetRoutes`.
pub fn net_routes() -> String {
    format!("{PREFIX}/net/routes")
}

/// Filters the master subscribes to.
pub fn master_filters() -> Vec<String> {
    ["online", "info", "heartbeat", "observed/+/+", "rpc/resp/+"]
        .iter()
        .map(|s| format!("{PREFIX}/nodes/+/{s}"))
        .collect()
}

/// An incoming topic, split into what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    Online {
        node: &'a str,
    },
    Info {
        node: &'a str,
    },
    Heartbeat {
        node: &'a str,
    },
    DesiredIndex {
        node: &'a str,
    },
    Desired {
        node: &'a str,
        ns: &'a str,
        pod: &'a str,
    },
    Observed {
        node: &'a str,
        ns: &'a str,
        pod: &'a str,
    },
    RpcRequest {
        node: &'a str,
    },
    RpcResponse {
        node: &'a str,
        id: &'a str,
    },
    NetRoutes,
}

/// Parses a topic; `None` for anything that is not a herd v1 topic of a known shape.
pub fn parse(topic: &str) -> Option<Topic<'_>> {
    if topic == net_routes() {
        return Some(Topic::NetRoutes);
    }
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix("/nodes/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(match parts.as_slice() {
        [node, "online"] => Topic::Online { node },
        [node, "info"] => Topic::Info { node },
        [node, "heartbeat"] => Topic::Heartbeat { node },
        [node, "desired"] => Topic::DesiredIndex { node },
        [node, "desired", ns, pod] => Topic::Desired { node, ns, pod },
        [node, "observed", ns, pod] => Topic::Observed { node, ns, pod },
        [node, "rpc", "req"] => Topic::RpcRequest { node },
        [node, "rpc", "resp", id] => Topic::RpcResponse { node, id },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_topic_parses_back_to_its_parts() {
        assert_eq!(parse(&online("w1")), Some(Topic::Online { node: "w1" }));
        assert_eq!(parse(&info("w1")), Some(Topic::Info { node: "w1" }));
        assert_eq!(
            parse(&heartbeat("w1")),
            Some(Topic::Heartbeat { node: "w1" })
        );
        assert_eq!(
            parse(&desired_index("w1")),
            Some(Topic::DesiredIndex { node: "w1" })
        );
        assert_eq!(
            parse(&desired("w1", "default", "web")),
            Some(Topic::Desired {
                node: "w1",
                ns: "default",
                pod: "web"
            })
        );
        assert_eq!(
            parse(&observed("w1", "kube", "db")),
            Some(Topic::Observed {
                node: "w1",
                ns: "kube",
                pod: "db"
            })
        );
        assert_eq!(parse(&net_routes()), Some(Topic::NetRoutes));
        assert_eq!(parse("herd/v1/net/routes/x"), None);
        assert_eq!(
            parse(&rpc_request("n")),
            Some(Topic::RpcRequest { node: "n" })
        );
        assert_eq!(
            parse(&rpc_response("n", "abc")),
            Some(Topic::RpcResponse {
                node: "n",
                id: "abc"
            })
        );
    }

    #[test]
    fn foreign_and_malformed_topics_are_rejected() {
        for t in [
            "",
            "herd/v1",
            "herd/v2/nodes/a/online",
            "herd/v1/nodes//online",
            "herd/v1/nodes/a/online/extra",
            "herd/v1/nodes/a/desired/ns",
            "herd/v1/nodes/a/unknown",
            "other/topic",
        ] {
            assert_eq!(parse(t), None, "{t:?}");
        }
    }
}

//! Resource kinds as the user types them (`pods`, `po`, `node/pi1`), resolved to what herd
//! serves. Kept apart from the verbs so every verb accepts the same spellings.

/// The kinds the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Node,
}

/// Shown in errors, so a typo gets the list of what would have worked.
const SUPPORTED: &str = "pods (pod, po), nodes (node, no)";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KindError {
    #[error("unknown resource type {0:?}: supported kinds are {SUPPORTED}")]
    Unknown(String),
    #[error(
        "there is no need to give the resource type as a separate argument when using \
         KIND/NAME form (got {0:?} and {1:?})"
    )]
    NameTwice(String, String),
    #[error("resource name may not be empty in {0:?}")]
    EmptyName(String),
}

impl Kind {
    /// Parses kubectl's spellings, case-insensitively as kubectl does.
    pub fn parse(s: &str) -> Result<Kind, KindError> {
        match s.to_ascii_lowercase().as_str() {
            "pods" | "pod" | "po" => Ok(Kind::Pod),
            "nodes" | "node" | "no" => Ok(Kind::Node),
            _ => Err(KindError::Unknown(s.to_string())),
        }
    }

    /// Resolves the `KIND [NAME]` / `KIND/NAME` positional pair.
    pub fn with_name(kind: &str, name: Option<&str>) -> Result<(Kind, Option<String>), KindError> {
        match kind.split_once('/') {
            Some((k, n)) => {
                if let Some(extra) = name {
                    return Err(KindError::NameTwice(kind.to_string(), extra.to_string()));
                }
                if n.is_empty() {
                    return Err(KindError::EmptyName(kind.to_string()));
                }
                Ok((Kind::parse(k)?, Some(n.to_string())))
            }
            None => Ok((Kind::parse(kind)?, name.map(str::to_string))),
        }
    }

    /// Lowercase singular, as in `pod/web` and `pod "web" deleted`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Node => "node",
        }
    }

    /// Lowercase plural, the URL segment and the word in `pods "x" not found`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
        }
    }

    pub fn namespaced(self) -> bool {
        matches!(self, Kind::Pod)
    }

    /// API path of one object (`ns` is ignored for cluster-scoped kinds).
    pub fn object_path(self, ns: &str, name: &str) -> String {
        format!("{}/{}", self.collection_path(Some(ns)), name)
    }

    /// API path of a collection; `ns = None` lists across all namespaces.
    pub fn collection_path(self, ns: Option<&str>) -> String {
        match (self.namespaced(), ns) {
            (true, Some(ns)) => format!("/api/v1/namespaces/{ns}/{}", self.plural()),
            _ => format!("/api/v1/{}", self.plural()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_spellings_of_pods_and_nodes_are_accepted() {
        for s in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(Kind::parse(s), Ok(Kind::Pod), "{s}");
        }
        for s in ["nodes", "node", "no", "Node"] {
            assert_eq!(Kind::parse(s), Ok(Kind::Node), "{s}");
        }
    }

    #[test]
    fn an_unknown_kind_lists_the_supported_ones() {
        let msg = Kind::parse("deploy").unwrap_err().to_string();
        assert!(msg.contains("\"deploy\""), "{msg}");
        assert!(msg.contains("pods (pod, po), nodes (node, no)"), "{msg}");
    }

    #[test]
    fn kind_slash_name_splits_into_kind_and_name() {
        assert_eq!(
            Kind::with_name("po/web", None),
            Ok((Kind::Pod, Some("web".into())))
        );
        assert_eq!(
            Kind::with_name("node", Some("pi1")),
            Ok((Kind::Node, Some("pi1".into())))
        );
        assert_eq!(Kind::with_name("nodes", None), Ok((Kind::Node, None)));
    }

    #[test]
    fn kind_slash_name_with_another_name_or_an_empty_name_is_refused() {
        assert!(matches!(
            Kind::with_name("pod/a", Some("b")),
            Err(KindError::NameTwice(..))
        ));
        assert!(matches!(
            Kind::with_name("pod/", None),
            Err(KindError::EmptyName(_))
        ));
        assert!(matches!(
            Kind::with_name("svc/x", None),
            Err(KindError::Unknown(_))
        ));
    }

    #[test]
    fn paths_follow_the_kubernetes_layout() {
        assert_eq!(
            Kind::Pod.object_path("prod", "web"),
            "/api/v1/namespaces/prod/pods/web"
        );
        assert_eq!(Kind::Pod.collection_path(None), "/api/v1/pods");
        assert_eq!(Kind::Node.object_path("prod", "pi1"), "/api/v1/nodes/pi1");
        assert_eq!(Kind::Node.collection_path(Some("x")), "/api/v1/nodes");
    }
}

//! Resource kinds as the user types them (`pods`, `po`, `deploy/web`), resolved to what herd
//! serves. Kept apart from the verbs so every verb accepts the same spellings.

/// The kinds the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Node,
    Deployment,
    ReplicaSet,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    Service,
    Endpoints,
    Ingress,
}

/// Shown in errors, so a typo gets the list of what would have worked.
const SUPPORTED: &str = "pods (pod, po), nodes (node, no), deployments (deployment, deploy), \
                         replicasets (replicaset, rs), secrets (secret), configmaps (configmap, cm), \
                         persistentvolumeclaims (persistentvolumeclaim, pvc), \
                         services (service, svc), endpoints (ep), ingresses (ingress, ing)";

/// Kubernetes kinds a kubectl user may reach for that herd does not serve yet, as
/// (spellings, plural shown in the error).
const NOT_YET: &[(&[&str], &str)] = &[(&["namespaces", "namespace", "ns"], "namespaces")];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KindError {
    #[error("unknown resource type {0:?}: supported kinds are {SUPPORTED}")]
    Unknown(String),
    #[error(
        "resource type {typed:?} ({plural}) is not supported yet: supported kinds are {SUPPORTED}"
    )]
    NotYet { typed: String, plural: &'static str },
    #[error(
        "there is no need to give the resource type as a separate argument when using \
         KIND/NAME form (got {0:?} and {1:?})"
    )]
    NameTwice(String, String),
    #[error("resource name may not be empty in {0:?}")]
    EmptyName(String),
}

impl Kind {
    /// Parses kubectl's spellings, case-insensitively as kubectl does; group suffixes
    /// (`deployments.apps`, `deployment.v1.apps`) are accepted too.
    pub fn parse(s: &str) -> Result<Kind, KindError> {
        let lower = s.to_ascii_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((b, g)) => (b, Some(g)),
            None => (lower.as_str(), None),
        };
        let kind = match base {
            "pods" | "pod" | "po" => Kind::Pod,
            "nodes" | "node" | "no" => Kind::Node,
            "deployments" | "deployment" | "deploy" => Kind::Deployment,
            "replicasets" | "replicaset" | "rs" => Kind::ReplicaSet,
            "secrets" | "secret" => Kind::Secret,
            "configmaps" | "configmap" | "cm" => Kind::ConfigMap,
            "persistentvolumeclaims" | "persistentvolumeclaim" | "pvc" => {
                Kind::PersistentVolumeClaim
            }
            "services" | "service" | "svc" => Kind::Service,
            "endpoints" | "ep" => Kind::Endpoints,
            "ingresses" | "ingress" | "ing" => Kind::Ingress,
            _ => {
                if let Some((_, plural)) = NOT_YET.iter().find(|(names, _)| names.contains(&base)) {
                    return Err(KindError::NotYet {
                        typed: s.to_string(),
                        plural,
                    });
                }
                return Err(KindError::Unknown(s.to_string()));
            }
        };
        if let Some(g) = group {
            let g = g.strip_prefix("v1.").unwrap_or(g);
            if g != kind.group() {
                return Err(KindError::Unknown(s.to_string()));
            }
        }
        Ok(kind)
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

    /// The kind of a manifest object (`Deployment`).
    pub fn of(obj: &crate::api::Object) -> Kind {
        match obj {
            crate::api::Object::Pod(_) => Kind::Pod,
            crate::api::Object::ReplicaSet(_) => Kind::ReplicaSet,
            crate::api::Object::Deployment(_) => Kind::Deployment,
            crate::api::Object::Secret(_) => Kind::Secret,
            crate::api::Object::ConfigMap(_) => Kind::ConfigMap,
            crate::api::Object::PersistentVolumeClaim(_) => Kind::PersistentVolumeClaim,
            crate::api::Object::Service(_) => Kind::Service,
            crate::api::Object::Ingress(_) => Kind::Ingress,
        }
    }

    /// Lowercase singular, as in `pod "web" not found`.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Node => "node",
            Kind::Deployment => "deployment",
            Kind::ReplicaSet => "replicaset",
            Kind::Secret => "secret",
            Kind::ConfigMap => "configmap",
            Kind::PersistentVolumeClaim => "persistentvolumeclaim",
            Kind::Service => "service",
            Kind::Endpoints => "endpoints",
            Kind::Ingress => "ingress",
        }
    }

    /// Lowercase plural, the URL segment and the word in `pods "x" not found`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Node => "nodes",
            Kind::Deployment => "deployments",
            Kind::ReplicaSet => "replicasets",
            Kind::Secret => "secrets",
            Kind::ConfigMap => "configmaps",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::Ingress => "ingresses",
        }
    }

    /// The API group: empty for the core group.
    pub fn group(self) -> &'static str {
        match self {
            Kind::Pod
            | Kind::Node
            | Kind::Secret
            | Kind::ConfigMap
            | Kind::PersistentVolumeClaim
            | Kind::Service
            | Kind::Endpoints => "",
            Kind::Deployment | Kind::ReplicaSet => "apps",
            Kind::Ingress => "networking.k8s.io",
        }
    }

    /// The `Kind` field of objects of this kind (`Deployment`).
    pub fn kind_name(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Node => "Node",
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::Ingress => "Ingress",
        }
    }

    /// The `apiVersion` of objects of this kind.
    pub fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "networking.k8s.io" => "networking.k8s.io/v1",
            _ => "apps/v1",
        }
    }

    /// Singular with the group, as kubectl prints it: `pod`, `deployment.apps`. Used in
    /// `deployment.apps/web created` and `deployment.apps "web" deleted`.
    pub fn qualified(self) -> String {
        match self.group() {
            "" => self.singular().to_string(),
            g => format!("{}.{g}", self.singular()),
        }
    }

    /// `deployment.apps/web`, kubectl's `-o name` form.
    pub fn ref_name(self, name: &str) -> String {
        format!("{}/{name}", self.qualified())
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Node)
    }

    /// API path of one object (`ns` is ignored for cluster-scoped kinds).
    pub fn object_path(self, ns: &str, name: &str) -> String {
        format!("{}/{}", self.collection_path(Some(ns)), name)
    }

    /// API path of a collection; `ns = None` lists across all namespaces.
    pub fn collection_path(self, ns: Option<&str>) -> String {
        let root = match self.group() {
            "" => "/api/v1".to_string(),
            g => format!("/apis/{g}/v1"),
        };
        match (self.namespaced(), ns) {
            (true, Some(ns)) => format!("{root}/namespaces/{ns}/{}", self.plural()),
            _ => format!("{root}/{}", self.plural()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_spellings_of_every_kind_are_accepted() {
        for s in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(Kind::parse(s), Ok(Kind::Pod), "{s}");
        }
        for s in ["nodes", "node", "no", "Node"] {
            assert_eq!(Kind::parse(s), Ok(Kind::Node), "{s}");
        }
        for s in [
            "deployments",
            "deployment",
            "deploy",
            "Deployment",
            "deployments.apps",
            "deployment.v1.apps",
        ] {
            assert_eq!(Kind::parse(s), Ok(Kind::Deployment), "{s}");
        }
        for s in ["replicasets", "replicaset", "rs", "RS", "replicasets.apps"] {
            assert_eq!(Kind::parse(s), Ok(Kind::ReplicaSet), "{s}");
        }
        for s in ["svc", "service", "services", "Service"] {
            assert_eq!(Kind::parse(s), Ok(Kind::Service), "{s}");
        }
        for s in ["ing", "ingress", "ingresses.networking.k8s.io"] {
            assert_eq!(Kind::parse(s), Ok(Kind::Ingress), "{s}");
        }
        assert_eq!(Kind::parse("ep"), Ok(Kind::Endpoints));
        assert_eq!(
            Kind::Ingress.object_path("default", "site"),
            "/apis/networking.k8s.io/v1/namespaces/default/ingresses/site"
        );
        assert_eq!(Kind::Ingress.api_version(), "networking.k8s.io/v1");
        assert!(Kind::parse("pods.apps").is_err());
        assert!(Kind::parse("deploy.batch").is_err());
    }

    #[test]
    fn an_unknown_kind_lists_the_supported_ones() {
        let msg = Kind::parse("deploi").unwrap_err().to_string();
        assert!(msg.contains("\"deploi\""), "{msg}");
        assert!(msg.contains("pods (pod, po), nodes (node, no)"), "{msg}");
        assert!(msg.contains("deployments (deployment, deploy)"), "{msg}");
        assert!(msg.contains("replicasets (replicaset, rs)"), "{msg}");
    }

    #[test]
    fn kubectl_short_names_herd_lacks_say_not_supported_yet() {
        let e = Kind::parse("ns").unwrap_err();
        assert_eq!(
            e,
            KindError::NotYet {
                typed: "ns".into(),
                plural: "namespaces"
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("not supported yet"), "{msg}");
        assert!(msg.contains("namespaces"), "{msg}");
        assert!(matches!(
            Kind::with_name("ns/web", None),
            Err(KindError::NotYet { .. })
        ));
    }

    #[test]
    fn configmaps_and_claims_are_served_under_their_kubectl_names() {
        for s in ["cm", "configmap", "ConfigMaps"] {
            assert_eq!(Kind::parse(s), Ok(Kind::ConfigMap), "{s}");
        }
        for s in [
            "pvc",
            "PVC",
            "persistentvolumeclaim",
            "persistentvolumeclaims",
        ] {
            assert_eq!(Kind::parse(s), Ok(Kind::PersistentVolumeClaim), "{s}");
        }
        assert_eq!(
            Kind::PersistentVolumeClaim.object_path("default", "data"),
            "/api/v1/namespaces/default/persistentvolumeclaims/data"
        );
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
        assert_eq!(
            Kind::with_name("deploy/web", None),
            Ok((Kind::Deployment, Some("web".into())))
        );
        assert_eq!(
            Kind::with_name("deployment.apps/web", None),
            Ok((Kind::Deployment, Some("web".into())))
        );
        assert_eq!(
            Kind::with_name("rs", Some("web-5d8f")),
            Ok((Kind::ReplicaSet, Some("web-5d8f".into())))
        );
    }

    #[test]
    fn kind_slash_name_with_another_name_or_an_empty_name_is_refused() {
        assert!(matches!(
            Kind::with_name("pod/a", Some("b")),
            Err(KindError::NameTwice(..))
        ));
        assert!(matches!(
            Kind::with_name("deploy/", None),
            Err(KindError::EmptyName(_))
        ));
        assert!(matches!(
            Kind::with_name("sts/x", None),
            Err(KindError::Unknown(_))
        ));
    }

    #[test]
    fn names_carry_the_group_like_kubectl() {
        assert_eq!(Kind::Pod.qualified(), "pod");
        assert_eq!(Kind::Deployment.qualified(), "deployment.apps");
        assert_eq!(Kind::ReplicaSet.ref_name("web-1"), "replicaset.apps/web-1");
        assert_eq!(Kind::Node.ref_name("pi1"), "node/pi1");
        assert_eq!(Kind::Deployment.api_version(), "apps/v1");
        assert_eq!(Kind::Pod.api_version(), "v1");
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
        assert_eq!(
            Kind::Deployment.object_path("prod", "web"),
            "/apis/apps/v1/namespaces/prod/deployments/web"
        );
        assert_eq!(
            Kind::ReplicaSet.collection_path(None),
            "/apis/apps/v1/replicasets"
        );
        assert_eq!(
            Kind::ReplicaSet.collection_path(Some("default")),
            "/apis/apps/v1/namespaces/default/replicasets"
        );
    }
}

//! Resource types (Kubernetes-shaped), defaults, validation with field paths, and manifest
//! parsing. Pure: no I/O.

pub mod apps;
pub mod configmap;
pub mod ingress;
pub mod manifest;
pub mod meta;
pub mod node;
pub mod pod;
pub mod probe;
pub mod pvc;
pub mod quantity;
pub mod scheduling;
pub mod secret;
pub mod security;
pub mod selector;
pub mod service;
pub mod validate;
pub mod validate_apps;
pub mod validate_scheduling;
pub mod validate_security;
pub mod volume;

pub use meta::{Condition, List, ObjectMeta, Status};
pub use node::Node;
pub use pod::{Container, ContainerStatus, Pod, PodPhase, PodSpec, PodStatus, RestartPolicy};
pub use security::{PodSecurityContext, SecurityContext};

pub const DEFAULT_NAMESPACE: &str = "default";

/// Any object a manifest may hold. Grows with each kind herd learns.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Pod(Box<Pod>),
    ReplicaSet(Box<apps::ReplicaSet>),
    Deployment(Box<apps::Deployment>),
    Secret(Box<secret::Secret>),
    ConfigMap(Box<configmap::ConfigMap>),
    PersistentVolumeClaim(Box<pvc::PersistentVolumeClaim>),
    Service(Box<service::Service>),
    Ingress(Box<ingress::Ingress>),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => "Pod",
            Object::ReplicaSet(_) => "ReplicaSet",
            Object::Deployment(_) => "Deployment",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
            Object::Service(_) => "Service",
            Object::Ingress(_) => "Ingress",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Pod(p) => &p.metadata,
            Object::ReplicaSet(r) => &r.metadata,
            Object::Deployment(d) => &d.metadata,
            Object::Secret(s) => &s.metadata,
            Object::ConfigMap(c) => &c.metadata,
            Object::PersistentVolumeClaim(c) => &c.metadata,
            Object::Service(s) => &s.metadata,
            Object::Ingress(i) => &i.metadata,
        }
    }
}

//! Resource types (Kubernetes-shaped), defaults, validation with field paths, and manifest
//! parsing. Pure: no I/O.

pub mod manifest;
pub mod meta;
pub mod node;
pub mod pod;
pub mod quantity;
pub mod validate;

pub use meta::{Condition, List, ObjectMeta, Status};
pub use node::Node;
pub use pod::{Container, ContainerStatus, Pod, PodPhase, PodSpec, PodStatus, RestartPolicy};

pub const DEFAULT_NAMESPACE: &str = "default";

/// Any object a manifest may hold. Grows with each kind herd learns.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Pod(Box<Pod>),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => "Pod",
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Pod(p) => &p.metadata,
        }
    }
}

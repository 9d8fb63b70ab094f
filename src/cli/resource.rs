//! What the verbs need to know about each typed resource: its kind, its metadata, and which
//! fields a replacing PUT must carry over from the live object (the server's, or those a
//! manifest leaves to the server), so `apply` and read-modify-write verbs share one rule.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::kind::Kind;
use crate::api::apps::{Deployment, ReplicaSet, RESTARTED_AT};
use crate::api::{Node, ObjectMeta, Pod};

/// Annotation prefix the Deployment controller writes (revision, desired replicas ...).
const CONTROLLER_ANNOTATIONS: &str = "deployment.kubernetes.io/";

pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: Kind;
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// Copies from `live` what the server owns (identity, generation, status) and what a
    /// manifest that leaves it out means to keep (as kubectl's merge would): a pod's node,
    /// replicas after a `scale`, controller annotations, `rollout restart`'s stamp.
    fn keep_server_fields(&mut self, live: &Self);

    fn name(&self) -> &str {
        &self.meta().name
    }
}

fn keep_meta(m: &mut ObjectMeta, live: &ObjectMeta) {
    m.uid = live.uid.clone();
    m.resource_version = live.resource_version.clone();
    m.creation_timestamp = live.creation_timestamp.clone();
    m.generation = live.generation;
    if m.owner_references.is_empty() {
        m.owner_references = live.owner_references.clone();
    }
    for (k, v) in &live.annotations {
        if k.starts_with(CONTROLLER_ANNOTATIONS) && !m.annotations.contains_key(k) {
            m.annotations.insert(k.clone(), v.clone());
        }
    }
}

/// Kinds whose server-owned fields are only metadata (and, with `keep_status`, the status).
macro_rules! plain_resource {
    ($t:ty, $kind:ident $(, $keep_status:ident)?) => {
        impl Resource for $t {
            const KIND: Kind = Kind::$kind;
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
            fn keep_server_fields(&mut self, live: &Self) {
                keep_meta(&mut self.metadata, &live.metadata);
                $(plain_resource!(@$keep_status self, live);)?
            }
        }
    };
    (@keep_status $me:ident, $live:ident) => {
        $me.status = $live.status.clone();
    };
}

impl Resource for Pod {
    const KIND: Kind = Kind::Pod;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn keep_server_fields(&mut self, live: &Self) {
        keep_meta(&mut self.metadata, &live.metadata);
        // A manifest rarely names a node: keep the scheduler's binding.
        if self.spec.node_name.is_none() {
            self.spec.node_name = live.spec.node_name.clone();
        }
        self.status = live.status.clone();
    }
}

impl Resource for Deployment {
    const KIND: Kind = Kind::Deployment;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn keep_server_fields(&mut self, live: &Self) {
        keep_meta(&mut self.metadata, &live.metadata);
        if self.spec.replicas.is_none() {
            self.spec.replicas = live.spec.replicas;
        }
        // Re-applying the manifest must not undo `rollout restart` (that would roll again).
        let live_tmpl = &live.spec.template.metadata.annotations;
        let tmpl = &mut self.spec.template.metadata.annotations;
        if let (Some(v), false) = (live_tmpl.get(RESTARTED_AT), tmpl.contains_key(RESTARTED_AT)) {
            tmpl.insert(RESTARTED_AT.to_string(), v.clone());
        }
        self.status = live.status.clone();
    }
}

impl Resource for ReplicaSet {
    const KIND: Kind = Kind::ReplicaSet;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn keep_server_fields(&mut self, live: &Self) {
        keep_meta(&mut self.metadata, &live.metadata);
        if self.spec.replicas.is_none() {
            self.spec.replicas = live.spec.replicas;
        }
        self.status = live.status.clone();
    }
}

plain_resource!(crate::api::secret::Secret, Secret);

impl Resource for crate::api::service::Service {
    const KIND: Kind = Kind::Service;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    /// The allocated address and node ports stay unless the manifest names others (the
    /// server refuses a changed clusterIP; kubectl's merge keeps them the same way).
    fn keep_server_fields(&mut self, live: &Self) {
        keep_meta(&mut self.metadata, &live.metadata);
        if self.spec.cluster_ip.is_none() {
            self.spec.cluster_ip = live.spec.cluster_ip.clone();
            self.spec.cluster_ips = live.spec.cluster_ips.clone();
        }
        if self.spec.type_ == live.spec.type_ {
            for p in &mut self.spec.ports {
                if p.node_port.is_none() {
                    p.node_port = live
                        .spec
                        .ports
                        .iter()
                        .find(|l| l.port == p.port && l.protocol == p.protocol)
                        .and_then(|l| l.node_port);
                }
            }
        }
        self.status = live.status.clone();
    }
}

plain_resource!(crate::api::service::Endpoints, Endpoints);

plain_resource!(crate::api::ingress::Ingress, Ingress, keep_status);

plain_resource!(crate::api::configmap::ConfigMap, ConfigMap);

plain_resource!(
    crate::api::pvc::PersistentVolumeClaim,
    PersistentVolumeClaim,
    keep_status
);

plain_resource!(Node, Node, keep_status);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apps::REVISION_ANNOTATION;

    #[test]
    fn a_reapplied_deployment_keeps_scale_revision_and_restart_stamp() {
        let mut live = Deployment::default();
        live.metadata.uid = "u1".into();
        live.metadata.generation = 4;
        live.metadata
            .annotations
            .insert(REVISION_ANNOTATION.into(), "3".into());
        live.spec.replicas = Some(5);
        live.spec
            .template
            .metadata
            .annotations
            .insert(RESTARTED_AT.into(), "2026-01-01T00:00:00Z".into());
        live.status.replicas = 5;
        let mut m = Deployment::default();
        m.metadata.annotations.insert("team".into(), "a".into());
        m.keep_server_fields(&live);
        assert_eq!(m.metadata.uid, "u1");
        assert_eq!(m.metadata.generation, 4);
        assert_eq!(m.spec.replicas, Some(5));
        assert_eq!(m.metadata.annotations[REVISION_ANNOTATION], "3");
        assert_eq!(m.metadata.annotations["team"], "a");
        assert!(m
            .spec
            .template
            .metadata
            .annotations
            .contains_key(RESTARTED_AT));
        assert_eq!(m.status.replicas, 5);
        // What the manifest says wins.
        let mut m = Deployment::default();
        m.spec.replicas = Some(2);
        m.keep_server_fields(&live);
        assert_eq!(m.spec.replicas, Some(2));
    }

    #[test]
    fn a_reapplied_pod_keeps_its_node() {
        let mut live = Pod::default();
        live.spec.node_name = Some("pi1".into());
        let mut m = Pod::default();
        m.keep_server_fields(&live);
        assert_eq!(m.spec.node_name.as_deref(), Some("pi1"));
    }
}

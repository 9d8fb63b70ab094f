//! `apps/v1` ReplicaSets and Deployments: the same CRUD shape for both, generic over the kind.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{blocking, ApiError, AppState};
use crate::api::apps::{Deployment, ReplicaSet};
use crate::api::configmap::ConfigMap;
use crate::api::ingress::Ingress;
use crate::api::pvc::{PersistentVolumeClaim, SELECTED_NODE};
use crate::api::secret::Secret;
use crate::api::selector::LabelSelector;
use crate::api::service::{Endpoints, Service};
use crate::api::{List, Object, ObjectMeta};
use crate::master::store::{Resource, Store};
use crate::util::time::now_rfc3339;

/// What differs between the workload kinds at the API.
pub trait Workload: Resource + serde::Serialize {
    /// URL plural, e.g. `deployments`.
    const PLURAL: &'static str;
    fn from_object(o: Object) -> Option<Self>;
    /// Copies what a user may change (spec, labels, annotations) from `new`.
    fn take_user_fields(&mut self, new: &Self);
    /// Status is server-owned: a create starts from none.
    fn clear_status(&mut self);
    /// `apiVersion` of the kind's lists.
    const API_VERSION: &'static str = "apps/v1";
    /// Puts a parsed object into its stored form (a Secret folds `stringData` into `data`).
    fn normalize(&mut self) {}
    fn labels(&self) -> &std::collections::BTreeMap<String, String> {
        &self.meta().labels
    }
    /// Refuses an update of the stored object (`self`) to `new` (immutable data).
    fn check_update(&self, _new: &Self) -> Result<(), String> {
        Ok(())
    }
    /// Refuses a delete (a claim still in use).
    fn check_delete(
        _store: &crate::master::store::Store,
        _ns: &str,
        _name: &str,
    ) -> Result<(), ApiError> {
        Ok(())
    }
    /// Server-side admission of a create (`live` None) or replace, run under `ADMISSION` so
    /// that reading what others hold and writing this object is one step (address
    /// allocation).
    fn admit(&mut self, _store: &Store, _live: Option<&Self>) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Kubernetes' rule for Secrets and ConfigMaps marked `immutable: true`: the data cannot change
/// and the mark cannot be removed (delete and re-create instead).
fn check_immutable<T: PartialEq>(
    kind: &str,
    was: Option<bool>,
    now: Option<bool>,
    old: &T,
    new: &T,
) -> Result<(), String> {
    if was != Some(true) {
        return Ok(());
    }
    if now != Some(true) {
        return Err(format!("immutable: {kind} is immutable and the field cannot be unset (delete and re-create it)"));
    }
    if old != new {
        return Err(format!(
            "data: {kind} is immutable: its data cannot change (delete and re-create it)"
        ));
    }
    Ok(())
}

/// Serialises admissions that allocate from a shared pool (Service addresses and ports).
static ADMISSION: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn admission() -> std::sync::MutexGuard<'static, ()> {
    // Nothing guarded can be left half-done by a panic: the guard only orders writers.
    ADMISSION.lock().unwrap_or_else(|p| p.into_inner())
}

impl Workload for Service {
    const PLURAL: &'static str = "services";
    const API_VERSION: &'static str = "v1";
    fn from_object(o: Object) -> Option<Self> {
        match o {
            Object::Service(x) => Some(*x),
            _ => None,
        }
    }
    fn take_user_fields(&mut self, new: &Self) {
        self.spec = new.spec.clone();
        self.metadata.labels = new.metadata.labels.clone();
        self.metadata.annotations = new.metadata.annotations.clone();
    }
    fn clear_status(&mut self) {
        self.status = Default::default();
    }
    fn admit(&mut self, store: &Store, live: Option<&Self>) -> Result<(), ApiError> {
        let me = (self.metadata.ns().to_string(), self.metadata.name.clone());
        let others: Vec<Service> = store
            .list::<Service>(None)?
            .into_iter()
            .filter(|o| {
                (o.metadata.ns(), o.metadata.name.as_str()) != (me.0.as_str(), me.1.as_str())
            })
            .collect();
        crate::master::services::alloc::assign(self, live, &others)
            .map_err(|e| ApiError::invalid(e.to_string()))
    }
}

impl Workload for Ingress {
    const PLURAL: &'static str = "ingresses";
    const API_VERSION: &'static str = crate::api::ingress::API_VERSION;
    fn from_object(o: Object) -> Option<Self> {
        match o {
            Object::Ingress(x) => Some(*x),
            _ => None,
        }
    }
    fn take_user_fields(&mut self, new: &Self) {
        self.spec = new.spec.clone();
        self.metadata.labels = new.metadata.labels.clone();
        self.metadata.annotations = new.metadata.annotations.clone();
    }
    fn clear_status(&mut self) {
        self.status = None;
    }
}

/// Read-only at the API (the endpoints controller writes them); only list and get are routed.
impl Workload for Endpoints {
    const PLURAL: &'static str = "endpoints";
    const API_VERSION: &'static str = "v1";
    fn from_object(_: Object) -> Option<Self> {
        None
    }
    fn take_user_fields(&mut self, _: &Self) {}
    fn clear_status(&mut self) {}
}

/// Both workload kinds have the same shape (spec, status, metadata) at the API.
macro_rules! workload {
    ($t:ty, $variant:ident, $plural:literal) => {
        impl Workload for $t {
            const PLURAL: &'static str = $plural;
            fn from_object(o: Object) -> Option<Self> {
                match o {
                    Object::$variant(x) => Some(*x),
                    _ => None,
                }
            }
            fn take_user_fields(&mut self, new: &Self) {
                self.spec = new.spec.clone();
                self.metadata.labels = new.metadata.labels.clone();
                self.metadata.annotations = merge_annotations(&self.metadata, &new.metadata);
            }
            fn clear_status(&mut self) {
                self.status = Default::default();
            }
        }
    };
}
workload!(Deployment, Deployment, "deployments");
workload!(ReplicaSet, ReplicaSet, "replicasets");

/// Secrets share the CRUD shape; what a user may change is the data and type.
impl Workload for Secret {
    const PLURAL: &'static str = "secrets";
    const API_VERSION: &'static str = "v1";
    fn from_object(o: Object) -> Option<Self> {
        match o {
            Object::Secret(x) => Some(*x),
            _ => None,
        }
    }
    fn take_user_fields(&mut self, new: &Self) {
        self.data = new.data.clone();
        self.type_ = new.type_.clone();
        self.immutable = new.immutable;
        self.metadata.labels = new.metadata.labels.clone();
        self.metadata.annotations = new.metadata.annotations.clone();
    }
    fn clear_status(&mut self) {}
    fn normalize(&mut self) {
        self.fold_string_data();
    }
    fn check_update(&self, new: &Self) -> Result<(), String> {
        check_immutable(
            "Secret",
            self.immutable,
            new.immutable,
            &(&self.data, &self.type_),
            &(&new.data, &new.type_),
        )
    }
}

/// ConfigMaps share the CRUD shape; what a user may change is the data.
impl Workload for ConfigMap {
    const PLURAL: &'static str = "configmaps";
    const API_VERSION: &'static str = "v1";
    fn from_object(o: Object) -> Option<Self> {
        match o {
            Object::ConfigMap(x) => Some(*x),
            _ => None,
        }
    }
    fn take_user_fields(&mut self, new: &Self) {
        self.data = new.data.clone();
        self.binary_data = new.binary_data.clone();
        self.immutable = new.immutable;
        self.metadata.labels = new.metadata.labels.clone();
        self.metadata.annotations = new.metadata.annotations.clone();
    }
    fn clear_status(&mut self) {}
    fn check_update(&self, new: &Self) -> Result<(), String> {
        check_immutable(
            "ConfigMap",
            self.immutable,
            new.immutable,
            &(&self.data, &self.binary_data),
            &(&new.data, &new.binary_data),
        )
    }
}

/// Claims: the spec is fixed once created except the storage request (recorded only); the
/// binding (node annotation, status) is server-owned.
impl Workload for PersistentVolumeClaim {
    const PLURAL: &'static str = "persistentvolumeclaims";
    const API_VERSION: &'static str = "v1";
    fn from_object(o: Object) -> Option<Self> {
        match o {
            Object::PersistentVolumeClaim(x) => Some(*x),
            _ => None,
        }
    }
    fn take_user_fields(&mut self, new: &Self) {
        self.spec.resources = new.spec.resources.clone();
        self.metadata.labels = new.metadata.labels.clone();
        let node = self.metadata.annotations.get(SELECTED_NODE).cloned();
        self.metadata.annotations = new.metadata.annotations.clone();
        self.metadata.annotations.remove(SELECTED_NODE);
        if let Some(n) = node {
            self.metadata.annotations.insert(SELECTED_NODE.into(), n);
        }
    }
    fn clear_status(&mut self) {
        self.status = Default::default();
        self.metadata.annotations.remove(SELECTED_NODE);
    }
    fn check_update(&self, new: &Self) -> Result<(), String> {
        let mut a = self.spec.clone();
        a.resources = new.spec.resources.clone();
        if a != new.spec {
            return Err("spec: is immutable after creation except resources.requests".into());
        }
        Ok(())
    }
    /// Refused while a pod uses the claim (herd's answer to Kubernetes' pvc-protection
    /// finalizer: the user deletes the pods first, nothing is left half-deleted).
    fn check_delete(
        store: &crate::master::store::Store,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let pods: Vec<crate::api::Pod> = store.list(Some(ns))?;
        let users: Vec<String> = pods
            .iter()
            .filter(|p| {
                crate::api::volume::references(&p.spec)
                    .claims
                    .iter()
                    .any(|c| c == name)
            })
            .map(|p| p.metadata.name.clone())
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "persistentvolumeclaim {name:?} is in use by pod(s) {}: delete them first",
                users.join(", ")
            ),
        ))
    }
}

/// The user's annotations, keeping the controller-owned revision annotation.
fn merge_annotations(
    old: &ObjectMeta,
    new: &ObjectMeta,
) -> std::collections::BTreeMap<String, String> {
    let mut a = new.annotations.clone();
    let key = crate::api::apps::REVISION_ANNOTATION;
    if let Some(v) = old.annotations.get(key) {
        a.insert(key.to_string(), v.clone());
    }
    a
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    label_selector: Option<String>,
}

pub fn selector(q: Option<&str>) -> Result<LabelSelector, ApiError> {
    match q {
        None => Ok(LabelSelector::default()),
        Some(s) => LabelSelector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("labelSelector: {e}"))),
    }
}

fn list_of<T: Workload>(items: Vec<T>) -> Json<List<T>> {
    let mut l = List::new(items);
    l.kind = format!("{}List", T::KIND);
    l.api_version = T::API_VERSION.into();
    Json(l)
}

pub async fn list_all<T: Workload>(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<T>>, ApiError> {
    let sel = selector(q.label_selector.as_deref())?;
    let store = st.store.clone();
    let items = blocking(move || Ok(store.list::<T>(None)?)).await?;
    Ok(list_of(
        items
            .into_iter()
            .filter(|o| sel.matches(o.labels()))
            .collect(),
    ))
}

pub async fn list_ns<T: Workload>(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<List<T>>, ApiError> {
    let sel = selector(q.label_selector.as_deref())?;
    let store = st.store.clone();
    let items = blocking(move || Ok(store.list::<T>(Some(&ns))?)).await?;
    Ok(list_of(
        items
            .into_iter()
            .filter(|o| sel.matches(o.labels()))
            .collect(),
    ))
}

pub async fn get_one<T: Workload>(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<T>, ApiError> {
    let store = st.store.clone();
    let n = name.clone();
    blocking(move || Ok(store.get::<T>(&ns, &n)?))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(&qualified::<T>(), &name))
}

/// `deployments.apps`, or just `secrets` for the core group, as in not-found messages.
fn qualified<T: Workload>() -> String {
    match T::API_VERSION.split_once('/') {
        Some((group, _)) => format!("{}.{group}", T::PLURAL),
        None => T::PLURAL.to_string(),
    }
}

fn parse<T: Workload>(body: &[u8], ns: &str, name: Option<&str>) -> Result<T, ApiError> {
    let obj = super::pods::parse_one(body)?;
    let kind = obj.kind();
    let mut o = T::from_object(obj).ok_or_else(|| {
        ApiError::bad_request(format!(
            "expected kind {} at this path, got {kind}",
            T::KIND
        ))
    })?;
    o.normalize();
    let m = o.meta_mut();
    match m.namespace.as_deref() {
        Some(bns) if bns != ns => {
            return Err(ApiError::bad_request(format!(
                "metadata.namespace: {bns:?} does not match the request namespace {ns:?}"
            )))
        }
        _ => m.namespace = Some(ns.to_string()),
    }
    if let Some(name) = name {
        if m.name != name {
            return Err(ApiError::bad_request(format!(
                "metadata.name: {:?} does not match the name in the URL {name:?}",
                m.name
            )));
        }
    }
    Ok(o)
}

pub async fn create<T: Workload>(
    State(st): State<AppState>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<T>), ApiError> {
    crate::api::validate::validate_dns1123_label(&ns)
        .map_err(|e| ApiError::bad_request(format!("namespace: {e}")))?;
    let mut fresh: T = parse(&body, &ns, None)?;
    fresh.clear_status();
    let store = st.store.clone();
    let created = blocking(move || {
        let _serial = admission();
        fresh.admit(&store, None)?;
        Ok(store.create(fresh, &now_rfc3339())?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn replace<T: Workload>(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<T>, ApiError> {
    let mut new: T = parse(&body, &ns, Some(&name))?;
    let store = st.store.clone();
    let updated = blocking(move || {
        let _serial = admission();
        if let Some(live) = store.get::<T>(&ns, &name)? {
            new.admit(&store, Some(&live))?;
        }
        store.update::<T, ApiError>(&ns, &name, |cur| {
            cur.check_update(&new).map_err(ApiError::invalid)?;
            cur.take_user_fields(&new);
            Ok(())
        })
    })
    .await?;
    Ok(Json(updated))
}

/// Deletes the object; what it owns is garbage-collected in the background by owner uid.
pub async fn delete<T: Workload>(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Json<T>, ApiError> {
    let store = st.store.clone();
    let n = name.clone();
    blocking(move || {
        T::check_delete(&store, &ns, &n)?;
        Ok(store.delete::<T>(&ns, &n, None)?)
    })
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::not_found(&qualified::<T>(), &name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutable_secrets_and_configmaps_refuse_data_changes_and_unmarking() {
        let mut s = Secret::default();
        s.data.insert("k".into(), "YQ==".into());
        s.immutable = Some(true);
        let mut changed = s.clone();
        changed.data.insert("k".into(), "Yg==".into());
        let e = s.check_update(&changed).unwrap_err();
        assert!(e.starts_with("data: Secret is immutable"), "{e}");
        let mut unmarked = s.clone();
        unmarked.immutable = None;
        assert!(s
            .check_update(&unmarked)
            .unwrap_err()
            .starts_with("immutable:"));
        let mut relabelled = s.clone();
        relabelled.metadata.labels.insert("a".into(), "b".into());
        assert!(s.check_update(&relabelled).is_ok(), "labels may change");
        s.immutable = None;
        assert!(
            s.check_update(&changed).is_ok(),
            "a mutable Secret may change"
        );

        let c = ConfigMap {
            immutable: Some(true),
            ..Default::default()
        };
        let mut bin = c.clone();
        bin.binary_data.insert("b".into(), "AA==".into());
        assert!(c
            .check_update(&bin)
            .unwrap_err()
            .contains("ConfigMap is immutable"));
    }

    #[test]
    fn a_claims_spec_is_fixed_but_its_request_may_change_and_its_binding_is_kept() {
        let mut c = PersistentVolumeClaim::default();
        c.spec.access_modes = vec!["ReadWriteOnce".into()];
        c.metadata
            .annotations
            .insert(SELECTED_NODE.into(), "w1".into());
        let mut bigger = c.clone();
        bigger.metadata.annotations.clear();
        bigger
            .spec
            .resources
            .requests
            .insert("storage".into(), "2Gi".into());
        assert!(c.check_update(&bigger).is_ok());
        c.take_user_fields(&bigger);
        assert_eq!(c.node(), Some("w1"), "the binding is server-owned");
        let mut other = c.clone();
        other.spec.access_modes = vec!["ReadWriteOncePod".into()];
        assert!(c.check_update(&other).is_err());
    }
}

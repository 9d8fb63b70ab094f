//! The master's only source of truth: one SQLite file in WAL mode.
//!
//! Every resource is a row (kind, namespace, name) holding the whole object as JSON, plus its
//! uid, generation (bumped when the spec changes) and resource version (a store-wide counter
//! bumped on every write, like etcd's revision). A write returns only after its transaction
//! committed with `synchronous=FULL`, so an acknowledged write survives `kill -9` and power
//! loss. Writes that change nothing are skipped: SD cards wear out.

mod podcidrs;
mod schema;
mod seal;
mod tokens;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::api::{Node, ObjectMeta, Pod};

pub use tokens::{valid_token_id, IssuedToken, Role, TokenCheck, TokenInfo, TokenSpec};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{kind} {namespace}/{name}: stored object does not decode: {source}")]
    Corrupt {
        kind: &'static str,
        namespace: String,
        name: String,
        source: serde_json::Error,
    },
    #[error("{kind} \"{name}\" already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} \"{name}\": uid precondition failed (object was replaced)")]
    Conflict { kind: &'static str, name: String },
    #[error(
        "state database was written by a newer herd (schema {found}, this build knows {known})"
    )]
    TooNew { found: i64, known: i64 },
    #[error("state database: {0}")]
    Invalid(String),
}

/// A kind the store can hold.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + 'static {
    const KIND: &'static str;
    /// Cluster-scoped kinds (nodes) are stored under the empty namespace.
    const NAMESPACED: bool;
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
    /// The part whose change bumps `generation`.
    fn spec_value(&self) -> Value;
    /// Stored encrypted (see `seal`).
    const SEALED: bool = false;
}

impl Resource for Pod {
    const KIND: &'static str = "Pod";
    const NAMESPACED: bool = true;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    /// Binding (setting `nodeName`) is not a spec change the user made: it must not bump the
    /// generation, or the worker would see every pod as "changed since created".
    fn spec_value(&self) -> Value {
        let mut spec = self.spec.clone();
        spec.node_name = None;
        serde_json::to_value(&spec).unwrap_or(Value::Null)
    }
}

/// Kinds whose whole `spec` is what bumps the generation.
macro_rules! resource {
    ($t:ty, $kind:literal, $namespaced:literal) => {
        impl Resource for $t {
            const KIND: &'static str = $kind;
            const NAMESPACED: bool = $namespaced;
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
            fn spec_value(&self) -> Value {
                serde_json::to_value(&self.spec).unwrap_or(Value::Null)
            }
        }
    };
}
resource!(crate::api::apps::ReplicaSet, "ReplicaSet", true);
resource!(crate::api::apps::Deployment, "Deployment", true);
resource!(Node, "Node", false);
resource!(crate::api::service::Service, "Service", true);
resource!(crate::api::ingress::Ingress, "Ingress", true);

/// Endpoints have no spec: their subsets are what changes.
impl Resource for crate::api::service::Endpoints {
    const KIND: &'static str = "Endpoints";
    const NAMESPACED: bool = true;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn spec_value(&self) -> Value {
        serde_json::to_value(&self.subsets).unwrap_or(Value::Null)
    }
}

impl Resource for crate::api::secret::Secret {
    const KIND: &'static str = "Secret";
    const NAMESPACED: bool = true;
    const SEALED: bool = true;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn spec_value(&self) -> Value {
        serde_json::json!({"type": self.type_, "data": self.data})
    }
}

impl Resource for crate::api::configmap::ConfigMap {
    const KIND: &'static str = "ConfigMap";
    const NAMESPACED: bool = true;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn spec_value(&self) -> Value {
        serde_json::json!({"data": self.data, "binaryData": self.binary_data})
    }
}

resource!(
    crate::api::pvc::PersistentVolumeClaim,
    "PersistentVolumeClaim",
    true
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// fsync at commit: acknowledged writes survive power loss.
    Full,
    /// No fsync at commit: for state peers re-report.
    Soft,
}

pub struct Store {
    conn: Mutex<Connection>,
    /// Bumped after every committed change; controllers wait on it (level-triggered: the value
    /// says only "something changed", they re-read what they need).
    changed: tokio::sync::watch::Sender<u64>,
    /// Encrypts bodies of `SEALED` kinds.
    sealer: seal::Sealer,
}

impl Store {
    /// Opens (creating) the database and its secrets key, `secrets.key` beside it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(
            conn,
            seal::Sealer::open(&path.with_file_name("secrets.key"))?,
        )
    }

    /// An in-memory store for unit tests of code above the store.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?, seal::Sealer::ephemeral()?)
    }

    fn init(mut conn: Connection, sealer: seal::Sealer) -> Result<Store, StoreError> {
        // WAL: readers never block the writer. synchronous=FULL: the WAL is fsynced at every
        // commit, so an acknowledged write survives power loss (NORMAL could lose the last
        // commits). Cost: one fsync per state transition, which is what we write anyway.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        let rv: i64 = conn.query_row(
            "SELECT value FROM counters WHERE name = 'resource_version'",
            [],
            |r| r.get(0),
        )?;
        let (changed, _) = tokio::sync::watch::channel(rv as u64);
        Ok(Store {
            conn: Mutex::new(conn),
            changed,
            sealer,
        })
    }

    /// A receiver that sees a new value after every committed change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (the transaction
        // rolls back on drop), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, rv: i64) {
        self.changed.send_replace(rv as u64);
    }

    /// Creates an object: assigns uid, generation 1, resource version and creation time.
    pub fn create<T: Resource>(&self, mut obj: T, now: &str) -> Result<T, StoreError> {
        let ns = namespace_of(&obj);
        let name = obj.meta().name.clone();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM resources WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![T::KIND, ns, name],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if exists {
            return Err(StoreError::AlreadyExists {
                kind: T::KIND,
                name,
            });
        }
        let rv = bump_rv(&tx)?;
        {
            let m = obj.meta_mut();
            m.uid = uuid::Uuid::new_v4().to_string();
            m.generation = 1;
            m.resource_version = rv.to_string();
            m.creation_timestamp = Some(now.to_string());
            m.deletion_timestamp = None;
            if T::NAMESPACED {
                m.namespace = Some(ns.clone());
            } else {
                m.namespace = None;
            }
        }
        let body = self.encode_body(&obj)?;
        tx.execute(
            "INSERT INTO resources (kind, namespace, name, uid, generation, resource_version, body)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
            params![T::KIND, ns, name, obj.meta().uid, rv, body],
        )?;
        tx.commit()?;
        drop(conn);
        self.notify(rv);
        Ok(obj)
    }

    pub fn get<T: Resource>(&self, namespace: &str, name: &str) -> Result<Option<T>, StoreError> {
        let ns = if T::NAMESPACED { namespace } else { "" };
        let conn = self.lock();
        let body: Option<String> = conn
            .query_row(
                "SELECT body FROM resources WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![T::KIND, ns, name],
                |r| r.get(0),
            )
            .optional()?;
        body.map(|b| self.decode_body::<T>(&b, ns, name))
            .transpose()
    }

    /// Every object of a kind, in one namespace or (None) all, ordered by namespace and name.
    pub fn list<T: Resource>(&self, namespace: Option<&str>) -> Result<Vec<T>, StoreError> {
        let conn = self.lock();
        let mut out = Vec::new();
        let mut push = |ns: String, name: String, body: String| -> Result<(), StoreError> {
            out.push(self.decode_body::<T>(&body, &ns, &name)?);
            Ok(())
        };
        match namespace.filter(|_| T::NAMESPACED) {
            Some(ns) => {
                let mut st = conn.prepare(
                    "SELECT namespace, name, body FROM resources WHERE kind = ?1 AND namespace = ?2
                     ORDER BY namespace, name",
                )?;
                let rows = st.query_map(params![T::KIND, ns], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                for row in rows {
                    let (ns, name, body) = row?;
                    push(ns, name, body)?;
                }
            }
            None => {
                let mut st = conn.prepare(
                    "SELECT namespace, name, body FROM resources WHERE kind = ?1
                     ORDER BY namespace, name",
                )?;
                let rows =
                    st.query_map(params![T::KIND], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                for row in rows {
                    let (ns, name, body) = row?;
                    push(ns, name, body)?;
                }
            }
        }
        Ok(out)
    }

    /// Read-modify-write in one transaction. `f` may refuse by returning an error, which is
    /// passed through unchanged. Writes nothing when `f` changes nothing; bumps generation when
    /// the spec changed. Server-owned metadata is restored after `f` so callers cannot forge it.
    pub fn update<T: Resource, E: From<StoreError>>(
        &self,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut T) -> Result<(), E>,
    ) -> Result<T, E> {
        self.update_with(namespace, name, Durability::Full, f)
    }

    /// `update` for state a peer re-reports anyway (pod status observed by a worker): committed
    /// without waiting for fsync (`synchronous=NORMAL`, still atomic and consistent in WAL
    /// mode). A power cut may lose the last such commits; the next report or resync restores
    /// them. Saves an fsync per status change — latency, and SD-card wear.
    pub fn update_soft<T: Resource, E: From<StoreError>>(
        &self,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut T) -> Result<(), E>,
    ) -> Result<T, E> {
        self.update_with(namespace, name, Durability::Soft, f)
    }

    fn update_with<T: Resource, E: From<StoreError>>(
        &self,
        namespace: &str,
        name: &str,
        durability: Durability,
        f: impl FnOnce(&mut T) -> Result<(), E>,
    ) -> Result<T, E> {
        let ns = if T::NAMESPACED { namespace } else { "" };
        let mut conn = self.lock();
        let soft = durability == Durability::Soft;
        if soft {
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(StoreError::from)?;
        }
        let result = self.update_locked(&mut conn, ns, name, f);
        if soft {
            // Back to FULL before anyone else can commit on this connection.
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(StoreError::from)?;
        }
        let (obj, rv) = result?;
        drop(conn);
        if let Some(rv) = rv {
            self.notify(rv);
        }
        Ok(obj)
    }

    /// The transaction of `update`; returns the object and the new resource version if it
    /// wrote.
    fn update_locked<T: Resource, E: From<StoreError>>(
        &self,
        conn: &mut Connection,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut T) -> Result<(), E>,
    ) -> Result<(T, Option<i64>), E> {
        let tx = conn.transaction().map_err(StoreError::from)?;
        let body: Option<String> = tx
            .query_row(
                "SELECT body FROM resources WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![T::KIND, ns, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(StoreError::from)?;
        let Some(body) = body else {
            return Err(StoreError::NotFound {
                kind: T::KIND,
                name: name.to_string(),
            }
            .into());
        };
        let old: T = self.decode_body(&body, ns, name)?;
        let mut new = old.clone();
        f(&mut new)?;
        {
            let (om, nm) = (old.meta(), new.meta_mut());
            nm.name = om.name.clone();
            nm.namespace = om.namespace.clone();
            nm.uid = om.uid.clone();
            nm.creation_timestamp = om.creation_timestamp.clone();
            nm.generation = om.generation;
            nm.resource_version = om.resource_version.clone();
        }
        if plain_body(&new)? == plain_body(&old)? {
            return Ok((old, None));
        }
        if new.spec_value() != old.spec_value() {
            new.meta_mut().generation = old.meta().generation + 1;
        }
        let rv = bump_rv(&tx)?;
        new.meta_mut().resource_version = rv.to_string();
        tx.execute(
            "UPDATE resources SET generation = ?4, resource_version = ?5, body = ?6
             WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            params![
                T::KIND,
                ns,
                name,
                new.meta().generation,
                rv,
                self.encode_body(&new)?
            ],
        )
        .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok((new, Some(rv)))
    }

    /// Deletes the row; with `uid`, only if it is still that incarnation of the object (a pod
    /// re-created under the same name must not be removed by a late report about the old one).
    pub fn delete<T: Resource>(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Option<T>, StoreError> {
        let ns = if T::NAMESPACED { namespace } else { "" };
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let row: Option<(String, String)> = tx
            .query_row(
                "SELECT uid, body FROM resources WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                params![T::KIND, ns, name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((row_uid, body)) = row else {
            return Ok(None);
        };
        if uid.is_some_and(|u| u != row_uid) {
            return Err(StoreError::Conflict {
                kind: T::KIND,
                name: name.to_string(),
            });
        }
        let rv = bump_rv(&tx)?;
        tx.execute(
            "DELETE FROM resources WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            params![T::KIND, ns, name],
        )?;
        tx.commit()?;
        drop(conn);
        self.notify(rv);
        Ok(Some(self.decode_body(&body, ns, name)?))
    }

    /// Online, consistent copy of the database into a new file (`VACUUM INTO`), safe while
    /// serving.
    pub fn backup_to(&self, path: &Path) -> Result<(), StoreError> {
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Invalid(format!("{}: path is not UTF-8", path.display())))?;
        self.lock().execute("VACUUM INTO ?1", params![target])?;
        Ok(())
    }
}

fn namespace_of<T: Resource>(obj: &T) -> String {
    if T::NAMESPACED {
        obj.meta().ns().to_string()
    } else {
        String::new()
    }
}

fn bump_rv(tx: &rusqlite::Transaction<'_>) -> Result<i64, StoreError> {
    Ok(tx.query_row(
        "UPDATE counters SET value = value + 1 WHERE name = 'resource_version' RETURNING value",
        [],
        |r| r.get(0),
    )?)
}

fn plain_body<T: Resource>(obj: &T) -> Result<String, StoreError> {
    serde_json::to_string(obj).map_err(|e| StoreError::Invalid(format!("encode {}: {e}", T::KIND)))
}

impl Store {
    fn encode_body<T: Resource>(&self, obj: &T) -> Result<String, StoreError> {
        let plain = plain_body(obj)?;
        if !T::SEALED {
            return Ok(plain);
        }
        let m = obj.meta();
        let aad = format!("{}/{}/{}", T::KIND, m.ns(), m.name);
        self.sealer.seal(&aad, &plain)
    }

    fn decode_body<T: Resource>(&self, body: &str, ns: &str, name: &str) -> Result<T, StoreError> {
        let opened;
        let body = if T::SEALED {
            let aad = format!("{}/{ns}/{name}", T::KIND);
            opened = self
                .sealer
                .open_body(&aad, body)
                .map_err(|e| StoreError::Invalid(format!("{} {ns}/{name}: {e}", T::KIND)))?;
            opened.as_str()
        } else {
            body
        };
        serde_json::from_str(body).map_err(|source| StoreError::Corrupt {
            kind: T::KIND,
            namespace: ns.to_string(),
            name: name.to_string(),
            source,
        })
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = schema::MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

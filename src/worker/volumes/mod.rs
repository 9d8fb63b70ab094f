//! Pod volumes on the node: emptyDir, hostPath, ConfigMap/Secret projections and local
//! persistent volume claims (local-path style).
//!
//! Layout under `<worker data>/volumes/`:
//! - `pods/<pod uid>/<volume>`: emptyDirs (a tmpfs for `medium: Memory`), ConfigMap
//!   projections, Secret projections (always on a tmpfs: secrets never touch the SD card).
//!   Removed with the pod (`teardown`), or at agent start when the pod is gone (`sweep`).
//! - `pvc/<ns>-<claim>-<claim uid>`: a claim's data; outlives pods, removed when the master
//!   no longer lists the claim for this node and no running pod uses it (`gc_claims`).
//!
//! Containers get bind mounts of these host paths (`resolve_mounts`), added to the OCI spec by
//! the runtime. Preparation is idempotent, so a re-adopting agent finds mounted tmpfs and
//! current projections in place and changes nothing.

pub mod mounts;
pub mod projection;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::api::pvc::claim_dir_name;
use crate::api::volume::{Source, Volume};
use crate::api::{Container, Pod};
use crate::proto::VolumeSources;
use crate::worker::runtime::BindMount;

/// Size of a Secret volume's tmpfs: room for two versions of the largest Secret during an
/// update, plus slack. tmpfs only uses memory for what is written.
const SECRET_TMPFS_BYTES: u64 = 4 << 20;

/// Where volumes live on this node.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `<worker data>/volumes`
    pub root: PathBuf,
    /// This node's name: a claim bound elsewhere must not be created here.
    pub node: String,
}

impl Layout {
    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }
    pub fn claims_dir(&self) -> PathBuf {
        self.root.join("pvc")
    }
}

/// A volume ready to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub host: PathBuf,
    /// ConfigMap and Secret volumes are always read-only, as in Kubernetes; a claim may be.
    pub read_only: bool,
}

/// The outcome of preparing a pod's volumes: what is ready, and why the rest is not (the
/// message a waiting container shows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    pub ready: BTreeMap<String, Ready>,
    pub problems: BTreeMap<String, String>,
}

/// Makes every volume of `pod` ready as far as possible. `sources` is what the master last
/// sent (`None` when nothing arrived since the agent started: existing projections and claim
/// directories are then used as they are). Idempotent.
pub fn prepare(layout: &Layout, pod: &Pod, sources: Option<&VolumeSources>) -> Prepared {
    let mut out = Prepared::default();
    let pod_dir = layout.pod_dir(&pod.metadata.uid);
    let fs_group = fs_group(pod);
    for v in &pod.spec.volumes {
        match prepare_one(layout, pod, &pod_dir, v, sources, fs_group) {
            Ok(r) => {
                out.ready.insert(v.name.clone(), r);
            }
            Err(m) => {
                out.problems.insert(v.name.clone(), m);
            }
        }
    }
    out
}

/// The pod's `securityContext.fsGroup` (validated to fit a gid).
fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .security_context
        .as_ref()?
        .fs_group
        .and_then(|g| u32::try_from(g).ok())
}

fn io(what: &str, e: std::io::Error) -> String {
    format!("{what}: {e}")
}

fn prepare_one(
    layout: &Layout,
    pod: &Pod,
    pod_dir: &Path,
    v: &Volume,
    sources: Option<&VolumeSources>,
    fs_group: Option<u32>,
) -> Result<Ready, String> {
    let dir = pod_dir.join(&v.name);
    let Some(source) = v.source() else {
        return Err(format!("volume {:?} has no source", v.name));
    };
    match source {
        Source::EmptyDir(e) => {
            if e.is_memory() {
                let size = e
                    .size_limit
                    .as_deref()
                    .map(crate::api::quantity::parse_bytes)
                    .transpose()
                    .map_err(|e| e.to_string())?;
                mounts::ensure_tmpfs(&dir, size, 0o1777)
                    .map_err(|e| io(&format!("tmpfs for emptyDir {:?}", v.name), e))?;
            } else {
                make_shared_dir(&dir).map_err(|e| io(&format!("emptyDir {:?}", v.name), e))?;
            }
            give_to_group(&dir, fs_group)
                .map_err(|e| io(&format!("fsGroup on emptyDir {:?}", v.name), e))?;
            Ok(Ready {
                host: dir,
                read_only: false,
            })
        }
        Source::HostPath(h) => check_host_path(&h.path, &h.type_).map(|host| Ready {
            host,
            read_only: false,
        }),
        Source::ConfigMap(_) | Source::Secret(_)
            if sources.is_some_and(|s| !s.error.is_empty()) =>
        {
            Err(sources.map(|s| s.error.clone()).unwrap_or_default())
        }
        Source::ConfigMap(c) => {
            let what = format!("configmap {:?}", c.name);
            let optional = c.optional == Some(true);
            let data = sources.map(|s| s.config_maps.get(&c.name).cloned().flatten());
            std::fs::create_dir_all(&dir).map_err(|e| io(&what, e))?;
            project(
                &dir,
                &what,
                data,
                &c.items,
                c.default_mode,
                optional,
                fs_group,
            )
        }
        Source::Secret(s) => {
            let what = format!("secret {:?}", s.secret_name);
            let optional = s.optional == Some(true);
            let data = sources.map(|src| src.secrets.get(&s.secret_name).cloned().flatten());
            mounts::ensure_tmpfs(&dir, Some(SECRET_TMPFS_BYTES), 0o755)
                .map_err(|e| io(&format!("tmpfs for {what}"), e))?;
            project(
                &dir,
                &what,
                data,
                &s.items,
                s.default_mode,
                optional,
                fs_group,
            )
        }
        Source::Claim(c) => {
            let what = format!("persistentvolumeclaim {:?}", c.claim_name);
            let ns = pod.metadata.ns();
            let dir_name = match sources.map(|s| s.claims.get(&c.claim_name).cloned().flatten()) {
                Some(Some(bound)) => match bound.node.as_deref() {
                    Some(n) if n == layout.node => claim_dir_name(ns, &c.claim_name, &bound.uid),
                    Some(n) => return Err(format!("{what} is bound to node {n:?}")),
                    None => return Err(format!("{what} is not bound yet")),
                },
                Some(None) => return Err(format!("{what} not found")),
                None => existing_claim_dir(layout, ns, &c.claim_name)
                    .ok_or_else(|| format!("waiting for the master to send {what}"))?,
            };
            let host = layout.claims_dir().join(dir_name);
            make_shared_dir(&host).map_err(|e| io(&what, e))?;
            give_to_group(&host, fs_group).map_err(|e| io(&what, e))?;
            Ok(Ready {
                host,
                read_only: c.read_only,
            })
        }
    }
}

/// A dir all container users may write to (Kubernetes' emptyDir mode), created if missing.
fn make_shared_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

/// Kubernetes' `fsGroup` on a writable volume's root: group-owned by it, setgid so new files
/// inherit the group (not recursive: an existing claim's files keep their owners).
fn give_to_group(dir: &Path, fs_group: Option<u32>) -> std::io::Result<()> {
    let Some(g) = fs_group else {
        return Ok(());
    };
    std::os::unix::fs::chown(dir, None, Some(g))?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o2070))
}

/// The directory of claim `name` already on this node, when exactly one matches (after an
/// agent restart, before the master's content arrived).
fn existing_claim_dir(layout: &Layout, ns: &str, name: &str) -> Option<String> {
    let prefix = format!("{ns}-{name}-");
    let found: Vec<String> = std::fs::read_dir(layout.claims_dir())
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|uid| uuid::Uuid::parse_str(uid).is_ok())
        })
        .collect();
    match found.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Writes a ConfigMap/Secret projection. `data`: `None` = nothing received yet (keep what is
/// there), `Some(None)` = the object does not exist.
fn project(
    dir: &Path,
    what: &str,
    data: Option<Option<BTreeMap<String, String>>>,
    items: &[crate::api::volume::KeyToPath],
    default_mode: Option<i32>,
    optional: bool,
    fs_group: Option<u32>,
) -> Result<Ready, String> {
    let ready = Ready {
        host: dir.to_path_buf(),
        read_only: true,
    };
    let decoded: BTreeMap<String, Vec<u8>> = match data {
        None if projection::exists(dir) => return Ok(ready),
        None => return Err(format!("waiting for the master to send {what}")),
        Some(None) if optional => BTreeMap::new(),
        Some(None) => return Err(format!("{what} not found")),
        Some(Some(d)) => {
            let b64 = base64::engine::general_purpose::STANDARD;
            d.into_iter()
                .filter_map(|(k, v)| b64.decode(v.trim()).ok().map(|b| (k, b)))
                .collect()
        }
    };
    let files = projection::with_fs_group(
        projection::plan(what, &decoded, items, default_mode, optional)?,
        fs_group,
    );
    let stamp = chrono_stamp();
    match projection::write(dir, &files, &stamp, fs_group) {
        Ok(true) => {
            tracing::info!(volume = %dir.display(), files = files.len(), "{what} projected")
        }
        Ok(false) => {}
        Err(e) => return Err(io(what, e)),
    }
    Ok(ready)
}

/// A unique, sortable version name like the kubelet's `..2026_11_24_05_40_01.123456789`.
fn chrono_stamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Kubernetes' hostPath type checks; returns the path to bind.
pub fn check_host_path(path: &str, type_: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(path);
    let meta = std::fs::metadata(&p);
    let what = |kind: &str| format!("hostPath {path:?}: {kind}");
    match type_ {
        "" => {}
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(&p).map_err(|e| what(&e.to_string()))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| what(&e.to_string()))?;
            } else if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return Err(what("is not a directory"));
            }
        }
        "Directory" => {
            if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                return Err(what("is not an existing directory (type Directory)"));
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&p)
                    .map_err(|e| what(&e.to_string()))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| what(&e.to_string()))?;
            } else if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return Err(what("is not a file"));
            }
        }
        "File" => {
            if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                return Err(what("is not an existing file (type File)"));
            }
        }
        "Socket" => {
            if !meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) {
                return Err(what("is not an existing UNIX socket (type Socket)"));
            }
        }
        other => return Err(what(&format!("type {other:?} is not supported"))),
    }
    Ok(p)
}

/// The bind mounts for one container, or why it cannot start yet (the first volume it mounts
/// that is not ready). subPaths are resolved inside their volume, created as directories when
/// missing (as the kubelet does), and refused when a symlink leads out of the volume.
pub fn resolve_mounts(c: &Container, prepared: &Prepared) -> Result<Vec<BindMount>, String> {
    let mut out = Vec::new();
    for m in &c.volume_mounts {
        if let Some(p) = prepared.problems.get(&m.name) {
            return Err(format!("volume {:?}: {p}", m.name));
        }
        let Some(r) = prepared.ready.get(&m.name) else {
            return Err(format!("volume {:?} is not prepared", m.name));
        };
        let source = if m.sub_path.is_empty() {
            r.host.clone()
        } else {
            resolve_sub_path(&r.host, &m.sub_path)
                .map_err(|e| format!("volume {:?} subPath {:?}: {e}", m.name, m.sub_path))?
        };
        out.push(BindMount {
            source,
            destination: m.mount_path.clone(),
            read_only: m.read_only || r.read_only,
        });
    }
    Ok(out)
}

fn resolve_sub_path(root: &Path, sub: &str) -> Result<PathBuf, String> {
    let root = std::fs::canonicalize(root).map_err(|e| e.to_string())?;
    let mut cur = root.clone();
    for comp in sub.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if comp == ".." {
            return Err("must not contain '..'".into());
        }
        let next = cur.join(comp);
        match std::fs::symlink_metadata(&next) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&next).map_err(|e| e.to_string())?;
                std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| e.to_string())?;
                cur = next;
            }
            Err(e) => return Err(e.to_string()),
            Ok(_) => {
                let c = std::fs::canonicalize(&next).map_err(|e| e.to_string())?;
                if !c.starts_with(&root) {
                    return Err("leads out of the volume".into());
                }
                cur = c;
            }
        }
    }
    Ok(cur)
}

/// Unmounts and removes a pod's volume dir. Refuses to delete while anything stays mounted
/// under it (never recurse into a mount).
pub fn teardown(layout: &Layout, uid: &str) -> Result<(), String> {
    let dir = layout.pod_dir(uid);
    if !dir.exists() {
        return Ok(());
    }
    let left = mounts::unmount_all(&dir).map_err(|e| e.to_string())?;
    if !left.is_empty() {
        return Err(format!(
            "{} still mounted under {}: not removed",
            left.len(),
            dir.display()
        ));
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// At agent start: tears down the volume dirs of pods that are not wanted any more.
pub fn sweep(layout: &Layout, keep: &HashSet<&str>) {
    let Ok(rd) = std::fs::read_dir(layout.pods_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if keep.contains(name.as_str()) {
            continue;
        }
        tracing::info!(pod_uid = %name, "removing volumes of a pod that is gone");
        if let Err(m) = teardown(layout, &name) {
            tracing::warn!(pod_uid = %name, error = %m, "leftover volumes not removed");
        }
    }
}

/// Pure: claim dirs to delete: present on the node, not bound here any more, not in use.
/// An `in_use` entry ending in `-` is a prefix (`<ns>-<claim>-`: a pod whose claim uid is not
/// known yet keeps every incarnation of its claim).
pub fn stale_claims(
    present: &[String],
    bound: &[String],
    in_use: &BTreeSet<String>,
) -> Vec<String> {
    let used = |d: &str| {
        in_use
            .iter()
            .any(|u| u == d || (u.ends_with('-') && d.starts_with(u.as_str())))
    };
    present
        .iter()
        .filter(|d| !bound.contains(d) && !used(d))
        .cloned()
        .collect()
}

/// Deletes the data of claims the master no longer binds to this node (reclaim policy
/// Delete). Returns the dirs removed.
pub fn gc_claims(layout: &Layout, bound: &[String], in_use: &BTreeSet<String>) -> Vec<String> {
    let present: Vec<String> = std::fs::read_dir(layout.claims_dir())
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut removed = Vec::new();
    for d in stale_claims(&present, bound, in_use) {
        let path = layout.claims_dir().join(&d);
        match mounts::unmount_all(&path) {
            Ok(left) if left.is_empty() => {}
            _ => {
                tracing::warn!(claim_dir = %d, "claim dir has mounts: not removed");
                continue;
            }
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(claim_dir = %d, "claim deleted: data removed");
                removed.push(d);
            }
            Err(e) => tracing::warn!(claim_dir = %d, error = %e, "claim data not removed"),
        }
    }
    removed
}

/// Claim dirs a pod uses according to `sources` (for `gc_claims`' in-use set); the prefix
/// `<ns>-<claim>-` when its uid is not known.
pub fn claim_dirs(pod: &Pod, sources: Option<&VolumeSources>) -> Vec<String> {
    let ns = pod.metadata.ns();
    crate::api::volume::references(&pod.spec)
        .claims
        .iter()
        .map(|c| match sources.and_then(|s| s.claims.get(c)) {
            Some(Some(b)) => claim_dir_name(ns, c, &b.uid),
            _ => format!("{ns}-{c}-"),
        })
        .collect()
}

#[cfg(test)]
mod tests;

//! What the cache can let go of, decided by pure functions, and the sweep that acts on it.
//!
//! - Images (tags and digest pins) go when nothing in the cluster references them (no pod, no
//!   Deployment or ReplicaSet template) and they were not pulled for `unused_for`, or with
//!   `--all`. Pushed images are the only copy anywhere, so only an explicit `--all` (or an
//!   explicit age given to `herd image prune`) removes them; the automatic policy never does.
//! - Blobs go when no remaining manifest reaches them and they are older than a grace period,
//!   so a pull or push in progress (blob written, index not yet) never loses its blobs.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::store::{BlobStore, ImageRow};
use super::RegistryError;
use crate::worker::images::Reference;

/// Default grace before an unreferenced blob may be deleted.
pub const BLOB_GRACE: Duration = Duration::from_secs(3600);
/// How often the master's automatic GC runs.
pub const AUTO_INTERVAL: Duration = Duration::from_secs(3600);
/// The automatic policy's age for pulled images nothing references.
pub const AUTO_UNUSED: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Remove unreferenced images not pulled for this long (`None`: age alone removes none).
    pub unused_for: Option<Duration>,
    /// Remove every unreferenced image, whatever its age.
    pub all: bool,
    /// Pushed images are candidates too (they have no upstream to come back from).
    pub include_pushed: bool,
    /// Unreferenced blobs younger than this stay.
    pub blob_grace: Duration,
}

impl Policy {
    /// The master's hourly policy: unreferenced blobs after the grace period, pulled images
    /// nothing references after 30 days unused, never a pushed image.
    pub fn automatic() -> Policy {
        Policy {
            unused_for: Some(AUTO_UNUSED),
            all: false,
            include_pushed: false,
            blob_grace: BLOB_GRACE,
        }
    }
}

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub images: Vec<ImageRow>,
    pub blobs: Vec<String>,
    pub bytes: u64,
    pub dry_run: bool,
}

/// Repository and tag/digest of each image string pods and templates reference, normalised.
/// Strings that do not parse reference nothing in the cache.
pub fn references(images: &[String]) -> BTreeSet<(String, String)> {
    images
        .iter()
        .filter_map(|s| Reference::parse(s).ok())
        .flat_map(|r| {
            let repo = r.repository();
            let mut v = Vec::new();
            if let Some(t) = r.tag() {
                v.push((repo.clone(), t.to_string()));
            }
            if let Some(d) = r.digest() {
                v.push((repo, d.to_string()));
            }
            v
        })
        .collect()
}

fn referenced(row: &ImageRow, refs: &BTreeSet<(String, String)>) -> bool {
    refs.contains(&(row.repo.clone(), row.digest.clone()))
        || row
            .tag
            .as_ref()
            .is_some_and(|t| refs.contains(&(row.repo.clone(), t.clone())))
}

/// Pure: the images `policy` removes.
pub fn images_to_prune(
    images: &[ImageRow],
    refs: &BTreeSet<(String, String)>,
    now: i64,
    policy: &Policy,
) -> Vec<ImageRow> {
    images
        .iter()
        .filter(|row| !referenced(row, refs))
        .filter(|row| policy.include_pushed || !row.pushed)
        .filter(|row| {
            policy.all
                || policy
                    .unused_for
                    .is_some_and(|d| row.last_used < now - d.as_secs() as i64)
        })
        .cloned()
        .collect()
}

/// Pure: every blob reachable from `roots` (manifest digests): indexes reach their
/// manifests, manifests their config and layers. `read` gives a stored manifest's bytes.
pub fn live_blobs(roots: &[String], read: &dyn Fn(&str) -> Option<Vec<u8>>) -> BTreeSet<String> {
    let mut live = BTreeSet::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(d) = todo.pop() {
        if !live.insert(d.clone()) {
            continue;
        }
        let Some(doc) = read(&d).and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            continue;
        };
        let digest = |v: &Value| v.get("digest").and_then(Value::as_str).map(str::to_string);
        if let Some(ms) = doc.get("manifests").and_then(Value::as_array) {
            todo.extend(ms.iter().filter_map(digest));
        }
        if let Some(c) = doc.get("config").and_then(digest) {
            live.insert(c);
        }
        if let Some(ls) = doc.get("layers").and_then(Value::as_array) {
            live.extend(ls.iter().filter_map(digest));
        }
    }
    live
}

/// Pure: blobs (digest, size, mtime) that nothing reaches and that are past the grace period.
pub fn blobs_to_prune(
    blobs: &[(String, u64, i64)],
    live: &BTreeSet<String>,
    now: i64,
    grace: Duration,
) -> Vec<(String, u64)> {
    blobs
        .iter()
        .filter(|(d, _, mtime)| !live.contains(d) && *mtime <= now - grace.as_secs() as i64)
        .map(|(d, size, _)| (d.clone(), *size))
        .collect()
}

/// Applies `policy` to the store (or only reports, when `dry_run`). `in_use` are the image
/// strings of every pod and workload template in the cluster.
pub fn prune(
    store: &BlobStore,
    in_use: &[String],
    policy: &Policy,
    now: i64,
    dry_run: bool,
) -> Result<Report, RegistryError> {
    let _exclusive = store.exclusive();
    let refs = references(in_use);
    let rows = store.images()?;
    let gone = images_to_prune(&rows, &refs, now, policy);
    let roots: Vec<String> = rows
        .iter()
        .filter(|r| !gone.contains(r))
        .map(|r| r.digest.clone())
        .collect();
    let read = |d: &str| store.blob_path(d).and_then(|p| std::fs::read(p).ok());
    let live = live_blobs(&roots, &read);
    let dead = blobs_to_prune(&store.blobs()?, &live, now, policy.blob_grace);
    if !dry_run {
        for row in &gone {
            store.remove_image(row)?;
        }
        for (d, _) in &dead {
            store.remove_blob(d)?;
        }
    }
    let report = Report {
        bytes: dead.iter().map(|(_, s)| s).sum(),
        blobs: dead.into_iter().map(|(d, _)| d).collect(),
        images: gone,
        dry_run,
    };
    if !dry_run && (!report.images.is_empty() || !report.blobs.is_empty()) {
        tracing::info!(
            images = report.images.len(),
            blobs = report.blobs.len(),
            bytes = report.bytes,
            "registry: pruned"
        );
    }
    Ok(report)
}

/// Image strings of every pod and workload template in the cluster.
pub fn cluster_images(
    store: &crate::master::store::Store,
) -> Result<Vec<String>, crate::master::store::StoreError> {
    use crate::api::apps::{Deployment, ReplicaSet};
    let mut out = Vec::new();
    let mut add = |spec: &crate::api::pod::PodSpec| {
        out.extend(spec.containers.iter().map(|c| c.image.clone()));
    };
    for p in store.list::<crate::api::Pod>(None)? {
        add(&p.spec);
    }
    for d in store.list::<Deployment>(None)? {
        add(&d.spec.template.spec);
    }
    for r in store.list::<ReplicaSet>(None)? {
        add(&r.spec.template.spec);
    }
    Ok(out)
}

/// The master's automatic GC: [`Policy::automatic`] every [`AUTO_INTERVAL`].
pub async fn run(
    registry: std::sync::Arc<BlobStore>,
    state: std::sync::Arc<crate::master::store::Store>,
) {
    let mut tick = tokio::time::interval(AUTO_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (reg, st) = (registry.clone(), state.clone());
        let res = tokio::task::spawn_blocking(move || {
            let in_use = cluster_images(&st).map_err(|e| RegistryError::Invalid {
                what: "cluster images".into(),
                reason: e.to_string(),
            })?;
            prune(
                &reg,
                &in_use,
                &Policy::automatic(),
                super::unix_now(),
                false,
            )
        })
        .await;
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "registry: automatic GC failed"),
            Err(e) => tracing::warn!(error = %e, "registry: automatic GC task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(repo: &str, tag: Option<&str>, digest: &str, pushed: bool, last_used: i64) -> ImageRow {
        ImageRow {
            repo: repo.into(),
            tag: tag.map(str::to_string),
            digest: digest.into(),
            pushed,
            last_used,
        }
    }

    const DAY: i64 = 86400;

    #[test]
    fn referenced_images_are_never_pruned_and_old_unused_ones_are() {
        let now = 100 * DAY;
        let rows = vec![
            row(
                "docker.io/library/busybox",
                Some("latest"),
                "sha256:a",
                false,
                0,
            ),
            row("docker.io/library/old", Some("1"), "sha256:b", false, 0),
            row(
                "docker.io/library/recent",
                Some("1"),
                "sha256:c",
                false,
                now - DAY,
            ),
            row("docker.io/library/pushed", Some("1"), "sha256:d", true, 0),
            row("x.io/pinned", None, "sha256:e", false, 0),
        ];
        let refs = references(&["busybox".to_string(), "x.io/pinned:other".to_string()]);
        let policy = Policy {
            unused_for: Some(Duration::from_secs(14 * DAY as u64)),
            all: false,
            include_pushed: false,
            blob_grace: BLOB_GRACE,
        };
        let gone = images_to_prune(&rows, &refs, now, &policy);
        let names: Vec<&str> = gone.iter().map(|r| r.repo.as_str()).collect();
        // busybox is used by a pod; recent is recent; pushed is pushed; a pod names another tag
        // of the pinned repository, not its digest, so the pin goes.
        assert_eq!(names, ["docker.io/library/old", "x.io/pinned"]);
        let all = Policy {
            all: true,
            include_pushed: true,
            ..policy
        };
        let names: Vec<String> = images_to_prune(&rows, &refs, now, &all)
            .into_iter()
            .map(|r| r.repo)
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(!names.contains(&"docker.io/library/busybox".to_string()));
    }

    #[test]
    fn blobs_reachable_from_an_index_are_live_and_the_rest_go_after_the_grace() {
        let index = br#"{"manifests":[{"digest":"sha256:m1"},{"digest":"sha256:m2"}]}"#.to_vec();
        let m1 = br#"{"config":{"digest":"sha256:c1"},"layers":[{"digest":"sha256:l1"},{"digest":"sha256:shared"}]}"#.to_vec();
        let read = |d: &str| match d {
            "sha256:idx" => Some(index.clone()),
            "sha256:m1" => Some(m1.clone()),
            _ => None, // m2 not cached: nothing below it is known
        };
        let live = live_blobs(&["sha256:idx".to_string()], &read);
        let want: BTreeSet<String> = [
            "sha256:idx",
            "sha256:m1",
            "sha256:m2",
            "sha256:c1",
            "sha256:l1",
            "sha256:shared",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(live, want);
        let now = 10_000;
        let blobs = vec![
            ("sha256:l1".to_string(), 10, 0),
            ("sha256:orphan-old".to_string(), 20, 0),
            ("sha256:orphan-new".to_string(), 30, now - 10),
        ];
        assert_eq!(
            blobs_to_prune(&blobs, &live, now, Duration::from_secs(3600)),
            vec![("sha256:orphan-old".to_string(), 20)]
        );
    }

    #[test]
    fn a_real_store_keeps_referenced_blobs_and_drops_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let layer = s.put_blob_bytes(b"layer").unwrap();
        let config = s
            .put_blob_bytes(br#"{"os":"linux","architecture":"amd64"}"#)
            .unwrap();
        let orphan = s.put_blob_bytes(b"orphan").unwrap();
        let manifest =
            format!(r#"{{"config":{{"digest":"{config}"}},"layers":[{{"digest":"{layer}"}}]}}"#);
        s.put_manifest("x.io/app", Some("1"), manifest.as_bytes(), "m", false, 0)
            .unwrap();
        let policy = Policy {
            unused_for: None,
            all: false,
            include_pushed: false,
            blob_grace: Duration::ZERO,
        };
        let now = super::super::unix_now() + 10;
        let dry = prune(&s, &[], &policy, now, true).unwrap();
        assert_eq!(dry.blobs, vec![orphan.clone()]);
        assert!(s.has_blob(&orphan), "dry run deletes nothing");
        let report = prune(&s, &[], &policy, now, false).unwrap();
        assert_eq!(report.blobs, vec![orphan.clone()]);
        assert!(!s.has_blob(&orphan));
        assert!(s.has_blob(&layer) && s.has_blob(&config));
        // Untagged (all): everything goes.
        let all = Policy {
            all: true,
            ..policy
        };
        let report = prune(&s, &[], &all, now, false).unwrap();
        assert_eq!(report.images.len(), 1);
        assert!(!s.has_blob(&layer) && !s.has_blob(&config));
        assert!(s.blobs().unwrap().is_empty());
    }
}

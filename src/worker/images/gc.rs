//! Image garbage collection on the worker, kubelet style: images no pod uses go when they
//! were not used for `max_unused`, and when the image filesystem is fuller than the high-water
//! mark the least recently used ones go until it is down to the low-water mark. Then layer
//! directories and blobs no remaining image references are removed.
//!
//! The decision ([`plan`], [`sweep_targets`]) is pure; the loop around it reads the desired
//! pods from the agent's persisted state file (so it needs no hook into the agent), the
//! overlay mounts from `/proc/self/mountinfo`, and the filesystem usage from `statvfs`.
//!
//! "Last used" is kept in `last-used.json` in the store: an image in use is stamped at each
//! run, an image seen for the first time gets its first-seen time (as kubelet's
//! firstDetected), so an image imported a minute ago is never "unused for 14 days". The file
//! is rewritten only when a stamp moves by more than an hour or the set changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reference::is_sha256_hex;
use super::store::ImageStore;
use super::ImageError;

const LAST_USED_FILE: &str = "last-used.json";
/// A stamp moving by less than this is not worth a write.
const STAMP_GRANULARITY: i64 = 3600;

/// When images are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Images no pod uses are removed after this long unused.
    pub max_unused: Duration,
    /// Above this percentage of the image filesystem in use, LRU images are removed...
    pub high_percent: u8,
    /// ...until usage is at or below this percentage.
    pub low_percent: u8,
    /// Blobs and layer directories younger than this stay even when unreferenced (an import
    /// or pull in progress puts them in place before it indexes the image).
    pub grace: Duration,
    /// How often the collector runs.
    pub interval: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_unused: Duration::from_secs(14 * 86_400),
            high_percent: 85,
            low_percent: 80,
            grace: Duration::from_secs(3600),
            interval: Duration::from_secs(300),
        }
    }
}

/// One image as the decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `sha256:<hex>` image id.
    pub id: String,
    /// Bytes removing it would free (its layers' uncompressed size, an estimate: layers
    /// shared with a kept image stay).
    pub size: u64,
    pub last_used: i64,
}

/// The image filesystem's size and use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    pub total: u64,
    pub used: u64,
}

/// Pure: the image ids to remove, oldest use first. Never one in `in_use`.
pub fn plan(
    images: &[Candidate],
    in_use: &BTreeSet<String>,
    disk: Disk,
    now: i64,
    policy: &Policy,
) -> Vec<String> {
    let mut free: Vec<&Candidate> = images.iter().filter(|c| !in_use.contains(&c.id)).collect();
    free.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.id.cmp(&b.id)));
    let cutoff = now - policy.max_unused.as_secs() as i64;
    let mut out: Vec<String> = Vec::new();
    let mut used = disk.used;
    for c in &free {
        if c.last_used < cutoff {
            out.push(c.id.clone());
            used = used.saturating_sub(c.size);
        }
    }
    let pct = |used: u64| -> u128 {
        if disk.total == 0 {
            0
        } else {
            u128::from(used) * 100 / u128::from(disk.total)
        }
    };
    if pct(used) > u128::from(policy.high_percent) {
        for c in &free {
            if pct(used) <= u128::from(policy.low_percent) {
                break;
            }
            if !out.contains(&c.id) {
                out.push(c.id.clone());
                used = used.saturating_sub(c.size);
            }
        }
    }
    out
}

/// Pure: which layer directories (diff id hex) and blobs (hex) to delete, given what the
/// remaining images reference, what overlay mounts use, and each entry's age in seconds.
pub fn sweep_targets(
    layers: &[(String, i64)],
    blobs: &[(String, i64)],
    kept_layers: &BTreeSet<String>,
    kept_blobs: &BTreeSet<String>,
    now: i64,
    grace: Duration,
) -> (Vec<String>, Vec<String>) {
    let old = |mtime: i64| mtime <= now - grace.as_secs() as i64;
    let layers = layers
        .iter()
        .filter(|(h, m)| !kept_layers.contains(h) && old(*m))
        .map(|(h, _)| h.clone())
        .collect();
    let blobs = blobs
        .iter()
        .filter(|(h, m)| !kept_blobs.contains(h) && old(*m))
        .map(|(h, _)| h.clone())
        .collect();
    (layers, blobs)
}

/// Pure: layer directories (hex) named in overlay `lowerdir=` options under `layers_dir`.
pub fn mounted_layers(mountinfo: &str, layers_dir: &Path) -> BTreeSet<String> {
    let prefix = format!("{}/", layers_dir.display());
    let mut out = BTreeSet::new();
    for line in mountinfo.lines() {
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        if !after.starts_with("overlay ") {
            continue;
        }
        for opt in after.split(',') {
            let Some(lower) = opt.split_once("lowerdir=").map(|(_, l)| l) else {
                continue;
            };
            for dir in lower.split(':') {
                if let Some(hex) = dir.strip_prefix(&prefix) {
                    let hex = hex.trim_end_matches('/');
                    if is_sha256_hex(hex) {
                        out.insert(hex.to_string());
                    }
                }
            }
        }
    }
    out
}

fn mtime_secs(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

fn entries(dir: &Path) -> Result<Vec<(String, i64)>, ImageError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| ImageError::io(dir, e))? {
        let e = e.map_err(|e| ImageError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_sha256_hex(&name) {
            continue;
        }
        if let Ok(m) = e.metadata() {
            out.push((name, mtime_secs(&m)));
        }
    }
    Ok(out)
}

/// What one collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    pub images: Vec<String>,
    pub layers: usize,
    pub blobs: usize,
}

fn hex_of(d: &str) -> String {
    d.trim_start_matches("sha256:").to_string()
}

impl ImageStore {
    fn last_used_path(&self) -> PathBuf {
        self.root().join(LAST_USED_FILE)
    }

    fn read_last_used(&self) -> BTreeMap<String, i64> {
        std::fs::read(self.last_used_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// One collection: `in_use_refs` are the image strings of the pods this node runs or
    /// should run; `mounted` the layer directories overlay mounts use; `disk` the image
    /// filesystem's usage.
    pub fn collect_garbage(
        &self,
        in_use_refs: &[String],
        mounted: &BTreeSet<String>,
        disk: Disk,
        now: i64,
        policy: &Policy,
    ) -> Result<Collected, ImageError> {
        let records = self.all_records()?;
        let mut in_use = BTreeSet::new();
        for r in in_use_refs {
            if let Ok(Some(img)) = self.resolve(r) {
                in_use.insert(img.id);
            }
        }
        for rec in &records {
            if rec
                .layers
                .iter()
                .any(|l| mounted.contains(&hex_of(&l.diff_id)))
            {
                in_use.insert(rec.id.clone());
            }
        }
        // Stamps: in use = now; first seen = now; gone = dropped.
        let old = self.read_last_used();
        let mut stamps: BTreeMap<String, i64> = BTreeMap::new();
        for rec in &records {
            let prev = old.get(&rec.id).copied();
            let t = match prev {
                Some(p) if in_use.contains(&rec.id) && now - p >= STAMP_GRANULARITY => now,
                Some(p) => p,
                None => now,
            };
            stamps.insert(rec.id.clone(), t);
        }
        let candidates: Vec<Candidate> = records
            .iter()
            .map(|r| Candidate {
                id: r.id.clone(),
                size: r.size,
                last_used: stamps.get(&r.id).copied().unwrap_or(now),
            })
            .collect();
        let remove = plan(&candidates, &in_use, disk, now, policy);
        for id in &remove {
            match self.remove(id) {
                Ok(refs) => tracing::info!(image = %id, refs = ?refs, "image gc: removed image"),
                Err(ImageError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            stamps.remove(id);
        }
        if stamps != old {
            let data =
                serde_json::to_vec(&stamps).map_err(|e| ImageError::malformed("last-used", e))?;
            crate::util::fsutil::write_atomic(&self.last_used_path(), &data, 0o644)
                .map_err(|e| ImageError::io(self.last_used_path(), e))?;
        }
        // Sweep what no remaining image references.
        let kept: Vec<_> = self.all_records()?;
        let mut kept_layers: BTreeSet<String> = mounted.clone();
        let mut kept_blobs = BTreeSet::new();
        for rec in &kept {
            kept_blobs.insert(hex_of(&rec.id));
            kept_blobs.insert(hex_of(&rec.manifest));
            for l in &rec.layers {
                kept_layers.insert(hex_of(&l.diff_id));
                kept_blobs.insert(hex_of(&l.blob));
            }
        }
        let (layers, blobs) = sweep_targets(
            &entries(&self.root().join("layers"))?,
            &entries(&self.root().join("blobs/sha256"))?,
            &kept_layers,
            &kept_blobs,
            now,
            policy.grace,
        );
        for hex in &layers {
            let p = self.layer_path(hex);
            // Layer trees hold read-only dirs; remove_dir_all copes as root.
            std::fs::remove_dir_all(&p).map_err(|e| ImageError::io(&p, e))?;
        }
        for hex in &blobs {
            let p = self.blob_path(hex);
            std::fs::remove_file(&p).map_err(|e| ImageError::io(&p, e))?;
        }
        if !remove.is_empty() || !layers.is_empty() || !blobs.is_empty() {
            tracing::info!(
                images = remove.len(),
                layers = layers.len(),
                blobs = blobs.len(),
                "image gc: collected"
            );
        }
        Ok(Collected {
            images: remove,
            layers: layers.len(),
            blobs: blobs.len(),
        })
    }
}

/// Size and use of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> Result<Disk, ImageError> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| ImageError::io(path, std::io::Error::from_raw_os_error(e as i32)))?;
    let frsize = st.fragment_size() as u64;
    let total = st.blocks() as u64 * frsize;
    let free = st.blocks_available() as u64 * frsize;
    Ok(Disk {
        total,
        used: total.saturating_sub(free),
    })
}

/// Image strings of the pods in the worker's persisted desired state.
pub fn desired_images(state_dir: &Path) -> Vec<String> {
    let (_, desired) = crate::worker::state::DesiredFile::open(state_dir);
    let Some(d) = desired else {
        return Vec::new();
    };
    d.specs
        .values()
        .flat_map(|p| p.spec.containers.iter().map(|c| c.image.clone()))
        .collect()
}

/// Runs the collector every `policy.interval` until `shutdown`.
pub async fn run(
    store: std::sync::Arc<ImageStore>,
    state_dir: PathBuf,
    policy: Policy,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(policy.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once; give the agent time to adopt and start pods first.
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let (store, state_dir, policy) = (store.clone(), state_dir.clone(), policy.clone());
        let res = tokio::task::spawn_blocking(move || {
            let refs = desired_images(&state_dir);
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mounted = mounted_layers(&mountinfo, &store.root().join("layers"));
            let disk = disk_usage(store.root())?;
            let now = crate::master::registry::unix_now();
            store.collect_garbage(&refs, &mounted, disk, now, &policy)
        })
        .await;
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "image gc failed"),
            Err(e) => tracing::warn!(error = %e, "image gc task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn c(id: &str, size: u64, last_used: i64) -> Candidate {
        Candidate {
            id: id.into(),
            size,
            last_used,
        }
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn images_unused_past_the_limit_go_unless_a_pod_uses_them() {
        let now = 100 * DAY;
        let images = [
            c("old", 10, now - 20 * DAY),
            c("used-old", 10, now - 30 * DAY),
            c("new", 10, now - DAY),
        ];
        let disk = Disk {
            total: 1000,
            used: 100,
        };
        let out = plan(&images, &set(&["used-old"]), disk, now, &Policy::default());
        assert_eq!(out, vec!["old".to_string()]);
    }

    #[test]
    fn above_the_high_mark_lru_images_go_down_to_the_low_mark() {
        let now = 100 * DAY;
        let images = [
            c("a", 30, now - 3 * DAY),
            c("b", 30, now - 2 * DAY),
            c("c", 30, now - DAY),
            c("in-use", 500, now - 50 * DAY),
        ];
        // 90 % used: a (oldest free) brings it to 87 %, b to 84 %, c to 81 %: still above
        // 80, but nothing else may go (in-use is in use) — plan stops when candidates run out.
        let disk = Disk {
            total: 1000,
            used: 900,
        };
        let out = plan(&images, &set(&["in-use"]), disk, now, &Policy::default());
        assert_eq!(out, vec!["a".to_string(), "b".to_string(), "c".to_string()]);
        // 86 %: removing a (30) gives 83 %, b gives 80 %: stop there.
        let disk = Disk {
            total: 1000,
            used: 860,
        };
        let out = plan(&images, &set(&["in-use"]), disk, now, &Policy::default());
        assert_eq!(out, vec!["a".to_string(), "b".to_string()]);
        // At 85 % exactly: not above the high mark, nothing goes.
        let disk = Disk {
            total: 1000,
            used: 850,
        };
        assert!(plan(&images, &set(&["in-use"]), disk, now, &Policy::default()).is_empty());
    }

    #[test]
    fn unreferenced_layers_and_blobs_go_after_the_grace_and_mounted_ones_stay() {
        let now = 10 * DAY;
        let layers = vec![
            ("l-kept".into(), 0),
            ("l-orphan".into(), 0),
            ("l-young".into(), now - 5),
        ];
        let blobs = vec![("b-kept".into(), 0), ("b-orphan".into(), 0)];
        let (l, b) = sweep_targets(
            &layers,
            &blobs,
            &set(&["l-kept"]),
            &set(&["b-kept"]),
            now,
            Duration::from_secs(3600),
        );
        assert_eq!(l, vec!["l-orphan".to_string()]);
        assert_eq!(b, vec!["b-orphan".to_string()]);
    }

    #[test]
    fn overlay_lowerdirs_under_the_store_are_found_in_mountinfo() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let info = format!(
            "100 50 0:45 / /x/rootfs rw,relatime shared:1 - overlay overlay rw,lowerdir=/s/layers/{a}:/s/layers/{b},upperdir=/x/upper,workdir=/x/work\n\
             101 50 0:46 / /y rw - ext4 /dev/sda1 rw\n\
             102 50 0:47 / /z rw - overlay overlay rw,lowerdir=/other/layers/{a}\n"
        );
        assert_eq!(
            mounted_layers(&info, Path::new("/s/layers")),
            set(&[&a, &b])
        );
    }

    #[test]
    fn a_real_store_loses_the_unused_image_and_its_own_layers_but_keeps_shared_ones() {
        use super::super::testutil::{config_for, RawTar, TestImage};
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let a = TestImage::new();
        let mut extra = RawTar::new();
        extra.file("only-in-b", b"b\n");
        let b_layers = vec![a.layers[0].clone(), extra.finish()];
        let b = TestImage {
            config: config_for(&b_layers, &super::super::host_platform().architecture),
            layers: b_layers,
        };
        for (img, tag) in [(&a, "a:1"), (&b, "b:1")] {
            let path = dir.path().join(format!("{}.tar", tag.replace(':', "-")));
            std::fs::write(&path, img.docker_archive(&[tag])).unwrap();
            store.import_archive(&path, None).unwrap();
        }
        let a_id = store.resolve("a:1").unwrap().unwrap();
        let b_img = store.resolve("b:1").unwrap().unwrap();
        let policy = Policy {
            max_unused: Duration::ZERO,
            grace: Duration::ZERO,
            ..Policy::default()
        };
        let disk = Disk {
            total: 100,
            used: 1,
        };
        let now = crate::master::registry::unix_now() + 10;
        let in_use = vec!["a:1".to_string()];
        // First sight stamps both images now: nothing is "unused for" anything yet.
        let first = store
            .collect_garbage(&in_use, &BTreeSet::new(), disk, now, &policy)
            .unwrap();
        assert!(first.images.is_empty(), "{first:?}");
        let later = store
            .collect_garbage(&in_use, &BTreeSet::new(), disk, now + 10, &policy)
            .unwrap();
        assert_eq!(later.images, vec![b_img.id.clone()]);
        assert!(store.resolve("b:1").unwrap().is_none());
        let a_now = store.resolve("a:1").unwrap().unwrap();
        assert_eq!(a_now.id, a_id.id);
        for layer in &a_now.layers {
            assert!(layer.is_dir(), "kept layer {}", layer.display());
        }
        // b's own top layer and config are gone; the shared bottom layer stays.
        assert!(!b_img.layers[1].exists());
        assert!(b_img.layers[0].is_dir());
        assert!(!store
            .blob_path(b_img.id.trim_start_matches("sha256:"))
            .exists());
        assert!(store
            .blob_path(a_id.id.trim_start_matches("sha256:"))
            .exists());
        assert_eq!(later.layers, 1);
        // A mounted layer keeps its image even when no pod names it.
        let mounted: BTreeSet<String> = a_now
            .layers
            .iter()
            .map(|l| l.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let kept = store
            .collect_garbage(&[], &mounted, disk, now + 20, &policy)
            .unwrap();
        assert!(kept.images.is_empty(), "{kept:?}");
        assert!(store.resolve("a:1").unwrap().is_some());
    }
}

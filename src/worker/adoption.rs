//! Start-up I/O around the pure `pods::adopt` plan: find the containers a previous agent left
//! (the runtime's on-disk index), decide with the persisted desired set, and remove what is
//! not adopted (containers, rootfs mounts, pod cgroups, dirs), so a second copy of a pod never
//! runs beside a stale one.

use std::path::Path;
use std::time::Duration;

use super::images::ImageStore;
use super::pods::adopt::{self, Found, FoundState, Plan};
use super::pods::container::GENERATION_FILE;
use super::pods::manager::Desired;
use super::runtime::{self, LinuxRuntime, Observed, Runtime as _};

/// Finds leftover containers, removes the ones not to adopt, and returns the plan whose
/// `resume` the pod manager continues from.
pub async fn adopt_or_sweep(
    runtime: &LinuxRuntime,
    images: &ImageStore,
    data_dir: &Path,
    desired: Option<&Desired>,
) -> Plan {
    let wanted: Vec<&crate::api::Pod> = desired
        .map(|d| d.wanted())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let found = scan(runtime);
    let plan = adopt::plan(&wanted, found);
    for id in &plan.remove {
        tracing::warn!(container = %id, "removing a container left by a previous agent");
        if let Err(e) = runtime.remove(id).await {
            tracing::warn!(container = %id, error = %e, "leftover container not fully removed");
        }
    }
    let adopted: usize = plan
        .resume
        .values()
        .flat_map(|m| m.values())
        .filter(|r| matches!(r.state, adopt::ResumeState::Running { .. }))
        .count();
    let wanted_uids: Vec<&str> = wanted.iter().map(|p| p.metadata.uid.as_str()).collect();
    sweep_dirs(images, data_dir, &plan, &wanted_uids);
    // Volumes of pods that are gone (deleted while no agent ran); those of wanted pods stay
    // mounted and untouched for their re-adopted containers.
    let layout = super::volumes::Layout {
        root: data_dir.join("volumes"),
        node: String::new(),
    };
    let keep: std::collections::HashSet<&str> = wanted_uids.iter().copied().collect();
    super::volumes::sweep(&layout, &keep);
    if adopted > 0 || !plan.remove.is_empty() {
        tracing::info!(
            adopted,
            removed = plan.remove.len(),
            "containers of the previous agent handled"
        );
    }
    plan
}

/// Every indexed container with what became of it.
fn scan(runtime: &LinuxRuntime) -> Vec<Found> {
    let mut out = Vec::new();
    for (id, bundle) in runtime.indexed() {
        // <data>/containers/<uid>/<name>-<attempt>/bundle
        let attempt_dir = bundle.parent();
        let parsed = attempt_dir.and_then(|a| {
            let dir = a.file_name()?.to_str()?;
            let uid = a.parent()?.file_name()?.to_str()?;
            adopt::parse_dir(uid, dir)
        });
        let state = match runtime.observe(&id) {
            Observed::Running(st) => FoundState::Running {
                started_at: st.started_at,
            },
            Observed::Exited { state, exit } => FoundState::Exited {
                started_at: state.map(|s| s.started_at),
                exit,
            },
            Observed::Gone => FoundState::Gone {
                started_at: runtime.shim_state(&id).map(|s| s.started_at),
            },
        };
        let Some((uid, container, attempt)) = parsed else {
            // Not laid out by the pod loop: nothing can adopt it. An empty uid matches no pod.
            out.push(Found {
                id,
                uid: String::new(),
                container: String::new(),
                attempt: 0,
                generation: None,
                state,
            });
            continue;
        };
        let generation = attempt_dir
            .and_then(|a| std::fs::read_to_string(a.join(GENERATION_FILE)).ok())
            .and_then(|g| g.trim().parse().ok());
        out.push(Found {
            id,
            uid,
            container,
            attempt,
            generation,
            state,
        });
    }
    out
}

/// Rootfs mounts and dirs not belonging to an adopted container; whole pods (cgroup, dirs,
/// logs) that are not wanted any more.
fn sweep_dirs(images: &ImageStore, data_dir: &Path, plan: &Plan, wanted: &[&str]) {
    let containers = data_dir.join("containers");
    let pods: Vec<std::path::PathBuf> = std::fs::read_dir(&containers)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for pod_dir in pods {
        let Some(uid) = pod_dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let keep = plan.kept_dirs(&uid);
        let attempts: Vec<std::path::PathBuf> = std::fs::read_dir(&pod_dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for a in attempts {
            let name = a.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if keep.iter().any(|k| k == name) {
                continue;
            }
            if let Err(e) = images.unmount_rootfs(&a) {
                tracing::warn!(dir = %a.display(), error = %e, "leftover rootfs not unmounted");
            }
            let _ = std::fs::remove_dir_all(&a);
        }
        if wanted.contains(&uid.as_str()) {
            continue;
        }
        let cg = runtime::cgroups::pod_path(&uid);
        if let Err(e) = runtime::cgroups::remove_pod(&uid, Duration::from_secs(5)) {
            tracing::warn!(cgroup = %cg, error = %e, "leftover pod cgroup not removed");
        }
        let _ = std::fs::remove_dir_all(&pod_dir);
        let _ = std::fs::remove_dir_all(data_dir.join("logs").join(&uid));
    }
}

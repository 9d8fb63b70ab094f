//! Getting a container's image onto the node under its `imagePullPolicy`, with progress shown
//! on the container's status (`waiting: Pulling`, message with percent) as the kubelet does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::container::{Env, Update};
use crate::api::pod::PullPolicy;
use crate::api::{Container, ContainerStatus};
use crate::worker::images::pull::Progress;
use crate::worker::images::{Image, Reference};
use crate::worker::runtime::Runtime;

/// Kubernetes' defaults: `:latest` (or no tag) → Always, anything else → IfNotPresent.
pub fn effective_policy(c: &Container) -> PullPolicy {
    if let Some(p) = c.image_pull_policy {
        return p;
    }
    match Reference::parse(&c.image) {
        Ok(r) if r.digest().is_some() => PullPolicy::IfNotPresent,
        Ok(r) if r.tag().is_none_or(|t| t == "latest") => PullPolicy::Always,
        _ => PullPolicy::IfNotPresent,
    }
}

/// What to do given the policy and whether the node has the image.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    UseLocal,
    Pull,
    /// `Never` and absent.
    NeverPull,
}

/// `pulled_before`: this container already pulled once in this agent's life; `Always`
/// re-checks only at the container's first start, not at every crash-loop restart, so a
/// board does not ask the registry every few seconds.
pub fn plan(policy: PullPolicy, present: bool, pulled_before: bool) -> Plan {
    match (policy, present) {
        (PullPolicy::Never, true) | (PullPolicy::IfNotPresent, true) => Plan::UseLocal,
        (PullPolicy::Never, false) => Plan::NeverPull,
        (PullPolicy::Always, true) if pulled_before => Plan::UseLocal,
        _ => Plan::Pull,
    }
}

/// Backoff between failed pulls: 5 s doubling to 2 min (kubelet: 10 s to 5 min; boards retry
/// sooner because their registry is usually the master on the LAN).
pub fn pull_backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.min(5)).min(120))
}

/// Why an image is not available, as the kubelet names it.
pub struct NotAvailable {
    pub reason: &'static str,
    pub message: String,
}

/// Makes the image available, reporting `Pulling` progress on `status`.
pub async fn ensure<R: Runtime>(
    env: &Env<R>,
    spec: &Container,
    pulled_before: &mut bool,
    status: &mut ContainerStatus,
    updates: &mpsc::Sender<Update>,
    index: usize,
) -> Result<Image, NotAvailable> {
    let local = lookup(env, &spec.image).await?;
    let policy = effective_policy(spec);
    match plan(policy, local.is_some(), *pulled_before) {
        Plan::UseLocal => return local.ok_or_else(|| gone(&spec.image)),
        Plan::NeverPull => {
            return Err(NotAvailable {
                reason: "ErrImageNeverPull",
                message: format!(
                    "image {:?} is not present on this node and imagePullPolicy is Never \
                     (load it with `herd image import FILE` or `herd image pull`)",
                    spec.image
                ),
            })
        }
        Plan::Pull => {}
    }
    let reference = Reference::parse(&spec.image).map_err(|e| NotAvailable {
        reason: "InvalidImageName",
        message: e.to_string(),
    })?;
    let name = reference.to_string();
    let _one_at_a_time = env.pull.lock(&name).await;
    // Another container may have pulled it while this one waited.
    if policy != PullPolicy::Always {
        if let Some(img) = lookup(env, &spec.image).await? {
            return Ok(img);
        }
    }
    let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
    let report = Arc::new(move |p: Progress| {
        tx.send_replace(p);
    });
    let puller = env.pull.puller(&reference);
    let images = env.images.clone();
    // Its own task: the pull owns everything it touches, and a stopped pod's pull still
    // completes into the store for the next one.
    let mut pull = tokio::spawn(async move { images.pull(&puller, &reference, report).await });
    let mut last_sent = Instant::now() - Duration::from_secs(1);
    let result = loop {
        tokio::select! {
            r = &mut pull => break r.unwrap_or_else(|e| Err(crate::oci::PullError::Registry {
                image: name.clone(),
                registry: env.pull.describe(),
                reason: format!("pull task failed: {e}"),
            })),
            changed = rx.changed() => {
                if changed.is_err() || last_sent.elapsed() < Duration::from_millis(500) {
                    continue;
                }
                last_sent = Instant::now();
                let p = *rx.borrow_and_update();
                status.state = super::container::waiting("Pulling", format!(
                    "pulling {name} from {}: {}% ({} of {})",
                    env.pull.describe(),
                    p.percent(),
                    human(p.done),
                    human(p.total),
                ));
                super::container::send(updates, index, status, true).await;
            }
        }
    };
    match result {
        Ok(pulled) => {
            *pulled_before = true;
            Ok(pulled.image)
        }
        Err(e) => match local {
            // The registry is away (or refuses) but the node has an image under this name:
            // boards keep running what they have, as they do when the master is away.
            Some(img) if policy == PullPolicy::Always => {
                tracing::warn!(image = %name, error = %e, "pull failed; using the local image");
                *pulled_before = true;
                Ok(img)
            }
            _ => Err(NotAvailable {
                reason: "ErrImagePull",
                message: format!("pulling {name} from {}: {e}", env.pull.describe()),
            }),
        },
    }
}

fn gone(image: &str) -> NotAvailable {
    NotAvailable {
        reason: "ErrImagePull",
        message: format!("image {image:?} vanished from the store"),
    }
}

async fn lookup<R: Runtime>(env: &Env<R>, reference: &str) -> Result<Option<Image>, NotAvailable> {
    let images = env.images.clone();
    let r = reference.to_string();
    match tokio::task::spawn_blocking(move || images.resolve(&r)).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(NotAvailable {
            reason: "InvalidImageName",
            message: e.to_string(),
        }),
        Err(e) => Err(NotAvailable {
            reason: "ErrImagePull",
            message: format!("image lookup failed: {e}"),
        }),
    }
}

/// `12.3 MB`: decimal units, as registries and `docker pull` show sizes.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str, policy: Option<PullPolicy>) -> Container {
        Container {
            name: "c".into(),
            image: image.into(),
            image_pull_policy: policy,
            ..Default::default()
        }
    }

    #[test]
    fn latest_and_untagged_default_to_always_others_to_if_not_present() {
        assert_eq!(
            effective_policy(&container("busybox", None)),
            PullPolicy::Always
        );
        assert_eq!(
            effective_policy(&container("busybox:latest", None)),
            PullPolicy::Always
        );
        assert_eq!(
            effective_policy(&container("busybox:1.36", None)),
            PullPolicy::IfNotPresent
        );
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(
            effective_policy(&container(&pinned, None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            effective_policy(&container("busybox", Some(PullPolicy::Never))),
            PullPolicy::Never
        );
    }

    #[test]
    fn the_plan_follows_the_policy() {
        use PullPolicy::*;
        assert_eq!(plan(Never, true, false), Plan::UseLocal);
        assert_eq!(plan(Never, false, false), Plan::NeverPull);
        assert_eq!(plan(IfNotPresent, true, false), Plan::UseLocal);
        assert_eq!(plan(IfNotPresent, false, false), Plan::Pull);
        assert_eq!(plan(Always, true, false), Plan::Pull);
        assert_eq!(plan(Always, true, true), Plan::UseLocal);
        assert_eq!(plan(Always, false, true), Plan::Pull);
    }

    #[test]
    fn pull_backoff_doubles_to_a_cap() {
        assert_eq!(pull_backoff(0), Duration::from_secs(5));
        assert_eq!(pull_backoff(1), Duration::from_secs(10));
        assert_eq!(pull_backoff(4), Duration::from_secs(80));
        assert_eq!(pull_backoff(5), Duration::from_secs(120));
        assert_eq!(pull_backoff(40), Duration::from_secs(120));
    }

    #[test]
    fn sizes_read_like_a_registry_shows_them() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(12_345_678), "12.3 MB");
        assert_eq!(human(2_000_000_000), "2.0 GB");
    }
}

//! Which platforms the images of pending pods offer, so the scheduler never binds a pod to a
//! board its image has no variant for (the "exec format error" of mixed fleets).
//!
//! Answers come from the master's image cache. An image the cache does not know is fetched
//! into it once (through the pull-through cache, which also warms it for the workers); while
//! that runs, pods using the image wait a moment in Pending. When the image cannot be resolved
//! (air-gapped master, registry down, an image only imported on the nodes) the answer is
//! "unknown" and the pod is scheduled without the platform constraint: the worker then refuses
//! a wrong variant with a clear reason instead of the pod never being placed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::master::registry::BoxFut;
use crate::master::scheduler::platform_runs;

/// An unresolvable image is asked about again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// A resolution that takes longer counts as failed (the pod is then scheduled anyway).
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// The I/O: the cache, and a way to fill it.
pub trait PlatformSource: Send + Sync {
    /// Platforms `image` offers according to the cache, if it can tell.
    fn cached(&self, image: &str) -> Option<Vec<String>>;
    /// Fetches `image` (manifest or index, and a single manifest's config) into the cache.
    fn fetch<'a>(&'a self, image: &'a str) -> BoxFut<'a, Result<(), String>>;
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Known(Vec<String>),
    /// Could not be resolved: schedule without the constraint.
    Unknown,
    /// Being fetched: leave the pod for the next pass.
    Pending,
}

enum State {
    Fetching,
    Failed(Instant),
}

pub struct ImagePlatforms {
    source: Arc<dyn PlatformSource>,
    state: Mutex<HashMap<String, State>>,
    /// Bumped when a fetch finishes, to wake the scheduler.
    done: watch::Sender<u64>,
}

impl ImagePlatforms {
    pub fn new(source: Arc<dyn PlatformSource>) -> Arc<ImagePlatforms> {
        Arc::new(ImagePlatforms {
            source,
            state: Mutex::new(HashMap::new()),
            done: watch::channel(0).0,
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.done.subscribe()
    }

    /// Never blocks: starts a fetch (on the current tokio runtime) when the cache cannot tell.
    pub fn lookup(self: &Arc<Self>, image: &str) -> Lookup {
        if let Some(p) = self.source.cached(image) {
            return Lookup::Known(p);
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.get(image) {
            Some(State::Fetching) => return Lookup::Pending,
            Some(State::Failed(at)) if at.elapsed() < RETRY_AFTER => return Lookup::Unknown,
            _ => {}
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Lookup::Unknown;
        };
        state.insert(image.to_owned(), State::Fetching);
        let me = self.clone();
        let image = image.to_owned();
        rt.spawn(async move {
            let r = tokio::time::timeout(FETCH_TIMEOUT, me.source.fetch(&image)).await;
            let ok = matches!(r, Ok(Ok(())));
            if let Ok(Err(e)) = &r {
                tracing::info!(%image, error = %e, "image platforms unknown: scheduling without the constraint");
            } else if r.is_err() {
                tracing::info!(%image, "image platform lookup timed out: scheduling without the constraint");
            }
            let mut state = me.state.lock().unwrap_or_else(|p| p.into_inner());
            if ok {
                state.remove(&image);
            } else {
                state.insert(image, State::Failed(Instant::now()));
            }
            drop(state);
            me.done.send_modify(|n| *n += 1);
        });
        Lookup::Pending
    }
}

/// Pure: the platforms a node may have to run every image of a pod. `None`: no constraint
/// (no image's platforms are known). With several images, a platform is kept when each image
/// has a variant that runs there (an arm/v7 board runs an arm/v6 image).
pub fn combine(per_image: &[Lookup]) -> Option<Vec<String>> {
    let known: Vec<&Vec<String>> = per_image
        .iter()
        .filter_map(|l| match l {
            Lookup::Known(p) => Some(p),
            _ => None,
        })
        .collect();
    let first = known.first()?;
    if known.len() == 1 {
        return Some((*first).clone());
    }
    let mut all: Vec<String> = known.iter().flat_map(|p| p.iter().cloned()).collect();
    all.sort();
    all.dedup();
    Some(
        all.into_iter()
            .filter(|cand| {
                known
                    .iter()
                    .all(|offered| offered.iter().any(|o| platform_runs(cand, o)))
            })
            .collect(),
    )
}

/// The cache behind the master's `/v2/`.
pub struct RegistrySource(pub Arc<crate::master::registry::Registry>);

impl PlatformSource for RegistrySource {
    fn cached(&self, image: &str) -> Option<Vec<String>> {
        self.0.store().platforms(image).ok().flatten()
    }

    fn fetch<'a>(&'a self, image: &'a str) -> BoxFut<'a, Result<(), String>> {
        Box::pin(async move {
            let r = crate::worker::images::Reference::parse(image).map_err(|e| e.to_string())?;
            let served = self.0.manifest(&r).await.map_err(|e| e.to_string())?;
            let doc: serde_json::Value =
                serde_json::from_slice(&served.bytes).map_err(|e| e.to_string())?;
            // A single image names its platform only in its config: cache that too.
            if let Some(config) = doc["config"]["digest"].as_str() {
                self.0.blob(&r, config).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(p: &[&str]) -> Lookup {
        Lookup::Known(p.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn unknown_images_add_no_constraint() {
        assert_eq!(combine(&[]), None);
        assert_eq!(combine(&[Lookup::Unknown]), None);
        assert_eq!(
            combine(&[Lookup::Unknown, known(&["linux/amd64"])]),
            Some(vec!["linux/amd64".to_string()])
        );
    }

    #[test]
    fn several_images_keep_only_platforms_that_run_all_of_them() {
        let got = combine(&[
            known(&["linux/amd64", "linux/arm/v6"]),
            known(&["linux/amd64", "linux/arm/v7", "linux/arm64"]),
        ]);
        // amd64 runs both; an arm/v7 board runs the v6 and the v7 image; arm64 only one.
        assert_eq!(
            got,
            Some(vec!["linux/amd64".to_string(), "linux/arm/v7".to_string()])
        );
        assert_eq!(
            combine(&[known(&["linux/amd64"]), known(&["linux/arm64"])]),
            Some(vec![])
        );
    }

    struct Fake {
        known: Mutex<Option<Vec<String>>>,
        fetch_ok: bool,
    }

    impl PlatformSource for Fake {
        fn cached(&self, _: &str) -> Option<Vec<String>> {
            self.known.lock().unwrap().clone()
        }
        fn fetch<'a>(&'a self, _: &'a str) -> BoxFut<'a, Result<(), String>> {
            Box::pin(async move {
                if self.fetch_ok {
                    *self.known.lock().unwrap() = Some(vec!["linux/arm64".into()]);
                    Ok(())
                } else {
                    Err("registry unreachable".into())
                }
            })
        }
    }

    #[tokio::test]
    async fn a_lookup_fetches_once_then_answers_from_the_cache_or_says_unknown() {
        let ok = ImagePlatforms::new(Arc::new(Fake {
            known: Mutex::new(None),
            fetch_ok: true,
        }));
        let mut woken = ok.subscribe();
        assert_eq!(ok.lookup("app:1"), Lookup::Pending);
        assert_eq!(
            ok.lookup("app:1"),
            Lookup::Pending,
            "a second fetch was started"
        );
        woken.changed().await.unwrap();
        assert_eq!(ok.lookup("app:1"), known(&["linux/arm64"]));

        let bad = ImagePlatforms::new(Arc::new(Fake {
            known: Mutex::new(None),
            fetch_ok: false,
        }));
        let mut woken = bad.subscribe();
        assert_eq!(bad.lookup("app:1"), Lookup::Pending);
        woken.changed().await.unwrap();
        assert_eq!(bad.lookup("app:1"), Lookup::Unknown);
    }
}

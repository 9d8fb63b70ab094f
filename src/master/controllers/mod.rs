//! Level-triggered controllers: each wakes on "something changed" (or a tick, for decisions
//! that depend on time) and reconciles the whole picture, so a missed or repeated wake-up never
//! matters.

pub mod deployment;
pub mod desired;
pub mod gc;
pub mod imageplatforms;
pub mod nodelifecycle;
pub mod nodes;
pub mod podnet;
pub mod replicaset;
pub mod scheduling;

use std::sync::Arc;
use std::time::Duration;

use crate::master::store::{Store, StoreError};

/// Runs `pass` after every store change and at least once a second (availability after
/// minReadySeconds, progress deadlines and eviction graces are decisions about time).
pub async fn run_level_triggered(
    name: &'static str,
    store: Arc<Store>,
    pass: impl Fn(&Store) -> Result<(), StoreError> + Send + Sync + Clone + 'static,
) {
    let mut changes = store.subscribe();
    loop {
        let (s, f) = (store.clone(), pass.clone());
        match tokio::task::spawn_blocking(move || f(&s)).await {
            Ok(Err(e)) => tracing::error!(controller = name, error = %e, "reconcile pass failed"),
            Err(e) => tracing::error!(controller = name, error = %e, "reconcile pass panicked"),
            Ok(Ok(())) => {}
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

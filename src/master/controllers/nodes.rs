//! Node liveness: a node whose heartbeats stop is marked NotReady (status Unknown) even when
//! no Last Will arrives (a broker restart loses it, a silent link takes a keepalive to notice).
//! While the master's own broker session is down nothing is judged: every node would look
//! silent, and evicting a whole healthy fleet over a broker restart is the worst outcome.

use std::sync::Arc;
use std::time::Duration;

use crate::master::ingest::{mark_node_lost, Liveness};
use crate::master::store::Store;

pub async fn run(
    store: Arc<Store>,
    liveness: Arc<Liveness>,
    connected: tokio::sync::watch::Receiver<bool>,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if !*connected.borrow() {
            liveness.excuse_all();
            continue;
        }
        for node in liveness.silent_for(timeout) {
            liveness.forget(&node);
            let s = store.clone();
            let why = format!("no heartbeat for {}s", timeout.as_secs());
            let res = tokio::task::spawn_blocking(move || {
                let _span = tracing::info_span!("node", node = %node).entered();
                tracing::warn!("{why}: marking node NotReady");
                mark_node_lost(&s, &node, &why)
            })
            .await;
            if let Ok(Err(e)) = res {
                tracing::error!(error = %e, "could not mark node NotReady");
            }
        }
    }
}

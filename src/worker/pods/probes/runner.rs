//! The async shell around [`Machine`]: runs due probes concurrently through a [`Checker`],
//! feeds their results back, and sends the machine's events to the container loop. It ends
//! after a kill, when the event receiver is gone, or when nothing is left to probe; dropping
//! it cancels checks in flight.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::machine::{Event, Machine, Outcome, Timing};
use super::{timeout, Checker};
use crate::api::probe::{Probe, ProbeKind};

/// A check gets its own timeout to report a timeout itself (a killed exec, a socket
/// deadline); past this much more it is abandoned and counts as failed.
const OVERRUN: Duration = Duration::from_secs(5);

/// Probes a container from the moment it started until the container loop drops this.
pub async fn run<C: Checker>(
    checker: Arc<C>,
    probes: Vec<(ProbeKind, Probe)>,
    events: mpsc::Sender<Event>,
) {
    let timings: Vec<(ProbeKind, Timing)> =
        probes.iter().map(|(k, p)| (*k, Timing::of(p))).collect();
    let mut machine = Machine::new(&timings);
    let start = Instant::now();
    let mut checks: JoinSet<(ProbeKind, Outcome)> = JoinSet::new();
    loop {
        for kind in machine.due(start.elapsed()) {
            let Some(probe) = probes
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, p)| p.clone())
            else {
                continue;
            };
            let checker = checker.clone();
            checks.spawn(async move {
                let limit = timeout(&probe) + OVERRUN;
                let outcome = tokio::time::timeout(limit, checker.check(&probe))
                    .await
                    .unwrap_or_else(|_| {
                        Outcome::Failure(format!(
                            "probe did not finish within {}s",
                            limit.as_secs()
                        ))
                    });
                (kind, outcome)
            });
        }
        let wake = machine.next_due().map(|d| start + d);
        tokio::select! {
            Some(joined) = checks.join_next() => {
                let Ok((kind, outcome)) = joined else { continue };
                match &outcome {
                    Outcome::Failure(m) => tracing::debug!(probe = kind.field(), message = %m, "probe failed"),
                    Outcome::Unknown(m) => tracing::warn!(probe = kind.field(), message = %m, "probe could not run"),
                    Outcome::Success => {}
                }
                for event in machine.record(kind, start.elapsed(), outcome) {
                    let last = matches!(event, Event::Kill { .. });
                    if events.send(event).await.is_err() || last {
                        return;
                    }
                }
            }
            () = sleep_until(wake), if wake.is_some() => {}
            else => return,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::probe::ExecAction;

    /// Answers by the probe's command: `["ok"]` passes, anything else fails.
    struct ByCommand;

    impl Checker for ByCommand {
        async fn check(&self, probe: &Probe) -> Outcome {
            match probe.exec.as_ref().map(|e| e.command.as_slice()) {
                Some([ok]) if ok == "ok" => Outcome::Success,
                _ => Outcome::Failure("nope".into()),
            }
        }
    }

    fn probe(cmd: &str) -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: vec![cmd.into()],
            }),
            period_seconds: 1,
            failure_threshold: 1,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_runner_reports_readiness_then_a_kill_and_stops() {
        let (tx, mut rx) = mpsc::channel(8);
        let task = tokio::spawn(run(
            Arc::new(ByCommand),
            vec![
                (ProbeKind::Startup, probe("ok")),
                (ProbeKind::Readiness, probe("ok")),
                (ProbeKind::Liveness, probe("bad")),
            ],
            tx,
        ));
        let mut got = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            got.push(e);
        }
        assert_eq!(got.first(), Some(&Event::Started));
        assert_eq!(
            got.last(),
            Some(&Event::Kill {
                kind: ProbeKind::Liveness,
                message: "Liveness probe failed: nope".into()
            })
        );
        assert!(task.await.is_ok(), "the runner ends after a kill");
    }

    #[tokio::test]
    async fn without_probes_the_runner_ends_at_once() {
        let (tx, _rx) = mpsc::channel(1);
        tokio::time::timeout(Duration::from_secs(1), run(Arc::new(ByCommand), vec![], tx))
            .await
            .expect("nothing to probe: returns");
    }
}

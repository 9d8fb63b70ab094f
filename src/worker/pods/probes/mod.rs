//! Container probes: a pure state machine ([`machine`]) deciding readiness, startup and kills
//! from results over time; a small async loop ([`runner`]) running due probes through a
//! [`Checker`]; and the real checker, which reaches into the running container: `exec` through
//! the runtime's helper process, `httpGet`/`tcpSocket` from a thread inside the container's
//! network namespace ([`net`]).

pub mod machine;
pub mod net;
pub mod runner;

use std::sync::Arc;
use std::time::Duration;

pub use machine::{Event, Outcome};

use crate::api::pod::ContainerPort;
use crate::api::probe::{Probe, ProbeKind};
use crate::api::Container;
use crate::worker::runtime::{sys, ExecOutput, Runtime, RuntimeError};

/// Runs one probe once. The seam between the runner and the container, so the runner's
/// logic does not depend on a real runtime.
pub trait Checker: Send + Sync + 'static {
    fn check(&self, probe: &Probe) -> impl std::future::Future<Output = Outcome> + Send;
}

/// A container's probes, startup first, as the runner takes them.
pub fn of(c: &Container) -> Vec<(ProbeKind, Probe)> {
    ProbeKind::ALL
        .into_iter()
        .filter_map(|kind| {
            let p = match kind {
                ProbeKind::Startup => &c.startup_probe,
                ProbeKind::Liveness => &c.liveness_probe,
                ProbeKind::Readiness => &c.readiness_probe,
            };
            p.clone().map(|p| (kind, p))
        })
        .collect()
}

/// The probe's `timeoutSeconds`.
pub fn timeout(p: &Probe) -> Duration {
    Duration::from_secs(p.timeout_seconds.max(1) as u64)
}

/// Probes one running container through the runtime.
pub struct ContainerChecker<R: Runtime> {
    pub runtime: Arc<R>,
    /// The runtime's container id.
    pub id: String,
    /// For named ports.
    pub ports: Vec<ContainerPort>,
}

impl<R: Runtime> Checker for ContainerChecker<R> {
    async fn check(&self, probe: &Probe) -> Outcome {
        let limit = timeout(probe);
        if let Some(exec) = &probe.exec {
            return exec_outcome(
                self.runtime.exec(&self.id, &exec.command, limit).await,
                limit,
            );
        }
        let target = match net::Target::of(probe, &self.ports) {
            Some(Ok(t)) => t,
            Some(Err(m)) => return Outcome::Failure(m),
            None => return Outcome::Unknown("probe has no handler".into()),
        };
        let ns = match self.runtime.net_namespace(&self.id) {
            Ok(fd) => fd,
            Err(e) => return Outcome::Unknown(e.to_string()),
        };
        let joined =
            tokio::task::spawn_blocking(move || sys::run_in_netns(&ns, || target.check(limit)))
                .await;
        match joined {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                Outcome::Unknown(format!("entering the container's network namespace: {e}"))
            }
            Err(e) => Outcome::Unknown(format!("probe thread: {e}")),
        }
    }
}

/// Exit 0 passes; the kubelet's message for anything else is the command's output.
fn exec_outcome(result: Result<ExecOutput, RuntimeError>, limit: Duration) -> Outcome {
    match result {
        Ok(out) if out.timed_out => {
            Outcome::Failure(format!("command timed out after {}s", limit.as_secs()))
        }
        Ok(out) if out.exit_code == 0 => Outcome::Success,
        Ok(out) if out.output.trim().is_empty() => {
            Outcome::Failure(format!("command exited with code {}", out.exit_code))
        }
        Ok(out) => Outcome::Failure(out.output.trim_end().to_string()),
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, output: &str, timed_out: bool) -> Result<ExecOutput, RuntimeError> {
        Ok(ExecOutput {
            exit_code: code,
            output: output.into(),
            timed_out,
        })
    }

    #[test]
    fn exec_results_become_outcomes_with_the_kubelets_messages() {
        let s = Duration::from_secs(2);
        assert_eq!(exec_outcome(out(0, "fine\n", false), s), Outcome::Success);
        assert_eq!(
            exec_outcome(out(1, "", false), s),
            Outcome::Failure("command exited with code 1".into())
        );
        assert_eq!(
            exec_outcome(out(3, "not healthy\n", false), s),
            Outcome::Failure("not healthy".into())
        );
        assert_eq!(
            exec_outcome(out(137, "", true), s),
            Outcome::Failure("command timed out after 2s".into())
        );
        let gone = Err(RuntimeError::NotFound { id: "c".into() });
        assert!(matches!(exec_outcome(gone, s), Outcome::Unknown(_)));
    }

    #[test]
    fn probes_are_listed_startup_first() {
        let c = Container {
            liveness_probe: Some(Probe::default()),
            startup_probe: Some(Probe::default()),
            ..Default::default()
        };
        let kinds: Vec<ProbeKind> = of(&c).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, [ProbeKind::Startup, ProbeKind::Liveness]);
    }
}

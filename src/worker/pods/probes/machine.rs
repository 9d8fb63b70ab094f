//! Pure: what a container's probes decide, given their results over time.
//!
//! Time is a `Duration` since the container started, passed in by the caller, so the rules are
//! tested with a fake clock. The kubelet's semantics:
//! - a probe first runs `initialDelaySeconds` after the container started, then every
//!   `periodSeconds`; a run still in flight is never started twice;
//! - `successThreshold` consecutive successes or `failureThreshold` consecutive failures
//!   change a probe's result; a result of unknown (the prober could not try) counts as neither;
//! - while a startup probe has not succeeded, liveness and readiness do not run; once it has,
//!   it never runs again; if it fails its threshold the container is killed;
//! - liveness starts healthy and kills the container when it fails its threshold;
//! - readiness starts not ready; without a readiness probe a container is ready once started.

use std::time::Duration;

use crate::api::probe::{Probe, ProbeKind};

/// One run of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Failed, with the message a user sees (command output, HTTP status, timeout, ...).
    Failure(String),
    /// The prober could not try (runtime error); discarded, as the kubelet does.
    Unknown(String),
}

/// A change the container loop must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The startup probe succeeded: `started` is true, liveness and readiness begin.
    Started,
    /// The container's readiness changed.
    Ready(bool),
    /// Kill the container: its liveness or startup probe failed `failureThreshold` times.
    Kill { kind: ProbeKind, message: String },
}

/// A probe's schedule and thresholds, from its spec (validated: all positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let secs = |v: i32, min: i32| Duration::from_secs(v.max(min) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 1),
            success_threshold: p.success_threshold.max(1) as u32,
            failure_threshold: p.failure_threshold.max(1) as u32,
        }
    }
}

#[derive(Debug, Clone)]
struct Track {
    kind: ProbeKind,
    timing: Timing,
    next_due: Duration,
    in_flight: bool,
    successes: u32,
    failures: u32,
    /// Readiness: ready. Liveness: healthy. Startup: started.
    passing: bool,
}

/// The probes of one container run. A new run (after a restart) gets a new machine.
#[derive(Debug, Clone)]
pub struct Machine {
    tracks: Vec<Track>,
    started: bool,
    has_readiness: bool,
    /// A kill was decided; nothing more happens.
    done: bool,
}

impl Machine {
    /// From `(kind, timing)` pairs; at most one per kind is expected.
    pub fn new(probes: &[(ProbeKind, Timing)]) -> Machine {
        let tracks: Vec<Track> = probes
            .iter()
            .map(|&(kind, timing)| Track {
                kind,
                timing,
                next_due: timing.initial_delay,
                in_flight: false,
                successes: 0,
                failures: 0,
                passing: kind == ProbeKind::Liveness,
            })
            .collect();
        Machine {
            started: !tracks.iter().any(|t| t.kind == ProbeKind::Startup),
            has_readiness: tracks.iter().any(|t| t.kind == ProbeKind::Readiness),
            tracks,
            done: false,
        }
    }

    /// Whether the startup probe has succeeded (true without one): `ContainerStatus.started`.
    pub fn started(&self) -> bool {
        self.started
    }

    /// `ContainerStatus.ready`.
    pub fn ready(&self) -> bool {
        if !self.started || self.done {
            return false;
        }
        !self.has_readiness || self.track(ProbeKind::Readiness).is_some_and(|t| t.passing)
    }

    fn track(&self, kind: ProbeKind) -> Option<&Track> {
        self.tracks.iter().find(|t| t.kind == kind)
    }

    /// A probe that may run at all now (startup gating, a finished startup probe).
    fn active(&self, t: &Track) -> bool {
        !self.done
            && match t.kind {
                ProbeKind::Startup => !self.started,
                ProbeKind::Liveness | ProbeKind::Readiness => self.started,
            }
    }

    /// The probes to run at `now`; each is marked in flight and its next run scheduled one
    /// period after its due time (never in the past, so a late tick does not cause a burst).
    pub fn due(&mut self, now: Duration) -> Vec<ProbeKind> {
        let mut out = Vec::new();
        for i in 0..self.tracks.len() {
            let t = &self.tracks[i];
            if !self.active(t) || t.in_flight || t.next_due > now {
                continue;
            }
            let t = &mut self.tracks[i];
            t.in_flight = true;
            t.next_due = (t.next_due + t.timing.period).max(now + Duration::from_millis(1));
            out.push(t.kind);
        }
        out
    }

    /// When the next probe becomes due, if any can; the caller sleeps until then or until a
    /// result arrives.
    pub fn next_due(&self) -> Option<Duration> {
        self.tracks
            .iter()
            .filter(|t| self.active(t) && !t.in_flight)
            .map(|t| t.next_due)
            .min()
    }

    /// Records the result of a run of `kind` that finished at `now`; returns what changed.
    pub fn record(&mut self, kind: ProbeKind, now: Duration, outcome: Outcome) -> Vec<Event> {
        let mut events = Vec::new();
        let was_ready = self.ready();
        let Some(i) = self.tracks.iter().position(|t| t.kind == kind) else {
            return events;
        };
        self.tracks[i].in_flight = false;
        if self.done || !self.active(&self.tracks[i]) {
            return events;
        }
        let t = &mut self.tracks[i];
        // `Some(message)` once the failure threshold is reached.
        let tripped = match outcome {
            Outcome::Unknown(_) => return events,
            Outcome::Success => {
                t.successes += 1;
                t.failures = 0;
                if t.successes >= t.timing.success_threshold {
                    t.passing = true;
                }
                None
            }
            Outcome::Failure(m) => {
                t.failures += 1;
                t.successes = 0;
                if t.failures >= t.timing.failure_threshold {
                    t.passing = false;
                    Some(m)
                } else {
                    None
                }
            }
        };
        let (kind, passing) = (t.kind, t.passing);
        let mut kill = None;
        match (kind, passing, tripped) {
            (ProbeKind::Startup, true, _) => {
                self.started = true;
                events.push(Event::Started);
                // Liveness and readiness were waiting for this: run them right away if due.
                for t in &mut self.tracks {
                    if t.kind != ProbeKind::Startup {
                        t.next_due = t.next_due.max(now);
                    }
                }
            }
            (ProbeKind::Startup | ProbeKind::Liveness, false, Some(m)) => {
                self.done = true;
                kill = Some(Event::Kill {
                    kind,
                    message: format!("{} probe failed: {m}", kind.title()),
                });
            }
            _ => {}
        }
        let ready = self.ready();
        if ready != was_ready {
            events.push(Event::Ready(ready));
        }
        // Last, so "not ready" is reported before the (slow) termination starts.
        events.extend(kill);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProbeKind::{Liveness, Readiness, Startup};

    fn timing(delay: u64, period: u64, success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(delay),
            period: Duration::from_secs(period),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    /// Probe runs and events, each with the second it happened.
    type Trace = (Vec<(u64, ProbeKind)>, Vec<(u64, Event)>);

    /// Ticks a fake clock once a second from 0 to `until` seconds; every due probe gets the
    /// result `result(kind, second)` at once, and probes that became due through a result run
    /// in the same second, as the runner does. Returns the runs and the events, each with its
    /// second.
    fn simulate(m: &mut Machine, until: u64, result: impl Fn(ProbeKind, u64) -> bool) -> Trace {
        let (mut runs, mut events) = (Vec::new(), Vec::new());
        for s in 0..=until {
            let now = Duration::from_secs(s);
            loop {
                let due = m.due(now);
                if due.is_empty() {
                    break;
                }
                for kind in due {
                    runs.push((s, kind));
                    let outcome = if result(kind, s) {
                        Outcome::Success
                    } else {
                        Outcome::Failure(format!("{kind:?} failed at {s}"))
                    };
                    events.extend(m.record(kind, now, outcome).into_iter().map(|e| (s, e)));
                }
            }
        }
        (runs, events)
    }

    fn kill(kind: ProbeKind, at: u64) -> Event {
        Event::Kill {
            kind,
            message: format!("{} probe failed: {kind:?} failed at {at}", kind.title()),
        }
    }

    #[test]
    fn the_event_tables_hold() {
        type Case = (
            &'static str,
            Vec<(ProbeKind, Timing)>,
            fn(ProbeKind, u64) -> bool,
            u64,
            Vec<(u64, Event)>,
        );
        let cases: Vec<Case> = vec![
            (
                "readiness turns ready after successThreshold successes and unready after failureThreshold failures",
                vec![(Readiness, timing(0, 1, 2, 3))],
                |_, s| s < 5,
                10,
                vec![(1, Event::Ready(true)), (7, Event::Ready(false))],
            ),
            (
                "readiness recovers once it succeeds again",
                vec![(Readiness, timing(0, 1, 1, 1))],
                |_, s| !(3..5).contains(&s),
                8,
                vec![
                    (0, Event::Ready(true)),
                    (3, Event::Ready(false)),
                    (5, Event::Ready(true)),
                ],
            ),
            (
                "the initial delay postpones the first run",
                vec![(Readiness, timing(3, 1, 1, 3))],
                |_, _| true,
                5,
                vec![(3, Event::Ready(true))],
            ),
            (
                "a success between failures resets the liveness count",
                vec![(Liveness, timing(0, 1, 1, 3))],
                |_, s| !(2..10).contains(&s) || s == 3,
                12,
                vec![(6, Event::Ready(false)), (6, kill(Liveness, 6))],
            ),
            (
                "liveness that keeps passing never kills",
                vec![(Liveness, timing(0, 1, 1, 1))],
                |_, _| true,
                30,
                vec![],
            ),
            (
                "startup gates liveness and readiness until it succeeds",
                vec![
                    (Startup, timing(0, 1, 1, 10)),
                    (Liveness, timing(0, 1, 1, 3)),
                    (Readiness, timing(0, 1, 1, 3)),
                ],
                |k, s| match k {
                    Startup => s >= 4,
                    Liveness => false,
                    Readiness => true,
                },
                20,
                vec![
                    (4, Event::Started),
                    (4, Event::Ready(true)),
                    (6, Event::Ready(false)),
                    (6, kill(Liveness, 6)),
                ],
            ),
            (
                "startup failing its threshold kills the container",
                vec![(Startup, timing(0, 2, 1, 3)), (Liveness, timing(0, 1, 1, 1))],
                |_, _| false,
                20,
                vec![(4, kill(Startup, 4))],
            ),
            (
                "without a readiness probe a started container turns ready",
                vec![(Startup, timing(2, 1, 1, 3))],
                |_, _| true,
                5,
                vec![(2, Event::Started), (2, Event::Ready(true))],
            ),
        ];
        for (name, probes, result, until, want) in cases {
            let mut m = Machine::new(&probes);
            let (_, events) = simulate(&mut m, until, result);
            assert_eq!(events, want, "{name}");
        }
    }

    #[test]
    fn probes_run_once_per_period_after_the_initial_delay() {
        let mut m = Machine::new(&[(Readiness, timing(2, 10, 1, 3))]);
        let (runs, _) = simulate(&mut m, 35, |_, _| true);
        let at: Vec<u64> = runs.iter().map(|r| r.0).collect();
        assert_eq!(at, [2, 12, 22, 32]);
        assert_eq!(m.next_due(), Some(Duration::from_secs(42)));
    }

    #[test]
    fn liveness_and_readiness_never_run_before_startup_succeeds() {
        let mut m = Machine::new(&[
            (Startup, timing(0, 1, 1, 100)),
            (Liveness, timing(0, 1, 1, 1)),
            (Readiness, timing(0, 1, 1, 1)),
        ]);
        assert!(!m.started() && !m.ready());
        let (runs, _) = simulate(&mut m, 9, |k, s| k != Startup || s >= 5);
        assert!(
            runs.iter().all(|&(s, k)| k == Startup || s >= 5),
            "{runs:?}"
        );
        assert!(
            runs.iter().all(|&(s, k)| k != Startup || s <= 5),
            "{runs:?}"
        );
        assert!(m.started() && m.ready());
    }

    #[test]
    fn a_probe_in_flight_is_not_started_again_and_runs_at_once_when_late() {
        let mut m = Machine::new(&[(Liveness, timing(0, 1, 1, 3))]);
        assert_eq!(m.due(Duration::ZERO), [Liveness]);
        assert_eq!(m.next_due(), None, "in flight: nothing to wake up for");
        assert!(m.due(Duration::from_secs(5)).is_empty());
        m.record(Liveness, Duration::from_secs(5), Outcome::Success);
        assert_eq!(m.next_due(), Some(Duration::from_secs(1)));
        assert_eq!(m.due(Duration::from_secs(5)), [Liveness]);
        m.record(Liveness, Duration::from_secs(5), Outcome::Success);
        assert_eq!(
            m.next_due(),
            Some(Duration::from_millis(5001)),
            "one period after a late run would be in the past: as soon as possible"
        );
    }

    #[test]
    fn unknown_results_count_neither_way() {
        let mut m = Machine::new(&[(Liveness, timing(0, 1, 1, 2))]);
        let mut events = Vec::new();
        for (s, outcome) in [
            (0, Outcome::Failure("a".into())),
            (1, Outcome::Unknown("runtime busy".into())),
            (2, Outcome::Unknown("runtime busy".into())),
            (3, Outcome::Failure("b".into())),
        ] {
            let now = Duration::from_secs(s);
            assert_eq!(m.due(now), [Liveness]);
            events.extend(m.record(Liveness, now, outcome));
        }
        assert_eq!(
            events,
            [
                Event::Ready(false),
                Event::Kill {
                    kind: Liveness,
                    message: "Liveness probe failed: b".into()
                }
            ]
        );
        assert!(
            m.due(Duration::from_secs(4)).is_empty(),
            "nothing runs after a kill"
        );
        assert_eq!(m.next_due(), None);
    }

    #[test]
    fn without_probes_a_container_is_started_and_ready_and_nothing_is_due() {
        let mut m = Machine::new(&[]);
        assert!(m.started() && m.ready());
        assert!(m.due(Duration::from_secs(100)).is_empty());
        assert_eq!(m.next_due(), None);
    }

    #[test]
    fn timing_comes_from_the_probe_spec() {
        let p = Probe {
            initial_delay_seconds: 5,
            period_seconds: 2,
            success_threshold: 1,
            failure_threshold: 4,
            ..Default::default()
        };
        assert_eq!(Timing::of(&p), timing(5, 2, 1, 4));
    }
}

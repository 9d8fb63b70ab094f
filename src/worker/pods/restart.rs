//! Pure restart policy: after a container exits, should it run again, and when.
//!
//! Kubernetes' rules: `Always` restarts every exit, `OnFailure` non-zero exits, `Never` none;
//! the delay doubles from a base (10 s) up to 5 minutes and resets once a container has run
//! cleanly for 10 minutes.

use std::time::Duration;

use crate::api::RestartPolicy;

pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterExit {
    /// Start again after this delay.
    RestartIn(Duration),
    /// Leave it terminated.
    Stay,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    /// Delay to use at the next crash.
    next: Duration,
    pub restart_count: u32,
}

impl Backoff {
    pub fn new(base: Duration) -> Self {
        Backoff {
            base,
            next: base,
            restart_count: 0,
        }
    }

    /// The state a container loop had after `restart_count` restarts, for a new agent that
    /// re-adopts a container: the count it reports stays the same and the next delay is
    /// where the old agent would have been (doubling from `base`, capped).
    pub fn resumed(base: Duration, restart_count: u32) -> Self {
        let mut next = base;
        for _ in 0..restart_count {
            next = (next * 2).min(MAX_BACKOFF);
            if next == MAX_BACKOFF {
                break;
            }
        }
        Backoff {
            base,
            next,
            restart_count,
        }
    }

    /// Decides what follows an exit after the container ran for `ran_for`.
    pub fn on_exit(
        &mut self,
        policy: RestartPolicy,
        exit_code: i32,
        ran_for: Duration,
    ) -> AfterExit {
        let restart = match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        };
        if !restart {
            return AfterExit::Stay;
        }
        if ran_for >= RESET_AFTER {
            self.next = self.base;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        self.restart_count += 1;
        AfterExit::RestartIn(delay.min(MAX_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn always_restarts_with_doubling_delay_capped_at_five_minutes() {
        let mut b = Backoff::new(S(10));
        let delays: Vec<_> = (0..8)
            .map(|_| b.on_exit(RestartPolicy::Always, 0, S(1)))
            .collect();
        assert_eq!(
            delays,
            [10, 20, 40, 80, 160, 300, 300, 300]
                .map(|s| AfterExit::RestartIn(S(s)))
                .to_vec()
        );
        assert_eq!(b.restart_count, 8);
    }

    #[test]
    fn on_failure_restarts_only_non_zero_exits() {
        let mut b = Backoff::new(S(10));
        assert_eq!(
            b.on_exit(RestartPolicy::OnFailure, 0, S(1)),
            AfterExit::Stay
        );
        assert_eq!(
            b.on_exit(RestartPolicy::OnFailure, 1, S(1)),
            AfterExit::RestartIn(S(10))
        );
        assert_eq!(b.restart_count, 1);
    }

    #[test]
    fn a_resumed_backoff_keeps_the_count_and_continues_the_doubling() {
        let mut fresh = Backoff::new(S(10));
        for _ in 0..3 {
            fresh.on_exit(RestartPolicy::Always, 1, S(1));
        }
        let mut resumed = Backoff::resumed(S(10), 3);
        assert_eq!(resumed, fresh);
        assert_eq!(
            resumed.on_exit(RestartPolicy::Always, 1, S(1)),
            AfterExit::RestartIn(S(80))
        );
        assert_eq!(resumed.restart_count, 4);
        assert_eq!(
            Backoff::resumed(S(10), 1000).on_exit(RestartPolicy::Always, 1, S(1)),
            AfterExit::RestartIn(MAX_BACKOFF)
        );
    }

    #[test]
    fn never_never_restarts() {
        let mut b = Backoff::new(S(10));
        assert_eq!(b.on_exit(RestartPolicy::Never, 137, S(1)), AfterExit::Stay);
        assert_eq!(b.restart_count, 0);
    }

    #[test]
    fn a_long_clean_run_resets_the_delay() {
        let mut b = Backoff::new(S(10));
        for _ in 0..4 {
            b.on_exit(RestartPolicy::Always, 1, S(1));
        }
        assert_eq!(
            b.on_exit(RestartPolicy::Always, 1, S(700)),
            AfterExit::RestartIn(S(10))
        );
        assert_eq!(
            b.on_exit(RestartPolicy::Always, 1, S(1)),
            AfterExit::RestartIn(S(20))
        );
    }
}

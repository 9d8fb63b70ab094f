//! How long a board waits before trying to join again. Pure: the caller sleeps and supplies
//! the randomness, so the schedule is tested without a clock.
//!
//! A board usually boots before its master is reachable (Wi-Fi associating, DHCP, the master
//! itself rebooting after a power cut): retry quickly at first, then settle at one attempt a
//! minute, forever. A master that answers but refuses (wrong or expired token) will not
//! change its mind soon, so that case waits the maximum at once.

use std::time::Duration;

/// First delay after an unreachable master.
pub const FIRST: Duration = Duration::from_secs(1);
/// Upper bound of the delay, before jitter.
pub const MAX: Duration = Duration::from_secs(60);

/// Why the last join attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer: network not up yet, master down, wrong address.
    Unreachable,
    /// The master answered and said no, or its answer could not be stored.
    Refused,
}

/// The delay after the `failures`-th failure in a row (1 for the first): doubling from
/// [`FIRST`] up to [`MAX`] for an unreachable master, [`MAX`] for a refusal.
pub fn delay(failures: u32, why: Failure) -> Duration {
    if why == Failure::Refused {
        return MAX;
    }
    let doublings = failures.saturating_sub(1).min(31);
    FIRST.saturating_mul(1u32 << doublings).min(MAX)
}

/// `base` plus up to a quarter of it, picked by `random`, so a room of boards powered on
/// together does not knock on the master in lockstep.
pub fn jittered(base: Duration, random: u64) -> Duration {
    let spread = (base.as_millis() / 4) as u64;
    if spread == 0 {
        return base;
    }
    base + Duration::from_millis(random % (spread + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_master_is_retried_doubling_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9)
            .map(|n| delay(n, Failure::Unreachable).as_secs())
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn the_delay_stays_bounded_forever() {
        for n in [0, 40, 1000, u32::MAX] {
            assert!(delay(n, Failure::Unreachable) <= MAX, "failure {n}");
        }
        assert_eq!(delay(0, Failure::Unreachable), FIRST);
    }

    #[test]
    fn a_refusal_waits_the_maximum_at_once() {
        assert_eq!(delay(1, Failure::Refused), MAX);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let base = Duration::from_secs(60);
        assert_eq!(jittered(base, 0), base);
        assert_eq!(jittered(base, 15_000), Duration::from_secs(75));
        assert_eq!(jittered(base, 15_001), base);
        for r in [1, 7_777, u64::MAX] {
            let d = jittered(base, r);
            assert!(d >= base && d <= Duration::from_secs(75), "{r}: {d:?}");
        }
        assert_eq!(jittered(Duration::ZERO, 5), Duration::ZERO);
    }
}

//! Failed-authentication limiting per client address: after `max_failures` rejected
//! credentials within `window`, every request from that address gets 429 for `cooldown`, valid
//! token or not (letting a valid token through would tell a guesser when it found one).
//!
//! Successful requests are not counted. The table holds at most `capacity` addresses; when
//! full, stale entries go first, then the ones least worth keeping (never a blocked address
//! while an unblocked one can go instead), so a flood of addresses cannot grow memory or
//! cheaply unblock itself. Time is passed in, so the logic is tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitConfig {
    pub max_failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub capacity: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            max_failures: 10,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
            capacity: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

impl Entry {
    fn blocked_at(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

#[derive(Debug, Default)]
pub struct FailureLimiter {
    cfg: LimitConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// The key an address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by its
/// /64, since one host usually holds a whole /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

impl FailureLimiter {
    pub fn new(cfg: LimitConfig) -> FailureLimiter {
        FailureLimiter {
            cfg,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while `ip` is blocked: the time left until it may try again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self
            .map()
            .get(&client_key(ip))
            .and_then(|e| e.blocked_at(now))
        {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts one rejected credential from `ip`; returns the block if this one started it.
    pub fn failure(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let key = client_key(ip);
        let mut map = self.map();
        if !map.contains_key(&key) && map.len() >= self.cfg.capacity {
            self.make_room(&mut map, now);
        }
        let e = map.entry(key).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if let Some(wait) = e.blocked_at(now) {
            return Some(wait);
        }
        // A finished block or an old window starts a fresh count.
        if e.blocked_until.is_some() || now.duration_since(e.window_start) > self.cfg.window {
            *e = Entry {
                window_start: now,
                failures: 0,
                blocked_until: None,
            };
        }
        e.failures += 1;
        if e.failures >= self.cfg.max_failures {
            e.blocked_until = Some(now + self.cfg.cooldown);
            return Some(self.cfg.cooldown);
        }
        None
    }

    /// Addresses tracked now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry that no longer matters; if none did, the unblocked entry with the
    /// oldest window, else the block that ends soonest.
    fn make_room(&self, map: &mut HashMap<IpAddr, Entry>, now: Instant) {
        let window = self.cfg.window;
        map.retain(|_, e| {
            e.blocked_at(now).is_some() || now.duration_since(e.window_start) <= window
        });
        if map.len() < self.cfg.capacity {
            return;
        }
        let victim = map
            .iter()
            .filter(|(_, e)| e.blocked_at(now).is_none())
            .min_by_key(|(_, e)| e.window_start)
            .or_else(|| map.iter().min_by_key(|(_, e)| e.blocked_until))
            .map(|(k, _)| *k);
        if let Some(k) = victim {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(capacity: usize) -> LimitConfig {
        LimitConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            capacity,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_nth_failure_in_the_window_blocks_for_the_cooldown() {
        let l = FailureLimiter::new(cfg(10));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        assert_eq!(l.failure(a, t0), None);
        assert_eq!(l.failure(a, t0 + Duration::from_secs(1)), None);
        assert_eq!(l.check(a, t0 + Duration::from_secs(2)), Ok(()));
        let t3 = t0 + Duration::from_secs(3);
        assert_eq!(l.failure(a, t3), Some(Duration::from_secs(30)));
        assert_eq!(
            l.check(a, t3 + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        // Another address is not affected.
        assert_eq!(l.check(ip("10.0.0.2"), t3), Ok(()));
        // After the cooldown the count starts over.
        let later = t3 + Duration::from_secs(30);
        assert_eq!(l.check(a, later), Ok(()));
        assert_eq!(l.failure(a, later), None);
        assert_eq!(l.check(a, later), Ok(()));
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_block() {
        let l = FailureLimiter::new(cfg(10));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..20 {
            // Two failures per window, the window then expires.
            let t = t0 + Duration::from_secs(61 * i);
            assert_eq!(l.failure(a, t), None);
            assert_eq!(l.failure(a, t + Duration::from_secs(1)), None);
            assert_eq!(l.check(a, t + Duration::from_secs(2)), Ok(()));
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_key(ip("2001:db8::1")),
            client_key(ip("2001:db8::ffff:2"))
        );
        assert_ne!(
            client_key(ip("2001:db8::1")),
            client_key(ip("2001:db8:0:1::1"))
        );
        assert_eq!(client_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        let l = FailureLimiter::new(cfg(10));
        let t0 = Instant::now();
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::3"] {
            l.failure(ip(host), t0);
        }
        assert!(l.check(ip("2001:db8::99"), t0).is_err());
    }

    #[test]
    fn the_table_stays_within_capacity_and_keeps_blocks_over_strays() {
        let l = FailureLimiter::new(cfg(4));
        let t0 = Instant::now();
        let blocked = ip("10.0.0.1");
        for _ in 0..3 {
            l.failure(blocked, t0);
        }
        for i in 0..1000u32 {
            let stray = IpAddr::V4((0x0b00_0000 + i).into());
            l.failure(stray, t0 + Duration::from_millis(u64::from(i)));
            assert!(l.len() <= 4, "grew to {}", l.len());
        }
        assert!(l.check(blocked, t0 + Duration::from_secs(5)).is_err());
    }

    #[test]
    fn stale_entries_are_dropped_first_when_full() {
        let l = FailureLimiter::new(cfg(2));
        let t0 = Instant::now();
        l.failure(ip("10.0.0.1"), t0);
        l.failure(ip("10.0.0.2"), t0);
        let later = t0 + Duration::from_secs(120);
        l.failure(ip("10.0.0.3"), later);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn when_every_entry_is_blocked_the_soonest_to_end_makes_room() {
        let l = FailureLimiter::new(cfg(2));
        let t0 = Instant::now();
        for (i, a) in ["10.0.0.1", "10.0.0.2"].iter().enumerate() {
            for _ in 0..3 {
                l.failure(ip(a), t0 + Duration::from_secs(i as u64));
            }
        }
        l.failure(ip("10.0.0.3"), t0 + Duration::from_secs(5));
        assert_eq!(l.len(), 2);
        assert!(l.check(ip("10.0.0.1"), t0 + Duration::from_secs(6)).is_ok());
        assert!(l
            .check(ip("10.0.0.2"), t0 + Duration::from_secs(6))
            .is_err());
    }
}

//! Timestamps in the RFC 3339 form Kubernetes uses (`2026-11-24T00:18:34Z`).

/// Now, to the second, UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Now, to the nanosecond, UTC (CRI log lines).
pub fn now_rfc3339_nanos() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Seconds since an RFC 3339 timestamp; `None` if it does not parse.
pub fn age_seconds(ts: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
}

/// kubectl's compact age: `45s`, `3m`, `2h`, `5d`.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(-3), "0s");
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(150), "2m");
        assert_eq!(human_age(7200), "2h");
        assert_eq!(human_age(3 * 86400), "3d");
    }

    #[test]
    fn age_of_a_bad_timestamp_is_none() {
        assert_eq!(age_seconds("yesterday"), None);
        assert!(age_seconds(&now_rfc3339()).is_some_and(|a| (0..5).contains(&a)));
    }
}

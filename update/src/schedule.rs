//! When a staged update is applied: at the wizard's update time (`HH:MM`,
//! the gateway's clock in UTC), or at once.

const DAY_MS: u64 = 86_400_000;

/// Minutes after midnight of `HH:MM` (00:00–23:59).
pub fn minutes_of(update_time: &str) -> Result<u64, String> {
    let bad = || format!("{update_time:?}: a time of day as HH:MM (00:00 to 23:59)");
    let (h, m) = update_time.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u64 = h.parse().map_err(|_| bad())?;
    let m: u64 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// The first instant (UNIX ms) at or after `now_ms` whose time of day is
/// `update_time`; `now_ms` itself with no time set (apply at once).
pub fn next_apply(update_time: Option<&str>, now_ms: u64) -> Result<u64, String> {
    let Some(t) = update_time else {
        return Ok(now_ms);
    };
    let at = minutes_of(t)? * 60_000;
    let midnight = now_ms - now_ms % DAY_MS;
    let today = midnight + at;
    Ok(if today >= now_ms {
        today
    } else {
        today + DAY_MS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_update_time_is_today_or_tomorrow() {
        // 2026-12-07T02:30:00Z
        let now = 1_796_610_600_000;
        assert_eq!(now % DAY_MS, (2 * 60 + 30) * 60_000);
        let midnight = now - now % DAY_MS;
        assert_eq!(next_apply(Some("03:00"), now), Ok(midnight + 3 * 3_600_000));
        assert_eq!(next_apply(Some("02:30"), now), Ok(now));
        assert_eq!(
            next_apply(Some("02:00"), now),
            Ok(midnight + DAY_MS + 2 * 3_600_000)
        );
        assert_eq!(next_apply(None, now), Ok(now));
        for bad in ["3:00", "24:00", "12:60", "noon", "", "12-00"] {
            assert!(next_apply(Some(bad), now).is_err(), "{bad:?}");
        }
    }
}

//! The `poor_calls` alarm's judgement: of the calls that ended in the last
//! 15 minutes, the share rated poor. Raised when that share reaches
//! `[quality] poor_alarm_percent` over at least `poor_alarm_min_calls`
//! calls; cleared when it falls under the share (an empty window too).
//! Sans-IO, time an input: calls are counted in one-minute slots, so the
//! window is bounded whatever the call rate, and slides a minute at a time.

use std::time::{Duration, Instant};

/// One slot.
const SLOT: Duration = Duration::from_secs(60);
/// Slots in the window.
const SLOTS: usize = 15;

/// What the window changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// The share reached the threshold: `poor` of `calls`.
    Raised { poor: u64, calls: u64 },
    /// It fell under it.
    Cleared { poor: u64, calls: u64 },
}

impl Change {
    /// What the operator reads.
    pub fn detail(&self) -> String {
        let (poor, calls) = match *self {
            Change::Raised { poor, calls } | Change::Cleared { poor, calls } => (poor, calls),
        };
        let share = if calls == 0 {
            0.0
        } else {
            poor as f64 * 100.0 / calls as f64
        };
        format!("{poor} of {calls} call(s) ended in the last 15 minutes were poor ({share:.0} %)")
    }
}

/// The last 15 minutes of ended calls, poor and all.
#[derive(Debug)]
pub struct PoorCalls {
    percent: f64,
    min_calls: u64,
    /// Since when slot 0 counts.
    origin: Instant,
    /// Per slot: its number since `origin`, calls, poor ones.
    slots: [(u64, u64, u64); SLOTS],
    raised: bool,
}

impl PoorCalls {
    /// A window judging at `percent` over at least `min_calls`, from `now`.
    pub fn new(now: Instant, percent: f64, min_calls: u32) -> Self {
        Self {
            percent,
            min_calls: u64::from(min_calls.max(1)),
            origin: now,
            slots: [(u64::MAX, 0, 0); SLOTS],
            raised: false,
        }
    }

    fn slot_of(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.origin).as_secs()) / SLOT.as_secs()
    }

    /// Calls and poor ones in the window ending at `now`.
    pub fn counts(&self, now: Instant) -> (u64, u64) {
        let current = self.slot_of(now);
        self.slots
            .iter()
            .filter(|(n, _, _)| *n != u64::MAX && current.saturating_sub(*n) < SLOTS as u64)
            .fold((0, 0), |(c, p), (_, calls, poor)| (c + calls, p + poor))
    }

    /// A call ended at `now`, poor or not.
    pub fn ended(&mut self, now: Instant, poor: bool) -> Option<Change> {
        let n = self.slot_of(now);
        let slot = &mut self.slots[(n % SLOTS as u64) as usize];
        if slot.0 != n {
            *slot = (n, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u64::from(poor);
        self.judge(now)
    }

    /// The window slid to `now`: old calls leave it.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Change> {
        self.judge(now)
    }

    /// When the window next changes by itself: the oldest slot's calls
    /// leave it (none: it holds no call).
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let current = self.slot_of(now);
        self.slots
            .iter()
            .filter(|(n, c, _)| {
                *n != u64::MAX && *c > 0 && current.saturating_sub(*n) < SLOTS as u64
            })
            .map(|(n, _, _)| self.origin + SLOT * (*n as u32 + SLOTS as u32))
            .min()
    }

    fn judge(&mut self, now: Instant) -> Option<Change> {
        let (calls, poor) = self.counts(now);
        let share = if calls == 0 {
            0.0
        } else {
            poor as f64 * 100.0 / calls as f64
        };
        match (self.raised, share >= self.percent) {
            (false, true) if calls >= self.min_calls => {
                self.raised = true;
                Some(Change::Raised { poor, calls })
            }
            (true, false) => {
                self.raised = false;
                Some(Change::Cleared { poor, calls })
            }
            _ => None,
        }
    }

    /// Whether the alarm is up.
    #[cfg(test)]
    fn raised(&self) -> bool {
        self.raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn raised_at_the_share_over_enough_calls_and_cleared_under_it() {
        let t0 = Instant::now();
        let mut w = PoorCalls::new(t0, 20.0, 5);
        // 4 calls, all poor: too few to judge.
        for _ in 0..4 {
            assert_eq!(w.ended(t0, true), None);
        }
        // The fifth: 5 of 5.
        assert_eq!(
            w.ended(t0 + MIN, true),
            Some(Change::Raised { poor: 5, calls: 5 })
        );
        assert!(w.raised());
        // Good calls bring the share under 20 %: 5 of 26.
        let mut cleared = None;
        for _ in 0..21 {
            cleared = cleared.or(w.ended(t0 + 2 * MIN, false));
        }
        assert_eq!(cleared, Some(Change::Cleared { poor: 5, calls: 26 }));
        assert_eq!(
            Change::Cleared { poor: 5, calls: 26 }.detail(),
            "5 of 26 call(s) ended in the last 15 minutes were poor (19 %)"
        );
    }

    #[test]
    fn calls_leave_the_window_after_15_minutes_and_the_alarm_clears() {
        let t0 = Instant::now();
        let mut w = PoorCalls::new(t0, 20.0, 1);
        assert_eq!(w.poll_timeout(t0), None, "an empty window needs no time");
        assert!(matches!(
            w.ended(t0 + 30 * Duration::from_secs(1), true),
            Some(Change::Raised { .. })
        ));
        // The slot of minute 0 leaves at minute 15.
        let due = w.poll_timeout(t0 + MIN).unwrap();
        assert_eq!(due, t0 + 15 * MIN);
        assert_eq!(w.handle_timeout(t0 + 14 * MIN), None);
        assert_eq!(w.counts(t0 + 14 * MIN), (1, 1));
        assert_eq!(
            w.handle_timeout(due),
            Some(Change::Cleared { poor: 0, calls: 0 })
        );
        assert_eq!(w.poll_timeout(due), None);
        // Slots are reused a window later without old counts.
        assert_eq!(w.ended(t0 + 16 * MIN, false), None);
        assert_eq!(w.counts(t0 + 16 * MIN), (1, 0));
    }

    #[test]
    fn good_calls_leaving_can_raise_it() {
        let t0 = Instant::now();
        let mut w = PoorCalls::new(t0, 50.0, 2);
        for _ in 0..3 {
            assert_eq!(w.ended(t0, false), None);
        }
        assert_eq!(w.ended(t0 + 10 * MIN, true), None);
        assert_eq!(w.ended(t0 + 10 * MIN, true), None);
        // At minute 15 the three good calls leave: 2 of 2 poor.
        assert_eq!(
            w.handle_timeout(t0 + 15 * MIN),
            Some(Change::Raised { poor: 2, calls: 2 })
        );
    }
}

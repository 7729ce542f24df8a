//! The pool of local media port pairs (RTP on an even port, RTCP on the next)
//! a profile's range holds. Freed pairs rest before reuse so late packets of
//! an ended call never reach the next one; pairs that failed to bind are
//! skipped and counted. Time is an input.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

/// How long a freed pair rests before it is handed out again.
pub const REST: Duration = Duration::from_secs(30);

/// A pool of RTP/RTCP port pairs, identified by their even RTP port.
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    resting: VecDeque<(Instant, u16)>,
    unbindable: u64,
    total: usize,
}

impl PortPool {
    /// Every even port `p` with `p + 1` also inside one of `ranges`.
    pub fn new(ranges: &[RangeInclusive<u16>]) -> Self {
        let mut free = VecDeque::new();
        for r in ranges {
            let first = r.start().saturating_add(r.start() % 2);
            let mut p = first as u32;
            while p < *r.end() as u32 {
                free.push_back(p as u16);
                p += 2;
            }
        }
        let total = free.len();
        Self {
            free,
            resting: VecDeque::new(),
            unbindable: 0,
            total,
        }
    }

    /// The same pool handing out pairs from the `offset`th on (wrapping):
    /// a gateway started again does not reuse the ports its last calls
    /// had (their late packets), nor do two on one host start on the same
    /// pair. The caller draws the offset.
    pub fn starting_at(mut self, offset: usize) -> Self {
        if !self.free.is_empty() {
            let n = offset % self.free.len();
            self.free.rotate_left(n);
        }
        self
    }

    fn wake(&mut self, now: Instant) {
        while let Some(&(since, port)) = self.resting.front() {
            if now.saturating_duration_since(since) < REST {
                break;
            }
            self.resting.pop_front();
            self.free.push_back(port);
        }
    }

    /// Takes a pair (its RTP port), if one is free.
    pub fn take(&mut self, now: Instant) -> Option<u16> {
        self.wake(now);
        self.free.pop_front()
    }

    /// A pair `bindable` says can be bound now (both its ports free on the
    /// host), trying each free pair at most once; those another process
    /// holds are set aside ([`PortPool::unbindable`]).
    pub fn take_bindable(
        &mut self,
        now: Instant,
        bindable: &mut impl FnMut(u16) -> bool,
    ) -> Option<u16> {
        self.wake(now);
        for _ in 0..self.free.len() {
            let p = self.free.pop_front()?;
            if bindable(p) {
                return Some(p);
            }
            self.unbindable(now, p);
        }
        None
    }

    /// A call's two pairs (LAN leg, cloud leg), each bindable: or none, the
    /// first given back (resting) when no second can be found.
    pub fn take_call(
        &mut self,
        now: Instant,
        mut bindable: impl FnMut(u16) -> bool,
    ) -> Option<(u16, u16)> {
        let lan = self.take_bindable(now, &mut bindable)?;
        match self.take_bindable(now, &mut bindable) {
            Some(cloud) => Some((lan, cloud)),
            None => {
                self.give_back(now, lan);
                None
            }
        }
    }

    /// Returns a pair; it rests for [`REST`] first.
    pub fn give_back(&mut self, now: Instant, rtp_port: u16) {
        self.resting.push_back((now, rtp_port));
    }

    /// Notes that a taken pair could not be bound; it rests like a freed one
    /// and is counted.
    pub fn unbindable(&mut self, now: Instant, rtp_port: u16) {
        self.unbindable += 1;
        self.give_back(now, rtp_port);
    }

    /// Pairs that failed to bind so far.
    pub fn unbindable_count(&self) -> u64 {
        self.unbindable
    }

    /// Pairs free now (not counting resting ones).
    pub fn free(&self) -> usize {
        self.free.len()
    }

    /// Pairs calls hold now (neither free nor resting).
    pub fn in_use(&self) -> usize {
        self.total - self.free.len() - self.resting.len()
    }

    /// Pairs in the pool.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Calls the pool can hold: each needs two pairs (LAN and cloud leg).
    pub fn calls(&self) -> usize {
        self.total / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_may_start_anywhere_and_still_holds_every_pair() {
        let t0 = Instant::now();
        let mut p = PortPool::new(&[1000..=1007]).starting_at(5);
        let taken: Vec<u16> = std::iter::from_fn(|| p.take(t0)).collect();
        assert_eq!(taken, [1002, 1004, 1006, 1000]);
    }

    #[test]
    fn small_range_holds_49_calls() {
        // SPEC §2: Small's 199 ports hold 49 calls.
        let p = PortPool::new(&[65336..=65534]);
        assert_eq!(p.total(), 99);
        assert_eq!(p.calls(), 49);
    }

    #[test]
    fn freed_pairs_rest_before_reuse() {
        let t0 = Instant::now();
        let mut p = PortPool::new(&[1000..=1003]);
        assert_eq!(p.take(t0), Some(1000));
        assert_eq!(p.take(t0), Some(1002));
        assert_eq!(p.take(t0), None);
        p.give_back(t0, 1000);
        assert_eq!(p.take(t0 + Duration::from_secs(29)), None);
        assert_eq!(p.take(t0 + REST), Some(1000));
        p.unbindable(t0, 1002);
        assert_eq!(p.unbindable_count(), 1);
    }

    #[test]
    fn a_call_takes_two_bindable_pairs_skipping_those_held_elsewhere() {
        let t0 = Instant::now();
        let mut p = PortPool::new(&[1000..=1011]);
        let held = [1000, 1004];
        assert_eq!(p.take_call(t0, |r| !held.contains(&r)), Some((1002, 1006)));
        assert_eq!(p.unbindable_count(), 2);
        assert_eq!(p.in_use(), 2);
    }

    #[test]
    fn a_call_short_of_its_second_pair_keeps_none() {
        // One bindable pair in a run held elsewhere longer than any fixed
        // number of tries: the first is found, no second; nothing is held.
        let t0 = Instant::now();
        let mut p = PortPool::new(&[1000..=1199]);
        assert_eq!(p.take_call(t0, |r| r == 1150), None);
        assert_eq!(p.in_use(), 0, "the first pair given back");
        assert_eq!(p.free(), 0, "each pair tried once, then resting");
        assert_eq!(p.unbindable_count(), 99);
        // Rested, the pairs are tried again.
        assert_eq!(p.take_call(t0 + REST, |_| true), Some((1000, 1002)));
    }

    #[test]
    fn odd_range_start_is_rounded_to_even() {
        let mut p = PortPool::new(&[1001..=1004]);
        assert_eq!(p.take(Instant::now()), Some(1002));
        assert_eq!(p.total(), 1);
    }
}

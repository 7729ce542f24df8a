//! Wrong credentials, counted per source address: after `max` wrong ones
//! within a window an address must wait out the window (answered 429 with
//! `Retry-After`). The table is bounded: past `MAX_ADDRESSES` the oldest
//! entries go, so a flood of addresses costs memory no more than a few
//! hundred kilobytes. Time is an input; it owns nothing else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses remembered at most.
const MAX_ADDRESSES: usize = 4096;

/// Failures per address within a window.
#[derive(Debug)]
pub struct Throttle {
    max: u32,
    window: Duration,
    failures: HashMap<IpAddr, (u32, Instant)>,
}

impl Throttle {
    /// `max` wrong credentials within `window`, then wait.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            failures: HashMap::new(),
        }
    }

    /// How long `peer` must still wait (none: it may try).
    pub fn wait(&mut self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let window = self.window;
        self.failures
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < window);
        let (n, since) = self.failures.get(&peer)?;
        (*n >= self.max).then(|| window.saturating_sub(now.saturating_duration_since(*since)))
    }

    /// `peer` gave wrong credentials.
    pub fn failed(&mut self, peer: IpAddr, now: Instant) {
        if self.failures.len() >= MAX_ADDRESSES && !self.failures.contains_key(&peer) {
            if let Some(oldest) = self
                .failures
                .iter()
                .min_by_key(|(_, (_, since))| *since)
                .map(|(ip, _)| *ip)
            {
                self.failures.remove(&oldest);
            }
        }
        self.failures.entry(peer).or_insert((0, now)).0 += 1;
    }

    /// `peer` got in: its failures are forgotten.
    pub fn succeeded(&mut self, peer: IpAddr) {
        self.failures.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_waits_after_too_many_failures_and_others_do_not() {
        let t0 = Instant::now();
        let mut t = Throttle::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(t.wait(a, t0), None);
            t.failed(a, t0);
        }
        assert_eq!(
            t.wait(a, t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(t.wait(b, t0), None);
        assert_eq!(
            t.wait(a, t0 + Duration::from_secs(60)),
            None,
            "the window passed"
        );
        t.failed(b, t0);
        t.succeeded(b);
        assert!(t.failures.is_empty());
    }

    #[test]
    fn the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut t = Throttle::new(3, Duration::from_secs(60));
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            t.failed(
                IpAddr::from(i.to_be_bytes()),
                t0 + Duration::from_micros(u64::from(i)),
            );
        }
        assert_eq!(t.failures.len(), MAX_ADDRESSES);
    }
}

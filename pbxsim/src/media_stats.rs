//! What every SIP call's media added up to, for the demo's live line and
//! the tests: RTP sent, received and lost over all calls, and the round
//! trip of pbxsim's own packets when the far end echoes them (cloudsim
//! does for the gateway's calls): pbxsim → gateway → cloud → gateway →
//! pbxsim, in microseconds.
//!
//! A call remembers when it sent each of its last 1,024 sequence numbers;
//! a packet that comes back with the call's own SSRC is matched by its
//! sequence number. Round trips go into three histograms: the whole run,
//! the second in progress and the last whole second (what a live line
//! shows).

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sequence numbers remembered per call.
const SENT_SLOTS: usize = 1024;
/// Round trips above this are recorded as this (10 s).
const RTT_MAX_US: u64 = 10_000_000;

/// Totals over every call.
pub struct MediaTotals {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub lost: AtomicU64,
    rtt: Mutex<Windows>,
    /// Instants are kept as nanoseconds since this.
    base: Instant,
}

struct Windows {
    all: Histogram<u64>,
    current: Histogram<u64>,
    last: Histogram<u64>,
    current_since: Instant,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, RTT_MAX_US, 3).expect("static bounds are valid")
}

fn summary(h: &Histogram<u64>) -> Value {
    json!({
        "samples": h.len(),
        "p50_us": h.value_at_quantile(0.5),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

impl Default for MediaTotals {
    fn default() -> Self {
        let base = Instant::now();
        MediaTotals {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            rtt: Mutex::new(Windows {
                all: histogram(),
                current: histogram(),
                last: histogram(),
                current_since: base,
            }),
            base,
        }
    }
}

impl MediaTotals {
    fn rotate(w: &mut Windows, now: Instant) {
        let elapsed = now.saturating_duration_since(w.current_since);
        if elapsed < Duration::from_secs(1) {
            return;
        }
        if elapsed >= Duration::from_secs(2) {
            // Nothing came for a whole second: the last second was empty.
            w.current.reset();
        }
        std::mem::swap(&mut w.last, &mut w.current);
        w.current.reset();
        w.current_since = now;
    }

    fn record_rtt(&self, now: Instant, rtt: Duration) {
        let us = (rtt.as_micros() as u64).clamp(1, RTT_MAX_US);
        let mut w = self.rtt.lock().expect("rtt windows");
        Self::rotate(&mut w, now);
        w.all.saturating_record(us);
        w.current.saturating_record(us);
    }

    /// The totals as JSON: counts, and round trips over the last whole
    /// second and the whole run.
    pub fn json(&self) -> Value {
        let mut w = self.rtt.lock().expect("rtt windows");
        Self::rotate(&mut w, Instant::now());
        json!({
            "rtp_sent": self.sent.load(Ordering::Relaxed),
            "rtp_received": self.received.load(Ordering::Relaxed),
            "rtp_lost": self.lost.load(Ordering::Relaxed),
            "round_trip": { "last_second": summary(&w.last), "all": summary(&w.all) },
        })
    }
}

/// One call's record of when it sent its recent packets.
pub struct SentTimes {
    /// Per slot: the sequence number in the top 16 bits, nanoseconds since
    /// the totals' base (+1, so 0 means empty) in the low 48.
    slots: Box<[AtomicU64]>,
    ssrc: u32,
}

impl SentTimes {
    /// A record for the call sending with `ssrc`.
    pub fn new(ssrc: u32) -> Self {
        SentTimes {
            slots: (0..SENT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            ssrc,
        }
    }

    /// Packet `seq` leaves now.
    pub fn sent(&self, totals: &MediaTotals, seq: u16, now: Instant) {
        let ns = now.saturating_duration_since(totals.base).as_nanos() as u64 + 1;
        self.slots[usize::from(seq) % SENT_SLOTS].store(
            (u64::from(seq) << 48) | (ns & ((1 << 48) - 1)),
            Ordering::Relaxed,
        );
    }

    /// A packet arrived with `ssrc` and `seq`: when it is one of ours,
    /// its round trip is recorded.
    pub fn arrived(&self, totals: &MediaTotals, ssrc: u32, seq: u16, now: Instant) {
        if ssrc != self.ssrc {
            return;
        }
        let slot = self.slots[usize::from(seq) % SENT_SLOTS].load(Ordering::Relaxed);
        if slot == 0 || (slot >> 48) as u16 != seq {
            return;
        }
        let sent_ns = (slot & ((1 << 48) - 1)) - 1;
        let now_ns = now.saturating_duration_since(totals.base).as_nanos() as u64;
        if let Some(rtt) = now_ns.checked_sub(sent_ns) {
            totals.record_rtt(now, Duration::from_nanos(rtt));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_packet_gives_its_round_trip_and_others_do_not() {
        let totals = MediaTotals::default();
        let times = SentTimes::new(0x1234);
        let t0 = totals.base + Duration::from_millis(5);
        times.sent(&totals, 7, t0);
        // Someone else's packet, and ours with a sequence never sent.
        times.arrived(&totals, 0x9999, 7, t0 + Duration::from_millis(1));
        times.arrived(&totals, 0x1234, 8, t0 + Duration::from_millis(1));
        times.arrived(&totals, 0x1234, 7 + 1024, t0 + Duration::from_millis(1));
        times.arrived(&totals, 0x1234, 7, t0 + Duration::from_micros(1500));
        let all = &totals.json()["round_trip"]["all"];
        assert_eq!(all["samples"], 1, "{all}");
        let p50 = all["p50_us"].as_u64().unwrap();
        assert!((1499..=1501).contains(&p50), "{all}");
    }

    #[test]
    fn the_last_second_turns_over() {
        let totals = MediaTotals::default();
        let times = SentTimes::new(1);
        let t0 = totals.base;
        times.sent(&totals, 1, t0);
        times.arrived(&totals, 1, 1, t0 + Duration::from_millis(2));
        {
            let mut w = totals.rtt.lock().unwrap();
            MediaTotals::rotate(&mut w, t0 + Duration::from_millis(1500));
            assert_eq!(w.last.len(), 1);
            MediaTotals::rotate(&mut w, t0 + Duration::from_millis(2600));
            assert_eq!(w.last.len(), 0, "an empty second after it");
            assert_eq!(w.all.len(), 1);
        }
    }
}

//! RFC 3550 per-stream receive statistics (appendix A.1 sequence tracking,
//! A.3 loss, A.8 interarrival jitter). Time is an input: arrivals are given
//! as `Instant`s and converted to the stream's RTP clock.

use std::time::Instant;

const RTP_SEQ_MOD: u32 = 1 << 16;
/// A.1: forward jumps beyond this are a restart candidate, not loss.
const MAX_DROPOUT: u16 = 3000;
/// A.1: backward steps within this are reordering, not a restart.
const MAX_MISORDER: u16 = 100;

/// Receive statistics for the current source of one direction.
#[derive(Debug, Clone)]
pub struct StreamStats {
    clock_rate_hz: u32,
    epoch: Option<Instant>,
    ssrc: u32,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    bad_seq: u32,
    received: u64,
    bytes: u64,
    received_prior: u64,
    expected_prior: u64,
    transit: Option<i64>,
    jitter_x16: u64,
    jitter_max_x16: u64,
    /// The jitter after each packet, summed, and how many (the call's
    /// mean: every source it had).
    jitter_sum_x16: u64,
    jitter_samples: u64,
    late: u64,
    /// Received, expected and late of the sources before the current one
    /// (a new SSRC or a restarted sequence): the call's totals go on.
    earlier: (u64, u64, u64),
    ssrc_changes: u64,
}

/// One stream's receive figures, as a relay publishes them: over the
/// whole call, every source it had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream's RTP clock (jitter's unit), Hz.
    pub clock_rate_hz: u32,
    /// Packets received from the current source.
    pub received: u64,
    /// Packets expected from its first to its highest sequence number.
    pub expected: u64,
    /// Expected less received (RFC 3550 A.3; negative with duplicates).
    pub lost: i64,
    /// Packets late or duplicated (at or behind the highest sequence).
    pub late: u64,
    /// Interarrival jitter now, RTP units (A.8).
    pub jitter: u32,
    /// The most it has been.
    pub jitter_max: u32,
    /// Its mean over the call, after each packet (RTP units).
    pub jitter_mean: u32,
}

/// What the last update decided about a packet's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// First packet of a (new) source.
    First,
    /// In order, perhaps after a gap.
    InOrder,
    /// Late, duplicated, or within the misorder window.
    Late,
    /// A large jump: counted, not yet believed (A.1 `bad_seq`).
    Jump,
    /// Second packet after a jump: the source restarted its sequence.
    Restarted,
}

impl StreamStats {
    /// Empty statistics for a stream clocked at `clock_rate_hz`.
    pub fn new(clock_rate_hz: u32) -> Self {
        Self {
            clock_rate_hz: clock_rate_hz.max(1),
            epoch: None,
            ssrc: 0,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            received: 0,
            bytes: 0,
            received_prior: 0,
            expected_prior: 0,
            transit: None,
            jitter_x16: 0,
            jitter_max_x16: 0,
            jitter_sum_x16: 0,
            jitter_samples: 0,
            late: 0,
            earlier: (0, 0, 0),
            ssrc_changes: 0,
        }
    }

    fn restart(&mut self, seq: u16) {
        if self.received > 0 {
            self.earlier.0 += self.received;
            self.earlier.1 += self.expected();
            self.earlier.2 += self.late;
        }
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.bytes = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.transit = None;
        self.jitter_x16 = 0;
        self.late = 0;
    }

    /// Accounts one valid packet. `timed` is false for packets whose
    /// timestamp does not advance with time (telephone-events repeat one
    /// timestamp per event) so they stay out of the jitter estimate.
    pub fn update(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        rtp_ts: u32,
        payload_len: usize,
        timed: bool,
    ) -> SeqVerdict {
        let mut verdict = SeqVerdict::InOrder;
        if self.epoch.is_none() || ssrc != self.ssrc {
            if self.epoch.is_some() {
                self.ssrc_changes += 1;
            }
            self.epoch.get_or_insert(now);
            self.ssrc = ssrc;
            self.restart(seq);
            verdict = SeqVerdict::First;
        } else {
            let udelta = seq.wrapping_sub(self.max_seq);
            if udelta == 0 {
                verdict = SeqVerdict::Late;
            } else if udelta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += RTP_SEQ_MOD;
                }
                self.max_seq = seq;
            } else if udelta as u32 <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
                if seq as u32 == self.bad_seq {
                    self.restart(seq);
                    verdict = SeqVerdict::Restarted;
                } else {
                    self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
                    return SeqVerdict::Jump;
                }
            } else {
                verdict = SeqVerdict::Late;
            }
        }
        self.received += 1;
        self.bytes += payload_len as u64;
        if verdict == SeqVerdict::Late {
            self.late += 1;
        }
        if timed {
            self.update_jitter(now, rtp_ts);
        }
        verdict
    }

    fn update_jitter(&mut self, now: Instant, rtp_ts: u32) {
        let Some(epoch) = self.epoch else { return };
        let elapsed = now.saturating_duration_since(epoch);
        let arrival = (elapsed.as_micros() * self.clock_rate_hz as u128 / 1_000_000) as u32;
        // A.8: transit differences in RTP units, wrapping like the clock.
        let transit = arrival.wrapping_sub(rtp_ts) as i32 as i64;
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs();
            self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
            self.jitter_max_x16 = self.jitter_max_x16.max(self.jitter_x16);
            self.jitter_sum_x16 = self.jitter_sum_x16.wrapping_add(self.jitter_x16);
            self.jitter_samples += 1;
        }
        self.transit = Some(transit);
    }

    /// SSRC of the current source.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Packets received from the current source.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Payload bytes received from the current source.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Extended highest sequence number received (cycles ‖ max).
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles + self.max_seq as u32
    }

    /// Packets expected from the first to the highest sequence number.
    pub fn expected(&self) -> u64 {
        if self.epoch.is_none() {
            return 0;
        }
        (self.extended_highest_seq() as u64 + 1).saturating_sub(self.base_seq as u64)
    }

    /// Cumulative packets lost (negative with duplicates), as RFC 3550 reports it.
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Fraction lost since the previous call, in 1/256 (A.3); starts a new interval.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior.min(expected);
        let received_interval = self.received - self.received_prior.min(self.received);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        }
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter_x16 >> 4) as u32
    }

    /// The figures a relay publishes: totals over every source the
    /// stream had, jitter of the current one (its peak of all).
    pub fn summary(&self) -> StreamSummary {
        let received = self.earlier.0 + self.received;
        let expected = self.earlier.1 + self.expected();
        StreamSummary {
            clock_rate_hz: self.clock_rate_hz,
            received,
            expected,
            lost: expected as i64 - received as i64,
            late: self.earlier.2 + self.late,
            jitter: self.jitter(),
            jitter_max: (self.jitter_max_x16 >> 4) as u32,
            jitter_mean: ((self.jitter_sum_x16 / self.jitter_samples.max(1)) >> 4) as u32,
        }
    }

    /// How many times the source changed SSRC.
    pub fn ssrc_changes(&self) -> u64 {
        self.ssrc_changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn feed(s: &mut StreamStats, t0: Instant, seqs: &[u16]) {
        for &seq in seqs {
            // Arrivals exactly on the 20 ms grid of their sequence numbers.
            let n = seq.wrapping_sub(seqs[0]) as u64;
            s.update(
                t0 + Duration::from_millis(20 * n),
                1,
                seq,
                160 * n as u32,
                160,
                true,
            );
        }
    }

    #[test]
    fn counts_loss_across_wrap() {
        let mut s = StreamStats::new(8000);
        let t0 = Instant::now();
        let seqs: Vec<u16> = (0..40u16)
            .map(|i| 65520u16.wrapping_add(i))
            .filter(|s| *s != 3 && *s != 65530)
            .collect();
        feed(&mut s, t0, &seqs);
        assert_eq!(s.extended_highest_seq(), 65536 + 23);
        assert_eq!(s.expected(), 40);
        assert_eq!(s.received(), 38);
        assert_eq!(s.lost(), 2);
        assert_eq!(s.take_fraction_lost(), (2 * 256 / 40) as u8);
        assert_eq!(s.take_fraction_lost(), 0);
        assert_eq!(s.jitter(), 0, "perfectly paced arrivals have no jitter");
    }

    #[test]
    fn the_summary_totals_every_source_of_the_call() {
        let mut s = StreamStats::new(8000);
        let t0 = Instant::now();
        // 10 packets, one missing, one duplicated; then a new SSRC with 5.
        for seq in [1u16, 2, 3, 5, 6, 7, 7, 8, 9, 10, 11] {
            s.update(t0, 1, seq, 0, 160, false);
        }
        for seq in 500..505u16 {
            s.update(t0, 2, seq, 0, 160, false);
        }
        let sum = s.summary();
        assert_eq!((sum.received, sum.expected, sum.late), (16, 16, 1));
        assert_eq!(sum.lost, 0, "the duplicate makes up for the gap, as A.3");
        assert_eq!(s.received(), 5, "the current source alone");
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn jitter_follows_a8() {
        let mut s = StreamStats::new(8000);
        let t0 = Instant::now();
        // Every other packet 10 ms late: |D| = 80 units on each step.
        for i in 0..200u32 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            let at = t0 + Duration::from_millis(20 * i as u64 + late);
            s.update(at, 1, i as u16, 160 * i, 160, true);
        }
        // The estimator converges to the mean |D| = 80.
        assert!((75..=80).contains(&s.jitter()), "jitter {}", s.jitter());
        // The mean over the call rises toward it from 0: under it.
        let mean = s.summary().jitter_mean;
        assert!(mean > 20 && mean < s.jitter(), "mean {mean}");
    }

    #[test]
    fn jump_needs_two_sequential_packets() {
        let mut s = StreamStats::new(8000);
        let t = Instant::now();
        assert_eq!(s.update(t, 1, 100, 0, 1, true), SeqVerdict::First);
        assert_eq!(s.update(t, 1, 101, 0, 1, true), SeqVerdict::InOrder);
        assert_eq!(s.update(t, 1, 30000, 0, 1, true), SeqVerdict::Jump);
        assert_eq!(s.update(t, 1, 30001, 0, 1, true), SeqVerdict::Restarted);
        assert_eq!(s.update(t, 1, 29990, 0, 1, true), SeqVerdict::Late);
        assert_eq!(s.update(t, 2, 5, 0, 1, true), SeqVerdict::First);
        assert_eq!(s.ssrc_changes(), 1);
    }
}

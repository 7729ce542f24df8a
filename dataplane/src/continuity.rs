//! Keeps the cloud-side output stream continuous when the LAN side's stream
//! jumps (transfer, music on hold, a new SSRC after re-INVITE).
//!
//! SRTP receivers track one rollover counter and replay window per SSRC: a
//! sequence that steps back, or leaps by half the space, makes them drop
//! every packet that follows (the classic one-way audio after a transfer).
//! So after a jump the output keeps its SSRC and carries on its own sequence
//! and timestamp lines, offset from the input's. Until the first jump the
//! offsets are zero and packets pass through byte-identical.
//!
//! Sans-IO: arrival time is an input; nothing here reads a clock.

use std::time::Instant;

/// Forward sequence steps up to this are loss, not a jump (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// Backward sequence steps up to this are reordering, not a jump.
const MAX_MISORDER: u16 = 100;
/// A timestamp further than this from what the arrival time predicts is a
/// discontinuity. Generous, because silence suppression legitimately skips
/// timestamps in step with the clock.
const TS_TOLERANCE_MS: u64 = 2000;

/// The header a packet should leave with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    /// Outgoing SSRC.
    pub ssrc: u32,
    /// Outgoing sequence number.
    pub sequence: u16,
    /// Outgoing timestamp.
    pub timestamp: u32,
}

#[derive(Debug, Clone, Copy)]
struct Line {
    in_ssrc: u32,
    out_ssrc: u32,
    last_in_seq: u16,
    last_in_ts: u32,
    last_out_seq: u16,
    last_out_ts: u32,
    last_arrival: Instant,
    seq_offset: u16,
    ts_offset: u32,
}

/// Renumbering state for one direction's output stream.
#[derive(Debug, Clone)]
pub struct StreamContinuity {
    clock_rate_hz: u32,
    line: Option<Line>,
    jumps: u64,
}

impl StreamContinuity {
    /// A fresh stream clocked at `clock_rate_hz` (8000 for G.711).
    pub fn new(clock_rate_hz: u32) -> Self {
        Self {
            clock_rate_hz: clock_rate_hz.max(1),
            line: None,
            jumps: 0,
        }
    }

    /// Jumps renumbered so far.
    pub fn jumps(&self) -> u64 {
        self.jumps
    }

    /// `(input SSRC, output SSRC, timestamp offset)` once renumbering is in
    /// force, for rewriting the same source's RTCP.
    pub fn mapping(&self) -> Option<(u32, u32, u32)> {
        let l = self.line?;
        (l.in_ssrc != l.out_ssrc || l.ts_offset != 0).then_some((
            l.in_ssrc,
            l.out_ssrc,
            l.ts_offset,
        ))
    }

    fn elapsed_units(&self, from: Instant, to: Instant) -> u32 {
        let us = to.saturating_duration_since(from).as_micros();
        (us * self.clock_rate_hz as u128 / 1_000_000).min(u32::MAX as u128 / 2) as u32
    }

    /// Decides the outgoing header for an incoming packet and advances the state.
    pub fn next(&mut self, now: Instant, ssrc: u32, seq: u16, ts: u32) -> Rewrite {
        let Some(mut l) = self.line else {
            self.line = Some(Line {
                in_ssrc: ssrc,
                out_ssrc: ssrc,
                last_in_seq: seq,
                last_in_ts: ts,
                last_out_seq: seq,
                last_out_ts: ts,
                last_arrival: now,
                seq_offset: 0,
                ts_offset: 0,
            });
            return Rewrite {
                ssrc,
                sequence: seq,
                timestamp: ts,
            };
        };
        let elapsed = self.elapsed_units(l.last_arrival, now);
        let step = seq.wrapping_sub(l.last_in_seq);
        let same_source = ssrc == l.in_ssrc;
        let late = same_source && (step == 0 || step > u16::MAX - MAX_MISORDER);
        if late {
            // Reordered or duplicated: same offsets, state unchanged.
            return Rewrite {
                ssrc: l.out_ssrc,
                sequence: seq.wrapping_add(l.seq_offset),
                timestamp: ts.wrapping_add(l.ts_offset),
            };
        }
        let seq_jump = !same_source || step > MAX_DROPOUT;
        let ts_skew = (ts.wrapping_sub(l.last_in_ts) as i32 as i64 - elapsed as i64).unsigned_abs();
        let ts_jump = ts_skew > TS_TOLERANCE_MS * self.clock_rate_hz as u64 / 1000 && !seq_jump;
        if seq_jump || ts_jump {
            self.jumps += 1;
            // Carry on the output lines as if the new stream had always been
            // this one: the next sequence number, and a timestamp advanced by
            // the wall-clock time since the last packet.
            if seq_jump {
                l.seq_offset = l.last_out_seq.wrapping_add(1).wrapping_sub(seq);
            }
            l.ts_offset = l.last_out_ts.wrapping_add(elapsed.max(1)).wrapping_sub(ts);
            l.in_ssrc = ssrc;
        }
        l.last_in_seq = seq;
        l.last_in_ts = ts;
        l.last_arrival = now;
        l.last_out_seq = seq.wrapping_add(l.seq_offset);
        l.last_out_ts = ts.wrapping_add(l.ts_offset);
        self.line = Some(l);
        Rewrite {
            ssrc: l.out_ssrc,
            sequence: l.last_out_seq,
            timestamp: l.last_out_ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn passes_through_untouched_without_a_jump() {
        let mut c = StreamContinuity::new(8000);
        let t0 = Instant::now();
        for i in 0..100u16 {
            let seq = 65500u16.wrapping_add(i);
            let ts = 1_000 + 160 * i as u32;
            let r = c.next(at(t0, 20 * i as u64), 7, seq, ts);
            assert_eq!(
                r,
                Rewrite {
                    ssrc: 7,
                    sequence: seq,
                    timestamp: ts
                }
            );
        }
        // Silence suppression: seq continues, timestamp skips with the clock.
        let r = c.next(
            at(t0, 20 * 100 + 5_000),
            7,
            65500u16.wrapping_add(100),
            1_000 + 160 * 100 + 40_000,
        );
        assert_eq!(r.timestamp, 1_000 + 160 * 100 + 40_000);
        assert_eq!(c.jumps(), 0);
        assert_eq!(c.mapping(), None);
    }

    #[test]
    fn transfer_jump_back_keeps_output_continuous() {
        let mut c = StreamContinuity::new(8000);
        let t0 = Instant::now();
        c.next(t0, 7, 40_000, 800);
        c.next(at(t0, 20), 7, 40_001, 960);
        // Transfer: same SSRC, sequence back by 30,000, timestamp elsewhere.
        let r = c.next(at(t0, 40), 7, 10_001, 5_000_000);
        assert_eq!(
            r,
            Rewrite {
                ssrc: 7,
                sequence: 40_002,
                timestamp: 1_120
            }
        );
        let r = c.next(at(t0, 60), 7, 10_002, 5_000_160);
        assert_eq!(
            r,
            Rewrite {
                ssrc: 7,
                sequence: 40_003,
                timestamp: 1_280
            }
        );
        // Reordered packet from before the jump keeps its place.
        let r = c.next(at(t0, 61), 7, 10_000, 4_999_840);
        assert_eq!(r.sequence, 40_001);
        assert_eq!(c.jumps(), 1);
    }

    #[test]
    fn new_ssrc_keeps_output_ssrc() {
        let mut c = StreamContinuity::new(8000);
        let t0 = Instant::now();
        c.next(t0, 7, 100, 0);
        let r = c.next(at(t0, 20), 9, 5, 77);
        assert_eq!(
            r,
            Rewrite {
                ssrc: 7,
                sequence: 101,
                timestamp: 160
            }
        );
        assert_eq!(c.mapping(), Some((9, 7, 160u32.wrapping_sub(77))));
    }

    #[test]
    fn timestamp_only_jump_is_smoothed() {
        let mut c = StreamContinuity::new(8000);
        let t0 = Instant::now();
        c.next(t0, 7, 1, 0);
        let r = c.next(at(t0, 20), 7, 2, 3_000_000);
        assert_eq!(
            r,
            Rewrite {
                ssrc: 7,
                sequence: 2,
                timestamp: 160
            }
        );
    }

    #[test]
    fn sequence_wrap_is_not_a_jump() {
        let mut c = StreamContinuity::new(8000);
        let t0 = Instant::now();
        c.next(t0, 7, 65535, 0);
        let r = c.next(at(t0, 20), 7, 0, 160);
        assert_eq!(r.sequence, 0);
        assert_eq!(c.jumps(), 0);
    }
}

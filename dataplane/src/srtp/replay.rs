//! Packet index tracking and replay windows (RFC 3711 §3.3.1, §3.3.2, §3.4),
//! with the same estimate and window rules as libsrtp so that both engines
//! accept and refuse the same packets.

use crate::drops::DropReason;

/// SRTP replay window in packets. libsrtp's default is 128; a wider window
/// tolerates the reordering bursts of congested WAN links for 128 bytes per
/// stream.
pub(crate) const RTP_WINDOW: usize = 1024;
/// SRTCP replay window, libsrtp's fixed size.
pub(crate) const RTCP_WINDOW: usize = 128;

const SEQ_MEDIAN: u32 = 1 << 15;

/// Bitmap over the last `WORDS * 64` indexes below and at the highest seen,
/// kept as a ring (bit `index % size`), so advancing by one clears one bit.
#[derive(Debug, Clone)]
pub(crate) struct Window<const WORDS: usize> {
    highest: u64,
    bits: [u64; WORDS],
}

impl<const WORDS: usize> Default for Window<WORDS> {
    fn default() -> Self {
        Self {
            highest: 0,
            bits: [0; WORDS],
        }
    }
}

impl<const WORDS: usize> Window<WORDS> {
    const SIZE: u64 = WORDS as u64 * 64;

    fn bit(&self, index: u64) -> bool {
        let b = index % Self::SIZE;
        self.bits[(b / 64) as usize] & (1 << (b % 64)) != 0
    }

    fn set(&mut self, index: u64, on: bool) {
        let b = index % Self::SIZE;
        let mask = 1u64 << (b % 64);
        if on {
            self.bits[(b / 64) as usize] |= mask;
        } else {
            self.bits[(b / 64) as usize] &= !mask;
        }
    }

    /// Highest index accepted so far (0 before any).
    pub(crate) fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `index` may be accepted: new, or inside the window and unseen.
    pub(crate) fn check(&self, index: u64) -> Result<(), DropReason> {
        if index > self.highest {
            Ok(())
        } else if self.highest - index >= Self::SIZE {
            Err(DropReason::ReplayOld)
        } else if self.bit(index) {
            Err(DropReason::Replay)
        } else {
            Ok(())
        }
    }

    /// Records `index` as seen; call only after [`check`](Self::check) passed
    /// and the packet authenticated.
    pub(crate) fn accept(&mut self, index: u64) {
        if index > self.highest {
            let advance = index - self.highest;
            if advance >= Self::SIZE {
                self.bits = [0; WORDS];
            } else {
                for i in self.highest + 1..index {
                    self.set(i, false);
                }
            }
            self.highest = index;
        }
        self.set(index, true);
    }
}

/// The SRTP packet index (ROC ‖ SEQ) a sequence number most likely stands
/// for, given the highest index so far: RFC 3711 §3.3.1, as libsrtp's
/// `srtp_rdbx_estimate_index` computes it (no ROC guess before the first
/// half of the first cycle has passed).
pub(crate) fn estimate_index(highest: u64, seq: u16) -> u64 {
    let local_seq = highest as u16 as u32;
    let local_roc = (highest >> 16) as u32;
    let s = seq as u32;
    if highest <= SEQ_MEDIAN as u64 {
        return s as u64;
    }
    let roc = if local_seq < SEQ_MEDIAN {
        if s as i64 - local_seq as i64 > SEQ_MEDIAN as i64 {
            local_roc.wrapping_sub(1)
        } else {
            local_roc
        }
    } else if local_seq - SEQ_MEDIAN > s {
        local_roc.wrapping_add(1)
    } else {
        local_roc
    };
    ((roc as u64) << 16 | s as u64) & 0xffff_ffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_new_and_reordered_refuses_repeats_and_old() {
        let mut w = Window::<16>::default();
        for i in [5u64, 6, 8, 7] {
            assert_eq!(w.check(i), Ok(()));
            w.accept(i);
        }
        assert_eq!(w.check(7), Err(DropReason::Replay));
        w.accept(5000);
        assert_eq!(w.check(5000 - 1023), Ok(()));
        assert_eq!(w.check(5000 - 1024), Err(DropReason::ReplayOld));
        assert_eq!(w.check(8), Err(DropReason::ReplayOld));
        // Bits from before a long jump do not linger in the ring.
        assert_eq!(w.check(5000 - 1024 + 8 + 1024), Ok(()));
    }

    #[test]
    fn index_follows_wrap_and_reordering_across_it() {
        assert_eq!(estimate_index(0, 65_500), 65_500);
        let h = 65_530;
        assert_eq!(estimate_index(h, 3), 0x1_0003, "wrap forward");
        let h = 0x1_0003;
        assert_eq!(
            estimate_index(h, 65_534),
            65_534,
            "late packet from before the wrap"
        );
        assert_eq!(estimate_index(h, 10), 0x1_000a);
        // Early in the first cycle there is no ROC-1 guess (libsrtp's rule).
        assert_eq!(estimate_index(100, 65_000), 65_000);
    }
}

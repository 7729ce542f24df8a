//! What a relay learns of each leg from the RTCP it carries (RFC 3550
//! §6.4): the far end's reception reports on the stream the gateway sends
//! it, and the leg's round trip. An SR passes toward the far end at local
//! time t1; the far end's report comes back at t2 naming that SR (LSR) and
//! how long it held it (DLSR): the round trip is t2 − t1 − DLSR. Fixed-size
//! state and no allocation: it runs on the packet path, for RTCP only.

use crate::rtcp::{Packets, ReportBlock, VoipMetrics};
use std::time::{Duration, Instant};

/// SRs remembered per leg, awaiting the far end's report.
const SRS_KEPT: usize = 4;

/// One leg as its far end reports it, and its round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegQuality {
    /// Reception reports the far end sent on the stream it gets from us.
    pub reports: u64,
    /// Its last report's fraction lost, in 1/256.
    pub fraction_lost: u8,
    /// The most any of its reports said, in 1/256.
    pub fraction_lost_max: u8,
    /// Its last report's cumulative loss.
    pub cumulative_lost: i32,
    /// Its last report's jitter, RTP units of the stream reported on.
    pub jitter: u32,
    /// The most any of its reports said.
    pub jitter_max: u32,
    /// Round trips measured.
    pub rtt_samples: u64,
    /// The last round trip, µs.
    pub rtt_last_us: u32,
    /// The least, µs.
    pub rtt_min_us: u32,
    /// The most, µs.
    pub rtt_max_us: u32,
    /// Sum of all, µs (the mean is this over `rtt_samples`).
    pub rtt_sum_us: u64,
    /// RTCP XR VoIP metrics blocks the far end sent (RFC 3611 §4.7).
    pub xr_reports: u64,
    /// The last of them.
    pub xr: VoipMetrics,
}

impl LegQuality {
    /// The mean round trip, µs (None before the first).
    pub fn rtt_mean_us(&self) -> Option<u32> {
        (self.rtt_samples > 0).then(|| (self.rtt_sum_us / self.rtt_samples) as u32)
    }
}

/// One leg's watch: the SRs passed toward its far end, and its reports.
#[derive(Debug, Clone, Default)]
pub struct LegWatch {
    srs: [Option<(u32, Instant)>; SRS_KEPT],
    next: usize,
    quality: LegQuality,
}

impl LegWatch {
    /// An SR (NTP middle 32 bits) passed toward this leg's far end.
    pub fn sr_passed(&mut self, now: Instant, ntp_middle: u32) {
        self.srs[self.next] = Some((ntp_middle, now));
        self.next = (self.next + 1) % SRS_KEPT;
    }

    /// This leg's far end reported on the stream it gets from us.
    pub fn report(&mut self, now: Instant, block: &ReportBlock) {
        let q = &mut self.quality;
        q.reports += 1;
        q.fraction_lost = block.fraction_lost;
        q.fraction_lost_max = q.fraction_lost_max.max(block.fraction_lost);
        q.cumulative_lost = block.cumulative_lost;
        q.jitter = block.jitter;
        q.jitter_max = q.jitter_max.max(block.jitter);
        if block.lsr == 0 {
            return;
        }
        let sent = self
            .srs
            .iter()
            .flatten()
            .find(|(middle, _)| *middle == block.lsr);
        let Some(&(_, at)) = sent else { return };
        let held = Duration::from_micros(block.dlsr as u64 * 1_000_000 / 65_536);
        let Some(rtt) = now.saturating_duration_since(at).checked_sub(held) else {
            return;
        };
        let us = rtt.as_micros().min(u32::MAX as u128) as u32;
        q.rtt_min_us = if q.rtt_samples == 0 {
            us
        } else {
            q.rtt_min_us.min(us)
        };
        q.rtt_samples += 1;
        q.rtt_last_us = us;
        q.rtt_max_us = q.rtt_max_us.max(us);
        q.rtt_sum_us += us as u64;
    }

    /// This leg's far end sent its VoIP metrics (RTCP XR).
    pub fn voip_metrics(&mut self, m: &VoipMetrics) {
        self.quality.xr_reports += 1;
        self.quality.xr = *m;
    }

    /// What is known so far.
    pub fn quality(&self) -> LegQuality {
        self.quality
    }
}

/// Both legs of a relay.
#[derive(Debug, Clone, Default)]
pub struct RtcpWatch {
    /// The PBX's leg (LAN).
    pub pbx: LegWatch,
    /// The cloud's leg.
    pub cloud: LegWatch,
}

impl RtcpWatch {
    /// A compound from the PBX, in the clear, on its way to the cloud: its
    /// SRs pass toward the cloud; its first report block is the PBX's on
    /// what it gets from us. Reads up to the first invalid packet.
    pub fn from_pbx(&mut self, now: Instant, buf: &[u8]) {
        Self::seen(now, buf, &mut self.pbx, &mut self.cloud);
    }

    /// A compound from the cloud, authenticated and in the clear, on its
    /// way to the PBX.
    pub fn from_cloud(&mut self, now: Instant, buf: &[u8]) {
        Self::seen(now, buf, &mut self.cloud, &mut self.pbx);
    }

    fn seen(now: Instant, buf: &[u8], sender: &mut LegWatch, toward: &mut LegWatch) {
        for p in Packets::new(buf).map_while(Result::ok) {
            if let Some(middle) = p.sr_ntp_middle(buf) {
                toward.sr_passed(now, middle);
            }
            if let Some(block) = p.report_blocks(buf).next() {
                sender.report(now, &block);
            }
            if let Some(m) = p.voip_metrics(buf) {
                sender.voip_metrics(&m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SR with NTP `ntp` (64 bits) and no report block.
    fn sr(ssrc: u32, ntp: u64) -> Vec<u8> {
        let mut b = vec![0x80, 200, 0, 6];
        b.extend_from_slice(&ssrc.to_be_bytes());
        b.extend_from_slice(&ntp.to_be_bytes());
        b.extend_from_slice(&[0; 12]); // RTP ts, packets, octets
        b
    }

    /// An RR with one block: fraction, cumulative, jitter, LSR, DLSR.
    fn rr(frac: u8, cum: i32, jitter: u32, lsr: u32, dlsr: u32) -> Vec<u8> {
        let mut b = vec![0x81, 201, 0, 7];
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&9u32.to_be_bytes());
        let lost = ((frac as u32) << 24) | (cum as u32 & 0x00ff_ffff);
        b.extend_from_slice(&lost.to_be_bytes());
        b.extend_from_slice(&1000u32.to_be_bytes());
        b.extend_from_slice(&jitter.to_be_bytes());
        b.extend_from_slice(&lsr.to_be_bytes());
        b.extend_from_slice(&dlsr.to_be_bytes());
        b
    }

    #[test]
    fn the_cloud_legs_round_trip_comes_from_the_pbxs_sr_and_the_clouds_rr() {
        let t0 = Instant::now();
        let mut w = RtcpWatch::default();
        // The PBX's SR goes to the cloud: NTP 0x0001_2345_6789_0000,
        // middle 32 bits 0x2345_6789.
        w.from_pbx(t0, &sr(1, 0x0001_2345_6789_0000));
        // 130 ms later the cloud's RR names it, held 50 ms (3276.8 units).
        let dlsr = 65_536 * 50 / 1000;
        w.from_cloud(
            t0 + Duration::from_millis(130),
            &rr(8, 12, 400, 0x2345_6789, dlsr),
        );
        let q = w.cloud.quality();
        assert_eq!((q.reports, q.fraction_lost, q.cumulative_lost), (1, 8, 12));
        assert_eq!(q.rtt_samples, 1);
        assert!(
            (79_900..=80_100).contains(&q.rtt_last_us),
            "{}",
            q.rtt_last_us
        );
        assert_eq!(q.jitter, 400);
        // Nothing about the PBX's leg: no report from the PBX.
        assert_eq!(w.pbx.quality(), LegQuality::default());
    }

    #[test]
    fn reports_naming_no_sr_seen_give_no_round_trip_and_negative_loss_is_read() {
        let t0 = Instant::now();
        let mut w = RtcpWatch::default();
        w.from_pbx(t0, &rr(0, -3, 10, 0, 0));
        w.from_pbx(t0, &rr(20, 5, 30, 0x1111_2222, 100));
        let q = w.pbx.quality();
        assert_eq!(q.reports, 2);
        assert_eq!(q.cumulative_lost, 5);
        assert_eq!((q.fraction_lost_max, q.jitter_max), (20, 30));
        assert_eq!(q.rtt_samples, 0);
        w.from_pbx(t0, &rr(0, -3, 10, 0, 0));
        assert_eq!(w.pbx.quality().cumulative_lost, -3);
    }

    #[test]
    fn a_report_older_than_its_hold_is_no_round_trip_and_garbage_is_ignored() {
        let t0 = Instant::now();
        let mut w = RtcpWatch::default();
        w.from_cloud(t0, &sr(2, 0x0000_0001_0000_0000));
        // Held 1 s by its own account, back after 10 ms: not believed.
        w.from_pbx(
            t0 + Duration::from_millis(10),
            &rr(0, 0, 0, 0x0001_0000, 65_536),
        );
        assert_eq!(w.pbx.quality().rtt_samples, 0);
        w.from_pbx(t0, &[0xff; 40]);
        w.from_cloud(t0, &[]);
        assert_eq!(w.cloud.quality().reports, 0);
    }

    #[test]
    fn a_far_ends_xr_voip_metrics_are_kept_on_its_leg() {
        let t0 = Instant::now();
        let mut w = RtcpWatch::default();
        let mut compound = rr(0, 0, 0, 0, 0);
        compound.extend_from_slice(&crate::rtcp::tests::xr_voip(1));
        w.from_cloud(t0, &compound);
        let q = w.cloud.quality();
        assert_eq!((q.reports, q.xr_reports), (1, 1));
        assert_eq!(
            (q.xr.r_factor, q.xr.mos_cq, q.xr.discard_rate),
            (80, 38, 13)
        );
        assert_eq!(w.pbx.quality().xr_reports, 0, "the other leg's is its own");
    }
}

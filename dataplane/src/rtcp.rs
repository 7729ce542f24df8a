//! Compound RTCP views (RFC 3550 §6, validity checks of appendix A.2, RFC 5506
//! reduced-size packets accepted). Validates every packet's version, length
//! and padding; reads and rewrites sender SSRCs and SR timestamps in place.

use crate::drops::DropReason;

/// RTCP common header length.
pub const RTCP_HEADER_LEN: usize = 4;
/// What SRTCP authenticates before the index: the header and sender SSRC.
pub const RTCP_MIN_SRTCP_HEADER: usize = 8;

/// Sender report.
pub const SR: u8 = 200;
/// Receiver report.
pub const RR: u8 = 201;
/// Source description.
pub const SDES: u8 = 202;
/// Goodbye.
pub const BYE: u8 = 203;
/// Application-defined.
pub const APP: u8 = 204;
/// Extended report (RFC 3611).
pub const XR: u8 = 207;
/// XR block type: VoIP metrics (RFC 3611 §4.7).
const VOIP_METRICS: u8 = 7;
/// Its length: the block length field says 8 (words after the first).
const VOIP_METRICS_LEN: usize = 36;

const REPORT_BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;

/// One packet of a compound, as its position in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket {
    /// Packet type (200 SR, 201 RR, ...).
    pub packet_type: u8,
    /// The 5-bit count field (reception reports, SDES chunks, BYE sources).
    pub count: u8,
    /// Offset of this packet's header in the compound.
    pub offset: usize,
    /// Length of this packet in bytes, header and padding included.
    pub len: usize,
}

impl RtcpPacket {
    /// The SSRC that follows the header, where the type has one.
    pub fn sender_ssrc(&self, buf: &[u8]) -> Option<u32> {
        if self.len < RTCP_MIN_SRTCP_HEADER || (self.packet_type == BYE && self.count == 0) {
            return None;
        }
        let o = self.offset + 4;
        Some(u32::from_be_bytes([
            buf[o],
            buf[o + 1],
            buf[o + 2],
            buf[o + 3],
        ]))
    }
}

/// One reception report block of an SR or RR (RFC 3550 §6.4.1): what the
/// sender of the report received of source `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: u32,
    /// Lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Lost since the start (24-bit signed: duplicates make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in the source's RTP timestamp units.
    pub jitter: u32,
    /// Last SR: the middle 32 bits of its NTP timestamp (0: none yet).
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    fn read(b: &[u8]) -> Option<Self> {
        let word = |i: usize| {
            b.get(i..i + 4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        };
        let lost = word(4)?;
        // 24-bit two's complement in the low bits.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        Some(Self {
            ssrc: word(0)?,
            fraction_lost: (lost >> 24) as u8,
            cumulative_lost,
            highest_seq: word(8)?,
            jitter: word(12)?,
            lsr: word(16)?,
            dlsr: word(20)?,
        })
    }
}

/// An RTCP XR VoIP metrics block (RFC 3611 §4.7): how the sender of the
/// report, a voice end point, heard the stream of `ssrc`. Rates are in
/// 1/256; 127 in `r_factor`, `mos_lq` or `mos_cq` means unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VoipMetrics {
    /// The source reported on.
    pub ssrc: u32,
    /// Packets lost in the network, in 1/256.
    pub loss_rate: u8,
    /// Packets its jitter buffer discarded (late or early), in 1/256.
    pub discard_rate: u8,
    /// Round trip between the two RTP end points, ms.
    pub round_trip_ms: u16,
    /// Its own delay (buffer, codec, device), ms.
    pub end_system_delay_ms: u16,
    /// Its R factor, 0–100.
    pub r_factor: u8,
    /// Its MOS, listening quality and conversational, ×10.
    pub mos_lq: u8,
    pub mos_cq: u8,
    /// Its jitter buffer's nominal delay, ms.
    pub jb_nominal_ms: u16,
}

impl VoipMetrics {
    fn read(b: &[u8]) -> Option<Self> {
        let b: &[u8; VOIP_METRICS_LEN] = b.get(..VOIP_METRICS_LEN)?.try_into().ok()?;
        let half = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        Some(Self {
            ssrc: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            loss_rate: b[8],
            discard_rate: b[9],
            round_trip_ms: half(16),
            end_system_delay_ms: half(18),
            r_factor: b[24],
            mos_lq: b[26],
            mos_cq: b[27],
            jb_nominal_ms: half(30),
        })
    }
}

impl RtcpPacket {
    /// The first VoIP metrics block of an XR (none for other packets, or
    /// an XR without one): its blocks are walked by their own lengths,
    /// within the packet.
    pub fn voip_metrics(&self, buf: &[u8]) -> Option<VoipMetrics> {
        if self.packet_type != XR {
            return None;
        }
        let end = (self.offset + self.len).min(buf.len());
        let mut at = self.offset + RTCP_MIN_SRTCP_HEADER;
        while at + 4 <= end {
            let words = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize + 1;
            let next = at + 4 * words;
            if next > end {
                return None;
            }
            if buf[at] == VOIP_METRICS && next - at == VOIP_METRICS_LEN {
                return VoipMetrics::read(&buf[at..next]);
            }
            at = next;
        }
        None
    }

    /// An SR's NTP timestamp, its middle 32 bits: what a receiver's report
    /// block echoes as LSR. None for other packets.
    pub fn sr_ntp_middle(&self, buf: &[u8]) -> Option<u32> {
        if self.packet_type != SR {
            return None;
        }
        let o = self.offset + RTCP_MIN_SRTCP_HEADER + 2;
        let w = buf.get(o..(o + 4).min(self.offset + self.len))?;
        Some(u32::from_be_bytes(w.try_into().ok()?))
    }

    /// The report blocks of an SR or RR (none for other packets), as many
    /// as its count says and its length holds.
    pub fn report_blocks<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = ReportBlock> + 'a {
        let first = match self.packet_type {
            SR => RTCP_MIN_SRTCP_HEADER + SENDER_INFO_LEN,
            RR => RTCP_MIN_SRTCP_HEADER,
            _ => self.len,
        };
        let end = (self.offset + self.len).min(buf.len());
        let start = (self.offset + first).min(end);
        let blocks = buf[start..end].chunks_exact(REPORT_BLOCK_LEN);
        blocks
            .take(self.count as usize)
            .filter_map(ReportBlock::read)
    }
}

/// Validates a compound RTCP packet; returns the number of packets in it.
pub fn validate(buf: &[u8]) -> Result<usize, DropReason> {
    let mut n = 0;
    for p in Packets::new(buf) {
        p?;
        n += 1;
    }
    if n == 0 {
        return Err(DropReason::MalformedRtcp);
    }
    Ok(n)
}

/// Iterates over the packets of a compound, validating as it goes. Stops at
/// the first error.
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    buf: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Packets<'a> {
    /// Starts at the first packet of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            offset: 0,
            failed: false,
        }
    }

    fn check(&self) -> Result<RtcpPacket, DropReason> {
        let rest = &self.buf[self.offset..];
        if rest.len() < RTCP_HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        if rest[0] >> 6 != 2 {
            return Err(DropReason::BadVersion);
        }
        let packet_type = rest[1];
        if !(192..=223).contains(&packet_type) {
            return Err(DropReason::MalformedRtcp);
        }
        let count = rest[0] & 0x1f;
        let len = 4 * (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1);
        if len > rest.len() {
            return Err(DropReason::Truncated);
        }
        let last = len == rest.len();
        let mut body_len = len;
        if rest[0] & 0x20 != 0 {
            // Padding is only allowed on the last packet of a compound.
            let pad = rest[len - 1] as usize;
            if !last || pad == 0 || pad > len - RTCP_HEADER_LEN {
                return Err(DropReason::MalformedRtcp);
            }
            body_len -= pad;
        }
        let min = match packet_type {
            SR => RTCP_MIN_SRTCP_HEADER + SENDER_INFO_LEN + REPORT_BLOCK_LEN * count as usize,
            RR => RTCP_MIN_SRTCP_HEADER + REPORT_BLOCK_LEN * count as usize,
            BYE => RTCP_HEADER_LEN + 4 * count as usize,
            APP => RTCP_MIN_SRTCP_HEADER + 4,
            XR => RTCP_MIN_SRTCP_HEADER,
            _ => RTCP_HEADER_LEN,
        };
        if body_len < min {
            return Err(DropReason::MalformedRtcp);
        }
        Ok(RtcpPacket {
            packet_type,
            count,
            offset: self.offset,
            len,
        })
    }
}

impl Iterator for Packets<'_> {
    type Item = Result<RtcpPacket, DropReason>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.buf.len() {
            return None;
        }
        match self.check() {
            Ok(p) => {
                self.offset += p.len;
                Some(Ok(p))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Rewrites a validated compound going out on a renumbered stream: every
/// SR/RR sender SSRC, SDES chunk and BYE source equal to `from` becomes `to`,
/// and SR RTP timestamps of that source are shifted by `ts_delta`.
pub fn rewrite_source(buf: &mut [u8], from: u32, to: u32, ts_delta: u32) {
    let mut offset = 0;
    while offset + RTCP_HEADER_LEN <= buf.len() {
        let len = 4 * (u16::from_be_bytes([buf[offset + 2], buf[offset + 3]]) as usize + 1);
        let end = (offset + len).min(buf.len());
        let count = (buf[offset] & 0x1f) as usize;
        let pt = buf[offset + 1];
        let ssrc_at = offset + 4;
        match pt {
            SR | RR | XR if ssrc_at + 4 <= end && read_u32(buf, ssrc_at) == from => {
                write_u32(buf, ssrc_at, to);
                if pt == SR && ssrc_at + 16 <= end {
                    let ts = read_u32(buf, ssrc_at + 12).wrapping_add(ts_delta);
                    write_u32(buf, ssrc_at + 12, ts);
                }
            }
            BYE => {
                for i in 0..count {
                    let at = ssrc_at + 4 * i;
                    if at + 4 <= end && read_u32(buf, at) == from {
                        write_u32(buf, at, to);
                    }
                }
            }
            SDES => rewrite_sdes_chunks(&mut buf[..end], ssrc_at, count, from, to),
            _ => {}
        }
        offset += len;
    }
}

fn rewrite_sdes_chunks(buf: &mut [u8], mut at: usize, chunks: usize, from: u32, to: u32) {
    for _ in 0..chunks {
        if at + 4 > buf.len() {
            return;
        }
        if read_u32(buf, at) == from {
            write_u32(buf, at, to);
        }
        // Items: type, length, text; a zero type ends the chunk, which is
        // then padded to a 32-bit boundary.
        let mut i = at + 4;
        while i < buf.len() && buf[i] != 0 {
            i += 2 + buf.get(i + 1).copied().unwrap_or(0) as usize;
        }
        at = (i + 4) & !3;
    }
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn write_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SR from `ssrc` with one report block, then an SDES CNAME chunk.
    pub(crate) fn sr_sdes(ssrc: u32, rtp_ts: u32) -> Vec<u8> {
        let mut p = vec![0x81, SR, 0, 12];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xe0, 0, 0, 0, 0, 0, 0, 1]); // NTP
        p.extend_from_slice(&rtp_ts.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 10, 0, 0, 6, 64]); // packets, octets
        p.extend_from_slice(&[0, 0, 0, 9]); // report block: source
        p.extend_from_slice(&[0; 20]);
        // SDES: one chunk, CNAME "pbx", end, pad to 4.
        p.extend_from_slice(&[0x81, SDES, 0, 3]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[1, 3, b'p', b'b', b'x', 0, 0, 0]);
        p
    }

    /// An XR from `ssrc` (RFC 3611): a receiver reference time block, then
    /// a VoIP metrics block on source 9 (loss 8/256, discard 13/256, round
    /// trip 42 ms, end system 60 ms, R 80, MOS-LQ 3.9, MOS-CQ 3.8, buffer
    /// 40 ms).
    pub(crate) fn xr_voip(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, XR, 0, 13];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[4, 0, 0, 2, 0xe0, 0, 0, 0, 0, 0, 0, 1]); // RRT, 3 words
        p.extend_from_slice(&[7, 0, 0, 8]); // VoIP metrics, 9 words
        p.extend_from_slice(&9u32.to_be_bytes());
        p.extend_from_slice(&[8, 13, 0, 0, 0, 0, 0, 0]); // rates, burst/gap
        p.extend_from_slice(&[0, 42, 0, 60]); // round trip, end system
        p.extend_from_slice(&[0x7f, 0x7f, 0x7f, 0x7f]); // levels, RERL, Gmin
        p.extend_from_slice(&[80, 0x7f, 39, 38]); // R, ext R, MOS-LQ, MOS-CQ
        p.extend_from_slice(&[0, 0, 0, 40, 0, 80, 0, 120]); // RX config, JB
        p
    }

    #[test]
    fn an_xr_voip_metrics_block_is_read_after_the_blocks_before_it() {
        let p = xr_voip(5);
        assert_eq!(p.len(), 56);
        assert_eq!(validate(&p), Ok(1));
        let x = Packets::new(&p).next().unwrap().unwrap();
        assert_eq!(x.sender_ssrc(&p), Some(5));
        assert_eq!(
            x.voip_metrics(&p),
            Some(VoipMetrics {
                ssrc: 9,
                loss_rate: 8,
                discard_rate: 13,
                round_trip_ms: 42,
                end_system_delay_ms: 60,
                r_factor: 80,
                mos_lq: 39,
                mos_cq: 38,
                jb_nominal_ms: 40,
            })
        );
        // A block running past its packet is not read; nor is an SR.
        let mut broken = p.clone();
        broken[23] = 20;
        assert_eq!(
            Packets::new(&broken)
                .next()
                .unwrap()
                .unwrap()
                .voip_metrics(&broken),
            None
        );
        let sr = sr_sdes(5, 0);
        assert_eq!(
            Packets::new(&sr).next().unwrap().unwrap().voip_metrics(&sr),
            None
        );
        // An XR too short for its sender's SSRC is no XR.
        assert!(validate(&[0x80, XR, 0, 0]).is_err());
        // Its sender is renumbered with the stream.
        let mut r = p.clone();
        rewrite_source(&mut r, 5, 6, 100);
        assert_eq!(
            Packets::new(&r).next().unwrap().unwrap().sender_ssrc(&r),
            Some(6)
        );
        assert_eq!(r[8..], p[8..], "the blocks are left alone");
    }

    #[test]
    fn validates_compound() {
        let p = sr_sdes(7, 1000);
        assert_eq!(validate(&p), Ok(2));
        let pkts: Vec<_> = Packets::new(&p).map(Result::unwrap).collect();
        assert_eq!(pkts[0].sender_ssrc(&p), Some(7));
        assert_eq!(pkts[1].packet_type, SDES);
    }

    #[test]
    fn rejects_broken_compounds() {
        let good = sr_sdes(7, 1000);
        assert_eq!(
            validate(&good[..good.len() - 4]),
            Err(DropReason::Truncated)
        );
        let mut v1 = good.clone();
        v1[0] = 0x41;
        assert_eq!(validate(&v1), Err(DropReason::BadVersion));
        let mut pad_first = good.clone();
        pad_first[0] |= 0x20;
        assert_eq!(validate(&pad_first), Err(DropReason::MalformedRtcp));
        let mut short_sr = good.clone();
        short_sr[0] = 0x82; // claims two report blocks
        assert_eq!(validate(&short_sr), Err(DropReason::MalformedRtcp));
        assert_eq!(validate(&[0x80, 72, 0, 0]), Err(DropReason::MalformedRtcp));
        assert_eq!(validate(&[]), Err(DropReason::MalformedRtcp));
        assert_eq!(validate(&[0x80, 201]), Err(DropReason::Truncated));
    }

    #[test]
    fn padding_on_last_packet_is_accepted() {
        let mut p = vec![0xa0, RR, 0, 2];
        p.extend_from_slice(&5u32.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(validate(&p), Ok(1));
    }

    #[test]
    fn rewrites_only_the_renumbered_source() {
        let mut p = sr_sdes(7, 1000);
        rewrite_source(&mut p, 7, 99, 500);
        assert_eq!(read_u32(&p, 4), 99);
        assert_eq!(read_u32(&p, 16), 1500);
        assert_eq!(read_u32(&p, 28), 9, "report block source untouched");
        assert_eq!(read_u32(&p, 56), 99, "SDES chunk rewritten");
        let before = p.clone();
        rewrite_source(&mut p, 7, 1, 1);
        assert_eq!(p, before, "other sources are left alone");
    }
}

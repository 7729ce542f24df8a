//! The two directions of a relay's media, as pure packet transforms:
//! [`LanToCloud`] (plain RTP/RTCP from the PBX → SRTP/SRTCP to the cloud) and
//! [`CloudToLan`] (the reverse). Each owns its SRTP context, stream state and
//! counters; neither owns a socket, a clock or a buffer. Packets are rewritten
//! in place inside the caller's buffer, which must leave
//! [`TRAILER_ROOM`](crate::srtp::TRAILER_ROOM) bytes past the packet.

use crate::continuity::StreamContinuity;
use crate::drops::{DropCounters, DropReason};
use crate::ptmap::PayloadTypeMap;
use crate::srtp::{MasterKey, Role, SrtpContext, SrtpError, Suite};
use crate::stats::StreamStats;
use crate::{rtcp, rtp, telephone_event};
use std::time::Instant;

/// How one direction treats its packets.
#[derive(Debug, Clone)]
pub struct DirectionConfig {
    /// Which payload types pass, and their number on the far leg.
    pub payload_types: PayloadTypeMap,
    /// Payload type of RFC 4733 telephone-events on the incoming leg, if negotiated.
    pub telephone_event_pt: Option<u8>,
    /// RTP clock of the audio codec (8000 for G.711, G.729, G.722's RTP clock).
    pub clock_rate_hz: u32,
}

impl Default for DirectionConfig {
    fn default() -> Self {
        Self {
            payload_types: PayloadTypeMap::identity(),
            telephone_event_pt: None,
            clock_rate_hz: 8000,
        }
    }
}

/// Counters of one direction. Plain integers, owned by one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// RTP packets accepted in.
    pub rtp_in: u64,
    /// RTP packets sent on (protected or unprotected).
    pub rtp_out: u64,
    /// RTP bytes in, as received.
    pub rtp_bytes_in: u64,
    /// RTP bytes out, as sent.
    pub rtp_bytes_out: u64,
    /// RTCP compounds accepted and sent on.
    pub rtcp_out: u64,
    /// Telephone-event packets seen.
    pub telephone_events: u64,
    /// Telephone-event packets with the end bit.
    pub telephone_event_ends: u64,
    /// Drops by reason.
    pub drops: DropCounters,
}

impl DirectionCounters {
    fn account_rtp(&mut self, r: Result<usize, DropReason>) {
        match r {
            Ok(n) => {
                self.rtp_out += 1;
                self.rtp_bytes_out += n as u64;
            }
            Err(reason) => self.drops.bump(reason),
        }
    }
}

fn check_telephone_event(
    cfg: &DirectionConfig,
    counters: &mut DirectionCounters,
    h: &rtp::RtpHeader,
    buf: &[u8],
) -> Result<bool, DropReason> {
    if cfg.telephone_event_pt != Some(h.payload_type) {
        return Ok(false);
    }
    let event =
        telephone_event::parse(h.payload(buf)).ok_or(DropReason::MalformedTelephoneEvent)?;
    counters.telephone_events += 1;
    counters.telephone_event_ends += event.end as u64;
    Ok(true)
}

/// Plain RTP/RTCP from the PBX, protected toward the cloud.
#[derive(Debug)]
pub struct LanToCloud {
    srtp: SrtpContext,
    cfg: DirectionConfig,
    continuity: StreamContinuity,
    stats: StreamStats,
    counters: DirectionCounters,
}

impl LanToCloud {
    /// A direction protecting with `key` (the gateway's own SDES key toward the cloud).
    pub fn new(suite: Suite, key: &MasterKey, cfg: DirectionConfig) -> Result<Self, SrtpError> {
        Ok(Self {
            srtp: SrtpContext::new(suite, key, Role::Protect)?,
            continuity: StreamContinuity::new(cfg.clock_rate_hz),
            stats: StreamStats::new(cfg.clock_rate_hz),
            cfg,
            counters: DirectionCounters::default(),
        })
    }

    /// New payload types (a re-INVITE changed codecs); the SRTP stream,
    /// counters and statistics carry on.
    pub fn set_config(&mut self, cfg: DirectionConfig) {
        self.cfg = cfg;
    }

    /// Turns the RTP packet in `buf[..len]` into SRTP in place; returns the
    /// length to send. A drop is counted under its reason and returned.
    pub fn rtp(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let r = self.rtp_inner(now, buf, len);
        self.counters.account_rtp(r);
        r
    }

    fn rtp_inner(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let packet = buf.get(..len).ok_or(DropReason::TooLarge)?;
        let h = rtp::parse(packet)?;
        let out_pt = self
            .cfg
            .payload_types
            .map(h.payload_type)
            .ok_or(DropReason::PayloadTypeNotAllowed)?;
        let is_event = check_telephone_event(&self.cfg, &mut self.counters, &h, packet)?;
        self.counters.rtp_in += 1;
        self.counters.rtp_bytes_in += len as u64;
        self.stats.update(
            now,
            h.ssrc,
            h.sequence,
            h.timestamp,
            h.payload_len,
            !is_event,
        );
        let out = self.continuity.next(now, h.ssrc, h.sequence, h.timestamp);
        if out.sequence != h.sequence || out.timestamp != h.timestamp || out.ssrc != h.ssrc {
            rtp::set_sequence(buf, out.sequence);
            rtp::set_timestamp(buf, out.timestamp);
            rtp::set_ssrc(buf, out.ssrc);
        }
        if out_pt != h.payload_type {
            rtp::set_payload_type(buf, out_pt);
        }
        self.srtp.protect_rtp(buf, len)
    }

    /// Turns the compound RTCP in `buf[..len]` into SRTCP in place.
    pub fn rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let r = buf
            .get(..len)
            .ok_or(DropReason::TooLarge)
            .and_then(rtcp::validate)
            .and_then(|_| {
                if let Some((from, to, ts_offset)) = self.continuity.mapping() {
                    rtcp::rewrite_source(&mut buf[..len], from, to, ts_offset);
                }
                self.srtp.protect_rtcp(buf, len)
            });
        match r {
            Ok(_) => self.counters.rtcp_out += 1,
            Err(reason) => self.counters.drops.bump(reason),
        }
        r
    }

    /// Counters so far.
    pub fn counters(&self) -> &DirectionCounters {
        &self.counters
    }

    /// RFC 3550 statistics of the PBX's stream.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Jumps renumbered so far.
    pub fn jumps(&self) -> u64 {
        self.continuity.jumps()
    }
}

/// SRTP/SRTCP from the cloud, unprotected toward the PBX.
#[derive(Debug)]
pub struct CloudToLan {
    srtp: SrtpContext,
    cfg: DirectionConfig,
    stats: StreamStats,
    counters: DirectionCounters,
}

impl CloudToLan {
    /// A direction unprotecting with `key` (the cloud's SDES key toward the gateway).
    pub fn new(suite: Suite, key: &MasterKey, cfg: DirectionConfig) -> Result<Self, SrtpError> {
        Ok(Self {
            srtp: SrtpContext::new(suite, key, Role::Unprotect)?,
            stats: StreamStats::new(cfg.clock_rate_hz),
            cfg,
            counters: DirectionCounters::default(),
        })
    }

    /// New payload types (a re-INVITE changed codecs); the SRTP stream,
    /// counters and statistics carry on.
    pub fn set_config(&mut self, cfg: DirectionConfig) {
        self.cfg = cfg;
    }

    /// Unprotects with the cloud's new key from now on (a re-INVITE with a
    /// new `a=crypto`); counters and statistics carry on.
    pub fn set_key(&mut self, suite: Suite, key: &MasterKey) -> Result<(), SrtpError> {
        self.srtp = SrtpContext::new(suite, key, Role::Unprotect)?;
        Ok(())
    }

    /// Turns the SRTP packet in `buf[..len]` into RTP in place; returns the
    /// length to send. Only authenticated packets pass.
    pub fn rtp(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let r = self.rtp_inner(now, buf, len);
        self.counters.account_rtp(r);
        r
    }

    fn rtp_inner(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let tag = self.srtp.suite().srtp_tag_len();
        let packet = buf.get(..len).ok_or(DropReason::TooLarge)?;
        // The header is in the clear: check it fits before libsrtp reads it.
        rtp::parse_header(packet.get(..len.saturating_sub(tag)).unwrap_or_default())?;
        let n = self.srtp.unprotect_rtp(buf, len)?;
        let h = rtp::parse(&buf[..n])?;
        let out_pt = self
            .cfg
            .payload_types
            .map(h.payload_type)
            .ok_or(DropReason::PayloadTypeNotAllowed)?;
        let is_event = check_telephone_event(&self.cfg, &mut self.counters, &h, &buf[..n])?;
        self.counters.rtp_in += 1;
        self.counters.rtp_bytes_in += len as u64;
        self.stats.update(
            now,
            h.ssrc,
            h.sequence,
            h.timestamp,
            h.payload_len,
            !is_event,
        );
        if out_pt != h.payload_type {
            rtp::set_payload_type(buf, out_pt);
        }
        Ok(n)
    }

    /// Turns the SRTCP in `buf[..len]` into compound RTCP in place.
    pub fn rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let r = self.rtcp_inner(buf, len);
        match r {
            Ok(_) => self.counters.rtcp_out += 1,
            Err(reason) => self.counters.drops.bump(reason),
        }
        r
    }

    fn rtcp_inner(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let head = buf
            .get(..len.min(rtcp::RTCP_MIN_SRTCP_HEADER))
            .ok_or(DropReason::TooLarge)?;
        let plain = |buf: &[u8]| rtcp::validate(&buf[..len]).is_ok();
        if head.len() < rtcp::RTCP_MIN_SRTCP_HEADER {
            return Err(if plain(buf) {
                DropReason::Unprotected
            } else {
                DropReason::Truncated
            });
        }
        if head[0] >> 6 != 2 {
            return Err(DropReason::BadVersion);
        }
        // Unprotecting may alter the buffer: whether it was plain RTCP is
        // decided first (RTCP is rare; this costs nothing per RTP packet).
        let was_plain = plain(buf);
        let n = match self.srtp.unprotect_rtcp(buf, len) {
            Err(DropReason::AuthFailed | DropReason::Truncated) if was_plain => {
                return Err(DropReason::Unprotected);
            }
            r => r?,
        };
        rtcp::validate(&buf[..n])?;
        Ok(n)
    }

    /// Counters so far.
    pub fn counters(&self) -> &DirectionCounters {
        &self.counters
    }

    /// RFC 3550 statistics of the cloud's stream.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const BUF: usize = 512;

    fn key(suite: Suite, seed: u8) -> MasterKey {
        let m: Vec<u8> = (0..suite.master_len() as u8)
            .map(|i| i.wrapping_mul(7) ^ seed)
            .collect();
        MasterKey::from_bytes(suite, &m).unwrap()
    }

    fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn run(
        f: impl FnOnce(&mut [u8; BUF], usize) -> Result<usize, DropReason>,
        p: &[u8],
    ) -> Result<Vec<u8>, DropReason> {
        let mut buf = [0u8; BUF];
        buf[..p.len()].copy_from_slice(p);
        let n = f(&mut buf, p.len())?;
        Ok(buf[..n].to_vec())
    }

    /// A LAN→cloud direction and the cloud's receiver for it, same key.
    fn pair(suite: Suite, cfg: DirectionConfig) -> (LanToCloud, CloudToLan) {
        let k = key(suite, 1);
        (
            LanToCloud::new(suite, &k, cfg.clone()).unwrap(),
            CloudToLan::new(suite, &k, cfg).unwrap(),
        )
    }

    #[test]
    fn round_trip_is_byte_identical_for_every_suite() {
        let t0 = Instant::now();
        for suite in Suite::ALL {
            let (mut up, mut down) = pair(suite, DirectionConfig::default());
            for i in 0..200u16 {
                let now = t0 + Duration::from_millis(20 * i as u64);
                let seq = 65500u16.wrapping_add(i);
                let p = rtp(0, seq, 160 * i as u32, 0x1234, &[0xd5; 160]);
                let srtp = run(|b, n| up.rtp(now, b, n), &p).unwrap();
                assert_eq!(srtp.len(), p.len() + suite.srtp_tag_len());
                assert_eq!(&srtp[..12], &p[..12], "{suite}: header passes untouched");
                assert_eq!(
                    run(|b, n| down.rtp(now, b, n), &srtp).unwrap(),
                    p,
                    "{suite}"
                );
            }
            assert_eq!(up.counters().rtp_out, 200);
            assert_eq!(down.counters().rtp_out, 200);
            assert_eq!(down.stats().lost(), 0);
            assert_eq!(down.stats().extended_highest_seq(), 65536 + 163);
        }
    }

    #[test]
    fn transfer_jump_still_decrypts_after_renumbering() {
        let t0 = Instant::now();
        let (mut up, mut down) = pair(Suite::AesCm128HmacSha1_80, DirectionConfig::default());
        let mut last_seq = 0;
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(20 * i as u64);
            // After packet 50 the PBX transfers: sequence back by 30,000.
            let seq = if i < 50 { 40_000 + i } else { 10_000 + i } as u16;
            let p = rtp(8, seq, 160 * i, 77, &[1; 160]);
            let srtp = run(|b, n| up.rtp(now, b, n), &p).unwrap();
            let back = run(|b, n| down.rtp(now, b, n), &srtp).expect("receiver accepts");
            let out_seq = u16::from_be_bytes([back[2], back[3]]);
            if i > 0 {
                assert_eq!(out_seq, last_seq + 1);
            }
            last_seq = out_seq;
            assert_eq!(&back[12..], &p[12..]);
        }
        assert_eq!(up.jumps(), 1);
        assert_eq!(down.counters().drops.total(), 0);
    }

    #[test]
    fn bad_input_is_dropped_and_counted_by_reason() {
        let now = Instant::now();
        let cfg = DirectionConfig {
            payload_types: PayloadTypeMap::only(&[(0, 0), (101, 101)]),
            telephone_event_pt: Some(101),
            ..DirectionConfig::default()
        };
        let (mut up, mut down) = pair(Suite::AesCm128HmacSha1_80, cfg);
        assert_eq!(
            run(|b, n| up.rtp(now, b, n), &rtp(8, 1, 0, 1, &[0; 10])),
            Err(DropReason::PayloadTypeNotAllowed)
        );
        assert_eq!(
            run(|b, n| up.rtp(now, b, n), &[0x80, 0, 1]),
            Err(DropReason::Truncated)
        );
        assert_eq!(
            run(|b, n| up.rtp(now, b, n), &rtp(101, 1, 0, 1, &[1, 2])),
            Err(DropReason::MalformedTelephoneEvent)
        );
        let dtmf = rtp(101, 2, 0, 1, &[5, 0x8a, 0, 160]);
        let srtp = run(|b, n| up.rtp(now, b, n), &dtmf).unwrap();
        assert_eq!(up.counters().telephone_event_ends, 1);

        let mut tampered = srtp.clone();
        tampered[13] ^= 1;
        assert_eq!(
            run(|b, n| down.rtp(now, b, n), &tampered),
            Err(DropReason::AuthFailed)
        );
        assert_eq!(run(|b, n| down.rtp(now, b, n), &srtp), Ok(dtmf.clone()));
        assert_eq!(
            run(|b, n| down.rtp(now, b, n), &srtp),
            Err(DropReason::Replay)
        );
        assert_eq!(
            run(|b, n| down.rtp(now, b, n), &srtp[..14]),
            Err(DropReason::Truncated)
        );
        let mut v1 = srtp.clone();
        v1[0] = 0x40;
        assert_eq!(
            run(|b, n| down.rtp(now, b, n), &v1),
            Err(DropReason::BadVersion)
        );
        // A packet filling the buffer leaves no room for the tag.
        let mut huge = [0u8; BUF];
        huge[..12].copy_from_slice(&rtp(0, 3, 0, 1, &[])[..12]);
        assert_eq!(
            up.rtp(
                now,
                &mut huge,
                BUF - Suite::AesCm128HmacSha1_80.srtp_tag_len() + 1
            ),
            Err(DropReason::TooLarge)
        );
        assert_eq!(up.rtp(now, &mut huge, BUF + 1), Err(DropReason::TooLarge));

        let d = down.counters().drops;
        assert_eq!(
            (
                d.get(DropReason::AuthFailed),
                d.get(DropReason::Replay),
                d.get(DropReason::Truncated)
            ),
            (1, 1, 1)
        );
        assert_eq!(up.counters().drops.total(), 5);
        assert_eq!(down.counters().telephone_events, 1);
    }

    #[test]
    fn rtcp_round_trip_and_rejections() {
        let (mut up, mut down) = pair(Suite::AeadAes128Gcm, DirectionConfig::default());
        let sr = crate::rtcp::tests::sr_sdes(0x1234, 9000);
        let srtcp = run(|b, n| up.rtcp(b, n), &sr).unwrap();
        assert_eq!(
            srtcp.len(),
            sr.len() + Suite::AeadAes128Gcm.srtcp_overhead()
        );
        assert_eq!(run(|b, n| down.rtcp(b, n), &srtcp).unwrap(), sr);
        assert_eq!(run(|b, n| down.rtcp(b, n), &srtcp), Err(DropReason::Replay));
        assert_eq!(
            run(|b, n| down.rtcp(b, n), &srtcp[..10]),
            Err(DropReason::Truncated)
        );
        assert_eq!(
            run(|b, n| up.rtcp(b, n), &sr[..30]),
            Err(DropReason::Truncated)
        );
        // RTCP in the clear where SRTCP is due (baresip sends its RTCP BYE
        // after ending its SRTP session): named, not an authentication failure.
        assert_eq!(
            run(|b, n| down.rtcp(b, n), &sr),
            Err(DropReason::Unprotected)
        );
        let bye = [0x81, 203, 0, 1, 1, 2, 3, 4];
        assert_eq!(
            run(|b, n| down.rtcp(b, n), &bye),
            Err(DropReason::Unprotected)
        );
        let mut tampered = run(|b, n| up.rtcp(b, n), &sr).unwrap();
        tampered[9] ^= 1;
        assert_eq!(
            run(|b, n| down.rtcp(b, n), &tampered),
            Err(DropReason::AuthFailed)
        );
        assert_eq!(up.counters().rtcp_out, 2);
        assert_eq!(down.counters().rtcp_out, 1);
        assert_eq!(down.counters().drops.get(DropReason::Unprotected), 2);
    }

    #[test]
    fn payload_type_map_rewrites_only_the_type() {
        let now = Instant::now();
        let cfg = DirectionConfig {
            payload_types: PayloadTypeMap::only(&[(101, 96)]),
            ..DirectionConfig::default()
        };
        let k = key(Suite::AesCm128HmacSha1_32, 3);
        let mut up = LanToCloud::new(Suite::AesCm128HmacSha1_32, &k, cfg).unwrap();
        let mut down =
            CloudToLan::new(Suite::AesCm128HmacSha1_32, &k, DirectionConfig::default()).unwrap();
        let p = rtp(0x80 | 101, 9, 9, 9, &[1, 0, 0, 160]);
        let srtp = run(|b, n| up.rtp(now, b, n), &p).unwrap();
        let back = run(|b, n| down.rtp(now, b, n), &srtp).unwrap();
        assert_eq!(back[1], 0x80 | 96, "marker kept, type mapped");
        assert_eq!(&back[2..], &p[2..]);
    }
}

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

fn check_telephone_event(
    cfg: &DirectionConfig,
    counters: &mut DirectionCounters,
    h: &rtp::RtpHeader,
    buf: &[u8],
) -> Result<bool, DropReason> {
    if cfg.telephone_event_pt != Some(h.payload_type) {
        return Ok(false);
    }
    let event = telephone_event::parse(h.payload(buf)).ok_or(DropReason::MalformedTelephoneEvent)?;
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

    /// Turns the RTP packet in `buf[..len]` into SRTP in place; returns the
    /// length to send. A drop is counted under its reason and returned.
    pub fn rtp(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let r = self.rtp_inner(now, buf, len);
        match r {
            Ok(n) => {
                self.counters.rtp_out += 1;
                self.counters.rtp_bytes_out += n as u64;
            }
            Err(reason) => self.counters.drops.bump(reason),
        }
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
        self.stats
            .update(now, h.ssrc, h.sequence, h.timestamp, h.payload_len, !is_event);
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

    /// Turns the SRTP packet in `buf[..len]` into RTP in place; returns the
    /// length to send. Only authenticated packets pass.
    pub fn rtp(&mut self, now: Instant, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        let r = self.rtp_inner(now, buf, len);
        match r {
            Ok(n) => {
                self.counters.rtp_out += 1;
                self.counters.rtp_bytes_out += n as u64;
            }
            Err(reason) => self.counters.drops.bump(reason),
        }
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
        self.stats
            .update(now, h.ssrc, h.sequence, h.timestamp, h.payload_len, !is_event);
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
        let head = buf.get(..len.min(rtcp::RTCP_MIN_SRTCP_HEADER)).ok_or(DropReason::TooLarge)?;
        if head.len() < rtcp::RTCP_MIN_SRTCP_HEADER {
            return Err(DropReason::Truncated);
        }
        if head[0] >> 6 != 2 {
            return Err(DropReason::BadVersion);
        }
        let n = self.srtp.unprotect_rtcp(buf, len)?;
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

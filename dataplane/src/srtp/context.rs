//! The native SRTP engine: per-SSRC index and replay state, and the four
//! packet operations. Behaves like libsrtp with a wildcard SSRC policy (same
//! index estimate, replay rules and bytes on the wire) for up to
//! [`MAX_STREAMS`] sources. Past that, a protecting context refuses new
//! sources (forgetting one would let its indexes, and so its keystream, be
//! used twice), and an unprotecting context recycles its least recently used
//! source (which only forgets that source's replay history).

use super::engine::{Role, SrtpError};
use super::kdf::SessionKeys;
use super::key::{MasterKey, Suite};
use super::replay::{Window, estimate_index};
use super::transform::{AesCm, GCM_TAG, Gcm};
use crate::drops::DropReason;
use crate::rtp;

/// Sources tracked per context. A call's leg carries one SSRC at a time; a
/// few more cover re-INVITEs and a peer that changes SSRC mid-call.
pub const MAX_STREAMS: usize = 4;

/// SRTCP indexes are 31 bits; past this the key must not be used (RFC 3711 §9.2).
const SRTCP_INDEX_MAX: u32 = 0x7fff_ffff;
const SRTCP_E_FLAG: u32 = 0x8000_0000;
const SRTCP_AUTH_TAG: usize = 10;

// One per context, never moved on the packet path; boxing the larger variant
// would only add a pointer chase per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Engine {
    AesCm {
        rtp: AesCm,
        rtcp: AesCm,
        rtp_tag: usize,
    },
    Gcm {
        rtp: Gcm,
        rtcp: Gcm,
    },
}

#[derive(Debug, Clone, Default)]
struct Stream {
    ssrc: u32,
    in_use: bool,
    last_used: u64,
    rtp: Window<{ super::replay::RTP_WINDOW / 64 }>,
    rtcp: Window<{ super::replay::RTCP_WINDOW / 64 }>,
    rtcp_sent: u32,
}

/// What SRTP needs of an RTP header. The version is not checked here: SRTP
/// does not depend on it, and the directions validate packets fully.
struct Header {
    ssrc: u32,
    sequence: u16,
    len: usize,
}

impl Header {
    fn read(buf: &[u8]) -> Result<Self, DropReason> {
        let len = rtp::header_len(buf)?;
        Ok(Self {
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            len,
        })
    }
}

/// SRTP/SRTCP for all SSRCs of one direction of one leg.
pub struct SrtpContext {
    suite: Suite,
    role: Role,
    engine: Engine,
    streams: [Stream; MAX_STREAMS],
    tick: u64,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("suite", &self.suite)
            .field("role", &self.role)
            .field("streams", &self.streams.iter().filter(|s| s.in_use).count())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Creates a context for `suite` keyed with `key` (session keys are
    /// derived here, once).
    pub fn new(suite: Suite, key: &MasterKey, role: Role) -> Result<Self, SrtpError> {
        let bytes = key.as_bytes();
        let mut master = [0u8; 16];
        master.copy_from_slice(&bytes[..16]);
        let salt = &bytes[16..suite.master_len()];
        let salt_len = suite.master_salt_len();
        let rtp_keys = SessionKeys::derive(&master, salt, salt_len, false);
        let rtcp_keys = SessionKeys::derive(&master, salt, salt_len, true);
        zeroize::Zeroize::zeroize(&mut master);
        let engine = match suite {
            Suite::AeadAes128Gcm => Engine::Gcm {
                rtp: Gcm::new(&rtp_keys),
                rtcp: Gcm::new(&rtcp_keys),
            },
            Suite::AesCm128HmacSha1_80 | Suite::AesCm128HmacSha1_32 => Engine::AesCm {
                rtp: AesCm::new(&rtp_keys),
                rtcp: AesCm::new(&rtcp_keys),
                rtp_tag: suite.srtp_tag_len(),
            },
        };
        Ok(Self {
            suite,
            role,
            engine,
            streams: Default::default(),
            tick: 0,
        })
    }

    /// The suite this context runs.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Whether it protects or unprotects.
    pub fn role(&self) -> Role {
        self.role
    }

    fn find(&self, ssrc: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.in_use && s.ssrc == ssrc)
    }

    /// The stream for `ssrc`, created if absent: in a free slot, or, when
    /// unprotecting, in the least recently used one.
    fn stream(&mut self, ssrc: u32) -> Result<usize, DropReason> {
        self.tick += 1;
        let i = match self.find(ssrc) {
            Some(i) => i,
            None => {
                let i = (0..MAX_STREAMS)
                    .min_by_key(|&i| (self.streams[i].in_use, self.streams[i].last_used))
                    .unwrap_or(0);
                if self.streams[i].in_use && self.role == Role::Protect {
                    return Err(DropReason::TooManySources);
                }
                self.streams[i] = Stream {
                    ssrc,
                    in_use: true,
                    ..Stream::default()
                };
                i
            }
        };
        self.streams[i].last_used = self.tick;
        Ok(i)
    }

    /// Protects the RTP packet in `buf[..len]` in place; returns the SRTP length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Protect);
        let tag_len = self.suite.srtp_tag_len();
        if len + tag_len > buf.len() {
            return Err(DropReason::TooLarge);
        }
        let h = Header::read(&buf[..len])?;
        let s = self.stream(h.ssrc)?;
        let window = &mut self.streams[s].rtp;
        let index = estimate_index(window.highest(), h.sequence);
        // As libsrtp without allow_repeat_tx: never reuse an index.
        window.check(index)?;
        window.accept(index);
        let hdr = h.len;
        match &self.engine {
            Engine::AesCm { rtp, .. } => {
                rtp.apply_keystream(h.ssrc, index, &mut buf[hdr..len]);
                let roc = ((index >> 16) as u32).to_be_bytes();
                let tag = rtp.tag(&[&buf[..len], &roc]);
                buf[len..len + tag_len].copy_from_slice(&tag[..tag_len]);
            }
            Engine::Gcm { rtp, .. } => {
                let nonce = rtp.rtp_nonce(h.ssrc, index);
                let (head, rest) = buf.split_at_mut(hdr);
                let tag = rtp.seal(&nonce, head, &mut rest[..len - hdr]);
                buf[len..len + GCM_TAG].copy_from_slice(&tag);
            }
        }
        Ok(len + tag_len)
    }

    /// Unprotects the SRTP packet in `buf[..len]` in place; returns the RTP
    /// length. Replay is checked before, and recorded only after, the tag
    /// verifies; a new SSRC gets state only once it authenticated.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Unprotect);
        let tag_len = self.suite.srtp_tag_len();
        if len > buf.len() {
            return Err(DropReason::TooLarge);
        }
        if len < rtp::RTP_HEADER_LEN + tag_len {
            return Err(DropReason::Truncated);
        }
        let body = len - tag_len;
        let h = Header::read(&buf[..body])?;
        let known = self.find(h.ssrc);
        let highest = known.map_or(0, |i| self.streams[i].rtp.highest());
        let index = estimate_index(highest, h.sequence);
        if let Some(i) = known {
            self.streams[i].rtp.check(index)?;
        }
        let hdr = h.len;
        let authentic = match &self.engine {
            Engine::AesCm { rtp, rtp_tag, .. } => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                let ok = rtp.verify(&[&buf[..body], &roc], &buf[body..body + rtp_tag]);
                if ok {
                    rtp.apply_keystream(h.ssrc, index, &mut buf[hdr..body]);
                }
                ok
            }
            Engine::Gcm { rtp, .. } => {
                let nonce = rtp.rtp_nonce(h.ssrc, index);
                let (head, rest) = buf.split_at_mut(hdr);
                let (data, tag) = rest[..len - hdr].split_at_mut(body - hdr);
                rtp.open(&nonce, head, data, tag)
            }
        };
        if !authentic {
            return Err(DropReason::AuthFailed);
        }
        let s = self.stream(h.ssrc)?;
        self.streams[s].rtp.accept(index);
        Ok(body)
    }

    /// Protects the compound RTCP in `buf[..len]`; returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Protect);
        if len + self.suite.srtcp_overhead() > buf.len() {
            return Err(DropReason::TooLarge);
        }
        if len < 8 {
            return Err(DropReason::Truncated);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let s = self.stream(ssrc)?;
        let stream = &mut self.streams[s];
        if stream.rtcp_sent >= SRTCP_INDEX_MAX {
            return Err(DropReason::SrtpError);
        }
        stream.rtcp_sent += 1;
        let index = stream.rtcp_sent;
        let word = (SRTCP_E_FLAG | index).to_be_bytes();
        match &self.engine {
            Engine::AesCm { rtcp, .. } => {
                rtcp.apply_keystream(ssrc, index as u64, &mut buf[8..len]);
                buf[len..len + 4].copy_from_slice(&word);
                let tag = rtcp.tag(&[&buf[..len + 4]]);
                buf[len + 4..len + 4 + SRTCP_AUTH_TAG].copy_from_slice(&tag[..SRTCP_AUTH_TAG]);
                Ok(len + 4 + SRTCP_AUTH_TAG)
            }
            Engine::Gcm { rtcp, .. } => {
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&word);
                let nonce = rtcp.rtcp_nonce(ssrc, index);
                let tag = rtcp.seal(&nonce, &aad, &mut buf[8..len]);
                buf[len..len + GCM_TAG].copy_from_slice(&tag);
                buf[len + GCM_TAG..len + GCM_TAG + 4].copy_from_slice(&word);
                Ok(len + GCM_TAG + 4)
            }
        }
    }

    /// Unprotects the SRTCP in `buf[..len]`; returns the RTCP length.
    /// Unencrypted SRTCP (E = 0) is authenticated and passed on.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Unprotect);
        if len > buf.len() {
            return Err(DropReason::TooLarge);
        }
        let overhead = self.suite.srtcp_overhead();
        if len < 8 + overhead {
            return Err(DropReason::Truncated);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let word_at = match self.engine {
            Engine::AesCm { .. } => len - SRTCP_AUTH_TAG - 4,
            Engine::Gcm { .. } => len - 4,
        };
        let word = u32::from_be_bytes([
            buf[word_at],
            buf[word_at + 1],
            buf[word_at + 2],
            buf[word_at + 3],
        ]);
        let encrypted = word & SRTCP_E_FLAG != 0;
        let index = word & SRTCP_INDEX_MAX;
        let known = self.find(ssrc);
        if let Some(i) = known {
            self.streams[i].rtcp.check(index as u64)?;
        }
        let body = len - overhead;
        let authentic = match &self.engine {
            Engine::AesCm { rtcp, .. } => {
                let ok = rtcp.verify(
                    &[&buf[..len - SRTCP_AUTH_TAG]],
                    &buf[len - SRTCP_AUTH_TAG..len],
                );
                if ok && encrypted {
                    rtcp.apply_keystream(ssrc, index as u64, &mut buf[8..body]);
                }
                ok
            }
            Engine::Gcm { rtcp, .. } => {
                let nonce = rtcp.rtcp_nonce(ssrc, index);
                let mut tag = [0u8; GCM_TAG];
                tag.copy_from_slice(&buf[body..body + GCM_TAG]);
                if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&buf[..8]);
                    aad[8..].copy_from_slice(&word.to_be_bytes());
                    rtcp.open(&nonce, &aad, &mut buf[8..body], &tag)
                } else {
                    // RFC 7714 §9.3: the whole packet and the index are the
                    // AAD. Moving the index over the tag makes them one slice.
                    buf[body..body + 4].copy_from_slice(&word.to_be_bytes());
                    rtcp.open(&nonce, &buf[..body + 4], &mut [], &tag)
                }
            }
        };
        if !authentic {
            return Err(DropReason::AuthFailed);
        }
        let s = self.stream(ssrc)?;
        self.streams[s].rtcp.accept(index as u64);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[7; 40]);
        p.resize(p.len() + 64, 0);
        p
    }

    fn key() -> MasterKey {
        MasterKey::from_bytes(Suite::AesCm128HmacSha1_80, &[3; 30]).unwrap()
    }

    #[test]
    fn protecting_refuses_a_source_past_the_limit_instead_of_forgetting_one() {
        let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key(), Role::Protect).unwrap();
        for ssrc in 0..MAX_STREAMS as u32 {
            let mut p = rtp(ssrc, 1);
            assert!(tx.protect_rtp(&mut p, 52).is_ok());
        }
        let mut p = rtp(99, 1);
        assert_eq!(tx.protect_rtp(&mut p, 52), Err(DropReason::TooManySources));
        // Known sources carry on, and never reuse an index.
        let mut p = rtp(0, 2);
        assert!(tx.protect_rtp(&mut p, 52).is_ok());
        let mut p = rtp(0, 2);
        assert_eq!(tx.protect_rtp(&mut p, 52), Err(DropReason::Replay));
    }

    #[test]
    fn unprotecting_recycles_the_least_recently_used_source() {
        let mut tx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key(), Role::Protect).unwrap();
        let mut rx = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key(), Role::Unprotect).unwrap();
        let mut protected = Vec::new();
        for ssrc in 0..MAX_STREAMS as u32 {
            let mut p = rtp(ssrc, 1);
            let n = tx.protect_rtp(&mut p, 52).unwrap();
            protected.push((p, n));
        }
        for (p, n) in &protected {
            assert!(rx.unprotect_rtp(&mut p.clone(), *n).is_ok());
        }
        let mut tx5 = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key(), Role::Protect).unwrap();
        let mut p = rtp(99, 1);
        let n = tx5.protect_rtp(&mut p, 52).unwrap();
        assert!(
            rx.unprotect_rtp(&mut p, n).is_ok(),
            "a fifth source is accepted"
        );
        assert_eq!(rx.streams.iter().filter(|s| s.in_use).count(), MAX_STREAMS);
        assert!(rx.find(0).is_none(), "the oldest source was recycled");
        let (p, n) = &protected[1];
        assert_eq!(
            rx.unprotect_rtp(&mut p.clone(), *n),
            Err(DropReason::Replay)
        );
    }
}

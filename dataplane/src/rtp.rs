//! RTP packet views over borrowed buffers (RFC 3550 §5.1, RFC 8285 header
//! extensions). Validates structure; never allocates; never panics on bytes.
//! Owns no state: streams live in `stats` and `continuity`.

use crate::drops::DropReason;

/// Fixed RTP header length.
pub const RTP_HEADER_LEN: usize = 12;

/// Where a header extension sits in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension {
    /// The 16-bit "defined by profile" field (0xBEDE for one-byte RFC 8285).
    pub profile: u16,
    /// Offset of the extension body (after its 4-byte header).
    pub body_offset: usize,
    /// Length of the extension body in bytes.
    pub body_len: usize,
}

/// A validated RTP header: field values plus where the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Number of CSRCs.
    pub csrc_count: u8,
    /// Header extension, if the X bit is set.
    pub extension: Option<Extension>,
    /// Offset of the payload (after CSRCs and extension).
    pub payload_offset: usize,
    /// Payload length, padding excluded.
    pub payload_len: usize,
    /// Padding bytes at the end, counting the count byte (0 if P is clear).
    pub padding_len: usize,
}

/// Parses and validates the header only: version, CSRC list and extension
/// bounds against `buf.len()`, no padding. Use on SRTP before unprotecting,
/// where the padding is still encrypted; `buf` then excludes the tag.
pub fn parse_header(buf: &[u8]) -> Result<RtpHeader, DropReason> {
    if buf.len() < RTP_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let b0 = buf[0];
    if b0 >> 6 != 2 {
        return Err(DropReason::BadVersion);
    }
    let csrc_count = b0 & 0x0f;
    let mut offset = RTP_HEADER_LEN + 4 * csrc_count as usize;
    if offset > buf.len() {
        return Err(DropReason::Truncated);
    }
    let extension = if b0 & 0x10 != 0 {
        let Some(ext_hdr) = buf.get(offset..offset + 4) else {
            return Err(DropReason::ExtensionOverrun);
        };
        let profile = u16::from_be_bytes([ext_hdr[0], ext_hdr[1]]);
        let body_len = 4 * u16::from_be_bytes([ext_hdr[2], ext_hdr[3]]) as usize;
        let body_offset = offset + 4;
        if body_offset + body_len > buf.len() {
            return Err(DropReason::ExtensionOverrun);
        }
        offset = body_offset + body_len;
        Some(Extension {
            profile,
            body_offset,
            body_len,
        })
    } else {
        None
    };
    Ok(RtpHeader {
        marker: buf[1] & 0x80 != 0,
        payload_type: buf[1] & 0x7f,
        sequence: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        csrc_count,
        extension,
        payload_offset: offset,
        payload_len: buf.len() - offset,
        padding_len: 0,
    })
}

/// Length of the header (fixed part, CSRCs, extension) of the packet in
/// `buf`, checked against `buf.len()`; the version is not looked at. This is
/// all SRTP needs to know of a packet.
pub fn header_len(buf: &[u8]) -> Result<usize, DropReason> {
    if buf.len() < RTP_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let mut len = RTP_HEADER_LEN + 4 * (buf[0] & 0x0f) as usize;
    if len > buf.len() {
        return Err(DropReason::Truncated);
    }
    if buf[0] & 0x10 != 0 {
        let Some(ext) = buf.get(len..len + 4) else {
            return Err(DropReason::ExtensionOverrun);
        };
        len += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
        if len > buf.len() {
            return Err(DropReason::ExtensionOverrun);
        }
    }
    Ok(len)
}

/// Parses and validates a whole plain RTP packet, padding included.
pub fn parse(buf: &[u8]) -> Result<RtpHeader, DropReason> {
    let mut h = parse_header(buf)?;
    if buf[0] & 0x20 != 0 {
        // RFC 3550 §5.1: the last octet counts the padding, itself included.
        let pad = buf[buf.len() - 1] as usize;
        if pad == 0 || pad > h.payload_len {
            return Err(DropReason::BadPadding);
        }
        h.padding_len = pad;
        h.payload_len -= pad;
    }
    Ok(h)
}

impl RtpHeader {
    /// The payload bytes of `buf` (the buffer this header was parsed from).
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.payload_offset..self.payload_offset + self.payload_len]
    }

    /// The CSRC identifiers of `buf`.
    pub fn csrcs<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = u32> + 'a {
        buf[RTP_HEADER_LEN..RTP_HEADER_LEN + 4 * self.csrc_count as usize]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Writes the sequence number of the RTP packet in `buf`.
#[inline]
pub fn set_sequence(buf: &mut [u8], seq: u16) {
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
}

/// Writes the timestamp of the RTP packet in `buf`.
#[inline]
pub fn set_timestamp(buf: &mut [u8], ts: u32) {
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
}

/// Writes the SSRC of the RTP packet in `buf`.
#[inline]
pub fn set_ssrc(buf: &mut [u8], ssrc: u32) {
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Writes the payload type, keeping the marker bit.
#[inline]
pub fn set_payload_type(buf: &mut [u8], pt: u8) {
    buf[1] = (buf[1] & 0x80) | (pt & 0x7f);
}

/// RFC 5761 §4: on a multiplexed port, a second octet of 192..=223 (payload
/// type 64..=95 with the marker set) marks RTCP.
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(b0: u8, extra: &[u8]) -> Vec<u8> {
        let mut p = vec![b0, 0x80 | 8, 0x12, 0x34, 0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef];
        p.extend_from_slice(extra);
        p
    }

    #[test]
    fn parses_plain_header() {
        let p = packet(0x80, &[1, 2, 3]);
        let h = parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(h.payload_type, 8);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 256);
        assert_eq!(h.ssrc, 0xdeadbeef);
        assert_eq!(h.payload(&p), &[1, 2, 3]);
    }

    #[test]
    fn csrcs_extension_and_padding() {
        // 2 CSRCs, extension with one word, payload of 2, padding of 2.
        let mut extra = vec![0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0];
        extra.extend_from_slice(&[9, 9, 0, 2]);
        let p = packet(0x80 | 0x20 | 0x10 | 2, &extra);
        let h = parse(&p).unwrap();
        assert_eq!(h.csrcs(&p).collect::<Vec<_>>(), vec![1, 2]);
        let ext = h.extension.unwrap();
        assert_eq!((ext.profile, ext.body_len), (0xbede, 4));
        assert_eq!(h.payload(&p), &[9, 9]);
        assert_eq!(h.padding_len, 2);
    }

    #[test]
    fn rejects_bad_packets_with_named_reasons() {
        assert_eq!(parse(&[0x80; 11]), Err(DropReason::Truncated));
        assert_eq!(parse(&packet(0x40, &[])), Err(DropReason::BadVersion));
        assert_eq!(parse(&packet(0x8f, &[0; 8])), Err(DropReason::Truncated));
        assert_eq!(
            parse(&packet(0x90, &[0xbe, 0xde])),
            Err(DropReason::ExtensionOverrun)
        );
        assert_eq!(
            parse(&packet(0x90, &[0xbe, 0xde, 0, 2, 0, 0, 0, 0])),
            Err(DropReason::ExtensionOverrun)
        );
        assert_eq!(parse(&packet(0xa0, &[1, 0])), Err(DropReason::BadPadding));
        assert_eq!(parse(&packet(0xa0, &[1, 9])), Err(DropReason::BadPadding));
        assert_eq!(parse(&packet(0xa0, &[])), Err(DropReason::BadPadding));
    }

    #[test]
    fn setters_touch_only_their_field() {
        let mut p = packet(0x80, &[7]);
        set_sequence(&mut p, 1);
        set_timestamp(&mut p, 2);
        set_ssrc(&mut p, 3);
        set_payload_type(&mut p, 0);
        let h = parse(&p).unwrap();
        assert_eq!(
            (h.sequence, h.timestamp, h.ssrc, h.payload_type),
            (1, 2, 3, 0)
        );
        assert!(h.marker);
        assert_eq!(h.payload(&p), &[7]);
    }

    #[test]
    fn rtcp_mux_demultiplexing() {
        assert!(looks_like_rtcp(&[0x80, 200]));
        assert!(!looks_like_rtcp(&[0x80, 0x80 | 8]));
        assert!(!looks_like_rtcp(&[0x80]));
    }
}

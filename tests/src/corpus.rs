//! Packet corpora for interop: every feature the issue names, in one stream.

/// Payload type of telephone-events in the corpus.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// One RTP packet description.
#[derive(Debug, Clone)]
pub struct Rtp {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub pt: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// CSRC list.
    pub csrcs: Vec<u32>,
    /// One-byte header extension elements, already encoded (RFC 8285).
    pub extension: Option<Vec<u8>>,
    /// Payload.
    pub payload: Vec<u8>,
    /// Padding bytes (0 = none).
    pub padding: u8,
}

impl Rtp {
    /// Encodes the packet.
    pub fn encode(&self) -> Vec<u8> {
        let mut b0 = 0x80 | self.csrcs.len() as u8;
        if self.padding > 0 {
            b0 |= 0x20;
        }
        if self.extension.is_some() {
            b0 |= 0x10;
        }
        let mut p = vec![b0, (self.marker as u8) << 7 | self.pt];
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&self.ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrcs {
            p.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(ext) = &self.extension {
            let mut body = ext.clone();
            while body.len() % 4 != 0 {
                body.push(0);
            }
            p.extend_from_slice(&[0xbe, 0xde]);
            p.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(&body);
        }
        p.extend_from_slice(&self.payload);
        if self.padding > 0 {
            p.extend(std::iter::repeat_n(0, self.padding as usize - 1));
            p.push(self.padding);
        }
        p
    }
}

/// `n` packets starting at sequence 65,500 (so the sequence wraps), with an
/// SSRC change half-way, CSRCs, header extensions, padding and RFC 4733
/// telephone-events sprinkled through, PCMU and PCMA payloads of varying
/// content.
pub fn rtp_stream(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    let (mut ssrc, mut seq, mut ts) = (0x1122_3344u32, 65_500u16, 90_000u32);
    for i in 0..n {
        if i == n / 2 {
            // New source, as after a re-INVITE to another phone.
            ssrc = 0x5566_7788;
            seq = 65_300;
            ts = 1_000_000;
        }
        let event_block = i % 50;
        let mut p = Rtp {
            marker: i % 100 == 0,
            pt: if (i / 7) % 2 == 0 { 0 } else { 8 },
            seq,
            ts,
            ssrc,
            csrcs: Vec::new(),
            extension: None,
            payload: (0..160).map(|k| (i * 7 + k) as u8).collect(),
            padding: 0,
        };
        if (20..26).contains(&event_block) {
            // A DTMF digit: same timestamp, growing duration, end bit last.
            let dur = (event_block - 19) as u16 * 160;
            let end = if event_block == 25 { 0x80 } else { 0 };
            p.pt = TELEPHONE_EVENT_PT;
            p.marker = event_block == 20;
            p.payload = vec![(i / 50 % 16) as u8, end | 10, (dur >> 8) as u8, dur as u8];
        }
        // Telephone-events go without CSRCs, extensions or padding: rtpengine
        // re-encodes the DTMF packets it recognises (dropping CSRCs and
        // extensions) and discards padded ones, which would hide SRTP faults
        // behind its DTMF handling.
        let is_event = p.pt == TELEPHONE_EVENT_PT;
        if i % 5 == 1 && !is_event {
            p.csrcs = vec![0xc0de_0001, 0xc0de_0000 + i as u32];
        }
        if i % 3 == 0 && !is_event {
            // RFC 6464 audio level (id 1) and a 3-byte element (id 2).
            p.extension = Some(vec![0x10, 0x80 | (i % 127) as u8, 0x22, 1, 2, i as u8]);
        }
        if i % 11 == 4 && !is_event {
            p.padding = 1 + (i % 17) as u8;
        }
        out.push(p.encode());
        seq = seq.wrapping_add(1);
        if !(20..25).contains(&event_block) {
            ts = ts.wrapping_add(160);
        }
    }
    out
}

/// `n` compound RTCP packets: SR+SDES, RR+SDES, BYE, APP and padded ones,
/// from the two sources of [`rtp_stream`].
pub fn rtcp_stream(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let ssrc: u32 = if i < n / 2 { 0x1122_3344 } else { 0x5566_7788 };
            let mut p = Vec::new();
            if i % 2 == 0 {
                p.extend_from_slice(&[0x81, 200, 0, 12]);
                p.extend_from_slice(&ssrc.to_be_bytes());
                p.extend_from_slice(&[0xe7, 0, 0, i as u8, 0x10, 0x20, 0x30, 0x40]);
                p.extend_from_slice(&(90_000 + 800 * i as u32).to_be_bytes());
                p.extend_from_slice(&(5 * i as u32).to_be_bytes());
                p.extend_from_slice(&(800 * i as u32).to_be_bytes());
            } else {
                p.extend_from_slice(&[0x81, 201, 0, 7]);
                p.extend_from_slice(&ssrc.to_be_bytes());
            }
            // One report block about the far end's stream.
            p.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
            p.extend_from_slice(&[0x01, 0, 0, 3, 0, 1, 0, i as u8, 0, 0, 0, 20]);
            p.extend_from_slice(&[0; 8]);
            // SDES CNAME "pbx-<i>".
            let cname = format!("pbx-{i:03}");
            let mut chunk = ssrc.to_be_bytes().to_vec();
            chunk.extend_from_slice(&[1, cname.len() as u8]);
            chunk.extend_from_slice(cname.as_bytes());
            chunk.push(0);
            while chunk.len() % 4 != 0 {
                chunk.push(0);
            }
            p.extend_from_slice(&[0x81, 202]);
            p.extend_from_slice(&((chunk.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(&chunk);
            match i % 4 {
                1 => {
                    // APP "PBXL" with 4 bytes of data.
                    p.extend_from_slice(&[0x80, 204, 0, 3]);
                    p.extend_from_slice(&ssrc.to_be_bytes());
                    p.extend_from_slice(b"PBXL");
                    p.extend_from_slice(&(i as u32).to_be_bytes());
                }
                2 => {
                    // XR (RFC 3611) with a VoIP metrics block on the far
                    // end's stream: loss, discard, delays, R, MOS, buffer.
                    p.extend_from_slice(&[0x80, 207, 0, 10]);
                    p.extend_from_slice(&ssrc.to_be_bytes());
                    p.extend_from_slice(&[7, 0, 0, 8]);
                    p.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
                    p.extend_from_slice(&[3, 5, 0, 0, 0, 0, 0, 0, 0, 20, 0, 40]);
                    p.extend_from_slice(&[127, 127, 127, 127, 90, 127, 42, 41]);
                    p.extend_from_slice(&[0, 0, 0, 40, 0, 60, 0, 80]);
                }
                3 => {
                    // Padded BYE at the end of the compound.
                    p.extend_from_slice(&[0xa1, 203, 0, 2]);
                    p.extend_from_slice(&ssrc.to_be_bytes());
                    p.extend_from_slice(&[0, 0, 0, 4]);
                }
                _ => {}
            }
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbxlink_dataplane::{rtcp, rtp};

    #[test]
    fn corpus_is_valid_and_covers_every_feature() {
        let s = rtp_stream(1000);
        let hs: Vec<_> = s.iter().map(|p| rtp::parse(p).unwrap()).collect();
        assert!(hs.iter().any(|h| h.csrc_count > 0));
        assert!(hs.iter().any(|h| h.extension.is_some()));
        assert!(hs.iter().any(|h| h.padding_len > 0));
        assert!(hs.iter().any(|h| h.payload_type == TELEPHONE_EVENT_PT));
        assert!(hs.iter().any(|h| h.sequence == 0), "wraps");
        assert_eq!(hs[0].sequence, 65_500);
        assert_ne!(hs[0].ssrc, hs[999].ssrc);
        for p in rtcp_stream(40) {
            rtcp::validate(&p).unwrap();
        }
    }
}

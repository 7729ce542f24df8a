//! HEP version 3, the Homer Encapsulation Protocol (sipcapture.org's
//! HEP3 specification): a copy of a packet a capture agent saw, with its
//! addresses, ports, time and kind, sent to a collector (Homer, heplify
//! server) over UDP. A HEP3 packet is the four bytes `HEP3`, its total
//! length (16 bits, network order), then chunks: vendor 16 bits (0:
//! generic), type 16 bits, length 16 bits (the chunk's six header bytes
//! included), value.
//!
//! Sans-IO: [`encode`] writes a [`Packet`] into a buffer, [`decode`]
//! reads one back (the tests' and the fuzz target's; a collector's own
//! decoder, e.g. tshark's `hep` dissector, is the judge in the
//! end-to-end test).

use std::net::{IpAddr, SocketAddr};

/// Protocol types (chunk 0x000b) this crate sends.
pub mod proto {
    /// A SIP message.
    pub const SIP: u8 = 0x01;
    /// An RTCP report as Homer's JSON.
    pub const RTCP_JSON: u8 = 0x05;
}

/// Generic chunk types (vendor 0).
mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const IPV4_SRC: u16 = 0x0003;
    pub const IPV4_DST: u16 = 0x0004;
    pub const IPV6_SRC: u16 = 0x0005;
    pub const IPV6_DST: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TIME_SECS: u16 = 0x0009;
    pub const TIME_USECS: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
    pub const CORRELATION: u16 = 0x0011;
}

/// The transport the copied packet went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP (17).
    Udp,
    /// TCP, TLS included (6).
    Tcp,
}

impl Transport {
    fn number(self) -> u8 {
        match self {
            Transport::Udp => 17,
            Transport::Tcp => 6,
        }
    }
}

/// One copy for the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Where it came from.
    pub src: SocketAddr,
    /// Where it went.
    pub dst: SocketAddr,
    /// Over what.
    pub transport: Transport,
    /// When it was seen: seconds and microseconds since the Unix epoch.
    pub secs: u32,
    /// The microseconds past `secs`.
    pub usecs: u32,
    /// What it is ([`proto`]).
    pub proto_type: u8,
    /// The capture agent's number.
    pub capture_id: u32,
    /// The collector's password, when it wants one.
    pub auth_key: Option<&'a str>,
    /// What ties the copies of one call together (for a B2BUA, one id
    /// for both legs' messages and its media reports).
    pub correlation: Option<&'a str>,
    /// The copied bytes.
    pub payload: &'a [u8],
}

/// Why a packet cannot be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The source and destination are of different families.
    #[error("the source and destination are not of one address family")]
    MixedFamilies,
    /// The packet would pass HEP3's 65,535 bytes.
    #[error("the packet would be {0} bytes, past HEP3's 65535")]
    TooLong(usize),
    /// Not `HEP3`.
    #[error("not a HEP3 packet")]
    NotHep3,
    /// Its length or a chunk's does not fit.
    #[error("truncated or inconsistent at byte {0}")]
    Truncated(usize),
    /// A chunk the packet must have is missing or malformed.
    #[error("chunk 0x{0:04x} missing or malformed")]
    Chunk(u16),
}

fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((value.len() + 6) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Writes `p` as one HEP3 packet at the end of `out` (cleared first).
pub fn encode(p: &Packet<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    out.extend_from_slice(b"HEP3\0\0");
    match (p.src.ip(), p.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(out, chunk::IP_FAMILY, &[2]);
            put(out, chunk::IP_PROTO, &[p.transport.number()]);
            put(out, chunk::IPV4_SRC, &s.octets());
            put(out, chunk::IPV4_DST, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put(out, chunk::IP_FAMILY, &[10]);
            put(out, chunk::IP_PROTO, &[p.transport.number()]);
            put(out, chunk::IPV6_SRC, &s.octets());
            put(out, chunk::IPV6_DST, &d.octets());
        }
        _ => return Err(Error::MixedFamilies),
    }
    put(out, chunk::SRC_PORT, &p.src.port().to_be_bytes());
    put(out, chunk::DST_PORT, &p.dst.port().to_be_bytes());
    put(out, chunk::TIME_SECS, &p.secs.to_be_bytes());
    put(out, chunk::TIME_USECS, &p.usecs.to_be_bytes());
    put(out, chunk::PROTO_TYPE, &[p.proto_type]);
    put(out, chunk::CAPTURE_ID, &p.capture_id.to_be_bytes());
    if let Some(key) = p.auth_key {
        put(out, chunk::AUTH_KEY, key.as_bytes());
    }
    if let Some(id) = p.correlation {
        put(out, chunk::CORRELATION, id.as_bytes());
    }
    // Each chunk's length is 16 bits too: the payload's bounds the whole.
    let total = out.len() + 6 + p.payload.len();
    if total > usize::from(u16::MAX) {
        return Err(Error::TooLong(total));
    }
    put(out, chunk::PAYLOAD, p.payload);
    out[4..6].copy_from_slice(&(total as u16).to_be_bytes());
    Ok(())
}

/// A HEP3 packet read back: the generic chunks [`encode`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// IP protocol number (17 UDP, 6 TCP).
    pub ip_proto: u8,
    /// Seconds and microseconds.
    pub secs: u32,
    /// Microseconds.
    pub usecs: u32,
    /// [`proto`].
    pub proto_type: u8,
    /// The capture agent's number.
    pub capture_id: u32,
    /// The collector's password, if any.
    pub auth_key: Option<String>,
    /// The correlation id, if any.
    pub correlation: Option<String>,
    /// The copied bytes.
    pub payload: Vec<u8>,
}

fn need<T>(o: Option<T>, kind: u16) -> Result<T, Error> {
    o.ok_or(Error::Chunk(kind))
}

fn be16(v: &[u8], kind: u16) -> Result<u16, Error> {
    Ok(u16::from_be_bytes(
        v.try_into().map_err(|_| Error::Chunk(kind))?,
    ))
}

fn be32(v: &[u8], kind: u16) -> Result<u32, Error> {
    Ok(u32::from_be_bytes(
        v.try_into().map_err(|_| Error::Chunk(kind))?,
    ))
}

/// Reads one HEP3 packet; chunks of other vendors or types are skipped.
pub fn decode(b: &[u8]) -> Result<Decoded, Error> {
    if b.len() < 6 || &b[..4] != b"HEP3" {
        return Err(Error::NotHep3);
    }
    let total = usize::from(u16::from_be_bytes([b[4], b[5]]));
    if total < 6 || total > b.len() {
        return Err(Error::Truncated(4));
    }
    let mut at = 6;
    let (mut src_ip, mut dst_ip): (Option<IpAddr>, Option<IpAddr>) = (None, None);
    let (mut sport, mut dport, mut ip_proto) = (None, None, None);
    let (mut secs, mut usecs, mut proto_type, mut capture_id) = (None, None, None, None);
    let (mut auth_key, mut correlation, mut payload) = (None, None, None);
    while at < total {
        let h = b.get(at..at + 6).ok_or(Error::Truncated(at))?;
        let vendor = u16::from_be_bytes([h[0], h[1]]);
        let kind = u16::from_be_bytes([h[2], h[3]]);
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        if len < 6 || at + len > total {
            return Err(Error::Truncated(at));
        }
        let v = &b[at + 6..at + len];
        at += len;
        if vendor != 0 {
            continue;
        }
        let text = |v: &[u8]| String::from_utf8(v.to_vec()).map_err(|_| Error::Chunk(kind));
        match kind {
            chunk::IP_PROTO => ip_proto = Some(*v.first().ok_or(Error::Chunk(kind))?),
            chunk::IPV4_SRC | chunk::IPV4_DST => {
                let a: [u8; 4] = v.try_into().map_err(|_| Error::Chunk(kind))?;
                let ip = Some(IpAddr::from(a));
                if kind == chunk::IPV4_SRC {
                    src_ip = ip
                } else {
                    dst_ip = ip
                }
            }
            chunk::IPV6_SRC | chunk::IPV6_DST => {
                let a: [u8; 16] = v.try_into().map_err(|_| Error::Chunk(kind))?;
                let ip = Some(IpAddr::from(a));
                if kind == chunk::IPV6_SRC {
                    src_ip = ip
                } else {
                    dst_ip = ip
                }
            }
            chunk::SRC_PORT => sport = Some(be16(v, kind)?),
            chunk::DST_PORT => dport = Some(be16(v, kind)?),
            chunk::TIME_SECS => secs = Some(be32(v, kind)?),
            chunk::TIME_USECS => usecs = Some(be32(v, kind)?),
            chunk::PROTO_TYPE => proto_type = Some(*v.first().ok_or(Error::Chunk(kind))?),
            chunk::CAPTURE_ID => capture_id = Some(be32(v, kind)?),
            chunk::AUTH_KEY => auth_key = Some(text(v)?),
            chunk::CORRELATION => correlation = Some(text(v)?),
            chunk::PAYLOAD => payload = Some(v.to_vec()),
            _ => {}
        }
    }
    Ok(Decoded {
        src: SocketAddr::new(
            need(src_ip, chunk::IPV4_SRC)?,
            need(sport, chunk::SRC_PORT)?,
        ),
        dst: SocketAddr::new(
            need(dst_ip, chunk::IPV4_DST)?,
            need(dport, chunk::DST_PORT)?,
        ),
        ip_proto: need(ip_proto, chunk::IP_PROTO)?,
        secs: need(secs, chunk::TIME_SECS)?,
        usecs: usecs.unwrap_or(0),
        proto_type: need(proto_type, chunk::PROTO_TYPE)?,
        capture_id: capture_id.unwrap_or(0),
        auth_key,
        correlation,
        payload: need(payload, chunk::PAYLOAD)?,
    })
}

/// The Call-ID of a SIP message (its `Call-ID` or compact `i` header),
/// by a scan of its head: what a capture correlates on.
pub fn sip_call_id(msg: &[u8]) -> Option<&str> {
    let head = msg
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(msg, |end| &msg[..end]);
    head.split(|&c| c == b'\n').skip(1).find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim())
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:201@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2\r\ni: abc@pbx\r\nCSeq: 1 INVITE\r\n\r\nv=0\r\n";

    fn packet(src: &str, dst: &str) -> Packet<'static> {
        Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            transport: Transport::Udp,
            secs: 1_765_000_000,
            usecs: 123_456,
            proto_type: proto::SIP,
            capture_id: 2001,
            auth_key: None,
            correlation: Some("abc@pbx"),
            payload: INVITE,
        }
    }

    #[test]
    fn a_packet_reads_back_as_written() {
        let mut out = Vec::new();
        for (s, d) in [
            ("10.0.0.2:5060", "10.0.0.1:5080"),
            ("[2001:db8::2]:5061", "[2001:db8::1]:40000"),
        ] {
            let p = packet(s, d);
            encode(&p, &mut out).unwrap();
            assert_eq!(&out[..4], b"HEP3");
            assert_eq!(usize::from(u16::from_be_bytes([out[4], out[5]])), out.len());
            let back = decode(&out).unwrap();
            assert_eq!((back.src, back.dst), (p.src, p.dst));
            assert_eq!(
                (back.ip_proto, back.proto_type, back.capture_id),
                (17, 1, 2001)
            );
            assert_eq!((back.secs, back.usecs), (1_765_000_000, 123_456));
            assert_eq!(back.correlation.as_deref(), Some("abc@pbx"));
            assert_eq!(back.payload, INVITE);
        }
    }

    #[test]
    fn the_wire_form_is_the_specifications() {
        let mut out = Vec::new();
        encode(&packet("10.0.0.2:5060", "10.0.0.1:5080"), &mut out).unwrap();
        // HEP3, length, then chunk 1 (vendor 0, type 1, length 7): IPv4.
        assert_eq!(&out[6..13], &[0, 0, 0, 1, 0, 7, 2]);
        // Chunk 2: UDP.
        assert_eq!(&out[13..20], &[0, 0, 0, 2, 0, 7, 17]);
        // Chunk 3: 10.0.0.2.
        assert_eq!(&out[20..30], &[0, 0, 0, 3, 0, 10, 10, 0, 0, 2]);
    }

    #[test]
    fn nonsense_is_refused_not_misread() {
        let mut out = Vec::new();
        encode(&packet("10.0.0.2:5060", "10.0.0.1:5080"), &mut out).unwrap();
        assert_eq!(decode(b"HEP2\0\x06"), Err(Error::NotHep3));
        assert!(decode(&out[..out.len() - 1]).is_err());
        let mut bad = out.clone();
        bad[11] = 3; // the first chunk's length under its header
        assert!(matches!(decode(&bad), Err(Error::Truncated(_))));
        let mixed = Packet {
            dst: "[::1]:5060".parse().unwrap(),
            ..packet("10.0.0.2:5060", "10.0.0.1:5080")
        };
        assert_eq!(encode(&mixed, &mut out), Err(Error::MixedFamilies));
        let big = vec![b'x'; 70_000];
        let long = Packet {
            payload: &big,
            ..packet("10.0.0.2:5060", "10.0.0.1:5080")
        };
        assert!(matches!(encode(&long, &mut out), Err(Error::TooLong(_))));
    }

    #[test]
    fn the_call_id_is_found_by_either_name() {
        assert_eq!(sip_call_id(INVITE), Some("abc@pbx"));
        let long = b"SIP/2.0 200 OK\r\nCALL-ID:  x-1@gw \r\n\r\n";
        assert_eq!(sip_call_id(long), Some("x-1@gw"));
        // Not in the body.
        assert_eq!(
            sip_call_id(b"BYE x SIP/2.0\r\nTo: a\r\n\r\nCall-ID: no\r\n"),
            None
        );
    }
}

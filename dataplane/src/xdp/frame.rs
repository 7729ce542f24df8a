//! Ethernet/IPv4/UDP frames as the AF_XDP fast path sees them: a parser
//! that finds the UDP payload of a received frame (and what a reply needs
//! from it), and a writer that puts the headers of an outgoing datagram in
//! front of its payload, checksums included. Sans-IO and safe; nothing here
//! panics on frame bytes.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Ethernet + IPv4 (no options) + UDP header bytes.
pub const HEADERS: usize = ETH + IP + UDP;
const ETH: usize = 14;
const IP: usize = 20;
const UDP: usize = 8;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const PROTO_UDP: u8 = 17;
const TTL: u8 = 64;

/// A MAC address.
pub type Mac = [u8; 6];

/// What a received frame carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp4 {
    /// Sender's MAC (the next hop back to the sender).
    pub src_mac: Mac,
    /// Our MAC as the sender addressed it.
    pub dst_mac: Mac,
    /// Sender.
    pub src: SocketAddrV4,
    /// Destination (ours).
    pub dst: SocketAddrV4,
    /// Offset of the UDP payload in the frame.
    pub payload: usize,
    /// Payload bytes.
    pub len: usize,
}

/// Parses an Ethernet frame holding one unfragmented IPv4 UDP datagram
/// without IP options, as the XDP program lets through. `None` for
/// anything else: a bad length, a checksum the sender did set and that
/// does not match is left to the relay (SRTP authenticates; RTP does not
/// need it), but lengths must agree.
pub fn parse(frame: &[u8]) -> Option<Udp4> {
    if frame.len() < HEADERS || frame[12..14] != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = &frame[ETH..];
    if ip[0] != 0x45 || ip[9] != PROTO_UDP || ip[6] & 0x3f != 0 || ip[7] != 0 {
        return None;
    }
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let udp = &ip[IP..];
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    if total < IP + UDP || ETH + total > frame.len() || udp_len != total - IP {
        return None;
    }
    let mac = |at: usize| -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&frame[at..at + 6]);
        m
    };
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some(Udp4 {
        dst_mac: mac(0),
        src_mac: mac(6),
        src: SocketAddrV4::new(addr(12), u16::from_be_bytes([udp[0], udp[1]])),
        dst: SocketAddrV4::new(addr(16), u16::from_be_bytes([udp[2], udp[3]])),
        payload: HEADERS,
        len: udp_len - UDP,
    })
}

/// The link and network addresses of one outgoing flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Our MAC.
    pub src_mac: Mac,
    /// The next hop's MAC.
    pub dst_mac: Mac,
    /// Our address and port.
    pub src: SocketAddrV4,
    /// The peer.
    pub dst: SocketAddrV4,
    /// IPv4 TOS byte (DSCP << 2).
    pub tos: u8,
}

/// Writes the headers for a `len`-byte payload that already sits at
/// `frame[HEADERS..HEADERS + len]`. Returns the frame length, or `None`
/// when the payload does not fit the frame or an IPv4 datagram.
pub fn write(frame: &mut [u8], route: &Route, len: usize) -> Option<usize> {
    let total = IP + UDP + len;
    if HEADERS + len > frame.len() || total > u16::MAX as usize {
        return None;
    }
    frame[0..6].copy_from_slice(&route.dst_mac);
    frame[6..12].copy_from_slice(&route.src_mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4);
    let (src, dst) = (route.src.ip().octets(), route.dst.ip().octets());
    {
        let ip = &mut frame[ETH..ETH + IP];
        ip[0] = 0x45;
        ip[1] = route.tos;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        // Identification 0 with Don't Fragment (RFC 6864 §4.1).
        ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
        ip[8] = TTL;
        ip[9] = PROTO_UDP;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let sum = !fold(add(0, ip));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let udp_len = (UDP + len) as u16;
    let udp = &mut frame[ETH + IP..HEADERS + len];
    udp[0..2].copy_from_slice(&route.src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&route.dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    // Pseudo-header (RFC 768): addresses, protocol, UDP length.
    let mut acc = add(0, &src);
    acc = add(acc, &dst);
    acc += PROTO_UDP as u64 + udp_len as u64;
    let mut sum = !fold(add(acc, udp));
    if sum == 0 {
        sum = 0xffff;
    }
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    Some(HEADERS + len)
}

/// One's-complement sum of big-endian 16-bit words (odd byte padded),
/// taken 32 bits at a time and folded later (RFC 1071 §2: the sum is the
/// same for any grouping of the words).
fn add(mut acc: u64, bytes: &[u8]) -> u64 {
    let mut quads = bytes.chunks_exact(4);
    for q in &mut quads {
        acc += u32::from_be_bytes([q[0], q[1], q[2], q[3]]) as u64;
    }
    let mut words = quads.remainder().chunks_exact(2);
    for w in &mut words {
        acc += u16::from_be_bytes([w[0], w[1]]) as u64;
    }
    if let [last] = words.remainder() {
        acc += (*last as u64) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        Route {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: "192.0.2.1:30000".parse().unwrap(),
            dst: "198.51.100.7:40002".parse().unwrap(),
            tos: 46 << 2,
        }
    }

    #[test]
    fn written_frames_parse_back() {
        let mut frame = [0u8; 256];
        frame[HEADERS..HEADERS + 5].copy_from_slice(b"hello");
        let n = write(&mut frame, &route(), 5).unwrap();
        let got = parse(&frame[..n]).unwrap();
        assert_eq!(got.src, route().src);
        assert_eq!(got.dst, route().dst);
        assert_eq!(got.src_mac, route().src_mac);
        assert_eq!(got.dst_mac, route().dst_mac);
        assert_eq!(&frame[got.payload..got.payload + got.len], b"hello");
        // A correct header checksums to zero; so does UDP with its pseudo-header.
        assert_eq!(fold(add(0, &frame[14..34])), 0xffff);
        let mut acc = add(0, &frame[26..34]) + 17 + 13;
        acc = add(acc, &frame[34..n]);
        assert_eq!(fold(acc), 0xffff);
    }

    #[test]
    fn sum_by_quads_matches_sum_by_words() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        for len in [0, 1, 2, 3, 4, 5, 172, 1001] {
            let b = &bytes[..len];
            let mut words = 0u64;
            for w in b.chunks(2) {
                words += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u64;
            }
            assert_eq!(fold(add(0, b)), fold(words), "{len} bytes");
        }
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // The classic example header (Wikipedia "IPv4 header checksum").
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(!fold(add(0, &h)), 0xb861);
    }

    #[test]
    fn other_frames_are_not_ours() {
        let mut frame = [0u8; 64];
        let n = write(&mut frame, &route(), 10).unwrap();
        assert!(parse(&frame[..n - 1]).is_none(), "truncated");
        let mut f = frame;
        f[12] = 0x86;
        assert!(parse(&f[..n]).is_none(), "not IPv4");
        let mut f = frame;
        f[14] = 0x46;
        assert!(parse(&f[..n]).is_none(), "IP options");
        let mut f = frame;
        f[20] = 0x20;
        assert!(parse(&f[..n]).is_none(), "a fragment");
        let mut f = frame;
        f[23] = 6;
        assert!(parse(&f[..n]).is_none(), "TCP");
        let mut f = frame;
        f[39] = 0xff;
        assert!(parse(&f[..n]).is_none(), "UDP length disagrees");
        assert!(write(&mut frame, &route(), 64).is_none(), "does not fit");
    }
}

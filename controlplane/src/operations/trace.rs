//! Call trace (SPEC §4 "trace calls for N seconds then download", §7): for
//! N seconds the gateway copies what crosses its SIP and media ports into
//! a pcap file (link type RAW: IP packets), for Wireshark or `tcpdump -r`:
//!
//! - packets to or from a SIP port (the PBX trunk's, the subscriber
//!   side's, the cloud's SIP-TLS port) whole, up to [`SIP_SNAP`] bytes;
//! - packets to or from a relay port: IP and UDP headers and the RTP
//!   header (12 bytes) only — no voice is kept.
//!
//! It reads from a packet socket (AF_PACKET, every interface; needs
//! CAP_NET_RAW). On loopback the kernel shows each packet twice (sent,
//! then received): a copy identical to one of the last packets seen within
//! [`TWIN_WINDOW`] is left out. Bounded: at most [`MAX_SECONDS`] s,
//! [`MAX_PACKETS`] packets, [`MAX_BYTES`] bytes; the capture stops at
//! whichever comes first and says so.
//!
//! The filter and the pcap writer are plain functions over bytes (tested
//! without a socket); [`capture`] is the thin blocking loop.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest trace.
pub const MAX_SECONDS: u64 = 300;
/// Most packets kept.
pub const MAX_PACKETS: usize = 200_000;
/// Most bytes kept (the pcap's size, about).
pub const MAX_BYTES: usize = 32 << 20;
/// Bytes kept of a SIP packet.
pub const SIP_SNAP: usize = 4096;
/// A packet seen again within this long, byte for byte, is loopback's twin.
pub const TWIN_WINDOW: Duration = Duration::from_millis(5);
/// RTP's fixed header.
const RTP_HEADER: usize = 12;
/// pcap's link type for raw IPv4/IPv6 packets.
const LINKTYPE_RAW: u32 = 101;

/// Which ports are traced.
#[derive(Debug, Clone, Default)]
pub struct TracePorts {
    /// SIP: kept whole.
    pub sip: Vec<u16>,
    /// Relays' ports: headers only.
    pub media: Vec<RangeInclusive<u16>>,
}

/// What a packet is to the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// SIP: this many bytes.
    Sip(usize),
    /// Media: this many bytes (headers).
    Media(usize),
}

/// Whether `packet` (an IP packet) is traced, and how much of it.
pub fn keep(packet: &[u8], ports: &TracePorts) -> Option<Kept> {
    let (proto, l4) = match packet.first()? >> 4 {
        4 => {
            let ihl = usize::from(packet[0] & 0x0f) * 4;
            if ihl < 20 || packet.len() < ihl + 8 {
                return None;
            }
            // Fragments after the first carry no ports.
            let frag = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
            if frag != 0 {
                return None;
            }
            (packet[9], ihl)
        }
        6 => {
            if packet.len() < 48 {
                return None;
            }
            (packet[6], 40)
        }
        _ => return None,
    };
    if proto != 17 && proto != 6 {
        return None;
    }
    let src = u16::from_be_bytes([packet[l4], packet[l4 + 1]]);
    let dst = u16::from_be_bytes([packet[l4 + 2], packet[l4 + 3]]);
    if ports.sip.contains(&src) || ports.sip.contains(&dst) {
        return Some(Kept::Sip(packet.len().min(SIP_SNAP)));
    }
    let media = |p: u16| ports.media.iter().any(|r| r.contains(&p));
    if proto == 17 && (media(src) || media(dst)) {
        return Some(Kept::Media(packet.len().min(l4 + 8 + RTP_HEADER)));
    }
    None
}

/// A pcap file being written in memory.
#[derive(Debug)]
pub struct Pcap {
    bytes: Vec<u8>,
    packets: usize,
}

impl Default for Pcap {
    fn default() -> Self {
        let mut bytes = Vec::with_capacity(1 << 16);
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0i32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&65_535u32.to_le_bytes());
        bytes.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        Pcap { bytes, packets: 0 }
    }
}

impl Pcap {
    /// Adds the first `kept` bytes of `packet`, seen at `at`.
    pub fn add(&mut self, at: SystemTime, packet: &[u8], kept: usize) {
        let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let kept = kept.min(packet.len());
        self.bytes
            .extend_from_slice(&(t.as_secs() as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&t.subsec_micros().to_le_bytes());
        self.bytes.extend_from_slice(&(kept as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(packet.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&packet[..kept]);
        self.packets += 1;
    }

    /// Packets in it.
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Its size.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The file.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// What a finished capture holds.
#[derive(Debug)]
pub struct Captured {
    /// The pcap file.
    pub pcap: Vec<u8>,
    /// SIP packets in it.
    pub sip: usize,
    /// Media packets in it (headers).
    pub media: usize,
    /// Why it ended early (none: it ran its time).
    pub cut: Option<&'static str>,
}

/// Loopback's twins: the last packets seen, to leave out a copy.
#[derive(Debug, Default)]
struct Twins {
    recent: std::collections::VecDeque<(Instant, u64)>,
}

impl Twins {
    fn seen_again(&mut self, packet: &[u8], now: Instant) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        packet.hash(&mut h);
        let key = h.finish();
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > TWIN_WINDOW)
        {
            self.recent.pop_front();
        }
        if let Some(pos) = self.recent.iter().position(|(_, k)| *k == key) {
            self.recent.remove(pos);
            return true;
        }
        if self.recent.len() >= 256 {
            self.recent.pop_front();
        }
        self.recent.push_back((now, key));
        false
    }
}

/// Captures for `seconds` (blocking: run it on its own thread).
pub fn capture(ports: &TracePorts, seconds: u64) -> std::io::Result<Captured> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read;
    // ETH_P_ALL in network order.
    let all = Protocol::from(i32::from(0x0003u16.to_be()));
    let socket = Socket::new(Domain::PACKET, Type::DGRAM, Some(all)).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("a packet socket for the trace: {e} (the gateway needs CAP_NET_RAW)"),
        )
    })?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let until = Instant::now() + Duration::from_secs(seconds.clamp(1, MAX_SECONDS));
    let mut pcap = Pcap::default();
    let mut twins = Twins::default();
    let (mut sip, mut media) = (0, 0);
    let mut buf = vec![0u8; 65_536];
    let mut reader = &socket;
    let cut = loop {
        let now = Instant::now();
        if now >= until {
            break None;
        }
        if pcap.packets() >= MAX_PACKETS {
            break Some("the packet limit");
        }
        if pcap.len() >= MAX_BYTES {
            break Some("the size limit");
        }
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        let packet = &buf[..n];
        let Some(kept) = keep(packet, ports) else {
            continue;
        };
        if twins.seen_again(packet, now) {
            continue;
        }
        let len = match kept {
            Kept::Sip(l) => {
                sip += 1;
                l
            }
            Kept::Media(l) => {
                media += 1;
                l
            }
        };
        pcap.add(SystemTime::now(), packet, len);
    };
    Ok(Captured {
        pcap: pcap.into_bytes(),
        sip,
        media,
        cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(src: u16, dst: u16, payload: usize) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        p.extend_from_slice(&src.to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend(std::iter::repeat_n(0x80, payload));
        p
    }

    fn ports() -> TracePorts {
        TracePorts {
            sip: vec![5060],
            media: vec![16384..=32767],
        }
    }

    #[test]
    fn sip_is_kept_whole_media_as_headers_and_the_rest_not_at_all() {
        assert_eq!(
            keep(&udp4(5060, 40000, 800), &ports()),
            Some(Kept::Sip(828))
        );
        assert_eq!(
            keep(&udp4(40000, 5060, 9000), &ports()),
            Some(Kept::Sip(SIP_SNAP))
        );
        assert_eq!(
            keep(&udp4(20000, 46000, 172), &ports()),
            Some(Kept::Media(20 + 8 + 12))
        );
        assert_eq!(keep(&udp4(53, 40000, 60), &ports()), None);
        assert_eq!(keep(&[0x45, 0, 0], &ports()), None, "truncated");
        assert_eq!(keep(&[], &ports()), None);
        let mut fragment = udp4(20000, 46000, 172);
        fragment[7] = 1;
        assert_eq!(keep(&fragment, &ports()), None, "a later fragment");
    }

    #[test]
    fn the_pcap_has_its_header_and_each_record_its_lengths() {
        let mut p = Pcap::default();
        let packet = udp4(20000, 46000, 172);
        p.add(UNIX_EPOCH + Duration::from_micros(1_500_000), &packet, 40);
        let b = p.into_bytes();
        assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 101);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(b[28..32].try_into().unwrap()), 500_000);
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 40);
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 200);
        assert_eq!(b.len(), 24 + 16 + 40);
    }

    #[test]
    fn a_copy_within_the_window_is_a_twin_and_a_later_one_is_not() {
        let mut t = Twins::default();
        let now = Instant::now();
        let a = udp4(1, 2, 10);
        assert!(!t.seen_again(&a, now));
        assert!(t.seen_again(&a, now + Duration::from_millis(1)));
        assert!(
            !t.seen_again(&a, now + Duration::from_millis(2)),
            "a third copy is new"
        );
        assert!(!t.seen_again(&a, now + Duration::from_millis(50)));
    }
}

//! The hostile traffic of the flood run (issue 20): datagrams aimed at live
//! relays' own media ports — the hardest case for a relay's source checks,
//! since every one lands on a socket that is carrying a real call — from a
//! socket of their own, paced by time at a fixed rate.
//!
//! Three kinds: `garbage` (random bytes of random length, to RTP and RTCP
//! ports of both legs), `rtp` (well-formed RTP with unknown SSRCs, to the
//! RTP ports; toward the cloud leg with a made-up SRTP tag) and `calls`,
//! the hardest: RTP and RTCP carrying each call's own SSRC with a
//! plausible sequence number and timestamp, from a source that is not the
//! call's — plain to the LAN leg, and to the cloud leg without a tag or
//! with a wrong one. A relay must drop them all, count each drop by
//! reason, and keep its calls intact; the payload (0x55, never a call's
//! 0xd5) makes any flood datagram that comes out of a relay a bad packet
//! at the generator.
//!
//! What counts as sent is what the kernel accepted (`sendmmsg`'s count),
//! so the rate reported is the rate sent, never the pace asked.

use pbxlink_dataplane::udp_batch::SendBatch;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Most flood datagrams sent per call of [`Flood::catch_up`]: a generator
/// that was stopped for a while catches up in bounded bursts.
const BURST_MAX: u64 = 1024;
/// The flood aims this much over its rate, so that the measured window's
/// edges (it is counted to the last burst, up to a slice short) cannot
/// leave the achieved rate under the one asked for.
const AIM_OVER: f64 = 1.005;

/// What the flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodKind {
    /// Random bytes, 1–300 long, to every RTP and RTCP port of both legs.
    Garbage,
    /// Well-formed RTP (version 2, PCMU, 160-byte payload) with unknown
    /// SSRCs to the RTP ports; toward the cloud leg with a 10-byte tag.
    UnknownRtp,
    /// RTP and RTCP with each call's own SSRC from a wrong source: plain
    /// to the LAN leg; to the cloud leg without a tag or a wrong one.
    CallRtp,
}

impl std::str::FromStr for FloodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "garbage" => Ok(FloodKind::Garbage),
            "rtp" => Ok(FloodKind::UnknownRtp),
            "calls" => Ok(FloodKind::CallRtp),
            other => Err(format!(
                "unknown flood {other:?}: use garbage, rtp or calls"
            )),
        }
    }
}

impl std::fmt::Display for FloodKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FloodKind::Garbage => "garbage",
            FloodKind::UnknownRtp => "rtp",
            FloodKind::CallRtp => "calls",
        })
    }
}

/// A live relay's ports, as the flood aims at them.
#[derive(Debug, Clone, Copy)]
pub struct RelayPorts {
    /// The relay's RTP port toward the PBX (RTCP on the next one).
    pub lan_rtp: SocketAddr,
    /// The relay's SRTP port toward the cloud (SRTCP on the next one).
    pub cloud_rtp: SocketAddr,
    /// The SSRC of the call's media (both ways), which the `calls` flood
    /// carries.
    pub ssrc: u32,
}

/// One aim of the flood: where, and whether it is a cloud port.
#[derive(Debug, Clone, Copy)]
struct Aim {
    to: SocketAddr,
    cloud: bool,
    /// An RTCP port.
    rtcp: bool,
    ssrc: u32,
}

/// The flood generator: its socket, aims, pacing and tally.
#[derive(Debug)]
pub struct Flood {
    kind: FloodKind,
    socket: UdpSocket,
    batch: SendBatch,
    aims: Vec<Aim>,
    next_aim: usize,
    rng: u64,
    rate: f64,
    started: Option<Instant>,
    /// Datagrams the kernel accepted so far.
    pub sent: u64,
    /// Datagrams it refused (not counted in `sent`).
    pub refused: u64,
}

fn with_port(a: SocketAddr, port: u16) -> SocketAddr {
    SocketAddr::new(a.ip(), port)
}

impl Flood {
    /// A flood of `kind` at `rate` datagrams a second over `relays`, from
    /// `socket` (a port no relay knows).
    pub fn new(kind: FloodKind, socket: UdpSocket, relays: &[RelayPorts], rate: u64) -> Self {
        let mut aims = Vec::new();
        for r in relays {
            let aim = |to: SocketAddr, cloud, rtcp| Aim {
                to,
                cloud,
                rtcp,
                ssrc: r.ssrc,
            };
            aims.push(aim(r.lan_rtp, false, false));
            aims.push(aim(r.cloud_rtp, true, false));
            if kind != FloodKind::UnknownRtp {
                aims.push(aim(with_port(r.lan_rtp, r.lan_rtp.port() + 1), false, true));
                aims.push(aim(
                    with_port(r.cloud_rtp, r.cloud_rtp.port() + 1),
                    true,
                    true,
                ));
            }
        }
        Flood {
            kind,
            socket,
            batch: SendBatch::new(64),
            aims,
            next_aim: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            rate: rate as f64 * AIM_OVER,
            started: None,
            sent: 0,
            refused: 0,
        }
    }

    /// What it sends.
    pub fn kind(&self) -> FloodKind {
        self.kind
    }

    /// xorshift64*: cheap, and the same flood every run.
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next datagram for `aim` into `p`; its length.
    fn craft(&mut self, p: &mut [u8; 256], aim: Aim) -> usize {
        let cloud = aim.cloud;
        match self.kind {
            FloodKind::Garbage => {
                let len = 1 + (self.random() % 255) as usize;
                for chunk in p[..len].chunks_mut(8) {
                    let r = self.random().to_le_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
                len
            }
            FloodKind::UnknownRtp => {
                let r = self.random();
                p[0] = 0x80;
                p[1] = 0; // PCMU
                p[2..4].copy_from_slice(&(r as u16).to_be_bytes());
                p[4..8].copy_from_slice(&((r >> 16) as u32).to_be_bytes());
                // SSRCs above the generator's calls' (1..=calls).
                p[8..12].copy_from_slice(&((r >> 32) as u32 | 0x8000_0000).to_be_bytes());
                p[12..172].fill(0xd5);
                if cloud {
                    let tag = self.random().to_le_bytes();
                    p[172..180].copy_from_slice(&tag);
                    p[180..182].copy_from_slice(&tag[..2]);
                    182
                } else {
                    172
                }
            }
            FloodKind::CallRtp if aim.rtcp => {
                // A sender report as the call's source would send it: on
                // the cloud leg with an SRTCP index and a wrong tag.
                let r = self.random();
                p[0] = 0x80;
                p[1] = 200;
                p[2..4].copy_from_slice(&6u16.to_be_bytes());
                p[4..8].copy_from_slice(&aim.ssrc.to_be_bytes());
                p[8..28].copy_from_slice(&[0x55; 20]);
                if cloud {
                    p[28..32].copy_from_slice(&(0x8000_0000 | (r as u32 & 0xffff)).to_be_bytes());
                    p[32..42].copy_from_slice(&r.to_le_bytes().repeat(2)[..10]);
                    42
                } else {
                    28
                }
            }
            FloodKind::CallRtp => {
                // The call's SSRC, a sequence number and timestamp of the
                // kind the call is at (its packets start at 0 and climb 50
                // a second), a payload no call carries.
                let r = self.random();
                p[0] = 0x80;
                p[1] = 0;
                p[2..4].copy_from_slice(&((r % 4096) as u16).to_be_bytes());
                p[4..8].copy_from_slice(&(160 * (r % 4096) as u32).to_be_bytes());
                p[8..12].copy_from_slice(&aim.ssrc.to_be_bytes());
                p[12..172].fill(0x55);
                match (cloud, r >> 63) {
                    // Toward the cloud leg: no tag at all…
                    (true, 0) => 172,
                    // …or a wrong one.
                    (true, _) => {
                        p[172..182].copy_from_slice(&r.to_le_bytes().repeat(2)[..10]);
                        182
                    }
                    (false, _) => 172,
                }
            }
        }
    }

    /// Sends what the rate owes by `now` (at most [`BURST_MAX`]).
    pub fn catch_up(&mut self, now: Instant) {
        let started = *self.started.get_or_insert(now);
        let owed = (now.saturating_duration_since(started).as_secs_f64() * self.rate) as u64;
        let due = owed.saturating_sub(self.sent).min(BURST_MAX);
        let mut p = [0u8; 256];
        let mut queued = 0u64;
        let mut accepted = 0u64;
        for _ in 0..due {
            let aim = self.aims[self.next_aim];
            self.next_aim = (self.next_aim + 1) % self.aims.len();
            let len = self.craft(&mut p, aim);
            if self.batch.is_full() {
                accepted += self.batch.send(&self.socket) as u64;
            }
            self.batch.push(&p[..len], aim.to);
            queued += 1;
        }
        accepted += self.batch.send(&self.socket) as u64;
        self.sent += accepted;
        self.refused += queued - accepted;
    }

    /// What was sent in `window`, as datagrams a second.
    pub fn rate_over(sent: u64, window: Duration) -> f64 {
        sent as f64 / window.as_secs_f64().max(1e-9)
    }
}

#[cfg(test)]
mod tests {
    use super::{Flood, FloodKind, RelayPorts};
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    fn flood(kind: FloodKind) -> (Flood, UdpSocket) {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let at = sink.local_addr().unwrap();
        let relays = [RelayPorts {
            lan_rtp: at,
            cloud_rtp: SocketAddr::new(at.ip(), at.port().wrapping_add(10)),
            ssrc: 7,
        }];
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        (Flood::new(kind, socket, &relays, 10_000), sink)
    }

    #[test]
    fn paces_by_time_and_bounds_its_bursts() {
        let (mut f, _sink) = flood(FloodKind::UnknownRtp);
        let t = Instant::now();
        f.catch_up(t);
        assert_eq!(f.sent, 0, "nothing owed at the start");
        f.catch_up(t + Duration::from_millis(10));
        assert_eq!(f.sent, 100, "10 ms at 10,000/s (aimed half a percent over)");
        f.catch_up(t + Duration::from_secs(10));
        assert_eq!(f.sent, 100 + 1024, "a late generator catches up in bursts");
    }

    #[test]
    fn unknown_rtp_is_well_formed_with_an_unknown_ssrc() {
        let (mut f, sink) = flood(FloodKind::UnknownRtp);
        let t = Instant::now();
        f.catch_up(t);
        f.catch_up(t + Duration::from_millis(1));
        let mut buf = [0u8; 512];
        let (n, _) = sink.recv_from(&mut buf).unwrap();
        assert_eq!(n, 172, "the LAN leg gets plain RTP");
        assert_eq!(buf[0] >> 6, 2);
        assert!(u32::from_be_bytes(buf[8..12].try_into().unwrap()) >= 0x8000_0000);
        let mut p = [0u8; 256];
        let cloud = f.aims[1];
        assert!(cloud.cloud);
        assert_eq!(f.craft(&mut p, cloud), 182, "the cloud leg gets a tag");
    }

    #[test]
    fn the_calls_flood_carries_each_calls_ssrc_with_no_tag_or_a_wrong_one() {
        let (mut f, sink) = flood(FloodKind::CallRtp);
        assert_eq!(f.aims.len(), 4, "RTP and RTCP of both legs");
        let t = Instant::now();
        f.catch_up(t);
        f.catch_up(t + Duration::from_millis(1));
        let mut buf = [0u8; 512];
        let (n, _) = sink.recv_from(&mut buf).unwrap();
        assert_eq!(n, 172);
        assert_eq!(u32::from_be_bytes(buf[8..12].try_into().unwrap()), 7);
        assert!(
            buf[12..172].iter().all(|&b| b == 0x55),
            "never a call's payload"
        );
        let mut p = [0u8; 256];
        let lens: std::collections::HashSet<usize> =
            (0..64).map(|_| f.craft(&mut p, f.aims[1])).collect();
        assert_eq!(
            lens,
            [172, 182].into(),
            "cloud leg: untagged and wrongly tagged"
        );
        let rtcp = f.craft(&mut p, f.aims[2]);
        assert_eq!((rtcp, p[1]), (28, 200), "a sender report to the LAN leg");
        assert_eq!(
            f.craft(&mut p, f.aims[3]),
            42,
            "SRTCP with an index and a tag"
        );
        assert_eq!(f.refused, 0);
    }

    #[test]
    fn garbage_varies_in_length_and_aims_at_rtcp_ports_too() {
        let (mut f, _sink) = flood(FloodKind::Garbage);
        assert_eq!(f.aims.len(), 4);
        let lengths: std::collections::HashSet<usize> = (0..100)
            .map(|_| {
                let mut p = [0u8; 256];
                f.craft(&mut p, f.aims[0])
            })
            .collect();
        assert!(lengths.len() > 50 && lengths.iter().all(|&l| (1..=255).contains(&l)));
    }
}

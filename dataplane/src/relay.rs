//! One call's media path as a sans-IO state machine: two legs (LAN: plain
//! RTP/RTCP with the PBX; cloud: SRTP/SRTCP), their latching, the two
//! directions' transforms, liveness timers and the relay's own drop
//! counters. A worker hands it each received packet with its source and
//! gets back where to send it; time is an input. Owns no socket.
//!
//! Latching without RTP bleed: the LAN leg accepts only its configured
//! remote or, when none is given, latches to the first source inside the
//! configured networks and refuses every other; the cloud leg follows only
//! packets that authenticated, so a spoofed packet neither passes nor moves
//! the latch. Nothing is ever sent outside the configured networks.

use crate::direction::{CloudToLan, DirectionConfig, DirectionCounters, LanToCloud};
use crate::drops::{DropCounters, DropReason};
use crate::net::Networks;
use crate::quality::{LegQuality, RtcpWatch};
use crate::rtp;
use crate::srtp::{MasterKey, SrtpError, Suite};
use crate::stats::StreamSummary;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Identifies a relay across the control API.
pub type RelayId = u64;

/// Default silence after which a flowing relay is reported timed out.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(60);
/// Default silence after which a held relay is reported timed out.
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(3600);
/// SRTP authentication failures within [`SRTP_FAILURE_WINDOW`] that raise an event.
pub const SRTP_FAILURE_THRESHOLD: u64 = 50;
/// Window for counting SRTP failures.
pub const SRTP_FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// The four sockets of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Socket {
    /// Plain RTP with the PBX.
    LanRtp = 0,
    /// Plain RTCP with the PBX.
    LanRtcp = 1,
    /// SRTP with the cloud.
    CloudRtp = 2,
    /// SRTCP with the cloud.
    CloudRtcp = 3,
}

impl Socket {
    /// All four, in index order.
    pub const ALL: [Socket; 4] = [
        Socket::LanRtp,
        Socket::LanRtcp,
        Socket::CloudRtp,
        Socket::CloudRtcp,
    ];

    /// From an index 0..4.
    pub fn from_index(i: usize) -> Socket {
        Socket::ALL[i & 3]
    }

    fn is_rtcp(self) -> bool {
        matches!(self, Socket::LanRtcp | Socket::CloudRtcp)
    }

    /// Whether it is a cloud leg's socket (SRTP/SRTCP).
    pub fn is_cloud(self) -> bool {
        matches!(self, Socket::CloudRtp | Socket::CloudRtcp)
    }
}

/// Which way media may flow, as the relay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaDirection {
    /// Both ways.
    #[default]
    SendRecv,
    /// PBX → cloud only (the PBX holds the cloud party).
    SendOnly,
    /// Cloud → PBX only.
    RecvOnly,
    /// Neither way (RTCP still counts as liveness).
    Inactive,
}

impl MediaDirection {
    fn lan_to_cloud(self) -> bool {
        matches!(self, MediaDirection::SendRecv | MediaDirection::SendOnly)
    }

    fn cloud_to_lan(self) -> bool {
        matches!(self, MediaDirection::SendRecv | MediaDirection::RecvOnly)
    }
}

impl std::str::FromStr for MediaDirection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sendrecv" => Ok(MediaDirection::SendRecv),
            "sendonly" => Ok(MediaDirection::SendOnly),
            "recvonly" => Ok(MediaDirection::RecvOnly),
            "inactive" => Ok(MediaDirection::Inactive),
            _ => Err(format!(
                "unknown direction {s:?}: use sendrecv, sendonly, recvonly or inactive"
            )),
        }
    }
}

/// Everything a worker needs to set a relay up: a flat command.
#[derive(Debug, Clone)]
pub struct RelaySpec {
    /// Caller-chosen identity.
    pub id: RelayId,
    /// Local address to bind.
    pub bind: IpAddr,
    /// LAN leg RTP port (RTCP on the next port).
    pub lan_port: u16,
    /// Cloud leg SRTP port (SRTCP on the next port).
    pub cloud_port: u16,
    /// The PBX's RTP address, if known; else latch.
    pub lan_remote: Option<SocketAddr>,
    /// The cloud's SRTP address, if known; else latch (on authenticated packets).
    pub cloud_remote: Option<SocketAddr>,
    /// SRTP suite on the cloud leg.
    pub suite: Suite,
    /// Key the gateway protects toward the cloud with.
    pub tx_key: MasterKey,
    /// Key the cloud protects toward the gateway with.
    pub rx_key: MasterKey,
    /// PBX → cloud treatment.
    pub lan_to_cloud: DirectionConfig,
    /// Cloud → PBX treatment.
    pub cloud_to_lan: DirectionConfig,
    /// Which way media may flow.
    pub direction: MediaDirection,
    /// Networks media may come from and go to.
    pub networks: Networks,
    /// Silence limit while flowing.
    pub media_timeout: Duration,
    /// Silence limit while held.
    pub hold_timeout: Duration,
    /// Whether each RTCP report is copied up (as [`RtcpCopy`]) for the
    /// control plane's capture.
    pub copy_rtcp: bool,
}

/// The most of an RTCP datagram a copy holds: its SR or RR with a report
/// block or two (the rest of a compound is cut).
pub const RTCP_COPY_LEN: usize = 160;

/// A copy of one RTCP datagram the relay passed, in the clear (the PBX's
/// as it came, the cloud's once unprotected), for capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpCopy {
    /// From the cloud (else from the PBX).
    pub from_cloud: bool,
    /// Its sender.
    pub src: SocketAddr,
    /// Bytes held (at most [`RTCP_COPY_LEN`]).
    pub len: u16,
    /// The datagram's first bytes.
    pub bytes: [u8; RTCP_COPY_LEN],
}

impl RtcpCopy {
    fn of(from_cloud: bool, src: SocketAddr, clear: &[u8]) -> Self {
        let len = clear.len().min(RTCP_COPY_LEN);
        let mut bytes = [0; RTCP_COPY_LEN];
        bytes[..len].copy_from_slice(&clear[..len]);
        Self {
            from_cloud,
            src,
            len: len as u16,
            bytes,
        }
    }

    /// The bytes held.
    pub fn datagram(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl RelaySpec {
    /// A relay with the usual defaults: no remotes (both legs latch),
    /// identity payload-type maps at 8 kHz, media flowing both ways,
    /// loopback networks only, and the default timeouts. Set the public
    /// fields to change any of them.
    pub fn new(
        id: RelayId,
        bind: IpAddr,
        lan_port: u16,
        cloud_port: u16,
        suite: Suite,
        tx_key: MasterKey,
        rx_key: MasterKey,
    ) -> Self {
        Self {
            id,
            bind,
            lan_port,
            cloud_port,
            lan_remote: None,
            cloud_remote: None,
            suite,
            tx_key,
            rx_key,
            lan_to_cloud: DirectionConfig::default(),
            cloud_to_lan: DirectionConfig::default(),
            direction: MediaDirection::SendRecv,
            networks: Networks::loopback(),
            media_timeout: MEDIA_TIMEOUT,
            hold_timeout: HOLD_TIMEOUT,
            copy_rtcp: false,
        }
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send `len` bytes of the (rewritten) buffer from `socket` to `to`.
    Send {
        /// Socket to send from.
        socket: Socket,
        /// Destination.
        to: SocketAddr,
        /// Bytes to send.
        len: usize,
    },
    /// Dropped, already counted under this reason.
    Drop(DropReason),
}

/// Something the control plane should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    /// A leg latched (or moved) to a peer.
    Latched {
        /// Which socket.
        socket: Socket,
        /// The peer.
        peer: SocketAddr,
    },
    /// Expected media stopped for longer than the limit.
    MediaTimeout,
    /// SRTP authentication failures crossed the threshold in the window.
    SrtpFailures {
        /// Failures in the window.
        count: u64,
    },
}

/// A snapshot of a relay's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// PBX → cloud.
    pub lan_to_cloud: DirectionCounters,
    /// Cloud → PBX.
    pub cloud_to_lan: DirectionCounters,
    /// Drops decided by the relay itself (source, destination, direction).
    pub relay_drops: DropCounters,
    /// Stream jumps renumbered toward the cloud.
    pub jumps: u64,
    /// RFC 3550 loss of the PBX's stream.
    pub lan_lost: i64,
    /// RFC 3550 loss of the cloud's stream.
    pub cloud_lost: i64,
    /// Jitter of the cloud's stream, RTP units.
    pub cloud_jitter: u32,
    /// The PBX's stream as the gateway receives it.
    pub from_pbx: StreamSummary,
    /// The cloud's stream as the gateway receives it.
    pub from_cloud: StreamSummary,
    /// The PBX's leg: the PBX's reports on what it gets, the round trip.
    pub pbx_leg: LegQuality,
    /// The cloud's leg: the cloud's reports, the round trip.
    pub cloud_leg: LegQuality,
}

impl RelayStats {
    /// Packets dropped for any reason.
    pub fn drops(&self) -> u64 {
        self.lan_to_cloud.drops.total() + self.cloud_to_lan.drops.total() + self.relay_drops.total()
    }

    /// Packets relayed (RTP and RTCP, both ways).
    pub fn relayed(&self) -> u64 {
        self.lan_to_cloud.rtp_out
            + self.lan_to_cloud.rtcp_out
            + self.cloud_to_lan.rtp_out
            + self.cloud_to_lan.rtcp_out
    }
}

/// One relay.
#[derive(Debug)]
pub struct Relay {
    id: RelayId,
    up: LanToCloud,
    down: CloudToLan,
    direction: MediaDirection,
    networks: Networks,
    /// Configured or latched peer per socket.
    peers: [Option<SocketAddr>; 4],
    /// Whether the peer of a LAN socket was configured (strict) or latched.
    lan_strict: bool,
    last_lan: Instant,
    last_cloud: Instant,
    media_timeout: Duration,
    hold_timeout: Duration,
    timed_out: bool,
    failures_since: Instant,
    failures: u64,
    failure_alarm: bool,
    drops: DropCounters,
    pending: Option<RelayEvent>,
    /// Each leg's far-end reports and round trip, from the RTCP carried.
    rtcp_seen: RtcpWatch,
    /// Whether RTCP is copied up, and the copy not yet taken.
    copy_rtcp: bool,
    rtcp_copy: Option<RtcpCopy>,
}

fn rtcp_of(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port().wrapping_add(1))
}

impl Relay {
    /// Builds the relay's crypto and state; `now` starts its timers.
    pub fn new(now: Instant, spec: &RelaySpec) -> Result<Self, SrtpError> {
        let mut peers = [None; 4];
        if let Some(r) = spec.lan_remote {
            peers[Socket::LanRtp as usize] = Some(r);
            peers[Socket::LanRtcp as usize] = Some(rtcp_of(r));
        }
        if let Some(r) = spec.cloud_remote {
            peers[Socket::CloudRtp as usize] = Some(r);
            peers[Socket::CloudRtcp as usize] = Some(rtcp_of(r));
        }
        Ok(Self {
            id: spec.id,
            up: LanToCloud::new(spec.suite, &spec.tx_key, spec.lan_to_cloud.clone())?,
            down: CloudToLan::new(spec.suite, &spec.rx_key, spec.cloud_to_lan.clone())?,
            direction: spec.direction,
            networks: spec.networks.clone(),
            peers,
            lan_strict: spec.lan_remote.is_some(),
            last_lan: now,
            last_cloud: now,
            media_timeout: spec.media_timeout,
            hold_timeout: spec.hold_timeout,
            timed_out: false,
            failures_since: now,
            failures: 0,
            failure_alarm: false,
            drops: DropCounters::default(),
            pending: None,
            rtcp_seen: RtcpWatch::default(),
            copy_rtcp: spec.copy_rtcp,
            rtcp_copy: None,
        })
    }

    /// The relay's id.
    pub fn id(&self) -> RelayId {
        self.id
    }

    /// The peer `socket` accepts packets from and sends to: configured or
    /// latched, `None` until then.
    pub fn peer(&self, socket: Socket) -> Option<SocketAddr> {
        self.peers[socket as usize]
    }

    /// Changes which way media may flow (hold, resume).
    pub fn set_direction(&mut self, direction: MediaDirection) {
        self.direction = direction;
        self.timed_out = false;
    }

    /// Sets a leg's remote (re-INVITE); the LAN leg becomes strict.
    pub fn set_remote(&mut self, lan: bool, remote: SocketAddr) {
        let (rtp_sock, rtcp_sock) = if lan {
            self.lan_strict = true;
            (Socket::LanRtp, Socket::LanRtcp)
        } else {
            (Socket::CloudRtp, Socket::CloudRtcp)
        };
        self.peers[rtp_sock as usize] = Some(remote);
        self.peers[rtcp_sock as usize] = Some(rtcp_of(remote));
    }

    /// What may flow each way from now on (a re-INVITE changed codecs).
    pub fn set_payload_types(
        &mut self,
        lan_to_cloud: DirectionConfig,
        cloud_to_lan: DirectionConfig,
    ) {
        self.up.set_config(lan_to_cloud);
        self.down.set_config(cloud_to_lan);
    }

    /// The cloud's new SRTP key (its re-INVITE or answer carried a new
    /// `a=crypto`): cloud → PBX is unprotected with it from now on; the
    /// gateway's own key, and so its outgoing SRTP, carries on.
    pub fn set_cloud_key(&mut self, suite: Suite, key: &MasterKey) -> Result<(), SrtpError> {
        self.down.set_key(suite, key)
    }

    /// Replaces the SRTP keys (re-INVITE with new `a=crypto`).
    pub fn rekey(&mut self, spec: &RelaySpec) -> Result<(), SrtpError> {
        self.up = LanToCloud::new(spec.suite, &spec.tx_key, spec.lan_to_cloud.clone())?;
        self.down = CloudToLan::new(spec.suite, &spec.rx_key, spec.cloud_to_lan.clone())?;
        Ok(())
    }

    fn drop(&mut self, reason: DropReason) -> Verdict {
        self.drops.bump(reason);
        Verdict::Drop(reason)
    }

    /// Handles a packet received on `socket` from `src`, in `buf[..len]`
    /// (the buffer must leave room for the SRTP trailer).
    pub fn handle(
        &mut self,
        now: Instant,
        socket: Socket,
        src: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> Verdict {
        if !self.networks.contains(src.ip()) {
            return self.drop(DropReason::OutsideNetworks);
        }
        // rtcp-mux: RTCP on the RTP port is told apart by its packet type.
        let rtcp = socket.is_rtcp() || buf.get(..len).is_some_and(rtp::looks_like_rtcp);
        match socket {
            Socket::LanRtp | Socket::LanRtcp => {
                match self.peers[socket as usize] {
                    Some(peer) if peer != src => {
                        // A strict peer never moves; a latched one neither,
                        // so a second source on the LAN cannot bleed in.
                        return self.drop(DropReason::UnexpectedSource);
                    }
                    Some(_) => {}
                    None => {
                        self.peers[socket as usize] = Some(src);
                        self.pending = Some(RelayEvent::Latched { socket, peer: src });
                    }
                }
                self.last_lan = now;
                if !self.direction.lan_to_cloud() {
                    return self.drop(DropReason::DirectionInactive);
                }
                let out = if rtcp {
                    if let Some(clear) = buf.get(..len) {
                        self.rtcp_seen.from_pbx(now, clear);
                        if self.copy_rtcp {
                            self.rtcp_copy = Some(RtcpCopy::of(false, src, clear));
                        }
                    }
                    self.up.rtcp(buf, len)
                } else {
                    self.up.rtp(now, buf, len)
                };
                let len = match out {
                    Ok(n) => n,
                    Err(reason) => return Verdict::Drop(reason),
                };
                let to_socket = if socket == Socket::LanRtp {
                    Socket::CloudRtp
                } else {
                    Socket::CloudRtcp
                };
                self.send(to_socket, len)
            }
            Socket::CloudRtp | Socket::CloudRtcp => {
                let out = if rtcp {
                    self.down.rtcp(buf, len)
                } else {
                    self.down.rtp(now, buf, len)
                };
                let len = match out {
                    Ok(n) => n,
                    Err(reason) => {
                        self.count_failure(now, reason);
                        return Verdict::Drop(reason);
                    }
                };
                if rtcp {
                    if let Some(clear) = buf.get(..len) {
                        self.rtcp_seen.from_cloud(now, clear);
                        if self.copy_rtcp {
                            self.rtcp_copy = Some(RtcpCopy::of(true, src, clear));
                        }
                    }
                }
                // Authenticated: the cloud leg may latch or move here.
                if self.peers[socket as usize] != Some(src) {
                    self.peers[socket as usize] = Some(src);
                    self.pending = Some(RelayEvent::Latched { socket, peer: src });
                }
                self.last_cloud = now;
                if !self.direction.cloud_to_lan() {
                    return self.drop(DropReason::DirectionInactive);
                }
                let to_socket = if socket == Socket::CloudRtp {
                    Socket::LanRtp
                } else {
                    Socket::LanRtcp
                };
                self.send(to_socket, len)
            }
        }
    }

    fn send(&mut self, socket: Socket, len: usize) -> Verdict {
        match self.peers[socket as usize] {
            None => self.drop(DropReason::NoDestination),
            Some(to) if !self.networks.contains(to.ip()) => self.drop(DropReason::OutsideNetworks),
            Some(to) => Verdict::Send { socket, to, len },
        }
    }

    fn count_failure(&mut self, now: Instant, reason: DropReason) {
        if reason != DropReason::AuthFailed {
            return;
        }
        if now.saturating_duration_since(self.failures_since) > SRTP_FAILURE_WINDOW {
            self.failures_since = now;
            self.failures = 0;
            self.failure_alarm = false;
        }
        self.failures += 1;
        if self.failures >= SRTP_FAILURE_THRESHOLD && !self.failure_alarm {
            self.failure_alarm = true;
            self.pending = Some(RelayEvent::SrtpFailures {
                count: self.failures,
            });
        }
    }

    /// Counts a send the kernel failed.
    pub fn send_failed(&mut self) {
        self.drops.bump(DropReason::SendFailed);
    }

    /// The next event, if any: latching and SRTP alarms as they happen, and
    /// the media timeout once `now` passes it.
    pub fn poll_event(&mut self, now: Instant) -> Option<RelayEvent> {
        if let Some(e) = self.pending.take() {
            return Some(e);
        }
        if self.timed_out {
            return None;
        }
        let silent = |since: Instant| now.saturating_duration_since(since);
        let expired = if self.direction == MediaDirection::SendRecv {
            // Flowing: each direction expected to flow must be heard from.
            (self.direction.lan_to_cloud() && silent(self.last_lan) > self.media_timeout)
                || (self.direction.cloud_to_lan() && silent(self.last_cloud) > self.media_timeout)
        } else {
            // Held: only RTCP may flow; silence on both legs counts.
            silent(self.last_lan.max(self.last_cloud)) > self.hold_timeout
        };
        if expired {
            self.timed_out = true;
            return Some(RelayEvent::MediaTimeout);
        }
        None
    }

    /// The copy of the RTCP datagram just passed, if copies are asked for.
    pub fn take_rtcp_copy(&mut self) -> Option<RtcpCopy> {
        self.rtcp_copy.take()
    }

    /// Counters so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            lan_to_cloud: *self.up.counters(),
            cloud_to_lan: *self.down.counters(),
            relay_drops: self.drops,
            jumps: self.up.jumps(),
            lan_lost: self.up.stats().lost(),
            cloud_lost: self.down.stats().lost(),
            cloud_jitter: self.down.stats().jitter(),
            from_pbx: self.up.stats().summary(),
            from_cloud: self.down.stats().summary(),
            pbx_leg: self.rtcp_seen.pbx.quality(),
            cloud_leg: self.rtcp_seen.cloud.quality(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::{Role, SrtpContext};

    fn key(seed: u8) -> MasterKey {
        MasterKey::from_bytes(Suite::AesCm128HmacSha1_80, &[seed; 30]).unwrap()
    }

    fn spec(lan_remote: Option<SocketAddr>, cloud_remote: Option<SocketAddr>) -> RelaySpec {
        RelaySpec {
            lan_remote,
            cloud_remote,
            ..RelaySpec::new(
                7,
                "127.0.0.1".parse().unwrap(),
                40000,
                40002,
                Suite::AesCm128HmacSha1_80,
                key(1),
                key(2),
            )
        }
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p.resize(512, 0);
        p
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lan_latches_to_first_source_and_refuses_others() {
        let t = Instant::now();
        let mut r = Relay::new(t, &spec(None, Some(addr("127.0.0.1:5000")))).unwrap();
        let pbx = addr("127.0.0.1:6000");
        let v = r.handle(t, Socket::LanRtp, pbx, &mut rtp(1), 172);
        assert_eq!(
            v,
            Verdict::Send {
                socket: Socket::CloudRtp,
                to: addr("127.0.0.1:5000"),
                len: 182
            }
        );
        assert_eq!(
            r.poll_event(t),
            Some(RelayEvent::Latched {
                socket: Socket::LanRtp,
                peer: pbx
            })
        );
        let v = r.handle(t, Socket::LanRtp, addr("127.0.0.2:6000"), &mut rtp(2), 172);
        assert_eq!(v, Verdict::Drop(DropReason::UnexpectedSource));
        let v = r.handle(t, Socket::LanRtp, addr("192.0.2.1:6000"), &mut rtp(3), 172);
        assert_eq!(v, Verdict::Drop(DropReason::OutsideNetworks));
        assert_eq!(r.stats().relay_drops.total(), 2);
    }

    #[test]
    fn cloud_latches_only_on_authenticated_packets() {
        let t = Instant::now();
        let pbx = addr("127.0.0.1:6000");
        let mut r = Relay::new(t, &spec(Some(pbx), None)).unwrap();
        // Nothing to send to before the cloud is heard from.
        assert_eq!(
            r.handle(t, Socket::LanRtp, pbx, &mut rtp(1), 172),
            Verdict::Drop(DropReason::NoDestination)
        );
        let mut cloud =
            SrtpContext::new(Suite::AesCm128HmacSha1_80, &key(2), Role::Protect).unwrap();
        let mut p = rtp(10);
        let n = cloud.protect_rtp(&mut p, 172).unwrap();
        let mut spoof = p.clone();
        spoof[20] ^= 1;
        let attacker = addr("127.0.0.9:7000");
        assert_eq!(
            r.handle(t, Socket::CloudRtp, attacker, &mut spoof, n),
            Verdict::Drop(DropReason::AuthFailed)
        );
        assert_eq!(r.poll_event(t), None, "a spoofed packet does not latch");
        let cloud_addr = addr("127.0.0.1:5000");
        let v = r.handle(t, Socket::CloudRtp, cloud_addr, &mut p, n);
        assert_eq!(
            v,
            Verdict::Send {
                socket: Socket::LanRtp,
                to: pbx,
                len: 172
            }
        );
        assert_eq!(
            r.poll_event(t),
            Some(RelayEvent::Latched {
                socket: Socket::CloudRtp,
                peer: cloud_addr
            })
        );
        let v = r.handle(t, Socket::LanRtp, pbx, &mut rtp(2), 172);
        assert!(matches!(v, Verdict::Send { to, .. } if to == cloud_addr));
    }

    #[test]
    fn a_new_cloud_key_and_remote_take_over_and_counters_carry_on() {
        let t = Instant::now();
        let (pbx, cloud_addr) = (addr("127.0.0.1:6000"), addr("127.0.0.1:5000"));
        let mut r = Relay::new(t, &spec(Some(pbx), Some(cloud_addr))).unwrap();
        let protect = |k: u8, seq: u16| {
            let mut c =
                SrtpContext::new(Suite::AesCm128HmacSha1_80, &key(k), Role::Protect).unwrap();
            let mut p = rtp(seq);
            let n = c.protect_rtp(&mut p, 172).unwrap();
            (p, n)
        };
        let (mut p, n) = protect(2, 1);
        assert!(matches!(
            r.handle(t, Socket::CloudRtp, cloud_addr, &mut p, n),
            Verdict::Send { .. }
        ));
        // The cloud moved to key 3 (its re-INVITE); the gateway's key stays.
        r.set_cloud_key(Suite::AesCm128HmacSha1_80, &key(3))
            .unwrap();
        let (mut old, n) = protect(2, 2);
        assert_eq!(
            r.handle(t, Socket::CloudRtp, cloud_addr, &mut old, n),
            Verdict::Drop(DropReason::AuthFailed)
        );
        let (mut new, n) = protect(3, 3);
        assert!(matches!(
            r.handle(t, Socket::CloudRtp, cloud_addr, &mut new, n),
            Verdict::Send { .. }
        ));
        // The PBX moved its media: RTP goes to the new address.
        let moved = addr("127.0.0.1:6100");
        r.set_remote(true, moved);
        let (mut p, n) = protect(3, 4);
        assert!(matches!(
            r.handle(t, Socket::CloudRtp, cloud_addr, &mut p, n),
            Verdict::Send { to, .. } if to == moved
        ));
        // Codecs changed: only PCMU (0) may flow to the PBX now.
        let only_pcmu = DirectionConfig {
            payload_types: crate::ptmap::PayloadTypeMap::only(&[(0, 0)]),
            ..DirectionConfig::default()
        };
        r.set_payload_types(DirectionConfig::default(), only_pcmu);
        let mut c = SrtpContext::new(Suite::AesCm128HmacSha1_80, &key(3), Role::Protect).unwrap();
        let mut p8 = rtp(5);
        p8[1] = 8;
        let n8 = c.protect_rtp(&mut p8, 172).unwrap();
        assert_eq!(
            r.handle(t, Socket::CloudRtp, cloud_addr, &mut p8, n8),
            Verdict::Drop(DropReason::PayloadTypeNotAllowed)
        );
        let s = r.stats();
        assert_eq!(s.cloud_to_lan.rtp_out, 3, "counted across the key change");
        assert_eq!(s.cloud_to_lan.drops.get(DropReason::AuthFailed), 1);
    }

    #[test]
    fn never_sends_outside_the_networks() {
        let t = Instant::now();
        let mut r = Relay::new(t, &spec(None, Some(addr("198.51.100.7:5000")))).unwrap();
        let v = r.handle(t, Socket::LanRtp, addr("127.0.0.1:6000"), &mut rtp(1), 172);
        assert_eq!(v, Verdict::Drop(DropReason::OutsideNetworks));
    }

    #[test]
    fn timeouts_follow_direction() {
        let t = Instant::now();
        let pbx = addr("127.0.0.1:6000");
        let mut r = Relay::new(t, &spec(Some(pbx), Some(addr("127.0.0.1:5000")))).unwrap();
        // The PBX talks; the cloud stays silent past the media timeout.
        for s in 0..70u64 {
            let now = t + Duration::from_secs(s);
            r.handle(now, Socket::LanRtp, pbx, &mut rtp(s as u16), 172);
            let e = r.poll_event(now);
            if s <= 60 {
                assert_eq!(e, None, "second {s}");
            } else {
                assert_eq!(e, Some(RelayEvent::MediaTimeout), "second {s}");
                break;
            }
        }
        // On hold the longer limit applies, and resuming re-arms.
        let mut r = Relay::new(t, &spec(Some(pbx), None)).unwrap();
        r.set_direction(MediaDirection::Inactive);
        assert_eq!(r.poll_event(t + Duration::from_secs(3000)), None);
        assert_eq!(
            r.handle(t, Socket::LanRtp, pbx, &mut rtp(1), 172),
            Verdict::Drop(DropReason::DirectionInactive)
        );
        assert_eq!(
            r.poll_event(t + HOLD_TIMEOUT + Duration::from_secs(1)),
            Some(RelayEvent::MediaTimeout)
        );
    }

    #[test]
    fn srtp_failures_raise_one_event_per_window() {
        let t = Instant::now();
        let mut r = Relay::new(t, &spec(None, None)).unwrap();
        let mut events = 0;
        for i in 0..200u16 {
            let mut junk = rtp(i);
            r.handle(t, Socket::CloudRtp, addr("127.0.0.1:5000"), &mut junk, 182);
            if let Some(RelayEvent::SrtpFailures { count }) = r.poll_event(t) {
                assert_eq!(count, SRTP_FAILURE_THRESHOLD);
                events += 1;
            }
        }
        assert_eq!(events, 1);
    }
}

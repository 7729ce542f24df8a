//! A data-plane worker: one pinned OS thread that owns its relays, their
//! sockets and its I/O backend (io_uring, or epoll with recvmmsg/sendmmsg
//! where io_uring is unavailable). This module holds what both backends
//! share: the relay table, command handling, events and counters. Nothing
//! here is shared with another thread except the [`Channel`].

pub mod epoll;
pub mod uring;
pub mod xdp;

use crate::control::{AddFailure, BoundRelay, Channel, Command, Event, WorkerStats};
use crate::drops::DropCounters;
use crate::relay::{Relay, RelayEvent, RelayId, RelaySpec, Socket, Verdict};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Commands handled per loop turn. A burst of call set-ups must not hold
/// packets back for long: 64 adds cost well under a millisecond.
pub const COMMANDS_PER_TURN: usize = 64;
/// How often relays are swept for timeouts.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// How often worker counters are published.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Bytes per receive buffer: a 1500-byte MTU packet, the io_uring recvmsg
/// header and address, and SRTP trailer room to protect in place.
pub const BUF_SIZE: usize = 2048;

/// Settings a worker starts with.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Worker index.
    pub index: usize,
    /// CPU to pin to, if any.
    pub cpu: Option<usize>,
    /// Most relays this worker holds.
    pub max_relays: usize,
    /// Receive buffers (io_uring provided-buffer ring size; a power of two).
    pub buffers: u16,
    /// DSCP for RTP sockets (46 = EF).
    pub dscp: u8,
}

/// One relay and its sockets.
#[derive(Debug)]
pub struct Slot {
    /// The relay state machine.
    pub relay: Relay,
    /// LAN RTP, LAN RTCP, cloud RTP, cloud RTCP.
    pub sockets: [UdpSocket; 4],
    /// Last SO_RXQ_OVFL value seen per socket.
    pub overflow: [u32; 4],
    /// The peer a socket is connected to: LAN sockets with a configured
    /// remote are, so the kernel filters other sources and sends skip the
    /// route lookup. (Cloud sockets stay open: the cloud leg may re-latch.)
    pub connected: [Option<SocketAddr>; 4],
}

impl Slot {
    /// Whether a send from `socket` to `to` can leave the address out.
    #[inline]
    pub fn connected_to(&self, socket: Socket, to: SocketAddr) -> bool {
        self.connected[socket as usize] == Some(to)
    }
}

/// Connects the LAN sockets to the PBX's RTP address (RTCP: the next port).
fn connect_lan(
    sockets: &[UdpSocket; 4],
    remote: SocketAddr,
    connected: &mut [Option<SocketAddr>; 4],
) {
    let rtcp = SocketAddr::new(remote.ip(), remote.port().wrapping_add(1));
    for (socket, peer) in [(Socket::LanRtp, remote), (Socket::LanRtcp, rtcp)] {
        connected[socket as usize] = sockets[socket as usize].connect(peer).ok().map(|_| peer);
    }
}

/// Opens the NAT pinholes toward the cloud as a relay starts: one empty
/// datagram from each cloud socket to the cloud's RTP and RTCP addresses
/// (RFC 6263 §4.1), so a NAT router in front of the gateway maps its ports
/// before the cloud's first packet arrives — an inbound packet first
/// leaves the router a connection of its own on that port, and it then
/// maps the gateway's packets to another port than the SDP names.
/// Receivers ignore empty datagrams. Best effort: a failed send leaves it
/// to the first media packet.
fn open_pinholes(sockets: &[UdpSocket; 4], remote: SocketAddr) {
    let rtcp = SocketAddr::new(remote.ip(), remote.port().wrapping_add(1));
    for (socket, peer) in [(Socket::CloudRtp, remote), (Socket::CloudRtcp, rtcp)] {
        let _ = sockets[socket as usize].send_to(&[], peer);
    }
}

/// Where a datagram came in: which relay slot and socket, and from whom.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// Relay slot.
    pub slot: usize,
    /// Socket of the relay.
    pub socket: Socket,
    /// Sender.
    pub src: SocketAddr,
}

/// What a backend must do when relays come and go.
pub trait Registry {
    /// Starts receiving on a new relay's sockets.
    fn register(
        &mut self,
        slot: usize,
        generation: u32,
        sockets: &[UdpSocket; 4],
    ) -> std::io::Result<()>;
    /// Stops receiving on them (before they close).
    fn deregister(&mut self, slot: usize, generation: u32, sockets: &[UdpSocket; 4]);
}

/// State both backends share.
#[derive(Debug)]
pub struct Core {
    /// Settings.
    pub config: WorkerConfig,
    /// The queues with the control plane.
    pub channel: Arc<Channel>,
    /// Relay table, indexed by slot.
    pub slots: Vec<Option<Slot>>,
    /// Generation per slot, so completions for a removed relay are ignored.
    pub generations: Vec<u32>,
    free: Vec<usize>,
    by_id: HashMap<RelayId, usize>,
    /// Counters.
    pub stats: WorkerStats,
    removed_drops: DropCounters,
    last_sweep: Instant,
    last_publish: Instant,
    /// The counters as last published, `turns` left out: an idle worker
    /// with nothing new to say sleeps until a command or a packet.
    published: WorkerStats,
    /// Set by `Shutdown`.
    pub stopping: bool,
    /// Sockets whose peer may have changed (a relay added, a leg latched,
    /// moved or configured) since the backend last looked: kept only for a
    /// backend that filters by peer outside the relay (xdp), in a table
    /// allocated at start; `peers_lost` says it overflowed.
    pub peer_changes: PeerChanges,
}

/// The sockets whose peer changed, for a backend that mirrors peers
/// elsewhere (the XDP program's map). Bounded: allocated once; when full,
/// `overflowed` asks the backend to look at every relay.
#[derive(Debug, Default)]
pub struct PeerChanges {
    /// Whether changes are kept at all (off: the backend does not care).
    pub tracked: bool,
    /// Slot and socket, in order.
    pub changed: Vec<(usize, Socket)>,
    /// More changed than `changed` holds.
    pub overflowed: bool,
}

impl PeerChanges {
    /// Keeps changes, room for `n` of them.
    pub fn tracking(n: usize) -> Self {
        Self {
            tracked: true,
            changed: Vec::with_capacity(n),
            overflowed: false,
        }
    }

    #[inline]
    fn note(&mut self, slot: usize, socket: Socket) {
        if !self.tracked {
            return;
        }
        if self.changed.len() < self.changed.capacity() {
            self.changed.push((slot, socket));
        } else {
            self.overflowed = true;
        }
    }

    /// Whether there is anything to look at.
    #[inline]
    pub fn pending(&self) -> bool {
        !self.changed.is_empty() || self.overflowed
    }
}

/// Binds a relay's four sockets as its worker reads them (non-blocking,
/// overflow counted, DSCP on the RTP ones).
pub(crate) fn bind(spec: &RelaySpec, dscp: u8) -> Result<[UdpSocket; 4], AddFailure> {
    let ports = [
        spec.lan_port,
        spec.lan_port.wrapping_add(1),
        spec.cloud_port,
        spec.cloud_port.wrapping_add(1),
    ];
    let mut out = Vec::with_capacity(4);
    for (i, port) in ports.into_iter().enumerate() {
        let socket = Socket::from_index(i);
        let s =
            UdpSocket::bind(SocketAddr::new(spec.bind, port)).map_err(|e| AddFailure::Bind {
                socket,
                port,
                errno: e.raw_os_error().unwrap_or(0),
            })?;
        let fail = |e: std::io::Error| AddFailure::Bind {
            socket,
            port,
            errno: e.raw_os_error().unwrap_or(0),
        };
        s.set_nonblocking(true).map_err(fail)?;
        crate::sys::enable_rxq_ovfl(&s).map_err(fail)?;
        if matches!(socket, Socket::LanRtp | Socket::CloudRtp) {
            crate::sys::set_dscp(&s, spec.bind.is_ipv6(), dscp).map_err(fail)?;
        }
        out.push(s);
    }
    let [a, b, c, d]: [UdpSocket; 4] = out.try_into().map_err(|_| AddFailure::TableFull)?;
    Ok([a, b, c, d])
}

impl Core {
    /// An empty worker.
    pub fn new(config: WorkerConfig, channel: Arc<Channel>) -> Self {
        let now = Instant::now();
        let n = config.max_relays;
        Self {
            slots: (0..n).map(|_| None).collect(),
            generations: vec![0; n],
            free: (0..n).rev().collect(),
            by_id: HashMap::with_capacity(n),
            config,
            channel,
            stats: WorkerStats::default(),
            removed_drops: DropCounters::default(),
            last_sweep: now,
            last_publish: now,
            published: WorkerStats::default(),
            stopping: false,
            peer_changes: PeerChanges::default(),
        }
    }

    /// Reports an event, or counts it dropped when the queue is full.
    pub fn emit(&mut self, e: Event) {
        if self.channel.events.push(e).is_err() {
            self.stats.events_dropped += 1;
        }
    }

    fn add(
        &mut self,
        now: Instant,
        spec: &RelaySpec,
        bound: Option<[UdpSocket; 4]>,
        registry: &mut impl Registry,
    ) -> Result<(), AddFailure> {
        if self.by_id.contains_key(&spec.id) {
            return Err(AddFailure::DuplicateId);
        }
        let slot = *self.free.last().ok_or(AddFailure::TableFull)?;
        let relay = Relay::new(now, spec).map_err(|_| AddFailure::Srtp)?;
        let sockets = match bound {
            Some(sockets) => sockets,
            None => bind(spec, self.config.dscp)?,
        };
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        registry
            .register(slot, self.generations[slot], &sockets)
            .map_err(|e| AddFailure::Register {
                errno: e.raw_os_error().unwrap_or(0),
            })?;
        self.free.pop();
        self.by_id.insert(spec.id, slot);
        let mut connected = [None; 4];
        if let Some(remote) = spec.lan_remote.filter(|r| spec.networks.contains(r.ip())) {
            connect_lan(&sockets, remote, &mut connected);
        }
        if let Some(remote) = spec.cloud_remote.filter(|r| spec.networks.contains(r.ip())) {
            open_pinholes(&sockets, remote);
        }
        self.slots[slot] = Some(Slot {
            relay,
            sockets,
            overflow: [0; 4],
            connected,
        });
        for i in 0..4 {
            self.peer_changes.note(slot, Socket::from_index(i));
        }
        Ok(())
    }

    fn remove(&mut self, id: RelayId, registry: &mut impl Registry) -> Option<Slot> {
        let slot = self.by_id.remove(&id)?;
        let s = self.slots[slot].take()?;
        registry.deregister(slot, self.generations[slot], &s.sockets);
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        self.free.push(slot);
        let stats = s.relay.stats();
        self.removed_drops.add(&stats.lan_to_cloud.drops);
        self.removed_drops.add(&stats.cloud_to_lan.drops);
        self.removed_drops.add(&stats.relay_drops);
        Some(s)
    }

    fn with_relay(&mut self, id: RelayId, f: impl FnOnce(&mut Relay) -> Option<Event>) {
        let e = match self.by_id.get(&id).and_then(|&s| self.slots[s].as_mut()) {
            Some(slot) => f(&mut slot.relay),
            None => Some(Event::NotFound { id }),
        };
        if let Some(e) = e {
            self.emit(e);
        }
    }

    /// Handles up to [`COMMANDS_PER_TURN`] queued commands.
    /// Adds a relay and says how it went.
    fn added(
        &mut self,
        now: Instant,
        spec: &RelaySpec,
        bound: Option<[UdpSocket; 4]>,
        registry: &mut impl Registry,
    ) {
        let e = match self.add(now, spec, bound, registry) {
            Ok(()) => Event::Added {
                id: spec.id,
                worker: self.config.index,
            },
            Err(reason) => Event::AddFailed {
                id: spec.id,
                reason,
            },
        };
        self.emit(e);
    }

    pub fn commands(&mut self, now: Instant, registry: &mut impl Registry) {
        for _ in 0..COMMANDS_PER_TURN {
            let Some(cmd) = self.channel.commands.pop() else {
                break;
            };
            match cmd {
                Command::Add(spec) => self.added(now, &spec, None, registry),
                Command::AddBound(b) => {
                    let BoundRelay { spec, sockets } = *b;
                    self.added(now, &spec, Some(sockets), registry);
                }
                Command::SetDirection { id, direction } => self.with_relay(id, |r| {
                    r.set_direction(direction);
                    None
                }),
                Command::SetRemote { id, lan, remote } => {
                    if let Some(&at) = self.by_id.get(&id) {
                        if let Some(slot) = self.slots[at].as_mut() {
                            if lan {
                                connect_lan(&slot.sockets, remote, &mut slot.connected);
                            }
                        }
                        let (rtp, rtcp) = if lan {
                            (Socket::LanRtp, Socket::LanRtcp)
                        } else {
                            (Socket::CloudRtp, Socket::CloudRtcp)
                        };
                        self.peer_changes.note(at, rtp);
                        self.peer_changes.note(at, rtcp);
                    }
                    self.with_relay(id, |r| {
                        r.set_remote(lan, remote);
                        None
                    })
                }
                Command::SetPayloadTypes {
                    id,
                    lan_to_cloud,
                    cloud_to_lan,
                } => self.with_relay(id, |r| {
                    r.set_payload_types(*lan_to_cloud, *cloud_to_lan);
                    None
                }),
                Command::SetCloudKey { id, suite, key } => self.with_relay(id, |r| {
                    r.set_cloud_key(suite, &key)
                        .err()
                        .map(|_| Event::AddFailed {
                            id,
                            reason: AddFailure::Srtp,
                        })
                }),
                Command::Rekey(spec) => self.with_relay(spec.id, |r| {
                    r.rekey(&spec).err().map(|_| Event::AddFailed {
                        id: spec.id,
                        reason: AddFailure::Srtp,
                    })
                }),
                Command::ReadStats { id } => self.with_relay(id, |r| {
                    Some(Event::Stats {
                        id,
                        stats: r.stats(),
                    })
                }),
                Command::Remove { id } => {
                    let e = match self.remove(id, registry) {
                        Some(s) => Event::Removed {
                            id,
                            stats: s.relay.stats(),
                        },
                        None => Event::NotFound { id },
                    };
                    self.emit(e);
                }
                Command::Shutdown => {
                    let ids: Vec<RelayId> = self.by_id.keys().copied().collect();
                    for id in ids {
                        if let Some(s) = self.remove(id, registry) {
                            self.emit(Event::Removed {
                                id,
                                stats: s.relay.stats(),
                            });
                        }
                    }
                    self.stopping = true;
                }
            }
        }
    }

    /// Runs one received datagram through its relay. `control` is the
    /// datagram's ancillary data (for the kernel drop counter).
    #[inline]
    pub fn process(
        &mut self,
        now: Instant,
        from: Origin,
        control: &[u8],
        buf: &mut [u8],
        len: usize,
    ) -> Option<Verdict> {
        let Origin { slot, socket, src } = from;
        self.stats.received += 1;
        let Some(s) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            self.stats.stray += 1;
            return None;
        };
        if let Some(total) = crate::sys::rxq_ovfl_from_cmsg(control) {
            let seen = &mut s.overflow[socket as usize];
            self.stats.kernel_drops += total.wrapping_sub(*seen) as u64;
            *seen = total;
        }
        let verdict = s.relay.handle(now, socket, src, buf, len);
        if let Some(copy) = s.relay.take_rtcp_copy() {
            let id = s.relay.id();
            if self.channel.events.push(Event::Rtcp { id, copy }).is_err() {
                self.stats.events_dropped += 1;
            }
        }
        if let Some(event) = s.relay.poll_event(now) {
            if let RelayEvent::Latched { socket, .. } = event {
                self.peer_changes.note(slot, socket);
            }
            let id = s.relay.id();
            if self
                .channel
                .events
                .push(Event::Relay { id, event })
                .is_err()
            {
                self.stats.events_dropped += 1;
            }
        }
        Some(verdict)
    }

    /// Counts a failed send against its relay.
    pub fn send_failed(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot).and_then(Option::as_mut) {
            s.relay.send_failed();
        }
    }

    /// Periodic work: timeouts every 100 ms, counters every second.
    pub fn tick(&mut self, now: Instant) {
        self.stats.turns += 1;
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            for i in 0..self.slots.len() {
                let Some(s) = self.slots[i].as_mut() else {
                    continue;
                };
                let id = s.relay.id();
                if let Some(event) = s.relay.poll_event(now) {
                    self.emit(Event::Relay { id, event });
                }
            }
        }
        if now.saturating_duration_since(self.last_publish) >= PUBLISH_EVERY {
            self.last_publish = now;
            self.publish();
        }
    }

    /// Whether the worker may sleep with no timeout: it holds no relay (no
    /// sweep is due) and its counters are published as they stand. A
    /// command rings the doorbell and a datagram completes a receive, so
    /// nothing is missed; an idle gateway's worker then costs no wake-up.
    pub fn may_sleep(&self) -> bool {
        self.free.len() == self.slots.len()
            && WorkerStats {
                turns: self.published.turns,
                ..self.stats
            } == self.published
    }

    /// Publishes the worker's counters.
    pub fn publish(&mut self) {
        let mut drops = self.removed_drops;
        let mut relays = 0;
        for s in self.slots.iter().flatten() {
            let st = s.relay.stats();
            drops.add(&st.lan_to_cloud.drops);
            drops.add(&st.cloud_to_lan.drops);
            drops.add(&st.relay_drops);
            relays += 1;
        }
        self.stats.drops = drops;
        self.stats.relays = relays;
        let e = Event::Worker {
            worker: self.config.index,
            stats: self.stats,
        };
        self.emit(e);
        self.published = self.stats;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_worker_sleeps_only_once_its_counters_are_published() {
        let channel = Channel::new().unwrap();
        let config = WorkerConfig {
            index: 0,
            cpu: None,
            max_relays: 4,
            buffers: 256,
            dscp: 0,
        };
        let mut core = Core::new(config, channel.clone());
        assert!(core.may_sleep(), "nothing held, nothing to say");
        core.stats.received += 1; // a stray datagram, counted
        core.stats.turns += 1;
        assert!(!core.may_sleep(), "a count not yet published");
        core.publish();
        assert!(core.may_sleep());
        assert!(matches!(channel.events.pop(), Some(Event::Worker { .. })));
        core.stats.turns += 5;
        assert!(core.may_sleep(), "turns alone are nothing new");
    }
}

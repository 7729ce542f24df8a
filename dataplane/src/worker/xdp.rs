//! The AF_XDP backend: the kernel's UDP socket path left out for relay
//! traffic. An XDP program on the media interface hands every datagram to
//! a relay's address and port straight to the worker's AF_XDP socket; the
//! worker runs it through the relay in the frame it arrived in, writes the
//! Ethernet/IPv4/UDP headers of the outgoing datagram in front of it and
//! puts the same frame on the TX ring. Nothing is copied in user space and
//! there is no socket system call per packet.
//!
//! A send goes this way only to a peer whose own packets the relay has
//! accepted on that socket: their frames name the next hop's MAC address
//! and our address, so the reply needs no routing or neighbour lookup of
//! its own (symmetric RTP, RFC 4961, as every PBX and cloud leg sends).
//! Until then — the first packets of a call, a peer that only listens —
//! the relay's ordinary socket sends it. The sockets stay bound and are
//! served too (epoll, as the fallback backend does): they hold the ports,
//! and carry what the program does not divert — datagrams that arrive on
//! another interface (a PBX on the same host comes in over loopback),
//! fragments, IP options.
//!
//! Limits, checked at start or per relay: IPv4 relays bound to a specific
//! address on the XDP interface; one worker per interface receive queue.

use super::epoll::SocketPath;
use super::{Core, Origin, Registry};
use crate::relay::{Socket, Verdict};
use crate::xdp::frame::{self, Route};
use crate::xdp::program::{self, Divert, Program};
use crate::xdp::socket::{XskSocket, XskStats};
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Longest sleep when idle: the timer granularity for sweeps and stats.
const WAIT: Duration = Duration::from_millis(20);
/// Frames handled per turn before commands and timers get a look.
const FRAMES_PER_TURN: u32 = 1024;
/// How often a busy worker looks at the relays' sockets and its doorbell.
const SOCKETS_EVERY: Duration = Duration::from_millis(1);
/// Datagrams the relays' sockets may take per look while frames wait:
/// the fast path goes first, so a flood the program hands to the sockets
/// (other sources to a cloud leg) cannot take the calls' frames' time.
/// The rest wait in the sockets, and the kernel drops (and counts) what
/// overflows them. 16 a millisecond: 16,000 a second, far more than the
/// first packets of new calls need.
const SOCKET_BUDGET_BUSY: usize = 16;
/// Datagrams the sockets may take per look when no frame waits: a look
/// stays short (well under a millisecond), so frames that arrive meanwhile
/// wait no longer than that.
const SOCKET_BUDGET_IDLE: usize = 256;
/// How often the socket's kernel counters are read.
const KERNEL_STATS_EVERY: Duration = Duration::from_secs(1);

/// The relay sockets the program diverts, and what each has learned.
struct FastPath {
    program: Program,
    /// The relays' sockets, for what does not come through the program.
    sockets: SocketPath,
    /// Per UDP port: slot * 4 + socket + 1, or 0.
    ports: Vec<u32>,
    /// Per slot and socket: its bound address.
    local: Vec<[Option<SocketAddrV4>; 4]>,
    /// Per slot and socket: how to reach the peer last accepted on it.
    learned: Vec<[Option<Route>; 4]>,
}

impl Registry for FastPath {
    fn register(
        &mut self,
        slot: usize,
        generation: u32,
        sockets: &[UdpSocket; 4],
    ) -> io::Result<()> {
        let mut local = [None; 4];
        for (i, s) in sockets.iter().enumerate() {
            let addr = match s.local_addr()? {
                SocketAddr::V4(a) if !a.ip().is_unspecified() => a,
                // The fast path is IPv4 to a specific address.
                _ => return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
            };
            if self.ports[addr.port() as usize] != 0 {
                return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
            }
            local[i] = Some(addr);
        }
        self.sockets.epoll.register(slot, generation, sockets)?;
        for (i, addr) in local.iter().flatten().enumerate() {
            // No peer yet: every source comes through until the relay
            // says whom it takes (`mirror_peers`, right after the add).
            let how = Divert {
                local: *addr.ip(),
                peer: None,
                others_to_socket: Socket::from_index(i).is_cloud(),
            };
            self.program.divert(addr.port(), Some(how))?;
            self.ports[addr.port() as usize] = (slot * 4 + i + 1) as u32;
        }
        self.local[slot] = local;
        self.learned[slot] = [None; 4];
        Ok(())
    }

    fn deregister(&mut self, slot: usize, generation: u32, sockets: &[UdpSocket; 4]) {
        self.sockets.epoll.deregister(slot, generation, sockets);
        for addr in self.local[slot].iter().flatten() {
            let _ = self.program.divert(addr.port(), None);
            self.ports[addr.port() as usize] = 0;
        }
        self.local[slot] = [None; 4];
    }
}

impl FastPath {
    /// Tells the program each changed socket's peer, so it drops (LAN) or
    /// hands to the socket (cloud) every other source before it costs a
    /// frame. Runs after whatever may change a peer: commands, the sockets'
    /// datagrams, a frame the relay accepted.
    fn mirror_peers(&mut self, core: &mut Core) {
        if !core.peer_changes.pending() {
            return;
        }
        if core.peer_changes.overflowed {
            core.peer_changes.overflowed = false;
            for slot in 0..self.local.len() {
                for socket in Socket::ALL {
                    self.mirror(core, slot, socket);
                }
            }
        }
        for i in 0..core.peer_changes.changed.len() {
            let (slot, socket) = core.peer_changes.changed[i];
            self.mirror(core, slot, socket);
        }
        core.peer_changes.changed.clear();
    }

    fn mirror(&self, core: &mut Core, slot: usize, socket: Socket) {
        let Some(local) = self.local.get(slot).and_then(|l| l[socket as usize]) else {
            return;
        };
        let Some(s) = core.slots.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let peer = match s.relay.peer(socket) {
            Some(SocketAddr::V4(p)) => Some(p),
            _ => None,
        };
        let how = Divert {
            local: *local.ip(),
            peer,
            others_to_socket: socket.is_cloud(),
        };
        if self.program.divert(local.port(), Some(how)).is_err() {
            core.stats.xdp_map_failures += 1;
        }
    }
}

/// Checks the kernel lets this process load XDP programs and open AF_XDP
/// sockets on `interface`.
pub fn probe(interface: &str) -> io::Result<Vec<&'static str>> {
    let ifindex = program::ifindex(interface)
        .map_err(|e| io::Error::new(e.kind(), format!("no interface {interface:?}: {e}")))?;
    if interface == "lo" {
        loopback_accepts_frames()?;
    }
    let queues = std::fs::read_dir(format!("/sys/class/net/{interface}/queues"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1);
    if queues > 1 {
        // Datagrams the NIC spreads to another queue would find no socket
        // behind the program there and go to sockets this backend does not read.
        return Err(io::Error::other(format!(
            "{interface} has {queues} receive queues and the xdp backend serves one (ethtool -L {interface} combined 1)"
        )));
    }
    let program = Program::attach(ifindex)?;
    let xsk = XskSocket::open(ifindex, 0)?;
    program.bind_socket(0, xsk.as_raw_fd())?;
    Ok(vec!["af_xdp copy mode"])
}

/// Frames written in user space reach loopback's receive path without the
/// route a socket's packets carry, so the kernel routes them as if they
/// came from a wire — and drops 127.0.0.0/8 traffic arriving that way
/// (martian) unless loopback is told to accept it.
const LOOPBACK_SYSCTLS: [&str; 2] = ["route_localnet", "accept_local"];

fn loopback_accepts_frames() -> io::Result<()> {
    for name in LOOPBACK_SYSCTLS {
        let path = format!("/proc/sys/net/ipv4/conf/lo/{name}");
        if std::fs::read_to_string(&path)?.trim() != "1" {
            return Err(io::Error::other(format!(
                "on loopback the kernel drops the frames this backend writes unless net.ipv4.conf.lo.{name}=1 (sysctl -w net.ipv4.conf.lo.route_localnet=1 net.ipv4.conf.lo.accept_local=1)"
            )));
        }
    }
    Ok(())
}

/// Runs the worker loop until `Shutdown`, diverting relay traffic on
/// `interface` (receive queue = worker index).
pub fn run(mut core: Core, interface: &str) -> io::Result<()> {
    let ifindex = program::ifindex(interface)?;
    let queue = core.config.index as u32;
    let program = Program::attach(ifindex)?;
    let mut xsk = XskSocket::open(ifindex, queue)?;
    program.bind_socket(queue, xsk.as_raw_fd())?;
    let n = core.config.max_relays;
    core.peer_changes = super::PeerChanges::tracking(n * 4);
    let mut fast = FastPath {
        program,
        sockets: SocketPath::new()?,
        ports: vec![0; 65_536],
        local: vec![[None; 4]; n],
        learned: vec![[None; 4]; n],
    };
    let mut fds = [
        libc::pollfd {
            fd: xsk.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: core.channel.doorbell.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: fast.sockets.epoll.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut kernel = XskStats::default();
    let mut last_kernel = Instant::now();
    let mut last_poll = last_kernel;
    while !core.stopping {
        // Idle: sleep until a frame, a command or a socket wakes us. Busy:
        // look at the sockets and the doorbell every millisecond only (a
        // system call per turn costs the frames' time).
        let idle = xsk.received() == 0 && xsk.tx_pending() == 0;
        if idle || last_poll.elapsed() >= SOCKETS_EVERY {
            for f in &mut fds {
                f.revents = 0;
            }
            let wait = if !idle {
                Duration::ZERO
            } else if core.may_sleep() {
                Duration::MAX
            } else {
                WAIT
            };
            crate::sys::poll(&mut fds, wait);
            last_poll = Instant::now();
            if fds[1].revents & libc::POLLIN != 0 {
                crate::sys::eventfd_drain(&core.channel.doorbell);
            }
            if fds[2].revents & libc::POLLIN != 0 {
                let budget = if idle {
                    SOCKET_BUDGET_IDLE
                } else {
                    SOCKET_BUDGET_BUSY
                };
                fast.sockets.serve(&mut core, Duration::ZERO, budget);
                fast.mirror_peers(&mut core);
            }
        }
        let now = Instant::now();
        if !core.channel.commands.is_empty() {
            core.commands(now, &mut fast);
            fast.mirror_peers(&mut core);
        }
        turn(&mut core, &mut fast, &mut xsk, now);
        if now.saturating_duration_since(last_kernel) >= KERNEL_STATS_EVERY {
            last_kernel = now;
            kernel_counters(&mut core, &fast, &xsk, &mut kernel);
        }
        core.tick(now);
    }
    kernel_counters(&mut core, &fast, &xsk, &mut kernel);
    core.publish();
    Ok(())
}

/// What the kernel counted for this worker: the AF_XDP socket's drops
/// (since `last`) and the program's foreign sources.
fn kernel_counters(core: &mut Core, fast: &FastPath, xsk: &XskSocket, last: &mut XskStats) {
    if let Ok(s) = xsk.stats() {
        let lost = |s: &XskStats| s.rx_dropped + s.rx_ring_full + s.tx_invalid;
        core.stats.kernel_drops += lost(&s).saturating_sub(lost(last));
        *last = s;
    }
    if let Ok(f) = fast.program.foreign() {
        core.stats.xdp_foreign_dropped = f.dropped;
        core.stats.xdp_foreign_passed = f.passed;
    }
}

/// Takes up to [`FRAMES_PER_TURN`] received frames through their relays
/// and sends what they say.
fn turn(core: &mut Core, fast: &mut FastPath, xsk: &mut XskSocket, now: Instant) {
    xsk.reclaim();
    let ready = xsk.received().min(FRAMES_PER_TURN);
    for _ in 0..ready {
        let (addr, len) = xsk.take_received();
        core.stats.xdp_received += 1;
        if one(core, fast, xsk, now, addr, len) {
            core.stats.sent += 1;
            core.stats.xdp_sent += 1;
        } else {
            xsk.recycle(addr);
        }
        fast.mirror_peers(core);
    }
    if ready > 0 {
        xsk.release_received();
    }
    // Also what an earlier turn left queued (the kernel stopped early).
    if xsk.tx_pending() > 0 && xsk.flush().is_err() {
        core.stats.xdp_kicks_failed += 1;
    }
    xsk.reclaim();
    xsk.refill();
}

/// One received frame. Returns whether it went on the TX ring (otherwise
/// the frame is free again).
fn one(
    core: &mut Core,
    fast: &mut FastPath,
    xsk: &mut XskSocket,
    now: Instant,
    addr: u64,
    len: usize,
) -> bool {
    let room = xsk.tx_room() > 0;
    let buf = xsk.frame_mut(addr);
    let Some(got) = buf.get(..len).and_then(frame::parse) else {
        core.stats.stray += 1;
        return false;
    };
    let code = fast.ports[got.dst.port() as usize] as usize;
    if code == 0 {
        core.stats.stray += 1;
        return false;
    }
    let (slot, socket) = ((code - 1) / 4, Socket::from_index((code - 1) % 4));
    let from = Origin {
        slot,
        socket,
        src: SocketAddr::V4(got.src),
    };
    let payload = &mut buf[got.payload..];
    let Some(Verdict::Send {
        socket: out,
        to,
        len,
    }) = core.process(now, from, &[], payload, got.len)
    else {
        return false;
    };
    // Accepted: this is how the sender is reached.
    fast.learned[slot][socket as usize] = Some(Route {
        src_mac: got.dst_mac,
        dst_mac: got.src_mac,
        src: got.dst,
        dst: got.src,
        tos: 0,
    });
    let route = match (fast.learned[slot][out as usize], to) {
        (Some(r), SocketAddr::V4(to)) if r.dst == to && room => Route {
            tos: match out {
                Socket::LanRtp | Socket::CloudRtp => core.config.dscp << 2,
                _ => 0,
            },
            ..r
        },
        _ => {
            send_by_socket(core, slot, out, to, &buf[got.payload..got.payload + len]);
            return false;
        }
    };
    match frame::write(buf, &route, len) {
        Some(n) => {
            xsk.send(addr, n);
            true
        }
        None => {
            core.send_failed(slot);
            false
        }
    }
}

/// The ordinary way out, for peers not yet reached by their own frames.
fn send_by_socket(core: &mut Core, slot: usize, out: Socket, to: SocketAddr, bytes: &[u8]) {
    let Some(s) = core.slots.get(slot).and_then(Option::as_ref) else {
        return;
    };
    let sock = &s.sockets[out as usize];
    let r = if s.connected_to(out, to) {
        sock.send(bytes)
    } else {
        sock.send_to(bytes, to)
    };
    match r {
        Ok(_) => core.stats.sent += 1,
        Err(_) => core.send_failed(slot),
    }
}

//! The boundary between the planes: flat commands down, events up, over
//! bounded lock-free queues (crossbeam `ArrayQueue`) with an eventfd to wake
//! the worker. A full command queue hands the command back (the engine's
//! `backlog` keeps it waiting, or refuses a new relay); a full event
//! queue makes the worker drop (and count) the event: the packet path never
//! waits on the control plane.

use crate::drops::DropCounters;
use crate::relay::{MediaDirection, RelayEvent, RelayId, RelaySpec, RelayStats, Socket};
use crossbeam_queue::ArrayQueue;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Commands a worker queue holds. Bounded so a stuck worker shows up as
/// `QueueFull` at the control plane instead of growing memory.
pub const COMMAND_QUEUE: usize = 1024;
/// Events a worker may have outstanding before it starts dropping them:
/// the most, for a worker of many relays ([`event_room`]).
pub const EVENT_QUEUE: usize = 8192;

/// Events a worker holding `max_relays` relays may have outstanding: 16 a
/// relay (its end, its time-out, a leg latched or moved, telephone events
/// between two drains of the control plane), at least 512, at most
/// [`EVENT_QUEUE`]. An event is about 600 bytes and a queue is written
/// through when made, so a small site's worker keeps about 300 KiB here
/// rather than 5 MiB.
pub fn event_room(max_relays: usize) -> usize {
    max_relays.saturating_mul(16).clamp(512, EVENT_QUEUE)
}

/// A relay whose sockets are bound: LAN RTP, LAN RTCP, cloud RTP, cloud
/// RTCP.
#[derive(Debug)]
pub struct BoundRelay {
    /// The relay.
    pub spec: RelaySpec,
    /// Its sockets, bound to its ports.
    pub sockets: [std::net::UdpSocket; 4],
}

/// A command to one worker.
#[derive(Debug)]
pub enum Command {
    /// Bind the relay's four ports and start relaying.
    Add(Box<RelaySpec>),
    /// Start relaying on the four sockets the control plane bound already
    /// (so media that comes before the worker takes the command waits in
    /// them rather than meeting a closed port).
    AddBound(Box<BoundRelay>),
    /// Change which way media flows (hold, resume).
    SetDirection {
        /// Relay.
        id: RelayId,
        /// New direction.
        direction: MediaDirection,
    },
    /// Set a leg's remote RTP address (RTCP is the next port).
    SetRemote {
        /// Relay.
        id: RelayId,
        /// LAN leg (true) or cloud leg.
        lan: bool,
        /// The remote.
        remote: SocketAddr,
    },
    /// Replace the SRTP suite and keys (and payload-type maps).
    Rekey(Box<RelaySpec>),
    /// What may flow each way (a re-INVITE changed codecs).
    SetPayloadTypes {
        /// Relay.
        id: RelayId,
        /// PBX → cloud.
        lan_to_cloud: Box<crate::direction::DirectionConfig>,
        /// Cloud → PBX.
        cloud_to_lan: Box<crate::direction::DirectionConfig>,
    },
    /// The cloud's new key: only cloud → PBX changes (a re-INVITE).
    SetCloudKey {
        /// Relay.
        id: RelayId,
        /// Suite of the key.
        suite: crate::srtp::Suite,
        /// The cloud's key toward the gateway.
        key: Box<crate::MasterKey>,
    },
    /// Stop relaying, close the ports, report final stats.
    Remove {
        /// Relay.
        id: RelayId,
    },
    /// Report the relay's counters.
    ReadStats {
        /// Relay.
        id: RelayId,
    },
    /// Stop the worker (after removing every relay).
    Shutdown,
}

/// Why a relay could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddFailure {
    /// One of the four ports could not be bound (errno).
    Bind {
        /// Which socket.
        socket: Socket,
        /// Port.
        port: u16,
        /// OS error number.
        errno: i32,
    },
    /// The id is already in use on this worker.
    DuplicateId,
    /// The worker's relay table is full.
    TableFull,
    /// The SRTP context could not be built.
    Srtp,
    /// The I/O backend could not register the sockets (errno).
    Register {
        /// OS error number.
        errno: i32,
    },
}

/// Counters of one worker, published every second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Relays running.
    pub relays: u64,
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Drops of every relay, by reason (cumulative, removed relays included).
    pub drops: DropCounters,
    /// Receives re-armed because the provided-buffer ring ran dry.
    pub enobufs: u64,
    /// Datagrams the kernel dropped: on full socket queues (SO_RXQ_OVFL),
    /// or the AF_XDP socket's full rings and refused frames (xdp backend).
    pub kernel_drops: u64,
    /// Datagrams for a relay that was already gone.
    pub stray: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Loop turns.
    pub turns: u64,
    /// Receive completions that left their multishot request armed
    /// (io_uring: proof multishot receive is active).
    pub multishot_completions: u64,
    /// Receive completions that carried a provided buffer (io_uring: proof
    /// the provided-buffer ring is in use).
    pub provided_buffer_completions: u64,
    /// Datagrams sent as frames on the AF_XDP TX ring (xdp backend: proof
    /// the fast path carries them; the rest left by their socket).
    pub xdp_sent: u64,
    /// Datagrams that came in as frames through the XDP program (xdp
    /// backend; the rest came in by their socket).
    pub xdp_received: u64,
    /// AF_XDP send kicks the kernel refused (xdp backend; the frames stay
    /// queued for the next).
    pub xdp_kicks_failed: u64,
    /// Datagrams to a LAN leg from a source other than its peer, dropped by
    /// the XDP program before they cost a frame (xdp backend).
    pub xdp_foreign_dropped: u64,
    /// Datagrams to a cloud leg from a source other than its peer, handed
    /// by the XDP program to the relay's socket, where the relay checks
    /// them (xdp backend).
    pub xdp_foreign_passed: u64,
    /// Updates of the XDP program's port map that failed (xdp backend: the
    /// port then keeps its previous filter).
    pub xdp_map_failures: u64,
}

/// Something a worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// A relay is up.
    Added {
        /// Relay.
        id: RelayId,
        /// Worker it runs on.
        worker: usize,
    },
    /// A relay could not be added.
    AddFailed {
        /// Relay.
        id: RelayId,
        /// Why.
        reason: AddFailure,
    },
    /// A relay's latching, timeout or SRTP alarm.
    Relay {
        /// Relay.
        id: RelayId,
        /// What happened.
        event: RelayEvent,
    },
    /// Counters asked for with `ReadStats`.
    Stats {
        /// Relay.
        id: RelayId,
        /// Counters.
        stats: RelayStats,
    },
    /// A relay is gone; its final counters.
    Removed {
        /// Relay.
        id: RelayId,
        /// Final counters.
        stats: RelayStats,
    },
    /// A command named a relay this worker does not have.
    NotFound {
        /// Relay.
        id: RelayId,
    },
    /// A copy of an RTCP datagram a relay passed (its spec asked).
    Rtcp {
        /// Relay.
        id: RelayId,
        /// The copy.
        copy: crate::relay::RtcpCopy,
    },
    /// Periodic worker counters.
    Worker {
        /// Worker index.
        worker: usize,
        /// Counters.
        stats: WorkerStats,
    },
    /// The worker stopped.
    Stopped {
        /// Worker index.
        worker: usize,
    },
}

/// The command queue was full; the command was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "data-plane worker {worker} command queue is full ({COMMAND_QUEUE} commands): the worker is overloaded or stuck"
)]
pub struct QueueFull {
    /// Worker.
    pub worker: usize,
}

/// The queues and doorbell shared by the control plane and one worker.
#[derive(Debug)]
pub struct Channel {
    /// Commands down.
    pub commands: ArrayQueue<Command>,
    /// Events up.
    pub events: ArrayQueue<Event>,
    /// Rung after pushing commands.
    pub doorbell: OwnedFd,
}

impl Channel {
    /// A fresh channel with room for [`EVENT_QUEUE`] events.
    pub fn new() -> std::io::Result<Arc<Self>> {
        Self::with_event_room(EVENT_QUEUE)
    }

    /// A fresh channel with room for `events` events ([`event_room`]).
    pub fn with_event_room(events: usize) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            commands: ArrayQueue::new(COMMAND_QUEUE),
            events: ArrayQueue::new(events.max(1)),
            doorbell: crate::sys::eventfd()?,
        }))
    }

    /// Queues a command and wakes the worker.
    pub fn send(&self, worker: usize, cmd: Command) -> Result<(), QueueFull> {
        self.try_send(cmd).map_err(|_| QueueFull { worker })
    }

    /// Queues a command and wakes the worker; a full queue hands it back.
    pub fn try_send(&self, cmd: Command) -> Result<(), Command> {
        self.try_push(cmd)?;
        self.ring();
        Ok(())
    }

    /// Queues a command without waking the worker (the caller rings once
    /// for a batch); a full queue hands it back.
    pub fn try_push(&self, cmd: Command) -> Result<(), Command> {
        self.commands.push(cmd)
    }

    /// Wakes the worker to take what was queued.
    pub fn ring(&self) {
        crate::sys::eventfd_ring(&self.doorbell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_command_queue_is_an_error_not_a_wait() {
        let ch = Channel::new().unwrap();
        for id in 0..COMMAND_QUEUE as u64 {
            ch.send(3, Command::ReadStats { id }).unwrap();
        }
        assert_eq!(
            ch.send(3, Command::Remove { id: 1 }).unwrap_err(),
            QueueFull { worker: 3 }
        );
        ch.commands.pop();
        assert!(ch.send(3, Command::Remove { id: 1 }).is_ok());
    }
}

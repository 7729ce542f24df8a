//! Which UDP socket a message leaves from: the PBX trunk's listener or the
//! subscriber side's (SPEC §3: 5060 and 5070). A PBX may be trunk and
//! registrar at one address, so the destination alone does not say; every
//! UDP send names both.

use std::net::SocketAddr;
use tokio::sync::mpsc;

/// One of the gateway's UDP listeners toward the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// The PBX trunk (5060).
    Trunk,
    /// The subscriber side (5070): Softphone users' registrations and calls.
    Subscriber,
}

/// Where a UDP message goes, and from which listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpDest {
    /// The listener it leaves from.
    pub from: Listener,
    /// Its destination.
    pub to: SocketAddr,
}

impl UdpDest {
    /// To `to` from the trunk's listener.
    pub fn trunk(to: SocketAddr) -> Self {
        Self {
            from: Listener::Trunk,
            to,
        }
    }

    /// To `to` from the subscriber side's listener.
    pub fn subscriber(to: SocketAddr) -> Self {
        Self {
            from: Listener::Subscriber,
            to,
        }
    }
}

/// The listeners' send queues (unbounded: they carry the node's own
/// messages, a handful per call, never a peer's flood).
#[derive(Debug, Clone)]
pub struct UdpOut {
    trunk: mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>,
    subscriber: Option<mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>>,
}

impl UdpOut {
    /// Queues toward the trunk's listener and, when it runs, the
    /// subscriber side's.
    pub fn new(
        trunk: mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>,
        subscriber: Option<mpsc::UnboundedSender<(SocketAddr, Vec<u8>)>>,
    ) -> Self {
        Self { trunk, subscriber }
    }

    /// Sends `bytes` as `dest` says; to a listener that does not run,
    /// nothing (counted by the caller's timeouts).
    pub fn send(&self, dest: UdpDest, bytes: Vec<u8>) {
        let _ = match dest.from {
            Listener::Trunk => self.trunk.send((dest.to, bytes)),
            Listener::Subscriber => match &self.subscriber {
                Some(s) => s.send((dest.to, bytes)),
                None => return,
            },
        };
    }
}

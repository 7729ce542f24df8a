//! Who sent a request, and so where its answers and retransmissions go.

use super::udp::UdpDest;
use std::net::SocketAddr;

/// Who sent a request: where its transaction's retransmissions go.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A UDP source, on the PBX trunk's listener (or the cloud's).
    Udp(SocketAddr),
    /// A UDP source on the subscriber side's listener (the PBX reaching a
    /// Softphone user the gateway registered).
    Subscriber(SocketAddr),
    /// A connection (TCP or TLS): reliable, never retransmitted to; with
    /// its write queue when calls may need to send on it later.
    Stream(Option<tokio::sync::mpsc::Sender<Vec<u8>>>),
}

impl Peer {
    /// Where a reply over UDP goes (none for a connection).
    pub fn udp_dest(&self) -> Option<UdpDest> {
        match self {
            Peer::Udp(a) => Some(UdpDest::trunk(*a)),
            Peer::Subscriber(a) => Some(UdpDest::subscriber(*a)),
            Peer::Stream(_) => None,
        }
    }
}

//! Where calls find the connections the gateway dialled: the trunk to the
//! cloud and the TCP link to the PBX. The loops that keep them write here;
//! the call driver reads. Below both, so neither names the other.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The trunk's current connection (none while down).
#[derive(Debug, Clone)]
pub struct CloudConn {
    /// Its write queue.
    pub out: mpsc::Sender<Vec<u8>>,
    /// The gateway's end of it.
    pub local: SocketAddr,
    /// That end as the cloud sees it, learned from the `received` and
    /// `rport` of the keep-alives' responses (RFC 3581): behind NAT, the
    /// router's address and port. Via and Contact toward the cloud name
    /// it, so the cloud's requests come back over this connection
    /// (RFC 5923-style reuse).
    pub public: Option<SocketAddr>,
}

impl CloudConn {
    /// The address the cloud reaches this connection by.
    pub fn seen_as(&self) -> SocketAddr {
        self.public.unwrap_or(self.local)
    }
}

/// Where calls find the trunk's connection.
pub type CloudPath = Arc<Mutex<Option<CloudConn>>>;

/// The current connection's write queue (none while down).
pub type PbxPath = Arc<Mutex<Option<mpsc::Sender<Vec<u8>>>>>;

//! A lossy wire for SIP over UDP between the gateway and a PBX peer: two
//! loopback sockets and a thread forwarding between them, dropping the
//! datagrams toward the PBX that a predicate picks — a LAN losing packets,
//! deterministically. The gateway is configured with the wire's
//! PBX-facing address as its PBX; the PBX peer talks to the wire's other
//! address as if it were the gateway. Stops when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A running wire.
#[derive(Debug)]
pub struct LossyWire {
    /// Where the gateway sends to reach the PBX.
    pub pbx_for_gateway: SocketAddr,
    /// Where the PBX peer sends to reach the gateway.
    pub gateway_for_pbx: SocketAddr,
    lost: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LossyWire {
    /// Forwards between `gateway` and `pbx` (their SIP addresses), losing
    /// each datagram toward the PBX for which `lose` is true.
    pub fn new(
        gateway: SocketAddr,
        pbx: SocketAddr,
        mut lose: impl FnMut(&[u8]) -> bool + Send + 'static,
    ) -> LossyWire {
        let gw_side = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pbx_side = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&gw_side, &pbx_side] {
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        }
        let (lost, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let pbx_for_gateway = gw_side.local_addr().unwrap();
        let gateway_for_pbx = pbx_side.local_addr().unwrap();
        let (lost_count, stopper) = (lost.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65_535];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = gw_side.recv(&mut buf) {
                    if lose(&buf[..n]) {
                        lost.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let _ = pbx_side.send_to(&buf[..n], pbx);
                    }
                }
                if let Ok(n) = pbx_side.recv(&mut buf) {
                    let _ = gw_side.send_to(&buf[..n], gateway);
                }
            }
        });
        LossyWire {
            pbx_for_gateway,
            gateway_for_pbx,
            lost: lost_count,
            stop: stopper,
            thread: Some(thread),
        }
    }

    /// Datagrams lost so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for LossyWire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! Watches IPv4 packets on the machine (AF_PACKET, needs root) to check how
//! the gateway marks them: the TOS byte carries the DSCP. Tests only send
//! on loopback, so what it sees is theirs.

use socket2::{Domain, Protocol, Socket, Type};
use std::io::Read;
use std::time::{Duration, Instant};

/// A packet socket receiving IPv4 packets (link header stripped).
#[derive(Debug)]
pub struct Capture(Socket);

const ETH_P_IP: u16 = 0x0800;

impl Capture {
    /// Opens the capture; open it before the traffic it should see.
    pub fn open() -> std::io::Result<Capture> {
        let s = Socket::new(
            Domain::PACKET,
            Type::DGRAM,
            Some(Protocol::from(i32::from(ETH_P_IP.to_be()))),
        )?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Capture(s))
    }

    /// The TOS byte of the first packet of IP protocol `proto` (6 TCP,
    /// 17 UDP) sent from `src_port` with a payload, within `timeout`.
    pub fn tos_from(&mut self, proto: u8, src_port: u16, timeout: Duration) -> Option<u8> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 65_536];
        while Instant::now() < deadline {
            let Ok(n) = self.0.read(&mut buf) else {
                continue;
            };
            let p = &buf[..n];
            if n < 20 || p[0] >> 4 != 4 || p[9] != proto {
                continue;
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(n);
            let Some(l4) = p.get(ihl..total) else {
                continue;
            };
            if l4.len() < 8 || u16::from_be_bytes([l4[0], l4[1]]) != src_port {
                continue;
            }
            let header = if proto == 6 {
                usize::from(l4.get(12).copied().unwrap_or(0xf0) >> 4) * 4
            } else {
                8
            };
            if l4.len() > header {
                return Some(p[1]);
            }
        }
        None
    }
}

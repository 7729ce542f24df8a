//! DiffServ marking of the SIP sockets.

use std::os::fd::AsFd;

/// Marks a socket's packets with `dscp` (IP TOS / IPv6 traffic class).
pub fn set_dscp(socket: &impl AsFd, ipv6: bool, dscp: u8) -> std::io::Result<()> {
    let s = socket2::SockRef::from(socket);
    let tos = u32::from(dscp) << 2;
    if ipv6 {
        s.set_tclass_v6(tos)
    } else {
        s.set_tos_v4(tos)
    }
}

//! The platform's STUN service (RFC 5389 Binding only): each Binding
//! request gets a success response carrying XOR-MAPPED-ADDRESS, the
//! address it came from. For the demo, whose gateway learns its public
//! address and runs its diagnostics against cloudsim alone (the tests use
//! coturn). Anything else is left unanswered.

use std::net::{IpAddr, SocketAddr};

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// The success response to `request` from `from`, if it is a Binding
/// request.
pub fn answer(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if request.len() < 20 || request[..2] != [0x00, 0x01] || request[4..8] != MAGIC {
        return None;
    }
    let port = from.port() ^ 0x2112;
    let mut value = vec![0, 0];
    value.extend_from_slice(&port.to_be_bytes());
    match from.ip() {
        IpAddr::V4(ip) => {
            value[1] = 1;
            value.extend(ip.octets().iter().zip(MAGIC).map(|(a, m)| a ^ m));
        }
        IpAddr::V6(ip) => {
            value[1] = 2;
            let key: Vec<u8> = MAGIC.iter().chain(&request[8..20]).copied().collect();
            value.extend(ip.octets().iter().zip(key).map(|(a, k)| a ^ k));
        }
    }
    let mut m = vec![0x01, 0x01];
    m.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
    m.extend_from_slice(&request[4..20]);
    m.extend_from_slice(&[0x00, 0x20]);
    m.extend_from_slice(&(value.len() as u16).to_be_bytes());
    m.extend_from_slice(&value);
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbxlink_sip::stun::{binding_request, mapped_address};

    #[test]
    fn the_gateway_reads_the_address_it_was_seen_from() {
        let id = [7u8; 12];
        for from in ["127.0.0.1:40000", "[2001:db8::5]:3478"] {
            let from: SocketAddr = from.parse().unwrap();
            let reply = answer(&binding_request(id), from).unwrap();
            assert_eq!(mapped_address(&reply, id), Ok(from));
        }
        assert!(answer(&[0u8; 20], "127.0.0.1:1".parse().unwrap()).is_none());
    }
}

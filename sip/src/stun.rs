//! The STUN Binding exchange (RFC 5389) the gateway uses to learn its
//! public address when none is configured, sans-IO: a request out, the
//! mapped address from the response in. Only what that needs: no
//! authentication (a Binding to the cloud's STUN server needs none),
//! `MESSAGE-INTEGRITY` and `FINGERPRINT` are skipped like any attribute.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// RFC 5389 magic cookie.
const MAGIC: u32 = 0x2112_a442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const MAPPED_ADDRESS: u16 = 0x0001;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER: usize = 20;

/// Why a datagram is not the answer to our request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than its header or its attributes claim.
    #[error("truncated STUN message")]
    Truncated,
    /// Not a Binding success response (an error response, another method).
    #[error("not a Binding success response (type {0:#06x})")]
    NotSuccess(u16),
    /// No magic cookie: not RFC 5389 STUN.
    #[error("no STUN magic cookie")]
    NoCookie,
    /// Answers another transaction.
    #[error("another transaction")]
    OtherTransaction,
    /// No (XOR-)MAPPED-ADDRESS the gateway can read.
    #[error("no mapped address")]
    NoAddress,
}

/// A Binding request for transaction `id`.
pub fn binding_request(id: [u8; 12]) -> [u8; HEADER] {
    let mut m = [0u8; HEADER];
    m[..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    m[4..8].copy_from_slice(&MAGIC.to_be_bytes());
    m[8..].copy_from_slice(&id);
    m
}

/// The address the server saw the request come from, from its Binding
/// success response to transaction `id`.
pub fn mapped_address(msg: &[u8], id: [u8; 12]) -> Result<SocketAddr, StunError> {
    let header = msg.get(..HEADER).ok_or(StunError::Truncated)?;
    let kind = u16::from_be_bytes([header[0], header[1]]);
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[4..8] != MAGIC.to_be_bytes() {
        return Err(StunError::NoCookie);
    }
    if kind != BINDING_SUCCESS {
        return Err(StunError::NotSuccess(kind));
    }
    if header[8..] != id {
        return Err(StunError::OtherTransaction);
    }
    let mut attrs = msg.get(HEADER..HEADER + len).ok_or(StunError::Truncated)?;
    let mut plain = None;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + alen).ok_or(StunError::Truncated)?;
        match kind {
            XOR_MAPPED_ADDRESS => {
                if let Some(a) = address(value, Some(&header[4..HEADER])) {
                    return Ok(a);
                }
            }
            MAPPED_ADDRESS => plain = plain.or(address(value, None)),
            _ => {}
        }
        // Attributes are padded to 4 bytes.
        let next = (4 + alen + 3) & !3;
        attrs = attrs.get(next..).unwrap_or_default();
    }
    plain.ok_or(StunError::NoAddress)
}

/// A (XOR-)MAPPED-ADDRESS value; `xor` is the cookie and transaction id.
fn address(v: &[u8], xor: Option<&[u8]>) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let mask = |i: usize| xor.map_or(0, |x| x[i]);
    let port = u16::from_be_bytes([v.get(2)? ^ mask(0), v.get(3)? ^ mask(1)]);
    let ip = match family {
        1 => {
            let b = v.get(4..8)?;
            IpAddr::V4(Ipv4Addr::new(
                b[0] ^ mask(0),
                b[1] ^ mask(1),
                b[2] ^ mask(2),
                b[3] ^ mask(3),
            ))
        }
        2 => {
            let b = v.get(4..20)?;
            let mut a = [0u8; 16];
            for (i, x) in a.iter_mut().enumerate() {
                *x = b[i] ^ mask(i);
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const ID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 §2.2: the sample IPv4 response (192.0.2.1 port 32853).
    #[test]
    fn rfc5769_sample_ipv4_response() {
        let m = hex("0101 003c 2112 a442 b7e7 a701 bc34 d686 fa87 dfae
             8022 000b 7465 7374 2076 6563 746f 7220
             0020 0008 0001 a147 e112 a643
             0008 0014 2b91 f599 fd9e 90c3 8c74 89f9 2af9 ba53 f06b e7d7
             8028 0004 c07d 4c96");
        assert_eq!(
            mapped_address(&m, ID),
            Ok("192.0.2.1:32853".parse().unwrap())
        );
        let mut other = ID;
        other[0] ^= 1;
        assert_eq!(mapped_address(&m, other), Err(StunError::OtherTransaction));
        assert_eq!(mapped_address(&m[..30], ID), Err(StunError::Truncated));
    }

    /// RFC 5769 §2.3: the sample IPv6 response (2001:db8:1234:5678:11:2233:4455:6677 port 32853).
    #[test]
    fn rfc5769_sample_ipv6_response() {
        let m = hex("0101 0048 2112 a442 b7e7 a701 bc34 d686 fa87 dfae
             8022 000b 7465 7374 2076 6563 746f 7220
             0020 0014 0002 a147 0113 a9fa a5d3 f179 bc25 f4b5 bed2 b9d9
             0008 0014 a382 954e 4be6 7bf1 1784 c97c 8292 c275 bfe3 ed41
             8028 0004 c8fb 0b4c");
        assert_eq!(
            mapped_address(&m, ID),
            Ok("[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap())
        );
    }

    #[test]
    fn requests_and_refusals() {
        let r = binding_request(ID);
        assert_eq!(&r[..8], &[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(&r[8..], &ID);
        let mut error = binding_request(ID).to_vec();
        error[..2].copy_from_slice(&0x0111u16.to_be_bytes());
        assert_eq!(
            mapped_address(&error, ID),
            Err(StunError::NotSuccess(0x0111))
        );
        let mut empty = binding_request(ID).to_vec();
        empty[..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
        assert_eq!(mapped_address(&empty, ID), Err(StunError::NoAddress));
        empty[4] = 0;
        assert_eq!(mapped_address(&empty, ID), Err(StunError::NoCookie));
    }
}

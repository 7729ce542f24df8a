//! The platform's time service: an SNTP server (RFC 4330 §5) on UDP that
//! answers each client request with its own clock (stratum 2), for the
//! gateway's start-up diagnostics. Anything that is not a client request
//! of 48 bytes or more is left unanswered.

use std::time::SystemTime;

/// Seconds from 1900 (NTP) to 1970 (Unix).
const UNIX_TO_NTP: u64 = 2_208_988_800;

fn now() -> [u8; 8] {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&((d.as_secs() + UNIX_TO_NTP) as u32).to_be_bytes());
    b[4..]
        .copy_from_slice(&((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000).to_be_bytes()[4..]);
    b
}

/// The answer to `request` received at `received`, if it is a client's.
fn answer(request: &[u8], received: [u8; 8]) -> Option<[u8; 48]> {
    let first = *request.first()?;
    if request.len() < 48 || first & 0x07 != 3 {
        return None;
    }
    let mut m = [0u8; 48];
    m[0] = (first & 0x38) | 4; // no leap warning, the client's version, server
    m[1] = 2; // stratum
    m[2] = request[2]; // poll
    m[3] = 0xec; // precision: about 60 ns
    m[12..16].copy_from_slice(b"SIM\0");
    m[16..24].copy_from_slice(&received);
    m[24..32].copy_from_slice(&request[40..48]);
    m[32..40].copy_from_slice(&received);
    m[40..48].copy_from_slice(&now());
    Some(m)
}

/// The answer to a datagram, now.
pub fn reply(request: &[u8], _from: std::net::SocketAddr) -> Option<Vec<u8>> {
    answer(request, now()).map(|a| a.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_request_is_answered_with_its_stamp_and_others_are_not() {
        let mut request = [0u8; 48];
        request[0] = 0x23;
        request[40..48].copy_from_slice(&[9; 8]);
        let a = answer(&request, now()).unwrap();
        assert_eq!(a[0], 0x24, "version 4, server");
        assert_eq!(a[1], 2);
        assert_eq!(a[24..32], [9; 8], "the client's transmit time echoed");
        request[0] = 0x24;
        assert!(answer(&request, now()).is_none(), "a server's packet");
        assert!(answer(&request[..47], now()).is_none());
    }
}

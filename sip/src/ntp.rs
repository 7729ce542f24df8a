//! The SNTP client exchange (RFC 4330) the start-up diagnostics use to
//! ask whether an NTP server answers and how far the gateway's clock is
//! from it, sans-IO: a request for a transmit time, the offset from the
//! server's answer and the time it came. Times are seconds since the NTP
//! era (1900), as `f64`.

/// An NTP packet's size without extensions.
pub const PACKET: usize = 48;

/// Seconds from 1900 (NTP) to 1970 (Unix).
pub const UNIX_TO_NTP: f64 = 2_208_988_800.0;

const VERSION: u8 = 4;
const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;
const ALARM: u8 = 3;

/// Why an answer is no use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NtpError {
    /// Shorter than an NTP packet.
    #[error("truncated NTP packet ({0} bytes)")]
    Truncated(usize),
    /// Not a server's answer (another mode).
    #[error("not an NTP server answer (mode {0})")]
    NotServer(u8),
    /// Answers another request.
    #[error("answers another request")]
    OtherRequest,
    /// The server refuses to serve (stratum 0: kiss-o'-death).
    #[error("the server says no (kiss code {0})")]
    Kiss(String),
    /// The server's own clock is not synchronised.
    #[error("the server's clock is not synchronised")]
    Unsynchronised,
}

/// What the server's answer tells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// The server's stratum (1: a reference clock).
    pub stratum: u8,
    /// The server's clock minus ours, in seconds.
    pub offset: f64,
    /// The round trip, in seconds, less the server's own time.
    pub delay: f64,
}

fn timestamp(t: f64) -> [u8; 8] {
    let secs = t.trunc();
    let frac = ((t - secs) * 4_294_967_296.0) as u32;
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&(secs as u64 as u32).to_be_bytes());
    b[4..].copy_from_slice(&frac.to_be_bytes());
    b
}

fn seconds(b: &[u8]) -> f64 {
    let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let frac = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    f64::from(secs) + f64::from(frac) / 4_294_967_296.0
}

/// A client request sent at `sent`; what to keep to match its answer.
pub fn request(sent: f64) -> ([u8; PACKET], [u8; 8]) {
    let mut m = [0u8; PACKET];
    m[0] = (VERSION << 3) | MODE_CLIENT;
    let stamp = timestamp(sent);
    m[40..48].copy_from_slice(&stamp);
    (m, stamp)
}

/// The server's `answer` to the request stamped `stamp` (sent at
/// `sent`), received at `received`.
pub fn answer(msg: &[u8], stamp: [u8; 8], sent: f64, received: f64) -> Result<Answer, NtpError> {
    if msg.len() < PACKET {
        return Err(NtpError::Truncated(msg.len()));
    }
    let mode = msg[0] & 0x07;
    if mode != MODE_SERVER {
        return Err(NtpError::NotServer(mode));
    }
    if msg[24..32] != stamp {
        return Err(NtpError::OtherRequest);
    }
    let stratum = msg[1];
    if stratum == 0 {
        return Err(NtpError::Kiss(
            String::from_utf8_lossy(&msg[12..16])
                .trim_end_matches('\0')
                .to_owned(),
        ));
    }
    if msg[0] >> 6 == ALARM || stratum > 15 {
        return Err(NtpError::Unsynchronised);
    }
    let server_received = seconds(&msg[32..40]);
    let server_sent = seconds(&msg[40..48]);
    Ok(Answer {
        stratum,
        offset: ((server_received - sent) + (server_sent - received)) / 2.0,
        delay: (received - sent) - (server_sent - server_received),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server at `skew` seconds from us, answering `req` after `after`.
    fn server(req: &[u8], at: f64, skew: f64, stratum: u8) -> [u8; PACKET] {
        let mut m = [0u8; PACKET];
        m[0] = (VERSION << 3) | MODE_SERVER;
        m[1] = stratum;
        m[24..32].copy_from_slice(&req[40..48]);
        m[32..40].copy_from_slice(&timestamp(at + skew));
        m[40..48].copy_from_slice(&timestamp(at + skew + 0.001));
        m
    }

    #[test]
    fn the_offset_and_delay_come_from_the_four_times() {
        let t1 = 3_900_000_000.25;
        let (req, stamp) = request(t1);
        assert_eq!(req[0], 0x23, "version 4, client");
        let reply = server(&req, t1 + 0.010, 2.5, 2);
        let a = answer(&reply, stamp, t1, t1 + 0.021).unwrap();
        assert_eq!(a.stratum, 2);
        assert!((a.offset - 2.5).abs() < 0.001, "{a:?}");
        assert!((a.delay - 0.020).abs() < 0.001, "{a:?}");
    }

    #[test]
    fn what_is_no_answer_is_named() {
        let t1 = 3_900_000_000.0;
        let (req, stamp) = request(t1);
        let good = server(&req, t1, 0.0, 3);
        assert_eq!(
            answer(&good[..47], stamp, t1, t1),
            Err(NtpError::Truncated(47))
        );
        assert_eq!(answer(&req, stamp, t1, t1), Err(NtpError::NotServer(3)));
        let (_, other) = request(t1 + 1.0);
        assert_eq!(answer(&good, other, t1, t1), Err(NtpError::OtherRequest));
        let mut kiss = server(&req, t1, 0.0, 0);
        kiss[12..16].copy_from_slice(b"RATE");
        assert_eq!(
            answer(&kiss, stamp, t1, t1),
            Err(NtpError::Kiss("RATE".into()))
        );
        let mut alarm = good;
        alarm[0] |= ALARM << 6;
        assert_eq!(answer(&alarm, stamp, t1, t1), Err(NtpError::Unsynchronised));
    }
}

//! RFC 4733 telephone-events (DTMF) in RTP payloads: recognised so they can
//! be counted and checked, never rewritten.

/// One named event from a telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9, 10 `*`, 11 `#`, 12–15 A–D, 16 flash.
    pub event: u8,
    /// End bit: the last packets of the event carry it.
    pub end: bool,
    /// Power level, 0 to -63 dBm0 as 0..=63.
    pub volume: u8,
    /// Duration so far, in timestamp units.
    pub duration: u16,
}

/// Parses the first event of a telephone-event payload. A payload is whole
/// 4-byte events (more than one when redundancy is used, RFC 4733 §2.5.1.4
/// uses RED for that, but some PBXs pack them); anything else is malformed.
pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
    if payload.len() < 4 || payload.len() % 4 != 0 {
        return None;
    }
    Some(TelephoneEvent {
        event: payload[0],
        end: payload[1] & 0x80 != 0,
        volume: payload[1] & 0x3f,
        duration: u16::from_be_bytes([payload[2], payload[3]]),
    })
}

impl TelephoneEvent {
    /// The DTMF digit this event stands for, if it is one.
    pub fn digit(&self) -> Option<char> {
        b"0123456789*#ABCD"
            .get(self.event as usize)
            .map(|&b| b as char)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_digit_with_end_bit() {
        let e = parse(&[11, 0x80 | 10, 0x03, 0x20]).unwrap();
        assert_eq!(e.digit(), Some('#'));
        assert!(e.end);
        assert_eq!((e.volume, e.duration), (10, 800));
    }

    #[test]
    fn refuses_partial_events() {
        assert_eq!(parse(&[1, 2, 3]), None);
        assert_eq!(parse(&[1, 2, 3, 4, 5]), None);
        assert_eq!(parse(&[16, 0, 0, 0]).unwrap().digit(), None);
    }
}

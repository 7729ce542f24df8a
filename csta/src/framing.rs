//! Where one CSTA message ends on the TCP stream. Each message is an 8-byte
//! header then the XML: two zero bytes, the total length in bytes (header
//! included) as a big-endian 16-bit number, and the invoke id as four ASCII
//! digits (`9999` marks an unsolicited event). Owns reassembly of split and
//! merged reads and the header's checks; knows nothing of the XML inside.
//!
//! A header that breaks the rules (a non-zero marker, a length too short to
//! hold any XML, an invoke id that is not four digits) leaves no reliable
//! place to start the next message: the decoder says why and refuses any
//! further input; the session closes the connection and a new one starts
//! clean.

use std::fmt;

/// The header's size in bytes.
pub const HEADER_LEN: usize = 8;

/// The largest message the 16-bit length can describe.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// The invoke id of unsolicited events.
pub const EVENT_INVOKE_ID: InvokeId = InvokeId(9999);

/// A message's invoke id: `0000` to `9999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvokeId(u16);

impl InvokeId {
    /// The id `n`, if it fits in four digits.
    pub fn new(n: u16) -> Option<Self> {
        (n <= 9999).then_some(Self(n))
    }

    /// Its number.
    pub fn get(self) -> u16 {
        self.0
    }

    /// Whether it marks an unsolicited event.
    pub fn is_event(self) -> bool {
        self == EVENT_INVOKE_ID
    }
}

impl fmt::Display for InvokeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// One message off the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its invoke id.
    pub invoke: InvokeId,
    /// The XML, as sent.
    pub xml: Vec<u8>,
}

/// Why the stream's framing is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The first two bytes of a header are not zero.
    #[error(
        "a CSTA header must start with two zero bytes, found {0:02x} {1:02x}: the peer is not speaking CSTA XML over TCP (wrong port?)"
    )]
    BadMarker(u8, u8),
    /// The length cannot hold a header and any XML.
    #[error("a CSTA header gives the length {0}, less than a header and one byte of XML")]
    BadLength(u16),
    /// The invoke id is not four ASCII digits.
    #[error("a CSTA header's invoke id must be four digits, found {0:?}")]
    BadInvokeId(String),
    /// The XML is larger than a header can describe (our own message).
    #[error("a CSTA message of {0} bytes does not fit the 16-bit length of its header")]
    TooLarge(usize),
}

/// Frames `xml` with `invoke`.
pub fn encode(invoke: InvokeId, xml: &[u8]) -> Result<Vec<u8>, FramingError> {
    let total = HEADER_LEN + xml.len();
    let len = u16::try_from(total).map_err(|_| FramingError::TooLarge(total))?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(invoke.to_string().as_bytes());
    out.extend_from_slice(xml);
    Ok(out)
}

/// Reassembles frames from a byte stream read in any pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    failed: Option<FramingError>,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes as they came off the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes held that do not yet make a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `Ok(None)` until more bytes come, or why the
    /// stream cannot be read any further (every later call says the same).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.parse() {
            Ok(f) => Ok(f),
            Err(e) => {
                self.buf = Vec::new();
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Frame>, FramingError> {
        // The marker is checked as soon as it is here: a stranger on the
        // port is told off without waiting for eight bytes.
        if let Some(&b) = self.buf.first().filter(|&&b| b != 0) {
            return Err(FramingError::BadMarker(
                b,
                self.buf.get(1).copied().unwrap_or(0),
            ));
        }
        if self.buf.len() >= 2 && self.buf[1] != 0 {
            return Err(FramingError::BadMarker(0, self.buf[1]));
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u16::from_be_bytes([self.buf[2], self.buf[3]]);
        if usize::from(len) <= HEADER_LEN {
            return Err(FramingError::BadLength(len));
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let digits = &self.buf[4..8];
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadInvokeId(
                String::from_utf8_lossy(digits).into_owned(),
            ));
        }
        let total = usize::from(len);
        if self.buf.len() < total {
            return Ok(None);
        }
        let invoke = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let xml = self.buf[HEADER_LEN..total].to_vec();
        self.buf.drain(..total);
        Ok(Some(Frame {
            invoke: InvokeId(invoke),
            xml,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(invoke: u16, xml: &str) -> Vec<u8> {
        encode(InvokeId::new(invoke).unwrap(), xml.as_bytes()).unwrap()
    }

    #[test]
    fn a_frame_carries_its_length_and_invoke_id() {
        let f = frame(12, "<a/>");
        assert_eq!(&f[..8], &[0, 0, 0, 12, b'0', b'0', b'1', b'2']);
        assert_eq!(&f[8..], b"<a/>");
    }

    #[test]
    fn split_reads_are_reassembled_and_merged_reads_split() {
        let mut stream = frame(1, "<one/>");
        stream.extend(frame(9999, "<two>x</two>"));
        stream.extend(frame(3, "<three/>"));
        // Every split point, one byte at a time.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 3);
        assert!(got[1].invoke.is_event());
        assert_eq!(got[2].xml, b"<three/>");
        assert_eq!(d.pending(), 0);
        // All at once.
        let mut d = Decoder::new();
        d.push(&stream);
        let mut n = 0;
        while d.next_frame().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn a_bad_header_is_named_and_the_stream_stays_refused() {
        let mut d = Decoder::new();
        d.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(d.next_frame(), Err(FramingError::BadMarker(b'G', b'E')));
        d.push(&frame(1, "<a/>"));
        assert!(d.next_frame().is_err(), "no resynchronising on a guess");

        let mut d = Decoder::new();
        d.push(&[0, 0, 0, 8, b'0', b'0', b'0', b'1']);
        assert_eq!(d.next_frame(), Err(FramingError::BadLength(8)));

        let mut d = Decoder::new();
        d.push(&[0, 0, 0, 3]);
        assert_eq!(d.next_frame(), Err(FramingError::BadLength(3)));

        let mut d = Decoder::new();
        d.push(&[0, 0, 0, 12, b'0', b'x', b'0', b'1', b'<', b'a', b'/', b'>']);
        assert_eq!(
            d.next_frame(),
            Err(FramingError::BadInvokeId("0x01".into()))
        );
        assert!(
            FramingError::BadMarker(0x16, 0x03)
                .to_string()
                .contains("wrong port")
        );
    }

    #[test]
    fn a_stranger_is_refused_on_the_first_byte() {
        let mut d = Decoder::new();
        d.push(&[0x16]);
        assert!(matches!(
            d.next_frame(),
            Err(FramingError::BadMarker(0x16, 0))
        ));
    }

    #[test]
    fn our_own_message_must_fit_the_header() {
        let big = vec![b' '; MAX_FRAME];
        assert_eq!(
            encode(EVENT_INVOKE_ID, &big),
            Err(FramingError::TooLarge(MAX_FRAME + HEADER_LEN))
        );
        assert!(encode(EVENT_INVOKE_ID, &big[..MAX_FRAME - HEADER_LEN]).is_ok());
        assert!(InvokeId::new(10_000).is_none());
    }
}

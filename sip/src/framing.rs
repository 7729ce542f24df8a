//! Where SIP messages begin and end: on a stream (TCP, TLS) by the blank
//! line and Content-Length (mandatory there, RFC 3261 §18.3), in a datagram
//! by the datagram itself. CRLF keep-alives (RFC 5626 §3.5.1: a client's
//! double-CRLF ping, the single-CRLF pong) are recognised, not parsed as
//! messages. Sans-IO: bytes in, frames out.

pub use crate::error::FrameError;
use crate::limits::{MAX_HEAD, MAX_LEADING_CRLF, MAX_MESSAGE};
use crate::normalize;

/// A unit a transport hands up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole message (head, blank line, body).
    Message(Vec<u8>),
    /// A double-CRLF keep-alive ping: answer with a single CRLF.
    Ping,
    /// A single-CRLF keep-alive pong.
    Pong,
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Content-Length of a head (without the blank line), if present.
fn content_length(head: &[u8]) -> Result<Option<usize>, FrameError> {
    let Ok(h) = normalize::head(head) else {
        // The parser will name what is wrong with the head; framing only
        // needs the length, and a head it cannot read has none.
        return Ok(None);
    };
    let mut length = None;
    for v in h.all("Content-Length") {
        let n = v
            .trim()
            .parse::<usize>()
            .map_err(|_| FrameError::BadContentLength)?;
        // Two lengths that disagree leave no way to find the message's end
        // (RFC 4475 §3.3.9).
        if length.is_some_and(|l| l != n) {
            return Err(FrameError::BadContentLength);
        }
        length = Some(n);
    }
    Ok(length)
}

/// Frames one datagram. A Content-Length shorter than the body drops the
/// rest (RFC 3261 §18.3); longer is an error.
pub fn datagram(data: &[u8]) -> Result<Frame, FrameError> {
    if data.len() > MAX_MESSAGE {
        return Err(FrameError::MessageTooLarge);
    }
    if data.iter().all(|&b| b == b'\r' || b == b'\n') {
        return Ok(if data.len() >= 4 {
            Frame::Ping
        } else {
            Frame::Pong
        });
    }
    let end = find_blank_line(data).ok_or(FrameError::NoBlankLine)?;
    if end > MAX_HEAD {
        return Err(FrameError::HeadTooLarge);
    }
    let body_at = end + 4;
    let body = data.len() - body_at;
    let len = match content_length(&data[..end])? {
        Some(n) if n > body => return Err(FrameError::BadContentLength),
        Some(n) => n,
        None => body,
    };
    Ok(Frame::Message(data[..body_at + len].to_vec()))
}

/// Frames a byte stream into messages.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. Fails once more is buffered than one
    /// message may be.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if self.buf.len() + data.len() > MAX_MESSAGE + MAX_LEADING_CRLF {
            return Err(FrameError::MessageTooLarge);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Bytes buffered, not yet framed (for partial-message timeouts).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        // Keep-alives between messages.
        let crlfs = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if crlfs > 0 {
            if crlfs > MAX_LEADING_CRLF {
                return Some(Err(FrameError::TooManyCrlf));
            }
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.drain(..4);
                return Some(Ok(Frame::Ping));
            }
            if crlfs == self.buf.len() {
                return None; // maybe the first half of a ping
            }
            self.buf.drain(..crlfs);
            return Some(Ok(Frame::Pong));
        }
        let Some(end) = find_blank_line(&self.buf) else {
            return (self.buf.len() > MAX_HEAD).then_some(Err(FrameError::HeadTooLarge));
        };
        if end > MAX_HEAD {
            return Some(Err(FrameError::HeadTooLarge));
        }
        let len = match content_length(&self.buf[..end]) {
            Ok(Some(n)) => n,
            Ok(None) => return Some(Err(FrameError::MissingContentLength)),
            Err(e) => return Some(Err(e)),
        };
        let total = end + 4 + len;
        if total > MAX_MESSAGE {
            return Some(Err(FrameError::MessageTooLarge));
        }
        if self.buf.len() < total {
            return None;
        }
        let rest = self.buf.split_off(total);
        let msg = std::mem::replace(&mut self.buf, rest);
        Some(Ok(Frame::Message(msg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] =
        b"OPTIONS sip:gw SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 4\r\n\r\nbody";

    #[test]
    fn frames_a_stream_byte_by_byte() {
        let mut f = StreamFramer::new();
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(OPTIONS);
        stream.extend_from_slice(b"\r\n");
        let mut frames = Vec::new();
        for b in &stream {
            f.push(&[*b]).unwrap();
            while let Some(fr) = f.next_frame() {
                frames.push(fr.unwrap());
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Ping,
                Frame::Message(OPTIONS.to_vec()),
                Frame::Message(OPTIONS.to_vec())
            ]
        );
        assert_eq!(f.pending(), 2, "a lone CRLF waits: it may begin a ping");
    }

    #[test]
    fn stream_errors_are_named() {
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:gw SIP/2.0\r\nVia: x\r\n\r\n").unwrap();
        assert_eq!(f.next_frame(), Some(Err(FrameError::MissingContentLength)));
        let mut f = StreamFramer::new();
        f.push(b"OPTIONS sip:gw SIP/2.0\r\nContent-Length: -1\r\n\r\n")
            .unwrap();
        assert_eq!(f.next_frame(), Some(Err(FrameError::BadContentLength)));
        let mut f = StreamFramer::new();
        f.push(
            format!(
                "OPTIONS sip:gw SIP/2.0\r\nContent-Length: {}\r\n\r\n",
                MAX_MESSAGE
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(f.next_frame(), Some(Err(FrameError::MessageTooLarge)));
        let mut f = StreamFramer::new();
        f.push(&vec![b'a'; MAX_HEAD + 1]).unwrap();
        assert_eq!(f.next_frame(), Some(Err(FrameError::HeadTooLarge)));
        assert!(
            StreamFramer::new()
                .push(&vec![0; MAX_MESSAGE + 100])
                .is_err()
        );
    }

    #[test]
    fn datagrams_follow_rfc3261_18_3() {
        let mut longer = OPTIONS.to_vec();
        longer.extend_from_slice(b"junk");
        assert_eq!(
            datagram(&longer),
            Ok(Frame::Message(OPTIONS.to_vec())),
            "extra bytes dropped"
        );
        assert_eq!(
            datagram(&OPTIONS[..OPTIONS.len() - 1]),
            Err(FrameError::BadContentLength)
        );
        let no_length = b"OPTIONS sip:gw SIP/2.0\r\nVia: x\r\n\r\nall of it";
        assert_eq!(datagram(no_length), Ok(Frame::Message(no_length.to_vec())));
        assert_eq!(datagram(b"\r\n\r\n"), Ok(Frame::Ping));
        assert_eq!(datagram(b"OPTIONS"), Err(FrameError::NoBlankLine));
    }
}

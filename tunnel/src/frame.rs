//! The tunnel's framing: a 4-byte big-endian length, then that many bytes
//! of JSON. Owns reassembly and the length's bounds; a bad length leaves
//! no safe place to start the next message, so the decoder refuses the
//! rest of the stream and the connection is closed.

/// The largest message, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Why the stream cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A zero length.
    #[error("a tunnel message of length 0")]
    Empty,
    /// A length past [`MAX_MESSAGE`].
    #[error("a tunnel message of {0} bytes, past the 1 MiB limit")]
    TooLarge(usize),
}

/// `body` framed.
pub fn encode(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    if body.is_empty() {
        return Err(FrameError::Empty);
    }
    if body.len() > MAX_MESSAGE {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Reassembles messages from a byte stream read in any pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    failed: Option<FrameError>,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes as read.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next whole message, `Ok(None)` until more bytes come, or why
    /// the stream cannot be read (every later call says the same).
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        let problem = match len {
            0 => Some(FrameError::Empty),
            n if n > MAX_MESSAGE => Some(FrameError::TooLarge(n)),
            _ => None,
        };
        if let Some(e) = problem {
            self.buf = Vec::new();
            self.failed = Some(e.clone());
            return Err(e);
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_and_merged_come_out_whole() {
        let mut stream = encode(b"{\"a\":1}").unwrap();
        stream.extend(encode(b"{}").unwrap());
        for chunk in [1, 3, 4, 5, stream.len()] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(m) = d.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(
                got,
                [b"{\"a\":1}".to_vec(), b"{}".to_vec()],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn bad_lengths_end_the_stream() {
        let mut d = Decoder::new();
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_message(), Err(FrameError::Empty));
        d.push(&encode(b"{}").unwrap());
        assert!(d.next_message().is_err(), "stays refused");
        let mut d = Decoder::new();
        d.push(&[0x7f, 0, 0, 0]);
        assert_eq!(d.next_message(), Err(FrameError::TooLarge(0x7f00_0000)));
        assert!(encode(&vec![b' '; MAX_MESSAGE + 1]).is_err());
    }
}

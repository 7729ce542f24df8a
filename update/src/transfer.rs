//! A release arriving in pieces through the tunnel: in order, each piece
//! where the last ended, never past the size offered, the size bounded.

/// The largest release taken (a compressed executable is ~15 MiB).
pub const MAX_SIZE: u64 = 256 << 20;

/// A transfer under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    size: u64,
    have: u64,
}

/// Why a piece or an offer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The size offered is 0 or over [`MAX_SIZE`].
    #[error("size {0}: from 1 to {MAX_SIZE} bytes")]
    Size(u64),
    /// A piece not where the last ended.
    #[error("a piece at offset {got}, expected {want}")]
    Offset {
        /// Its offset.
        got: u64,
        /// Where the next must start.
        want: u64,
    },
    /// A piece past the end.
    #[error("a piece of {len} bytes at {offset} goes past the size {size}")]
    PastEnd {
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// The size offered.
        size: u64,
    },
    /// An empty piece before the end.
    #[error("an empty piece")]
    Empty,
}

impl Transfer {
    /// A transfer of `size` bytes.
    pub fn new(size: u64) -> Result<Self, TransferError> {
        if size == 0 || size > MAX_SIZE {
            return Err(TransferError::Size(size));
        }
        Ok(Self { size, have: 0 })
    }

    /// Takes a piece of `len` bytes at `offset`; the bytes held after it.
    pub fn piece(&mut self, offset: u64, len: u64) -> Result<u64, TransferError> {
        if offset != self.have {
            return Err(TransferError::Offset {
                got: offset,
                want: self.have,
            });
        }
        if len == 0 {
            return Err(TransferError::Empty);
        }
        if offset.saturating_add(len) > self.size {
            return Err(TransferError::PastEnd {
                offset,
                len,
                size: self.size,
            });
        }
        self.have += len;
        Ok(self.have)
    }

    /// Bytes held.
    pub fn have(&self) -> u64 {
        self.have
    }

    /// The size offered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether every byte is here.
    pub fn complete(&self) -> bool {
        self.have == self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_come_in_order_and_never_past_the_size() {
        assert_eq!(Transfer::new(0), Err(TransferError::Size(0)));
        assert_eq!(
            Transfer::new(MAX_SIZE + 1),
            Err(TransferError::Size(MAX_SIZE + 1))
        );
        let mut t = Transfer::new(10).unwrap();
        assert_eq!(t.piece(0, 4), Ok(4));
        assert_eq!(
            t.piece(0, 4),
            Err(TransferError::Offset { got: 0, want: 4 })
        );
        assert_eq!(t.piece(4, 0), Err(TransferError::Empty));
        assert_eq!(
            t.piece(4, 7),
            Err(TransferError::PastEnd {
                offset: 4,
                len: 7,
                size: 10
            })
        );
        assert!(!t.complete());
        assert_eq!(t.piece(4, 6), Ok(10));
        assert!(t.complete());
        assert_eq!(
            t.piece(10, 1).unwrap_err(),
            TransferError::PastEnd {
                offset: 10,
                len: 1,
                size: 10
            }
        );
    }
}

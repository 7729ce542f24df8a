//! What both engines share: which way a context works, why one cannot be
//! built, and the room a packet buffer needs for the trailer.

use super::ffi;
use super::key::Suite;

/// Room a buffer must have past the packet for SRTP or SRTCP to add its
/// trailer. Sized for libsrtp, which assumes room for a tag and the largest
/// MKI without being told the buffer size; the native engine needs at most
/// 20 bytes (GCM tag and SRTCP index).
pub const TRAILER_ROOM: usize = ffi::SRTP_MAX_TRAILER_LEN + 4;

/// Which way a context works: it either protects what the gateway sends or
/// unprotects what it receives, never both (libsrtp binds a stream to one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Protects outgoing RTP/RTCP (any SSRC).
    Protect,
    /// Unprotects incoming SRTP/SRTCP (any SSRC), with replay protection.
    Unprotect,
}

/// Errors building a context. Packet processing never returns these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// libsrtp failed to initialise; the library or its crypto backend is broken.
    #[error("libsrtp2 failed to initialise (status {0}); reinstall libsrtp2")]
    Init(i32),
    /// libsrtp refused the policy or could not allocate the session.
    #[error("libsrtp2 refused to create a {suite} context (status {status})")]
    Create {
        /// Suite asked for.
        suite: Suite,
        /// libsrtp status code.
        status: i32,
    },
}

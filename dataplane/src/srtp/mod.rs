//! SRTP/SRTCP (RFC 3711, RFC 7714) for one direction of one leg.
//!
//! Owns keys, per-SSRC crypto state and the packet transforms; owns nothing
//! about sockets, time or relays. A context is created from an already-parsed
//! [`MasterKey`] and then only touches the packet buffer it is handed, in
//! place, with no allocation and no lock.
//!
//! Two engines share one contract:
//! - [`SrtpContext`], native (RustCrypto AES, GCM, HMAC-SHA1), is the packet
//!   path. It replaced libsrtp2 there because Debian's libsrtp2 (built on NSS)
//!   allocates and takes locks on every packet and is several times slower;
//!   `bench/` prints the ratio and `tests` prove the two produce the same bytes.
//! - [`LibsrtpContext`], Debian's libsrtp2 through FFI, is the reference the
//!   native engine is measured and cross-checked against.

mod context;
#[cfg(test)]
mod differential;
mod ffi;
#[cfg(test)]
mod kat;
mod kdf;
mod key;
mod libsrtp;
pub(crate) mod replay;
mod transform;

pub use context::SrtpContext;

/// Hex (whitespace ignored) to bytes, for the test vectors of this module.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
pub use key::{KeyError, MasterKey};
pub use libsrtp::{LibsrtpContext, library_version};

/// Room a buffer must have past the packet for SRTP or SRTCP to add its
/// trailer. Sized for libsrtp, which assumes room for a tag and the largest
/// MKI without being told the buffer size; the native engine needs at most
/// 20 bytes (GCM tag and SRTCP index).
pub const TRAILER_ROOM: usize = ffi::SRTP_MAX_TRAILER_LEN + 4;

/// The SDES crypto suites pbxlink offers and accepts (RFC 4568, RFC 7714).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 80-bit tag.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 32-bit tag on SRTP. SRTCP keeps the
    /// 80-bit tag (RFC 4568 §6.2.1).
    AesCm128HmacSha1_32,
    /// AES-128 GCM with a 128-bit tag (RFC 7714).
    AeadAes128Gcm,
}

impl Suite {
    /// All suites, strongest first: the order an offer lists them.
    pub const ALL: [Suite; 3] = [
        Suite::AeadAes128Gcm,
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
    ];

    /// The name used in SDP `a=crypto` lines and on the command line.
    pub fn sdp_name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// Parses an SDP suite name (case-sensitive, as RFC 4568 registers them).
    pub fn from_sdp_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.sdp_name() == name)
    }

    /// Master key length in bytes.
    pub fn master_key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes: 112 bits for AES-CM, 96 for GCM.
    pub fn master_salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// Length of the SDES `inline:` material (key ‖ salt).
    pub fn master_len(self) -> usize {
        self.master_key_len() + self.master_salt_len()
    }

    /// Authentication tag bytes added to each SRTP packet.
    pub fn srtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm => 16,
        }
    }

    /// Bytes SRTCP adds: the E-flag/index word and the tag.
    pub fn srtcp_overhead(self) -> usize {
        4 + match self {
            Suite::AeadAes128Gcm => 16,
            _ => 10,
        }
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sdp_name())
    }
}

impl std::str::FromStr for Suite {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Suite::from_sdp_name(s).ok_or_else(|| KeyError::UnknownSuite(s.to_owned()))
    }
}

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

//! SRTP/SRTCP protection for one direction of one leg, on libsrtp2.
//!
//! Owns the libsrtp session handle and its life; owns nothing about sockets,
//! time or relays. A context is created with an already-parsed [`MasterKey`]
//! and then only touches the packet buffer it is handed, in place. This is one of
//! the two places `unsafe` is allowed (FFI); each block says why it holds.
#![allow(unsafe_code)]

mod ffi;
#[cfg(test)]
mod kat;
mod key;

pub use key::{KeyError, MasterKey};

use crate::drops::DropReason;
use std::ffi::{CStr, c_int};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

/// Room a buffer must have past the packet for SRTP or SRTCP to add its
/// trailer (tag, MKI room as libsrtp assumes, and the SRTCP index).
pub const TRAILER_ROOM: usize = ffi::SRTP_MAX_TRAILER_LEN + 4;

/// Replay window, in packets. libsrtp's default is 128; a wider window
/// tolerates the reordering bursts seen on congested WAN links at a cost of a
/// few hundred bytes per stream.
const REPLAY_WINDOW: u64 = 1024;

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

fn init_library() -> Result<(), SrtpError> {
    static INIT: OnceLock<i32> = OnceLock::new();
    // SAFETY: srtp_init has no preconditions; OnceLock runs it exactly once.
    let status = *INIT.get_or_init(|| unsafe { ffi::srtp_init() });
    if status == ffi::SRTP_ERR_STATUS_OK {
        Ok(())
    } else {
        Err(SrtpError::Init(status))
    }
}

/// The version string of the libsrtp2 actually loaded, for start-up logs.
pub fn library_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(ffi::srtp_get_version_string()) };
    v.to_string_lossy().into_owned()
}

/// One libsrtp session: all SSRCs of one direction of one leg.
///
/// Not `Sync`: a context belongs to the one worker thread that uses it.
#[derive(Debug)]
pub struct SrtpContext {
    session: NonNull<ffi::srtp_ctx_t>,
    suite: Suite,
    role: Role,
}

// SAFETY: a libsrtp session has no thread affinity; it only must not be used
// from two threads at once, which `&mut self` on every operation and the
// absence of `Sync` guarantee.
unsafe impl Send for SrtpContext {}

impl SrtpContext {
    /// Creates a context for `suite` keyed with `key`.
    pub fn new(suite: Suite, key: &MasterKey, role: Role) -> Result<Self, SrtpError> {
        init_library()?;
        debug_assert_eq!(key.as_bytes().len(), suite.master_len());
        let mut rtp = ffi::srtp_crypto_policy_t::default();
        let mut rtcp = ffi::srtp_crypto_policy_t::default();
        // SAFETY: each setter only writes the struct it is given.
        unsafe {
            match suite {
                Suite::AesCm128HmacSha1_80 => {
                    ffi::srtp_crypto_policy_set_rtp_default(&mut rtp);
                    ffi::srtp_crypto_policy_set_rtp_default(&mut rtcp);
                }
                Suite::AesCm128HmacSha1_32 => {
                    ffi::srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&mut rtp);
                    // RFC 4568 §6.2.1: SRTCP keeps the 80-bit tag.
                    ffi::srtp_crypto_policy_set_rtp_default(&mut rtcp);
                }
                Suite::AeadAes128Gcm => {
                    ffi::srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut rtp);
                    ffi::srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut rtcp);
                }
            }
        }
        // libsrtp copies the key during srtp_create; the buffer is ours and
        // zeroised when `key` drops.
        let mut key_copy = key.clone();
        let policy = ffi::srtp_policy_t {
            ssrc: ffi::srtp_ssrc_t {
                type_: match role {
                    Role::Protect => ffi::SSRC_ANY_OUTBOUND,
                    Role::Unprotect => ffi::SSRC_ANY_INBOUND,
                },
                value: 0,
            },
            rtp,
            rtcp,
            key: key_copy.as_mut_ptr(),
            keys: ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: ptr::null_mut(),
            window_size: REPLAY_WINDOW as _,
            allow_repeat_tx: 0,
            enc_xtn_hdr: ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: ptr::null_mut(),
        };
        let mut session: ffi::srtp_t = ptr::null_mut();
        // SAFETY: policy is fully initialised and outlives the call; the key
        // pointer covers suite.master_len() bytes, which is what the policy's
        // cipher and salt lengths make libsrtp read.
        let status = unsafe { ffi::srtp_create(&mut session, &policy) };
        match NonNull::new(session) {
            Some(session) if status == ffi::SRTP_ERR_STATUS_OK => Ok(Self {
                session,
                suite,
                role,
            }),
            _ => Err(SrtpError::Create { suite, status }),
        }
    }

    /// The suite this context runs.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Whether it protects or unprotects.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Protects the RTP packet in `buf[..len]` in place; returns the SRTP
    /// length. The caller has validated the RTP header.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Protect);
        self.call(buf, len, ffi::srtp_protect)
    }

    /// Unprotects the SRTP packet in `buf[..len]` in place; returns the RTP
    /// length. The caller has checked the fixed header, CSRCs and extension
    /// fit in the packet.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Unprotect);
        if len < crate::rtp::RTP_HEADER_LEN + self.suite.srtp_tag_len() {
            return Err(DropReason::Truncated);
        }
        self.call(buf, len, ffi::srtp_unprotect)
    }

    /// Protects the compound RTCP packet in `buf[..len]`; returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Protect);
        self.call(buf, len, ffi::srtp_protect_rtcp)
    }

    /// Unprotects the SRTCP packet in `buf[..len]`; returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Unprotect);
        if len < crate::rtcp::RTCP_MIN_SRTCP_HEADER + self.suite.srtcp_overhead() {
            return Err(DropReason::Truncated);
        }
        self.call(buf, len, ffi::srtp_unprotect_rtcp)
    }

    fn call(
        &mut self,
        buf: &mut [u8],
        len: usize,
        op: unsafe extern "C" fn(ffi::srtp_t, *mut std::ffi::c_void, *mut c_int) -> i32,
    ) -> Result<usize, DropReason> {
        // libsrtp writes up to SRTP_MAX_TRAILER_LEN (+4 for SRTCP) past `len`
        // without being told the buffer size, so the bound is checked here.
        if len > buf.len().saturating_sub(TRAILER_ROOM) || len > c_int::MAX as usize {
            return Err(DropReason::TooLarge);
        }
        let mut n = len as c_int;
        // SAFETY: buf is valid for len + TRAILER_ROOM writable bytes (checked
        // above), the session is live and exclusively borrowed, and n is the
        // packet length libsrtp may read.
        let status = unsafe { op(self.session.as_ptr(), buf.as_mut_ptr().cast(), &mut n) };
        match status {
            ffi::SRTP_ERR_STATUS_OK => Ok(n as usize),
            ffi::SRTP_ERR_STATUS_AUTH_FAIL => Err(DropReason::AuthFailed),
            ffi::SRTP_ERR_STATUS_REPLAY_FAIL => Err(DropReason::Replay),
            ffi::SRTP_ERR_STATUS_REPLAY_OLD => Err(DropReason::ReplayOld),
            _ => Err(DropReason::SrtpError),
        }
    }
}

impl Drop for SrtpContext {
    fn drop(&mut self) {
        // SAFETY: the session was created by srtp_create and is freed once;
        // srtp_dealloc wipes its key material.
        unsafe {
            ffi::srtp_dealloc(self.session.as_ptr());
        }
    }
}

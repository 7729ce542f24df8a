//! The reference SRTP engine: Debian's libsrtp2 through a thin hand-written
//! FFI. pbxlink's packet path uses the native engine ([`super::SrtpContext`]);
//! this one stays as the yardstick it is measured and cross-checked against
//! (benches, differential tests and fuzzing). This is one of the two places
//! `unsafe` is allowed (FFI); each block says why it holds.
#![allow(unsafe_code)]

use super::engine::{Role, SrtpError, TRAILER_ROOM};
use super::ffi;
use super::key::{MasterKey, Suite};
use crate::drops::DropReason;
use std::ffi::{CStr, c_int};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

/// Replay window, in packets, the same as the native engine's.
const REPLAY_WINDOW: u64 = super::replay::RTP_WINDOW as u64;

pub(crate) fn init_library() -> Result<(), SrtpError> {
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
pub struct LibsrtpContext {
    session: NonNull<ffi::srtp_ctx_t>,
    suite: Suite,
    role: Role,
}

// SAFETY: a libsrtp session has no thread affinity; it only must not be used
// from two threads at once, which `&mut self` on every operation and the
// absence of `Sync` guarantee.
unsafe impl Send for LibsrtpContext {}

impl LibsrtpContext {
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
        self.call(buf, len, TRAILER_ROOM, ffi::srtp_protect)
    }

    /// Unprotects the SRTP packet in `buf[..len]` in place; returns the RTP
    /// length. The caller has checked the fixed header, CSRCs and extension
    /// fit in the packet.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Unprotect);
        if len < crate::rtp::RTP_HEADER_LEN + self.suite.srtp_tag_len() {
            return Err(DropReason::Truncated);
        }
        self.call(buf, len, 0, ffi::srtp_unprotect)
    }

    /// Protects the compound RTCP packet in `buf[..len]`; returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Protect);
        self.call(buf, len, TRAILER_ROOM, ffi::srtp_protect_rtcp)
    }

    /// Unprotects the SRTCP packet in `buf[..len]`; returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
        debug_assert_eq!(self.role, Role::Unprotect);
        if len < crate::rtcp::RTCP_MIN_SRTCP_HEADER + self.suite.srtcp_overhead() {
            return Err(DropReason::Truncated);
        }
        self.call(buf, len, 0, ffi::srtp_unprotect_rtcp)
    }

    fn call(
        &mut self,
        buf: &mut [u8],
        len: usize,
        room: usize,
        op: unsafe extern "C" fn(ffi::srtp_t, *mut std::ffi::c_void, *mut c_int) -> i32,
    ) -> Result<usize, DropReason> {
        // Protecting, libsrtp writes up to SRTP_MAX_TRAILER_LEN (+4 for
        // SRTCP) past `len` without being told the buffer size, so the bound
        // is checked here; unprotecting only shrinks the packet in place.
        if len > buf.len().saturating_sub(room) || len > c_int::MAX as usize {
            return Err(DropReason::TooLarge);
        }
        let mut n = len as c_int;
        // SAFETY: buf is valid for len + room writable bytes (checked above), the session is live and exclusively borrowed, and n is the
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

impl Drop for LibsrtpContext {
    fn drop(&mut self) {
        // SAFETY: the session was created by srtp_create and is freed once;
        // srtp_dealloc wipes its key material.
        unsafe {
            ffi::srtp_dealloc(self.session.as_ptr());
        }
    }
}

//! Hand-written bindings to the slice of libsrtp2's public API the media core
//! uses. This module owns every `unsafe` declaration for libsrtp; nothing here
//! is called from outside `crate::srtp`.
//!
//! The struct layouts mirror `<srtp2/srtp.h>` of libsrtp 2.4/2.5; a test
//! compares them with the installed header through `layout_probe.c`.
#![allow(unsafe_code, non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

pub(crate) type srtp_err_status_t = c_int;
pub(crate) const SRTP_ERR_STATUS_OK: srtp_err_status_t = 0;
pub(crate) const SRTP_ERR_STATUS_AUTH_FAIL: srtp_err_status_t = 7;
pub(crate) const SRTP_ERR_STATUS_REPLAY_FAIL: srtp_err_status_t = 9;
pub(crate) const SRTP_ERR_STATUS_REPLAY_OLD: srtp_err_status_t = 10;

/// `srtp_ssrc_type_t`.
pub(crate) const SSRC_ANY_INBOUND: c_int = 2;
pub(crate) const SSRC_ANY_OUTBOUND: c_int = 3;

/// `SRTP_MAX_TRAILER_LEN`: what `srtp_protect` may write past the packet.
pub(crate) const SRTP_MAX_TRAILER_LEN: usize = 16 + 128;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct srtp_crypto_policy_t {
    pub cipher_type: u32,
    pub cipher_key_len: c_int,
    pub auth_type: u32,
    pub auth_key_len: c_int,
    pub auth_tag_len: c_int,
    pub sec_serv: c_int,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct srtp_ssrc_t {
    pub type_: c_int,
    pub value: c_uint,
}

#[repr(C)]
#[derive(Debug)]
pub(crate) struct srtp_policy_t {
    pub ssrc: srtp_ssrc_t,
    pub rtp: srtp_crypto_policy_t,
    pub rtcp: srtp_crypto_policy_t,
    pub key: *mut u8,
    pub keys: *mut *mut c_void,
    pub num_master_keys: c_ulong,
    pub deprecated_ekt: *mut c_void,
    pub window_size: c_ulong,
    pub allow_repeat_tx: c_int,
    pub enc_xtn_hdr: *mut c_int,
    pub enc_xtn_hdr_count: c_int,
    pub next: *mut srtp_policy_t,
}

/// Opaque `srtp_ctx_t`.
#[repr(C)]
pub(crate) struct srtp_ctx_t {
    _private: [u8; 0],
}

pub(crate) type srtp_t = *mut srtp_ctx_t;

unsafe extern "C" {
    pub(crate) fn srtp_init() -> srtp_err_status_t;
    pub(crate) fn srtp_get_version_string() -> *const c_char;
    pub(crate) fn srtp_create(
        session: *mut srtp_t,
        policy: *const srtp_policy_t,
    ) -> srtp_err_status_t;
    pub(crate) fn srtp_dealloc(session: srtp_t) -> srtp_err_status_t;
    pub(crate) fn srtp_protect(
        ctx: srtp_t,
        rtp_hdr: *mut c_void,
        len_ptr: *mut c_int,
    ) -> srtp_err_status_t;
    pub(crate) fn srtp_unprotect(
        ctx: srtp_t,
        srtp_hdr: *mut c_void,
        len_ptr: *mut c_int,
    ) -> srtp_err_status_t;
    pub(crate) fn srtp_protect_rtcp(
        ctx: srtp_t,
        rtcp_hdr: *mut c_void,
        pkt_octet_len: *mut c_int,
    ) -> srtp_err_status_t;
    pub(crate) fn srtp_unprotect_rtcp(
        ctx: srtp_t,
        srtcp_hdr: *mut c_void,
        pkt_octet_len: *mut c_int,
    ) -> srtp_err_status_t;
    /// `srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80` is a macro for this.
    pub(crate) fn srtp_crypto_policy_set_rtp_default(p: *mut srtp_crypto_policy_t);
    pub(crate) fn srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(p: *mut srtp_crypto_policy_t);
    pub(crate) fn srtp_crypto_policy_set_aes_gcm_128_16_auth(p: *mut srtp_crypto_policy_t);
}

#[cfg(test)]
pub(crate) mod cipher {
    //! libsrtp's exported cipher API, used only by the RFC 7714 known-answer
    //! tests, whose vectors are given as session keys below the KDF.
    use super::srtp_err_status_t;
    use std::ffi::{c_int, c_void};

    #[repr(C)]
    pub(crate) struct srtp_cipher_t {
        _private: [u8; 0],
    }
    pub(crate) const SRTP_DIRECTION_ENCRYPT: c_int = 0;
    pub(crate) const SRTP_DIRECTION_DECRYPT: c_int = 1;

    unsafe extern "C" {
        pub(crate) static srtp_aes_gcm_128: c_void;
        pub(crate) fn srtp_cipher_type_alloc(
            ct: *const c_void,
            c: *mut *mut srtp_cipher_t,
            key_len: c_int,
            tlen: c_int,
        ) -> srtp_err_status_t;
        pub(crate) fn srtp_cipher_dealloc(c: *mut srtp_cipher_t) -> srtp_err_status_t;
        pub(crate) fn srtp_cipher_init(c: *mut srtp_cipher_t, key: *const u8) -> srtp_err_status_t;
        pub(crate) fn srtp_cipher_set_iv(
            c: *mut srtp_cipher_t,
            iv: *mut u8,
            direction: c_int,
        ) -> srtp_err_status_t;
        pub(crate) fn srtp_cipher_set_aad(
            c: *mut srtp_cipher_t,
            aad: *const u8,
            aad_len: u32,
        ) -> srtp_err_status_t;
        pub(crate) fn srtp_cipher_encrypt(
            c: *mut srtp_cipher_t,
            buf: *mut u8,
            len: *mut u32,
        ) -> srtp_err_status_t;
        pub(crate) fn srtp_cipher_decrypt(
            c: *mut srtp_cipher_t,
            buf: *mut u8,
            len: *mut u32,
        ) -> srtp_err_status_t;
        pub(crate) fn srtp_cipher_get_tag(
            c: *mut srtp_cipher_t,
            buf: *mut u8,
            len: *mut u32,
        ) -> srtp_err_status_t;
    }

    unsafe extern "C" {
        pub(crate) fn pbxlink_srtp_policy_size() -> usize;
        pub(crate) fn pbxlink_srtp_crypto_policy_size() -> usize;
        pub(crate) fn pbxlink_srtp_policy_offset_key() -> usize;
        pub(crate) fn pbxlink_srtp_policy_offset_window_size() -> usize;
        pub(crate) fn pbxlink_srtp_policy_offset_allow_repeat_tx() -> usize;
        pub(crate) fn pbxlink_srtp_policy_offset_next() -> usize;
        pub(crate) fn pbxlink_srtp_max_trailer_len() -> usize;
    }
}

#[cfg(test)]
mod tests {
    use super::cipher::*;
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn policy_layout_matches_installed_header() {
        // SAFETY: the probe functions take no arguments and return constants.
        unsafe {
            assert_eq!(size_of::<srtp_policy_t>(), pbxlink_srtp_policy_size());
            assert_eq!(
                size_of::<srtp_crypto_policy_t>(),
                pbxlink_srtp_crypto_policy_size()
            );
            assert_eq!(
                offset_of!(srtp_policy_t, key),
                pbxlink_srtp_policy_offset_key()
            );
            assert_eq!(
                offset_of!(srtp_policy_t, window_size),
                pbxlink_srtp_policy_offset_window_size()
            );
            assert_eq!(
                offset_of!(srtp_policy_t, allow_repeat_tx),
                pbxlink_srtp_policy_offset_allow_repeat_tx()
            );
            assert_eq!(
                offset_of!(srtp_policy_t, next),
                pbxlink_srtp_policy_offset_next()
            );
            assert_eq!(SRTP_MAX_TRAILER_LEN, pbxlink_srtp_max_trailer_len());
        }
    }
}

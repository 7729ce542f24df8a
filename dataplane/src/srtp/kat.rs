//! Known-answer tests on whole packets, for both engines.
//!
//! - AES-CM suites: reference SRTP/SRTCP packets produced by an independent
//!   implementation (pion/srtp, Go), checked byte for byte through the native
//!   [`SrtpContext`] and through [`LibsrtpContext`], with master keys (so
//!   through each engine's KDF too).
//! - AEAD_AES_128_GCM: RFC 7714 §16.1 (SRTP) and §17.1 (SRTCP). The RFC gives
//!   session keys (below the KDF): the native engine's nonce and AEAD code
//!   runs them on whole packets, and libsrtp's GCM cipher runs them with the
//!   RFC's IV and AAD.
//! - RFC 3711 B.2 (keystream) and B.3 (KDF) are in `transform` and `kdf`.
#![allow(unsafe_code)]

use super::ffi::cipher::*;
use super::hex::unhex;
use super::kdf::SessionKeys;
use super::libsrtp::init_library;
use super::transform;
use super::*;
use crate::drops::DropReason;

/// The operations both engines offer, so every vector runs through each.
trait Engine: Sized {
    fn make(suite: Suite, key: &MasterKey, role: Role) -> Self;
    fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason>;
    fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason>;
    fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason>;
    fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason>;
}

macro_rules! engine {
    ($t:ty) => {
        impl Engine for $t {
            fn make(suite: Suite, key: &MasterKey, role: Role) -> Self {
                <$t>::new(suite, key, role).unwrap()
            }
            fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
                <$t>::protect_rtp(self, buf, len)
            }
            fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
                <$t>::unprotect_rtp(self, buf, len)
            }
            fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
                <$t>::protect_rtcp(self, buf, len)
            }
            fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, DropReason> {
                <$t>::unprotect_rtcp(self, buf, len)
            }
        }
    };
}
engine!(SrtpContext);
engine!(LibsrtpContext);

fn ctx<E: Engine>(suite: Suite, key: &[u8], salt: &[u8], role: Role) -> E {
    let material: Vec<u8> = key.iter().chain(salt).copied().collect();
    E::make(
        suite,
        &MasterKey::from_bytes(suite, &material).unwrap(),
        role,
    )
}

// pion/srtp srtp_test.go: master key/salt and the five packets of
// TestRTPLifecycle (AES_CM_128_HMAC_SHA1_80). pion marshals a zero-valued
// header there (even the version field is 0) with only the sequence set,
// payload 00..05; `encrypted` is payload ciphertext ‖ 80-bit tag.
const PION_KEY: &str = "0dcd213e4cbcf28f017f6994401e2889";
const PION_SALT: &str = "62776038c06dc9419f6dd9433e7c";
const PION_RTP: [(u16, &str); 5] = [
    (5000, "6dd37ed599b72d28b1f3a1f00cfbfd08"),
    (5001, "da470b2a745365bd2febdc4b6d23f3de"),
    (5002, "6ea7698d246ddcbfec021cd16076c10e"),
    (5003, "247e96c87d33a2928d138de0769f08dc"),
    (5004, "754328e43a77599b2edf7b12680b5749"),
];

fn pion_plain(seq: u16) -> Vec<u8> {
    let mut p = vec![0x00, 0, (seq >> 8) as u8, seq as u8, 0, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[0, 1, 2, 3, 4, 5]);
    p
}

fn pion_srtp(seq: u16, tail: &str, tag_len: usize) -> Vec<u8> {
    let mut p = pion_plain(seq)[..12].to_vec();
    let tail = unhex(tail);
    // The 32-bit-tag suite's tag is the same HMAC-SHA1, truncated.
    p.extend_from_slice(&tail[..6 + tag_len]);
    p
}

fn aes_cm_protect_matches_independent_reference<E: Engine>() {
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
        let mut tx: E = ctx(suite, &unhex(PION_KEY), &unhex(PION_SALT), Role::Protect);
        for (seq, tail) in PION_RTP {
            let mut buf = [0u8; 256];
            let plain = pion_plain(seq);
            buf[..plain.len()].copy_from_slice(&plain);
            let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
            assert_eq!(
                &buf[..n],
                &pion_srtp(seq, tail, suite.srtp_tag_len())[..],
                "{suite} seq {seq}"
            );
        }
    }
}

fn aes_cm_unprotect_matches_independent_reference<E: Engine>() {
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
        let mut rx: E = ctx(suite, &unhex(PION_KEY), &unhex(PION_SALT), Role::Unprotect);
        for (seq, tail) in PION_RTP {
            let srtp = pion_srtp(seq, tail, suite.srtp_tag_len());
            let mut buf = [0u8; 256];
            buf[..srtp.len()].copy_from_slice(&srtp);
            let n = rx.unprotect_rtp(&mut buf, srtp.len()).unwrap();
            assert_eq!(&buf[..n], &pion_plain(seq)[..], "{suite} seq {seq}");
        }
    }
}

// pion/srtp srtcp_test.go: an SR + SDES compound protected with SRTCP
// index 1 (AES_CM_128_HMAC_SHA1_80). The 32-bit suite keeps the 80-bit
// SRTCP tag (RFC 4568 §6.2.1), so it must produce the same bytes.
const PION_RTCP_KEY: &str = "fda62595d7f6926f7d9c024cc9209f34";
const PION_RTCP_SALT: &str = "a9651985540b47be2f27a8b88123";
const PION_RTCP_PLAIN: &str = "80c8000666ef91ffdf4880dd61a62ed3d8bcdebe0000000900001604\
                               81ca000666ef91ff0110526e5435436d4a687a7965744178772b0000";
const PION_SRTCP: &str = "80c8000666ef91ffcd34c578b28be16bc509d577e4ce5f208021bd667465e95f\
                          49e5f5c0684ee56a78077546ed90f6dc9def3bdff279a9d8800000016\
                          0c0aeb56f40880e28ba";

fn srtcp_matches_independent_reference<E: Engine>() {
    let plain = unhex(PION_RTCP_PLAIN);
    let expected = unhex(PION_SRTCP);
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
        let (k, s) = (unhex(PION_RTCP_KEY), unhex(PION_RTCP_SALT));
        let mut tx: E = ctx(suite, &k, &s, Role::Protect);
        let mut buf = [0u8; 256];
        buf[..plain.len()].copy_from_slice(&plain);
        let n = tx.protect_rtcp(&mut buf, plain.len()).unwrap();
        assert_eq!(&buf[..n], &expected[..], "{suite}");

        let mut rx: E = ctx(suite, &k, &s, Role::Unprotect);
        let n = rx.unprotect_rtcp(&mut buf, n).unwrap();
        assert_eq!(&buf[..n], &plain[..], "{suite}");
    }
}

// RFC 7714 §16.1 / §17.1 (AEAD_AES_128_GCM, session key and salt).
const RFC7714_KEY: &str = "000102030405060708090a0b0c0d0e0f";
const RFC7714_SALT: &str = "517569642070726f2071756f";
const RFC7714_RTP: &str = "8040f17b8041f8d35501a0b2\
                           47616c6c696120657374206f6d6e69732064697669736120696e207061727465732074726573";
const RFC7714_SRTP: &str = "8040f17b8041f8d35501a0b2\
                            f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf8833\
                            899d7f27beb16a9152cf765ee4390cce";
const RFC7714_RTCP: &str = "81c8000d4d617273\
                            4e5450314e545032525450200000042a0000e9304c756e61deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
const RFC7714_SRTCP: &str = "81c8000d4d617273\
                             63e94885dcdab67ca727d7662f6b7e997ff5c0f76c06f32dc676a5f1730d6fda4ce09b46\
                             86303ded0bb9275bc84aa45896cf4d2fc5abf87245d9eade800005d4";

/// libsrtp's GCM cipher keyed with a session key.
struct Gcm(*mut srtp_cipher_t);

impl Gcm {
    fn new(key: &[u8]) -> Self {
        init_library().unwrap();
        let mut c = std::ptr::null_mut();
        // SAFETY: srtp_aes_gcm_128 is libsrtp's static cipher type; key
        // length 28 (key ‖ 96-bit salt) and tag 16 are what it expects.
        unsafe {
            assert_eq!(srtp_cipher_type_alloc(&srtp_aes_gcm_128, &mut c, 28, 16), 0);
            let mut full = key.to_vec();
            full.extend_from_slice(&[0; 12]);
            assert_eq!(srtp_cipher_init(c, full.as_ptr()), 0);
        }
        Self(c)
    }

    /// Encrypts `buf[aad_len..len]` with `buf[..aad_len]` as AAD and returns
    /// ciphertext ‖ tag appended after the AAD.
    fn seal(&mut self, iv: &mut [u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut buf = plaintext.to_vec();
        buf.extend_from_slice(&[0; 16]);
        let mut len = plaintext.len() as u32;
        let mut tag = [0u8; 16];
        let mut tag_len = 16u32;
        // SAFETY: buf has room for the plaintext plus the 16-byte tag NSS
        // writes past it; iv is 12 bytes, aad outlives the calls.
        unsafe {
            assert_eq!(
                srtp_cipher_set_iv(self.0, iv.as_mut_ptr(), SRTP_DIRECTION_ENCRYPT),
                0
            );
            assert_eq!(
                srtp_cipher_set_aad(self.0, aad.as_ptr(), aad.len() as u32),
                0
            );
            assert_eq!(srtp_cipher_encrypt(self.0, buf.as_mut_ptr(), &mut len), 0);
            assert_eq!(
                srtp_cipher_get_tag(self.0, tag.as_mut_ptr(), &mut tag_len),
                0
            );
        }
        buf.truncate(len as usize);
        buf.extend_from_slice(&tag[..tag_len as usize]);
        buf
    }

    /// Verifies and decrypts ciphertext ‖ tag; `None` when the tag fails.
    fn open(&mut self, iv: &mut [u8; 12], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let mut buf = sealed.to_vec();
        let mut len = sealed.len() as u32;
        // SAFETY: as in seal; decrypt reads len bytes including the tag.
        let status = unsafe {
            assert_eq!(
                srtp_cipher_set_iv(self.0, iv.as_mut_ptr(), SRTP_DIRECTION_DECRYPT),
                0
            );
            assert_eq!(
                srtp_cipher_set_aad(self.0, aad.as_ptr(), aad.len() as u32),
                0
            );
            srtp_cipher_decrypt(self.0, buf.as_mut_ptr(), &mut len)
        };
        (status == 0).then(|| {
            buf.truncate(len as usize);
            buf
        })
    }
}

impl Drop for Gcm {
    fn drop(&mut self) {
        // SAFETY: allocated by srtp_cipher_type_alloc, freed once.
        unsafe {
            srtp_cipher_dealloc(self.0);
        }
    }
}

/// RFC 7714 §8.1 (SRTP) / §9.1 (SRTCP) IV: salt XOR (0 ‖ SSRC ‖ ROC/0 ‖ index).
fn iv(salt: &[u8], ssrc: u32, high: u32, low: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&high.to_be_bytes());
    iv[10..12].copy_from_slice(&low.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

#[test]
fn rfc7714_16_1_srtp_aead_aes_128_gcm() {
    let (rtp, srtp, salt) = (unhex(RFC7714_RTP), unhex(RFC7714_SRTP), unhex(RFC7714_SALT));
    let mut gcm = Gcm::new(&unhex(RFC7714_KEY));
    // SSRC 0x5501a0b2, ROC 0, SEQ 0xf17b.
    let mut nonce = iv(&salt, 0x5501_a0b2, 0, 0xf17b);
    assert_eq!(hex(&nonce), "51753c6580c2726f20718414");
    let mut out = rtp[..12].to_vec();
    out.extend(gcm.seal(&mut nonce, &rtp[..12], &rtp[12..]));
    assert_eq!(out, srtp, "§16.1.1 encryption");

    let mut nonce = iv(&salt, 0x5501_a0b2, 0, 0xf17b);
    assert_eq!(
        gcm.open(&mut nonce, &srtp[..12], &srtp[12..]).unwrap(),
        &rtp[12..],
        "§16.1.2"
    );
    let mut tampered = srtp.clone();
    tampered[20] ^= 1;
    let mut nonce = iv(&salt, 0x5501_a0b2, 0, 0xf17b);
    assert!(
        gcm.open(&mut nonce, &tampered[..12], &tampered[12..])
            .is_none()
    );
}

#[test]
fn rfc7714_17_1_srtcp_aead_aes_128_gcm() {
    let (rtcp, srtcp, salt) = (
        unhex(RFC7714_RTCP),
        unhex(RFC7714_SRTCP),
        unhex(RFC7714_SALT),
    );
    let mut gcm = Gcm::new(&unhex(RFC7714_KEY));
    let e_index = &srtcp[srtcp.len() - 4..];
    assert_eq!(e_index, [0x80, 0, 0x05, 0xd4], "E=1, SRTCP index 0x5d4");
    // AAD: header and sender SSRC, then E ‖ index (RFC 7714 §9.3).
    let aad: Vec<u8> = rtcp[..8].iter().chain(e_index).copied().collect();
    let mut nonce = iv(&salt, 0x4d61_7273, 0, 0x05d4);
    let mut out = rtcp[..8].to_vec();
    out.extend(gcm.seal(&mut nonce, &aad, &rtcp[8..]));
    out.extend_from_slice(e_index);
    assert_eq!(out, srtcp, "§17.1 encryption");

    let mut nonce = iv(&salt, 0x4d61_7273, 0, 0x05d4);
    let sealed = &srtcp[8..srtcp.len() - 4];
    assert_eq!(
        gcm.open(&mut nonce, &aad, sealed).unwrap(),
        &rtcp[8..],
        "§17.2 decryption"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn gcm_round_trip_and_rejections<E: Engine>() {
    let key: Vec<u8> = (0..28).collect();
    let mk = MasterKey::from_bytes(Suite::AeadAes128Gcm, &key).unwrap();
    let mut tx = E::make(Suite::AeadAes128Gcm, &mk, Role::Protect);
    let mut rx = E::make(Suite::AeadAes128Gcm, &mk, Role::Unprotect);
    let plain = pion_plain(65535);
    let mut buf = [0u8; 256];
    buf[..plain.len()].copy_from_slice(&plain);
    let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
    assert_eq!(n, plain.len() + 16);
    let srtp = buf[..n].to_vec();

    let mut t = srtp.clone();
    t[14] ^= 0x40;
    t.extend_from_slice(&[0; TRAILER_ROOM]);
    assert_eq!(rx.unprotect_rtp(&mut t, n), Err(DropReason::AuthFailed));

    let mut ok = srtp.clone();
    ok.extend_from_slice(&[0; TRAILER_ROOM]);
    assert_eq!(rx.unprotect_rtp(&mut ok, n), Ok(plain.len()));
    assert_eq!(&ok[..plain.len()], &plain[..]);

    let mut again = srtp.clone();
    again.extend_from_slice(&[0; TRAILER_ROOM]);
    assert_eq!(rx.unprotect_rtp(&mut again, n), Err(DropReason::Replay));

    let mut short = [0u8; 256];
    short[..20].copy_from_slice(&srtp[..20]);
    assert_eq!(rx.unprotect_rtp(&mut short, 20), Err(DropReason::Truncated));

    let mut tight = srtp.clone();
    assert_eq!(
        rx.unprotect_rtp(&mut tight, n + 1),
        Err(DropReason::TooLarge)
    );
    let mut no_room = plain.clone();
    assert_eq!(
        tx.protect_rtp(&mut no_room, plain.len()),
        Err(DropReason::TooLarge)
    );
}

#[test]
fn native_aes_cm_protect_matches_independent_reference() {
    aes_cm_protect_matches_independent_reference::<SrtpContext>();
}

#[test]
fn libsrtp_aes_cm_protect_matches_independent_reference() {
    aes_cm_protect_matches_independent_reference::<LibsrtpContext>();
}

#[test]
fn native_aes_cm_unprotect_matches_independent_reference() {
    aes_cm_unprotect_matches_independent_reference::<SrtpContext>();
}

#[test]
fn libsrtp_aes_cm_unprotect_matches_independent_reference() {
    aes_cm_unprotect_matches_independent_reference::<LibsrtpContext>();
}

#[test]
fn native_srtcp_matches_independent_reference() {
    srtcp_matches_independent_reference::<SrtpContext>();
}

#[test]
fn libsrtp_srtcp_matches_independent_reference() {
    srtcp_matches_independent_reference::<LibsrtpContext>();
}

#[test]
fn native_gcm_round_trip_and_rejections() {
    gcm_round_trip_and_rejections::<SrtpContext>();
}

#[test]
fn libsrtp_gcm_round_trip_and_rejections() {
    gcm_round_trip_and_rejections::<LibsrtpContext>();
}

fn rfc7714_session(key: &str, salt: &str) -> transform::Gcm {
    let mut keys = SessionKeys {
        encryption: unhex(key).try_into().unwrap(),
        authentication: [0; 20],
        salt: [0; 14],
    };
    keys.salt[..12].copy_from_slice(&unhex(salt));
    transform::Gcm::new(&keys)
}

#[test]
fn native_rfc7714_16_1_srtp_whole_packet() {
    let (rtp, srtp) = (unhex(RFC7714_RTP), unhex(RFC7714_SRTP));
    let gcm = rfc7714_session(RFC7714_KEY, RFC7714_SALT);
    let nonce = gcm.rtp_nonce(0x5501_a0b2, 0xf17b);
    assert_eq!(hex(&nonce), "51753c6580c2726f20718414", "§16.1 IV");
    let mut buf = rtp.clone();
    let tag = gcm.seal(&nonce, &rtp[..12], &mut buf[12..]);
    buf.extend_from_slice(&tag);
    assert_eq!(buf, srtp, "§16.1.1 encryption");
    let (head, rest) = buf.split_at_mut(12);
    let (data, tag) = rest.split_at_mut(rtp.len() - 12);
    assert!(gcm.open(&nonce, head, data, tag), "§16.1.2 decryption");
    assert_eq!(&buf[..rtp.len()], &rtp[..]);
}

#[test]
fn native_rfc7714_17_1_srtcp_whole_packet() {
    let (rtcp, srtcp) = (unhex(RFC7714_RTCP), unhex(RFC7714_SRTCP));
    let gcm = rfc7714_session(RFC7714_KEY, RFC7714_SALT);
    let word = [0x80, 0, 0x05, 0xd4];
    let nonce = gcm.rtcp_nonce(0x4d61_7273, 0x05d4);
    let aad: Vec<u8> = rtcp[..8].iter().chain(&word).copied().collect();
    let mut buf = rtcp.clone();
    let tag = gcm.seal(&nonce, &aad, &mut buf[8..]);
    buf.extend_from_slice(&tag);
    buf.extend_from_slice(&word);
    assert_eq!(buf, srtcp, "§17.1 encryption");
    let body = rtcp.len();
    let tag: Vec<u8> = buf[body..body + 16].to_vec();
    assert!(
        gcm.open(&nonce, &aad, &mut buf[8..body], &tag),
        "§17.2 decryption"
    );
    assert_eq!(&buf[..body], &rtcp[..]);
}

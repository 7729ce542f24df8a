//! The per-packet cryptography of each suite, on session keys: AES-CM with
//! HMAC-SHA1 (RFC 3711 §4.1.1, §4.2) and AEAD_AES_128_GCM (RFC 7714 §8–9).
//! Pure functions of keys, index and bytes; index tracking lives in
//! `context`. Keyed cipher and MAC states are built once per context and
//! copied on the stack per packet, so nothing allocates. AES key schedules
//! are wiped on drop (the `zeroize` features of `aes` and `aes-gcm`); the
//! HMAC's precomputed inner/outer SHA-1 states are not, as `hmac` 0.12 offers
//! no way to.

use super::kdf::SessionKeys;
use aes::Aes128;
use aes::Block;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Keystream blocks made per AES call (256 bytes: a G.711 payload in one).
const KEYSTREAM_BLOCKS: usize = 16;
type HmacSha1 = Hmac<Sha1>;

/// GCM authentication tag length (RFC 7714 AEAD_AES_128_GCM).
pub(crate) const GCM_TAG: usize = 16;

/// AES-CM keys of one packet kind, expanded.
#[derive(Clone)]
pub(crate) struct AesCm {
    cipher: Aes128,
    salt: [u8; 14],
    mac: HmacSha1,
}

impl AesCm {
    pub(crate) fn new(keys: &SessionKeys) -> Self {
        Self {
            cipher: Aes128::new(&keys.encryption.into()),
            salt: keys.salt,
            mac: <HmacSha1 as Mac>::new_from_slice(&keys.authentication)
                .expect("HMAC takes any key length"),
        }
    }

    /// XORs the keystream for (SSRC, index) over `data` (RFC 3711 §4.1.1:
    /// IV = salt·2^16 ⊕ SSRC·2^64 ⊕ index·2^16).
    pub(crate) fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (b, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= x;
        }
        for (b, x) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= x;
        }
        // The counter blocks IV + i, encrypted several at a time by the
        // shared key schedule (a per-packet `Ctr` would copy it, and wipe
        // the copy on drop: 700 bytes of memory traffic per packet).
        let iv = u128::from_be_bytes(iv);
        let mut blocks = [Block::default(); KEYSTREAM_BLOCKS];
        for (n, chunk) in data.chunks_mut(KEYSTREAM_BLOCKS * 16).enumerate() {
            let used = chunk.len().div_ceil(16);
            for (i, b) in blocks[..used].iter_mut().enumerate() {
                let counter = iv.wrapping_add((n * KEYSTREAM_BLOCKS + i) as u128);
                *b = counter.to_be_bytes().into();
            }
            self.cipher.encrypt_blocks(&mut blocks[..used]);
            for (d, k) in chunk.chunks_mut(16).zip(&blocks) {
                if let Ok(d16) = <&mut [u8; 16]>::try_from(&mut *d) {
                    let x = u128::from_ne_bytes(*d16) ^ u128::from_ne_bytes((*k).into());
                    *d16 = x.to_ne_bytes();
                } else {
                    for (d, k) in d.iter_mut().zip(k) {
                        *d ^= k;
                    }
                }
            }
        }
    }

    /// HMAC-SHA1 over `parts`, full 20 bytes.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// Checks a truncated tag in constant time.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.verify_truncated_left(tag).is_ok()
    }
}

/// AES-GCM keys of one packet kind, expanded.
#[derive(Clone)]
pub(crate) struct Gcm {
    aead: Aes128Gcm,
    salt: [u8; 12],
}

impl Gcm {
    pub(crate) fn new(keys: &SessionKeys) -> Self {
        let mut salt = [0u8; 12];
        salt.copy_from_slice(&keys.salt[..12]);
        Self {
            aead: Aes128Gcm::new(&keys.encryption.into()),
            salt,
        }
    }

    /// RFC 7714 §8.1 / §9.1 IV: (0 ‖ SSRC ‖ high ‖ low) ⊕ salt, where
    /// (high, low) is (ROC, SEQ) for SRTP and (0, SRTCP index) for SRTCP.
    fn nonce(&self, ssrc: u32, high: u32, low: u32, low_len: usize) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        if low_len == 2 {
            iv[6..10].copy_from_slice(&high.to_be_bytes());
            iv[10..12].copy_from_slice(&(low as u16).to_be_bytes());
        } else {
            iv[8..12].copy_from_slice(&low.to_be_bytes());
        }
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        iv
    }

    /// SRTP nonce for (SSRC, index).
    pub(crate) fn rtp_nonce(&self, ssrc: u32, index: u64) -> [u8; 12] {
        self.nonce(ssrc, (index >> 16) as u32, index as u16 as u32, 2)
    }

    /// SRTCP nonce for (SSRC, SRTCP index).
    pub(crate) fn rtcp_nonce(&self, ssrc: u32, index: u32) -> [u8; 12] {
        self.nonce(ssrc, 0, index, 4)
    }

    /// Encrypts `data` in place; returns the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; GCM_TAG] {
        let tag = self
            .aead
            .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, data)
            .expect("SRTP packets are far below GCM's length limit");
        tag.into()
    }

    /// Verifies `tag` and decrypts `data` in place; false (data untouched)
    /// when the tag does not verify.
    pub(crate) fn open(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        self.aead
            .decrypt_in_place_detached(Nonce::from_slice(nonce), aad, data, Tag::from_slice(tag))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::hex::unhex;

    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let keys = SessionKeys {
            encryption: unhex("2B7E151628AED2A6ABF7158809CF4F3C")
                .try_into()
                .unwrap(),
            authentication: [0; 20],
            salt: unhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap(),
        };
        let cm = AesCm::new(&keys);
        let mut stream = vec![0u8; 0xff02 * 16];
        cm.apply_keystream(0, 0, &mut stream);
        let block = |i: usize| stream[i * 16..i * 16 + 16].to_vec();
        assert_eq!(block(0), unhex("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(block(1), unhex("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(block(2), unhex("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(block(0xfeff), unhex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
        assert_eq!(block(0xff00), unhex("362B7C3C6773516318A077D7FC5073AE"));
        assert_eq!(block(0xff01), unhex("6A2CC3787889374FBEB4C81B17BA6C44"));
    }

    /// Every length (partial last blocks, more than one batch) and a
    /// non-zero SSRC and index agree with the `ctr` crate's AES-CTR.
    #[test]
    fn keystream_matches_ctr_for_any_length() {
        use aes::cipher::{KeyIvInit, StreamCipher};
        let keys = SessionKeys {
            encryption: [7; 16],
            authentication: [0; 20],
            salt: [0x5a; 14],
        };
        let cm = AesCm::new(&keys);
        let (ssrc, index) = (0xdead_beef_u32, 0x0001_2345_6789_u64);
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&keys.salt);
        for (b, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= x;
        }
        for (b, x) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= x;
        }
        for len in 0..=600 {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut ours = data.clone();
            cm.apply_keystream(ssrc, index, &mut ours);
            let mut theirs = data;
            ctr::Ctr128BE::<Aes128>::new(&keys.encryption.into(), &iv.into())
                .apply_keystream(&mut theirs);
            assert_eq!(ours, theirs, "length {len}");
        }
    }
}

//! RFC 3711 §4.3 key derivation: session keys from a master key and salt with
//! the AES-CM PRF, key derivation rate 0 (SDES never rekeys by index).
//! RFC 7714 §11 uses the same PRF for GCM with a 96-bit master salt, which
//! is right-padded with two zero octets to the 112 bits the PRF takes.

use aes::Aes128;
use aes::cipher::{KeyIvInit, StreamCipher};
use zeroize::{Zeroize, ZeroizeOnDrop};

type Ctr = ctr::Ctr128BE<Aes128>;

/// RFC 3711 §4.3.2 labels.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(crate) enum Label {
    RtpEncryption = 0,
    RtpAuthentication = 1,
    RtpSalt = 2,
    RtcpEncryption = 3,
    RtcpAuthentication = 4,
    RtcpSalt = 5,
}

/// Derives `out.len()` bytes for `label` from a 16-byte master key and a
/// master salt of up to 14 bytes.
pub(crate) fn derive(master_key: &[u8; 16], master_salt: &[u8], label: Label, out: &mut [u8]) {
    // x = label · 2^48 XOR master salt (112 bits), IV = x · 2^16.
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label as u8;
    out.fill(0);
    Ctr::new(master_key.into(), &iv.into()).apply_keystream(out);
    iv.zeroize();
}

/// The session keys of one packet kind (SRTP or SRTCP).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SessionKeys {
    pub encryption: [u8; 16],
    pub authentication: [u8; 20],
    /// 14 bytes for AES-CM, 12 for GCM (the rest zero).
    pub salt: [u8; 14],
}

impl SessionKeys {
    /// Derives the SRTP (`rtcp == false`) or SRTCP keys.
    pub(crate) fn derive(
        master_key: &[u8; 16],
        master_salt: &[u8],
        salt_len: usize,
        rtcp: bool,
    ) -> Self {
        let (enc, auth, salt) = if rtcp {
            (
                Label::RtcpEncryption,
                Label::RtcpAuthentication,
                Label::RtcpSalt,
            )
        } else {
            (
                Label::RtpEncryption,
                Label::RtpAuthentication,
                Label::RtpSalt,
            )
        };
        let mut keys = SessionKeys {
            encryption: [0; 16],
            authentication: [0; 20],
            salt: [0; 14],
        };
        derive(master_key, master_salt, enc, &mut keys.encryption);
        derive(master_key, master_salt, auth, &mut keys.authentication);
        derive(master_key, master_salt, salt, &mut keys.salt[..salt_len]);
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::hex::unhex;

    #[test]
    fn rfc3711_b3_key_derivation() {
        let key: [u8; 16] = unhex("E1F97A0D3E018BE0D64FA32C06DE4139")
            .try_into()
            .unwrap();
        let salt = unhex("0EC675AD498AFEEBB6960B3AABE6");
        let mut out = [0u8; 16];
        derive(&key, &salt, Label::RtpEncryption, &mut out);
        assert_eq!(out[..], unhex("C61E7A93744F39EE10734AFE3FF7A087")[..]);
        let mut out = [0u8; 14];
        derive(&key, &salt, Label::RtpSalt, &mut out);
        assert_eq!(out[..], unhex("30CBBC08863D8C85D49DB34A9AE1")[..]);
        // The RFC lists 94 octets of the authentication key stream.
        let mut out = [0u8; 94];
        derive(&key, &salt, Label::RtpAuthentication, &mut out);
        let expected = unhex(
            "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2",
        );
        assert_eq!(out[..], expected[..]);
        let keys = SessionKeys::derive(&key, &salt, 14, false);
        assert_eq!(keys.authentication[..], expected[..20]);
    }
}

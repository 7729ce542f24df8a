//! SDES master keys (RFC 4568 `inline:` key-params) and the suites they
//! are for: parsing, encoding and zeroising. Owns the key bytes; never logs
//! them.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use zeroize::{Zeroize, ZeroizeOnDrop};

const MAX_MASTER_LEN: usize = 30;

/// Why an SDES key was refused. Messages say what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The suite name is not one pbxlink supports.
    #[error(
        "unknown SRTP crypto suite {0:?}: use AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32 or AEAD_AES_128_GCM"
    )]
    UnknownSuite(String),
    /// The key is not valid base64.
    #[error("SDES key is not valid base64; give the inline key as RFC 4568 prints it")]
    NotBase64,
    /// The decoded key has the wrong length for the suite.
    #[error("SDES key for {suite} must decode to {expected} bytes (key and salt), got {got}")]
    WrongLength {
        /// Suite the key was given for.
        suite: Suite,
        /// Bytes the suite needs.
        expected: usize,
        /// Bytes decoded.
        got: usize,
    },
    /// The key-params carry an MKI, which pbxlink does not use.
    #[error("SDES key carries an MKI; pbxlink does not use MKIs: offer the key without one")]
    MkiUnsupported,
    /// The lifetime field is malformed.
    #[error("SDES key lifetime {0:?} is malformed: expected a number or 2^N")]
    BadLifetime(String),
}

/// An SRTP master key and salt for one suite, wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; MAX_MASTER_LEN],
    #[zeroize(skip)]
    suite: Suite,
}

impl MasterKey {
    /// Builds a key from raw key ‖ salt bytes.
    pub fn from_bytes(suite: Suite, material: &[u8]) -> Result<Self, KeyError> {
        if material.len() != suite.master_len() {
            return Err(KeyError::WrongLength {
                suite,
                expected: suite.master_len(),
                got: material.len(),
            });
        }
        let mut bytes = [0u8; MAX_MASTER_LEN];
        bytes[..material.len()].copy_from_slice(material);
        Ok(Self { bytes, suite })
    }

    /// Parses SDES key-params: `inline:<base64>[|lifetime][|MKI:len]`, or the
    /// bare base64 as given on the command line.
    pub fn from_sdes(suite: Suite, key_params: &str) -> Result<Self, KeyError> {
        let s = key_params.trim();
        let s = s.strip_prefix("inline:").unwrap_or(s);
        let mut fields = s.split('|');
        let b64 = fields.next().unwrap_or_default();
        for field in fields {
            if field.contains(':') {
                return Err(KeyError::MkiUnsupported);
            }
            let valid = field
                .strip_prefix("2^")
                .unwrap_or(field)
                .parse::<u64>()
                .is_ok();
            if !valid {
                return Err(KeyError::BadLifetime(field.to_owned()));
            }
        }
        let mut decoded = [0u8; 64];
        let n = STANDARD
            .decode_slice(b64, &mut decoded)
            .or_else(|_| STANDARD_NO_PAD.decode_slice(b64, &mut decoded))
            .map_err(|e| match e {
                base64::DecodeSliceError::OutputSliceTooSmall => KeyError::WrongLength {
                    suite,
                    expected: suite.master_len(),
                    got: b64.len() * 3 / 4,
                },
                base64::DecodeSliceError::DecodeError(_) => KeyError::NotBase64,
            });
        let result = n.and_then(|n| Self::from_bytes(suite, &decoded[..n]));
        decoded.zeroize();
        result
    }

    /// The key as SDES `inline:` key-params (no lifetime, no MKI).
    pub fn to_sdes_inline(&self) -> String {
        format!("inline:{}", STANDARD.encode(self.as_bytes()))
    }

    /// The suite this key belongs to.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Key ‖ salt.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.suite.master_len()]
    }

    pub(super) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.bytes.as_mut_ptr()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", self.suite)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4568_EXAMPLE: &str = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32";
    const KEY_30: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    #[test]
    fn parses_inline_key_with_lifetime() {
        let k = MasterKey::from_sdes(Suite::AesCm128HmacSha1_80, &format!("inline:{KEY_30}|2^31"))
            .unwrap();
        assert_eq!(k.as_bytes().len(), 30);
        assert_eq!(k.to_sdes_inline(), format!("inline:{KEY_30}"));
    }

    #[test]
    fn bare_base64_is_accepted() {
        assert!(MasterKey::from_sdes(Suite::AesCm128HmacSha1_32, KEY_30).is_ok());
    }

    #[test]
    fn refuses_mki() {
        assert_eq!(
            MasterKey::from_sdes(Suite::AesCm128HmacSha1_80, RFC4568_EXAMPLE).unwrap_err(),
            KeyError::MkiUnsupported
        );
    }

    #[test]
    fn refuses_wrong_length_for_suite() {
        let err = MasterKey::from_sdes(Suite::AeadAes128Gcm, KEY_30).unwrap_err();
        assert!(matches!(
            err,
            KeyError::WrongLength {
                expected: 28,
                got: 30,
                ..
            }
        ));
        let long = STANDARD.encode([7u8; 60]);
        assert!(matches!(
            MasterKey::from_sdes(Suite::AeadAes128Gcm, &long).unwrap_err(),
            KeyError::WrongLength { .. }
        ));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(
            MasterKey::from_sdes(Suite::AesCm128HmacSha1_80, "inline:!!!!").unwrap_err(),
            KeyError::NotBase64
        );
        assert!(matches!(
            MasterKey::from_sdes(Suite::AesCm128HmacSha1_80, &format!("{KEY_30}|soon")),
            Err(KeyError::BadLifetime(_))
        ));
    }

    #[test]
    fn debug_never_shows_key() {
        let k = MasterKey::from_sdes(Suite::AesCm128HmacSha1_80, KEY_30).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(KEY_30) && shown.contains("redacted"));
    }

    #[test]
    fn suite_names_round_trip() {
        for s in Suite::ALL {
            assert_eq!(s.sdp_name().parse::<Suite>().unwrap(), s);
        }
        assert!("F8_128_HMAC_SHA1_80".parse::<Suite>().is_err());
    }
}

//! A signed release: the artifact's bytes and a minisign signature whose
//! trusted comment (signed too) is `pbxlink VERSION`.

use minisign_verify::{PublicKey, Signature};
use semver::Version;
use sha2::{Digest, Sha256};

/// The trusted comment's first word: what the signature says it signs.
pub const PRODUCT: &str = "pbxlink";

/// A release that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its version, from the signed comment.
    pub version: Version,
    /// The artifact's SHA-256, lowercase hex (for the log and the platform).
    pub sha256: String,
}

/// Why a release is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The gateway's trusted key is not a minisign public key.
    #[error("the trusted update key is not a minisign public key ({0})")]
    BadKey(String),
    /// The signature is not a minisign signature.
    #[error("the signature is not a minisign signature ({0})")]
    BadSignatureFormat(String),
    /// The signature does not verify with the trusted key (another key,
    /// or bytes changed).
    #[error("bad signature: the release is not signed by the trusted key ({0})")]
    BadSignature(String),
    /// The signed comment does not name a pbxlink version.
    #[error("the signed comment {0:?} does not name a pbxlink version")]
    NotARelease(String),
    /// The signed version is not the one offered.
    #[error("the release is signed as {signed}, offered as {offered}")]
    VersionMismatch {
        /// From the signature.
        signed: Version,
        /// From the offer.
        offered: Version,
    },
    /// Not newer than what runs.
    #[error("version {offered} is not newer than the running {running}")]
    NotNewer {
        /// Offered.
        offered: Version,
        /// Running.
        running: Version,
    },
}

/// The version a trusted comment names: `pbxlink VERSION`, optionally
/// followed by a tab and more (minisign's own `timestamp:…` fields).
pub fn signed_version(trusted_comment: &str) -> Result<Version, Refused> {
    let first = trusted_comment.split('\t').next().unwrap_or_default();
    let mut words = first.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some(PRODUCT), Some(v), None) => {
            Version::parse(v).map_err(|_| Refused::NotARelease(trusted_comment.to_owned()))
        }
        _ => Err(Refused::NotARelease(trusted_comment.to_owned())),
    }
}

/// The trusted comment a release of `version` is signed with.
pub fn trusted_comment(version: &Version) -> String {
    format!("{PRODUCT} {version}")
}

/// Parses a version offered (`"0.2.0"`).
pub fn parse_version(v: &str) -> Result<Version, String> {
    Version::parse(v.trim()).map_err(|e| format!("{v:?} is not a version (MAJOR.MINOR.PATCH): {e}"))
}

/// Verifies `artifact` against `signature` (a minisign `.minisig` text)
/// with `public_key` (the base64 line, or the whole `minisign.pub`), and
/// that it is `offered` and newer than `running`.
pub fn verify(
    artifact: &[u8],
    signature: &str,
    public_key: &str,
    offered: &Version,
    running: &Version,
) -> Result<Verified, Refused> {
    let key = public_key.trim();
    let key = if key.contains('\n') {
        PublicKey::decode(key)
    } else {
        PublicKey::from_base64(key)
    }
    .map_err(|e| Refused::BadKey(e.to_string()))?;
    let sig = Signature::decode(signature.trim())
        .map_err(|e| Refused::BadSignatureFormat(e.to_string()))?;
    key.verify(artifact, &sig, false)
        .map_err(|e| Refused::BadSignature(e.to_string()))?;
    let version = signed_version(sig.trusted_comment())?;
    if &version != offered {
        return Err(Refused::VersionMismatch {
            signed: version,
            offered: offered.clone(),
        });
    }
    if version <= *running {
        return Err(Refused::NotNewer {
            offered: version,
            running: running.clone(),
        });
    }
    let sha256 = Sha256::digest(artifact)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Verified { version, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    /// A key pair made by the minisign crate (the signer's side), the
    /// public key as the gateway is given it, and a signature of `data`.
    fn signed(data: &[u8], comment: &str) -> (String, String) {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let sig = minisign::sign(
            Some(&pair.pk),
            &pair.sk,
            Cursor::new(data),
            Some(comment),
            None,
        )
        .unwrap();
        (pair.pk.to_base64(), sig.into_string())
    }

    #[test]
    fn a_signed_newer_release_verifies_and_anything_else_is_refused() {
        let data = b"release bytes";
        let (key, sig) = signed(data, "pbxlink 0.2.0");
        let ok = verify(data, &sig, &key, &v("0.2.0"), &v("0.1.0")).unwrap();
        assert_eq!(ok.version, v("0.2.0"));
        assert_eq!(ok.sha256.len(), 64);
        // One byte changed.
        assert!(matches!(
            verify(b"release bytez", &sig, &key, &v("0.2.0"), &v("0.1.0")),
            Err(Refused::BadSignature(_))
        ));
        // Signed by another key.
        let (other, _) = signed(data, "pbxlink 0.2.0");
        assert!(matches!(
            verify(data, &sig, &other, &v("0.2.0"), &v("0.1.0")),
            Err(Refused::BadSignature(_))
        ));
        // Not newer; offered as another version than signed.
        assert_eq!(
            verify(data, &sig, &key, &v("0.2.0"), &v("0.2.0")),
            Err(Refused::NotNewer {
                offered: v("0.2.0"),
                running: v("0.2.0")
            })
        );
        assert!(matches!(
            verify(data, &sig, &key, &v("0.3.0"), &v("0.1.0")),
            Err(Refused::VersionMismatch { .. })
        ));
        // Garbage for a signature or a key.
        assert!(matches!(
            verify(data, "nonsense", &key, &v("0.2.0"), &v("0.1.0")),
            Err(Refused::BadSignatureFormat(_))
        ));
        assert!(matches!(
            verify(data, &sig, "RWQ", &v("0.2.0"), &v("0.1.0")),
            Err(Refused::BadKey(_))
        ));
    }

    #[test]
    fn the_signed_comment_must_name_a_pbxlink_version() {
        assert_eq!(signed_version("pbxlink 1.2.3").unwrap(), v("1.2.3"));
        assert_eq!(
            signed_version("pbxlink 1.2.3\ttimestamp:1\tfile:x").unwrap(),
            v("1.2.3")
        );
        for bad in [
            "",
            "pbxlink",
            "pbxlink 1.2",
            "other 1.2.3",
            "pbxlink 1.2.3 extra",
        ] {
            assert!(signed_version(bad).is_err(), "{bad:?}");
        }
        let data = b"x";
        let (key, sig) = signed(data, "timestamp:1700000000\tfile:pbxlink.gz");
        assert!(matches!(
            verify(data, &sig, &key, &v("0.2.0"), &v("0.1.0")),
            Err(Refused::NotARelease(_))
        ));
    }
}

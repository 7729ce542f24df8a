//! cloudsim's release store: the platform's side of software updates
//! (docs/protocols-tunnel.md "Updates"). It signs releases with its own
//! key (minisign, Ed25519; the public key is written where the gateway's
//! `[update] public_key` is read from), keeps them, and offers one to a
//! gateway through the tunnel: `update_offer`, then `update_piece` after
//! `update_piece` until the gateway has every byte.
//!
//! - `POST /releases {"version", "binary"}`: gzips the executable at
//!   `binary`, signs it as `pbxlink VERSION`, stores it.
//! - `GET /releases`: the versions stored, their sizes and SHA-256.
//! - `POST /releases/{version}/offer {"gateway"?, "apply"?, "tamper"?}`:
//!   sends it (`apply`: "now" or "scheduled"); `tamper` flips one byte
//!   of what is sent after signing (a release the gateway must refuse).

use crate::tunnel::{Shared, command};
use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::sync::{Arc, Mutex};

/// The most bytes one `update_piece` carries (its base64 stays well
/// inside a tunnel frame).
pub const PIECE: usize = 256 << 10;

/// One release.
struct Release {
    artifact: Vec<u8>,
    signature: String,
}

/// The store and its signing key.
#[derive(Clone)]
pub struct Store {
    key: Arc<minisign::KeyPair>,
    releases: Arc<Mutex<BTreeMap<String, Release>>>,
}

impl Store {
    /// A store with a new key; its public key (base64) is written to
    /// `key_out` when given.
    pub fn new(key_out: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let key = minisign::KeyPair::generate_unencrypted_keypair()
            .map_err(|e| anyhow::anyhow!("making the release key: {e}"))?;
        if let Some(p) = key_out {
            std::fs::write(p, format!("{}\n", key.pk.to_base64()))?;
        }
        Ok(Self {
            key: Arc::new(key),
            releases: Arc::default(),
        })
    }

    /// The public key releases are signed with (base64).
    pub fn public_key(&self) -> String {
        self.key.pk.to_base64()
    }

    /// Gzips, signs and keeps the executable at `binary` as `version`.
    pub fn add(&self, version: &str, binary: &std::path::Path) -> Result<Value, String> {
        if semver_like(version).is_none() {
            return Err(format!("{version:?} is not a version (MAJOR.MINOR.PATCH)"));
        }
        let exe =
            std::fs::read(binary).map_err(|e| format!("reading {}: {e}", binary.display()))?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&exe).map_err(|e| e.to_string())?;
        let artifact = gz.finish().map_err(|e| e.to_string())?;
        let sig = minisign::sign(
            Some(&self.key.pk),
            &self.key.sk,
            Cursor::new(&artifact),
            Some(&format!("pbxlink {version}")),
            Some(&format!("pbxlink {version} release")),
        )
        .map_err(|e| format!("signing: {e}"))?;
        let summary =
            json!({ "version": version, "bytes": artifact.len(), "executable_bytes": exe.len() });
        self.releases.lock().expect("releases").insert(
            version.to_owned(),
            Release {
                artifact,
                signature: sig.into_string(),
            },
        );
        Ok(summary)
    }

    /// The versions stored.
    pub fn list(&self) -> Value {
        let r = self.releases.lock().expect("releases");
        json!(
            r.iter()
                .map(|(v, rel)| json!({ "version": v, "bytes": rel.artifact.len() }))
                .collect::<Vec<_>>()
        )
    }

    /// Offers `version` to `gateway` through the tunnel and sends it
    /// piece by piece; what the gateway answered last.
    pub async fn offer(
        &self,
        platform: &Shared,
        gateway: Option<&str>,
        version: &str,
        apply: &str,
        tamper: bool,
    ) -> Result<Value, String> {
        let (mut artifact, signature) = {
            let r = self.releases.lock().expect("releases");
            let rel = r
                .get(version)
                .ok_or_else(|| format!("no release {version}"))?;
            (rel.artifact.clone(), rel.signature.clone())
        };
        if tamper {
            let mid = artifact.len() / 2;
            artifact[mid] ^= 0x01;
        }
        let answer = |r: Value| -> Result<Value, String> {
            if r["ok"] == true {
                Ok(r["body"].clone())
            } else {
                Err(format!("the gateway refused: {}", r["error"]))
            }
        };
        answer(
            command(
                platform,
                gateway,
                None,
                "update_offer",
                json!({ "version": version, "size": artifact.len(), "signature": signature, "apply": apply }),
            )
            .await?,
        )?;
        let mut last = Value::Null;
        let mut pieces = 0;
        for (n, chunk) in artifact.chunks(PIECE).enumerate() {
            last = answer(
                command(
                    platform,
                    gateway,
                    None,
                    "update_piece",
                    json!({
                        "version": version,
                        "offset": n * PIECE,
                        "data_base64": base64::engine::general_purpose::STANDARD.encode(chunk),
                    }),
                )
                .await?,
            )?;
            pieces += 1;
        }
        Ok(
            json!({ "version": version, "bytes": artifact.len(), "pieces": pieces, "gateway": last }),
        )
    }
}

fn semver_like(v: &str) -> Option<()> {
    let core = v.split(['-', '+']).next()?;
    let parts: Vec<_> = core.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.parse::<u64>().is_ok()))
    .then_some(())
}

//! `[update]`: signed software updates offered by the platform.

use super::defaults::health_seconds;
use serde::Deserialize;

/// `[update]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateSection {
    /// The minisign public key (base64) releases must be signed with;
    /// none: updates are refused.
    pub(super) public_key: Option<String>,
    /// How long a new version has to be healthy (the PBX trunk, the cloud
    /// trunk and the tunnel up) before it is rolled back.
    #[serde(default = "health_seconds")]
    pub(super) health_seconds: u64,
}

impl Default for UpdateSection {
    fn default() -> Self {
        Self {
            public_key: None,
            health_seconds: health_seconds(),
        }
    }
}

/// Software updates' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSettings {
    /// The key releases are verified with (none: updates refused).
    pub public_key: Option<String>,
    /// A new version's health-check bound.
    pub health: std::time::Duration,
}

pub(super) fn update_settings(u: &UpdateSection, problems: &mut Vec<String>) -> UpdateSettings {
    if !(10..=3600).contains(&u.health_seconds) {
        problems.push(format!(
            "[update] health_seconds = {}: use 10 to 3600 (120 is usual)",
            u.health_seconds
        ));
    }
    if let Some(k) = &u.public_key {
        let k = k.trim();
        // A minisign public key: "RW" and 54 more base64 characters.
        if k.len() != 56 || !k.starts_with("RW") {
            problems.push(format!(
                "[update] public_key = {k:?}: a minisign public key (the base64 line of minisign.pub, \"RW…\", 56 characters)"
            ));
        }
    }
    UpdateSettings {
        public_key: u.public_key.as_ref().map(|k| k.trim().to_owned()),
        health: std::time::Duration::from_secs(u.health_seconds),
    }
}

/// `[update] health_seconds` of a configuration's table (the default when
/// not set or not a number in range): read at start, before the rest, to
/// act on the update journal.
pub fn update_health(table: &toml::Table) -> std::time::Duration {
    let s = table
        .get("update")
        .and_then(|u| u.get("health_seconds"))
        .and_then(toml::Value::as_integer)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| (10..=3600).contains(s))
        .unwrap_or_else(health_seconds);
    std::time::Duration::from_secs(s)
}

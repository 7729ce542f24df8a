//! `[gateway]`: the gateway's addresses, profile, media networks and
//! limits.

use super::defaults::*;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GatewaySection {
    pub(super) lan_address: String,
    pub(super) public_address: Option<String>,
    #[serde(default = "auto")]
    pub(super) profile: String,
    #[serde(default)]
    pub(super) networks: Vec<String>,
    #[serde(default = "media_timeout")]
    pub(super) media_timeout_seconds: u64,
    pub(super) call_limit: Option<u32>,
    pub(super) cdr_file: Option<PathBuf>,
    #[serde(default = "drain")]
    pub(super) drain_seconds: u64,
    #[serde(default = "state_dir")]
    pub(super) state_dir: PathBuf,
}

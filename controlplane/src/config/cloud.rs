//! `[cloud]`: the cloud trunk.

use super::defaults::*;
use pbxlink_sip::resolve::Target;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CloudSection {
    pub(super) domain: Option<String>,
    #[serde(default)]
    pub(super) targets: Vec<String>,
    pub(super) ca: PathBuf,
    pub(super) server_name: Option<String>,
    #[serde(default = "keepalive")]
    pub(super) keepalive_seconds: u64,
    pub(super) srtp_suites: Option<Vec<String>>,
    #[serde(default)]
    pub(super) stun: Vec<String>,
    pub(super) ntp: Option<String>,
}

/// Where the cloud trunk's targets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudTargets {
    /// RFC 3263 resolution of this domain.
    Domain(String),
    /// A static list, in order.
    Static(Vec<Target>),
}

//! `[sip]`: the SIP listeners and their limits.

use super::defaults::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SipSection {
    #[serde(default = "pbx_trunk")]
    pub(super) role: String,
    pub(super) port: Option<u16>,
    #[serde(default = "cs3")]
    pub(super) dscp: u8,
    #[serde(default = "service_unavailable")]
    pub(super) refuse_with: u16,
    #[serde(default = "idle_timeout")]
    pub(super) idle_timeout: u64,
    #[serde(default = "partial_timeout")]
    pub(super) partial_timeout: u64,
    #[serde(default = "max_connections")]
    pub(super) max_connections: usize,
}

impl Default for SipSection {
    fn default() -> Self {
        Self {
            role: pbx_trunk(),
            port: None,
            dscp: cs3(),
            refuse_with: service_unavailable(),
            idle_timeout: idle_timeout(),
            partial_timeout: partial_timeout(),
            max_connections: max_connections(),
        }
    }
}

//! `[digits]`: what numbers dialled go through each way.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DigitsSection {
    #[serde(default)]
    pub(super) outbound_strip: String,
    #[serde(default)]
    pub(super) outbound_prepend: String,
    #[serde(default)]
    pub(super) inbound_strip: String,
    #[serde(default)]
    pub(super) inbound_prepend: String,
}

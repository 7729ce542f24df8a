//! `[capture]`: copies of the signalling (and the media's RTCP reports)
//! for the operator's capture server.

use super::defaults::{hep_capture_id, off};
use serde::Deserialize;
use std::net::SocketAddr;

/// `[capture]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaptureSection {
    /// A Homer / heplify collector's `ADDR:PORT` for HEP3 over UDP, or
    /// `off`.
    #[serde(default = "off")]
    pub(super) hep: String,
    /// The capture agent's number in each HEP packet.
    #[serde(default = "hep_capture_id")]
    pub(super) capture_id: u32,
}

impl Default for CaptureSection {
    fn default() -> Self {
        Self {
            hep: off(),
            capture_id: hep_capture_id(),
        }
    }
}

/// Where copies go (none: capture off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureSettings {
    /// The collector.
    pub hep: SocketAddr,
    /// The capture agent's number.
    pub capture_id: u32,
}

pub(super) fn capture_settings(
    c: &CaptureSection,
    problems: &mut Vec<String>,
) -> Option<CaptureSettings> {
    if c.hep == "off" {
        return None;
    }
    match c.hep.parse::<SocketAddr>() {
        Ok(hep) if hep.port() != 0 && !hep.ip().is_unspecified() => Some(CaptureSettings {
            hep,
            capture_id: c.capture_id,
        }),
        _ => {
            problems.push(format!(
                "[capture] hep = {:?}: a collector's ADDR:PORT (e.g. \"192.168.1.30:9060\"), or \"off\"",
                c.hep
            ));
            None
        }
    }
}

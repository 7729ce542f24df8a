//! `[support]`: the vendor's support access (SSH for 24 hours, turned on
//! from the operations page or by the platform).

use super::defaults::{ssh_port, ssh_user, support_window_seconds};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

/// `[support]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SupportSection {
    /// The port support's SSH listens on, on the LAN address only.
    #[serde(default = "ssh_port")]
    pub(super) ssh_port: u16,
    /// The account support logs in as (never root): the gateway's own.
    #[serde(default = "ssh_user")]
    pub(super) ssh_user: String,
    /// How long a window lasts (24 hours; shorter only for tests).
    #[serde(default = "support_window_seconds")]
    pub(super) window_seconds: u64,
}

impl Default for SupportSection {
    fn default() -> Self {
        Self {
            ssh_port: ssh_port(),
            ssh_user: ssh_user(),
            window_seconds: support_window_seconds(),
        }
    }
}

/// Support access's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportSettings {
    /// Where support's SSH listens (none: the LAN address is not set).
    pub listen: Option<SocketAddr>,
    /// The account support logs in as.
    pub user: String,
    /// How long a window lasts.
    pub window: std::time::Duration,
}

pub(super) fn support_settings(
    s: &SupportSection,
    lan: Option<IpAddr>,
    problems: &mut Vec<String>,
) -> SupportSettings {
    if s.ssh_user == "root"
        || s.ssh_user.is_empty()
        || !s
            .ssh_user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        problems.push(format!(
            "[support] ssh_user = {:?}: an account name other than root (the gateway's own, \"pbxlink\")",
            s.ssh_user
        ));
    }
    if !(10..=86_400).contains(&s.window_seconds) {
        problems.push(format!(
            "[support] window_seconds = {}: from 10 to 86400 (24 hours, the default)",
            s.window_seconds
        ));
    }
    if s.ssh_port == 0 {
        problems.push("[support] ssh_port = 0: a port (22 by default)".into());
    }
    SupportSettings {
        listen: lan
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| SocketAddr::new(ip, s.ssh_port)),
        user: s.ssh_user.clone(),
        window: std::time::Duration::from_secs(s.window_seconds),
    }
}

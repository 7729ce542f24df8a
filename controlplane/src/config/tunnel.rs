//! `[tunnel]`: the management tunnel to the cloud platform.

use super::defaults::*;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TunnelSection {
    pub(super) endpoint: Option<String>,
    pub(super) server_name: Option<String>,
    pub(super) ca: Option<PathBuf>,
    pub(super) account: Option<String>,
    pub(super) token: Option<String>,
    pub(super) gateway_id: Option<String>,
    #[serde(default = "outbox_events")]
    pub(super) outbox_events: usize,
    #[serde(default = "sync_minutes")]
    pub(super) sync_minutes: u64,
}

impl Default for TunnelSection {
    fn default() -> Self {
        Self {
            endpoint: None,
            server_name: None,
            ca: None,
            account: None,
            token: None,
            gateway_id: None,
            outbox_events: outbox_events(),
            sync_minutes: sync_minutes(),
        }
    }
}

/// The tunnel's settings, checked.
#[derive(Clone)]
pub struct TunnelSettings {
    /// `host:port`.
    pub endpoint: String,
    /// The name the platform's certificate carries.
    pub server_name: String,
    /// The CA it chains to.
    pub ca: PathBuf,
    /// The account.
    pub account: String,
    /// The token.
    pub token: String,
    /// The gateway's id, when configured.
    pub gateway_id: Option<String>,
    /// Most events kept unacknowledged.
    pub outbox_events: usize,
    /// Between scheduled syncs (none: none).
    pub sync_every: Option<Duration>,
}

impl fmt::Debug for TunnelSettings {
    /// Never shows the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelSettings")
            .field("endpoint", &self.endpoint)
            .field("server_name", &self.server_name)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// The tunnel's settings, or the problems with them.
pub(super) fn tunnel_settings(
    t: &TunnelSection,
    cloud_ca: &Path,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<TunnelSettings> {
    let endpoint = t.endpoint.clone()?;
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        problems.push(format!(
            "[tunnel] endpoint = {endpoint:?}: host:port (e.g. \"mgmt.cloud.example:443\")"
        ));
        return None;
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        problems.push(format!(
            "[tunnel] endpoint = {endpoint:?}: host:port (e.g. \"mgmt.cloud.example:443\")"
        ));
    }
    let (Some(account), Some(token)) = (&t.account, &t.token) else {
        problems.push("[tunnel] needs account and token (given when the gateway is linked)".into());
        return None;
    };
    if token.len() < 16 {
        problems.push("[tunnel] token: at least 16 characters".into());
    }
    if !(1..=10_000_000).contains(&t.outbox_events) {
        problems.push(format!(
            "[tunnel] outbox_events = {}: use 1 to 10000000 (100000 is usual)",
            t.outbox_events
        ));
    }
    let ca =
        t.ca.as_ref()
            .map_or_else(|| cloud_ca.to_owned(), |c| base.join(c));
    if let Err(e) = std::fs::metadata(&ca) {
        problems.push(format!("[tunnel] ca = {:?}: {e}", ca.display().to_string()));
    }
    Some(TunnelSettings {
        server_name: t
            .server_name
            .clone()
            .unwrap_or_else(|| host.trim_matches(['[', ']']).to_owned()),
        endpoint,
        ca,
        account: account.clone(),
        token: token.clone(),
        gateway_id: t.gateway_id.clone(),
        outbox_events: t.outbox_events,
        sync_every: (t.sync_minutes > 0).then(|| Duration::from_secs(60 * t.sync_minutes)),
    })
}

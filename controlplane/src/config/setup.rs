//! What the admin page needs before the gateway is onboarded.

use super::admin::{AdminSection, AdminSettings, admin_settings};
use super::error::ConfigError;
use super::file::configured;
use super::gateway::GatewaySection;
use super::log::LogSection;
use super::tunnel::{TunnelSection, TunnelSettings, tunnel_settings};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What runs before the gateway is onboarded (no `[pbx]` or no `[cloud]`
/// yet): the admin page with its wizard.
#[derive(Debug, Clone)]
pub struct SetupConfig {
    /// Where the gateway keeps what it must not forget.
    pub state_dir: PathBuf,
    /// The admin page and API.
    pub admin: AdminSettings,
    /// The account's name (its admin password must not contain it).
    pub account: Option<String>,
    /// What is not configured yet.
    pub missing: Vec<String>,
    /// The tunnel to the cloud platform, when the file links the gateway
    /// already (a replacement relinks through it; none: off).
    pub tunnel: Option<TunnelSettings>,
    /// Why the tunnel is off although `[tunnel]` is there.
    pub tunnel_problems: Vec<String>,
}

/// When the merged file lacks what calls need (`[pbx]`, `[cloud]`): what
/// runs meanwhile, or the problems with the little it needs.
pub fn setup_config(path: &Path, table: &toml::Table) -> Result<Option<SetupConfig>, ConfigError> {
    let missing: Vec<String> = [
        (
            "pbx",
            "the PBX (the wizard's PBX step, or [pbx] in the file)",
        ),
        (
            "cloud",
            "the cloud platform ([cloud], given when the gateway is linked)",
        ),
    ]
    .iter()
    .filter(|(k, _)| !configured(table, k))
    .map(|(_, what)| (*what).to_owned())
    .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct SetupFile {
        gateway: GatewaySection,
        #[serde(default)]
        admin: AdminSection,
        #[serde(default)]
        tunnel: TunnelSection,
        #[serde(default)]
        support: super::support::SupportSection,
        #[serde(default, rename = "log")]
        _log: LogSection,
    }
    let fail = |problems: Vec<String>| ConfigError {
        file: path.to_owned(),
        problems,
    };
    let mut only = toml::Table::new();
    for k in ["gateway", "admin", "tunnel", "support", "log"] {
        if let Some(v) = table.get(k) {
            only.insert(k.into(), v.clone());
        }
    }
    let file: SetupFile = toml::Value::Table(only)
        .try_into()
        .map_err(|e: toml::de::Error| fail(vec![e.to_string().trim().replace('\n', " ")]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let lan_address = file.gateway.lan_address.parse::<IpAddr>().map_err(|_| {
        fail(vec![format!(
            "[gateway] lan_address = {:?} is not an IP address (e.g. \"192.168.1.20\")",
            file.gateway.lan_address
        )])
    })?;
    let admin = admin_settings(
        &file.admin,
        &file.support,
        Some(lan_address),
        base,
        &mut problems,
    );
    // The tunnel's CA defaults to the cloud trunk's, when [cloud] names one.
    let cloud_ca = table
        .get("cloud")
        .and_then(|c| c.get("ca"))
        .and_then(toml::Value::as_str)
        .map_or_else(PathBuf::new, |c| base.join(c));
    // In setup the tunnel's problems leave it off rather than stopping
    // the page the installer needs.
    let mut tunnel_problems = Vec::new();
    let tunnel = tunnel_settings(&file.tunnel, &cloud_ca, base, &mut tunnel_problems)
        .filter(|_| tunnel_problems.is_empty());
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    Ok(Some(SetupConfig {
        state_dir: base.join(&file.gateway.state_dir),
        admin,
        account: table
            .get("tunnel")
            .and_then(|t| t.get("account"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned),
        missing,
        tunnel,
        tunnel_problems,
    }))
}

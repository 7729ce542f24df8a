//! `[admin]`: the admin page and REST API.

use super::defaults::*;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminSection {
    pub(super) listen: Option<String>,
    pub(super) https_listen: Option<String>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) api_token: Option<String>,
    pub(super) network_interface: Option<String>,
    #[serde(default = "resolv_conf")]
    pub(super) resolv_conf: PathBuf,
    #[serde(default = "log_link_seconds")]
    pub(super) log_link_seconds: u64,
    #[serde(default = "mdns_name")]
    pub(super) mdns_name: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: None,
            https_listen: None,
            cert: None,
            key: None,
            api_token: None,
            network_interface: None,
            resolv_conf: resolv_conf(),
            log_link_seconds: log_link_seconds(),
            mdns_name: mdns_name(),
        }
    }
}

/// The admin page and API's settings (also read before the gateway is
/// onboarded, when only the admin runs).
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Plain HTTP: health, readiness, metrics and the REST API (commands
    /// with the token); browsers are sent on to HTTPS. None: off.
    pub listen: Option<std::net::SocketAddr>,
    /// The admin page and its API over HTTPS. None: off.
    pub https_listen: Option<std::net::SocketAddr>,
    /// The page's certificate and key (none: made at first start).
    pub cert: Option<(PathBuf, PathBuf)>,
    /// The bearer token that lets API requests run commands.
    pub token: Option<String>,
    /// The interface the wizard's static LAN settings are applied to
    /// (none: they are recorded, the system owns the network).
    pub network_interface: Option<String>,
    /// Where DNS servers are written when the interface is managed.
    pub resolv_conf: PathBuf,
    /// How long a log bundle's download link works.
    pub log_link: std::time::Duration,
    /// The name advertised by mDNS (`NAME.local`) and the address it
    /// stands for (none: not advertised).
    pub mdns: Option<(String, IpAddr)>,
    /// Support's SSH access (`[support]`).
    pub support: super::support::SupportSettings,
}

pub(super) fn listen_key(
    key: &str,
    v: Option<&str>,
    default: Option<std::net::SocketAddr>,
    problems: &mut Vec<String>,
) -> Option<std::net::SocketAddr> {
    match v {
        Some("off") => None,
        Some(a) => a
            .parse()
            .map_err(|_| {
                problems.push(format!(
                    "[admin] {key} = {a:?}: an address and port (e.g. \"192.168.1.20:80\") or \"off\""
                ))
            })
            .ok(),
        None => default,
    }
}

pub(super) fn admin_settings(
    a: &AdminSection,
    support: &super::support::SupportSection,
    lan: Option<IpAddr>,
    base: &Path,
    problems: &mut Vec<String>,
) -> AdminSettings {
    let at = |port| lan.map(|ip| std::net::SocketAddr::new(ip, port));
    let listen = listen_key("listen", a.listen.as_deref(), at(80), problems);
    let https_listen = listen_key("https_listen", a.https_listen.as_deref(), at(443), problems);
    let cert = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
        (None, None) => None,
        _ => {
            problems.push("[admin] cert and key go together (or neither: one is made)".into());
            None
        }
    };
    if a.api_token.as_ref().is_some_and(|t| t.len() < 16) {
        problems.push("[admin] api_token: at least 16 characters".into());
    }
    if let Some(i) = &a.network_interface
        && (i.is_empty() || i.len() > 15 || i.contains(['/', ' ']))
    {
        problems.push(format!(
            "[admin] network_interface = {i:?}: an interface name (e.g. \"eth0\")"
        ));
    }
    if !(1..=86_400).contains(&a.log_link_seconds) {
        problems.push(format!(
            "[admin] log_link_seconds = {}: from 1 to 86400 (a log bundle's link expires after that)",
            a.log_link_seconds
        ));
    }
    let name = a.mdns_name.trim();
    let mdns = if name == "off" {
        None
    } else if name.is_empty()
        || name.len() > 63
        || name.starts_with('-')
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        problems.push(format!(
            "[admin] mdns_name = {name:?}: letters, digits and '-', at most 63 (\"pbxlink\" for pbxlink.local), or \"off\""
        ));
        None
    } else {
        // Where the page is: its own address when it has one, else the LAN's.
        [https_listen, listen]
            .into_iter()
            .flatten()
            .map(|a| a.ip())
            .chain(lan)
            .find(|ip| !ip.is_unspecified())
            .map(|ip| (name.to_ascii_lowercase(), ip))
    };
    AdminSettings {
        support: super::support::support_settings(support, lan, problems),
        mdns,
        listen,
        https_listen,
        cert,
        token: a.api_token.clone(),
        network_interface: a.network_interface.clone(),
        resolv_conf: base.join(&a.resolv_conf),
        log_link: std::time::Duration::from_secs(a.log_link_seconds),
    }
}

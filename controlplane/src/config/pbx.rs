//! `[pbx]`: the PBX, its SIP trunk and its CSTA link.

use super::defaults::*;
pub use pbxlink_onboarding::PbxType;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// CSTA ports as the file gives them: a list, or SPEC §3's `"3211;3212"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum PortList {
    List(Vec<u16>),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PbxSection {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) address: String,
    #[serde(default = "sip_port")]
    pub(super) port: u16,
    #[serde(default = "udp")]
    pub(super) transport: String,
    #[serde(default = "yes")]
    pub(super) csta: bool,
    pub(super) csta_ports: Option<PortList>,
    pub(super) csta_address: Option<String>,
    pub(super) csta_username: Option<String>,
    pub(super) csta_password: Option<String>,
    #[serde(default = "csta_timeout")]
    pub(super) csta_timeout_seconds: u64,
    #[serde(default = "ed3")]
    pub(super) csta_edition: String,
    #[serde(default)]
    pub(super) trusted: Vec<String>,
    #[serde(default = "untrusted_drop")]
    pub(super) untrusted: String,
    pub(super) auth_username: Option<String>,
    pub(super) auth_password: Option<String>,
    #[serde(default = "realm")]
    pub(super) auth_realm: String,
    #[serde(default = "keepalive")]
    pub(super) keepalive_seconds: u64,
}

/// The CSTA link's settings.
#[derive(Clone)]
pub struct CstaConfig {
    /// The servers (the PBX's CSTA address with each port), in order.
    pub servers: Vec<std::net::SocketAddr>,
    /// The CTI login (MiVoice Office 400).
    pub login: Option<(String, String)>,
    /// How long the PBX has to answer a request.
    pub timeout: Duration,
    /// The edition spoken until the PBX picks one.
    pub edition: pbxlink_csta::message::Edition,
}

impl fmt::Debug for CstaConfig {
    /// Never shows the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CstaConfig")
            .field("servers", &self.servers)
            .field("login", &self.login.as_ref().map(|(u, _)| u))
            .field("timeout", &self.timeout)
            .field("edition", &self.edition)
            .finish()
    }
}

/// The CSTA link's settings, or the problems with them.
pub(super) fn csta_settings(
    pbx: &PbxSection,
    kind: Option<PbxType>,
    pbx_address: Option<IpAddr>,
    problems: &mut Vec<String>,
) -> Option<CstaConfig> {
    let ports: Vec<u16> = match &pbx.csta_ports {
        None => kind.map(|t| vec![t.csta_port()]).unwrap_or_default(),
        Some(PortList::List(l)) => l.clone(),
        Some(PortList::Text(t)) => {
            let mut l = Vec::new();
            for p in t.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                match p.parse::<u16>() {
                    Ok(n) => l.push(n),
                    Err(_) => problems.push(format!(
                        "[pbx] csta_ports = {t:?}: {p:?} is not a port (e.g. \"3211;3212\")"
                    )),
                }
            }
            l
        }
    };
    if pbx.csta && ports.is_empty() && kind.is_some() {
        problems.push("[pbx] csta_ports: name at least one port (or csta = false)".into());
    }
    if ports.contains(&0) {
        problems.push("[pbx] csta_ports: 0 is not a port".into());
    }
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != ports.len() {
        problems.push("[pbx] csta_ports: a port is named twice".into());
    }
    let address = match &pbx.csta_address {
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                problems.push(format!(
                    "[pbx] csta_address = {a:?} is not an IP address (e.g. \"192.168.1.10\")"
                ));
                None
            }
        },
        None => pbx_address,
    };
    let login = match (&pbx.csta_username, &pbx.csta_password) {
        (None, None) => None,
        (Some(u), Some(p)) => {
            if u.is_empty() || u.chars().count() > 25 {
                problems.push("[pbx] csta_username: 1 to 25 characters".into());
            }
            if p.is_empty() || p.chars().count() > 255 {
                problems.push("[pbx] csta_password: 1 to 255 characters".into());
            }
            Some((u.clone(), p.clone()))
        }
        _ => {
            problems.push("[pbx] csta_username and csta_password go together".into());
            None
        }
    };
    if pbx.csta && kind == Some(PbxType::MiVoiceOffice400) && login.is_none() {
        problems.push(
            "[pbx] type = \"mivoice-office-400\" needs csta_username and csta_password (the CloudLink system user on the PBX)"
                .into(),
        );
    }
    if !(1..=60).contains(&pbx.csta_timeout_seconds) {
        problems.push(format!(
            "[pbx] csta_timeout_seconds = {}: use 1 to 60 (5 is usual)",
            pbx.csta_timeout_seconds
        ));
    }
    use pbxlink_csta::message::Edition;
    let edition = match pbx.csta_edition.as_str() {
        "ed2" => Edition::Ed2,
        "ed3" => Edition::Ed3,
        "ed4" => Edition::Ed4,
        "ed5" => Edition::Ed5,
        other => {
            problems.push(format!(
                "[pbx] csta_edition = {other:?}: use ed2, ed3, ed4 or ed5"
            ));
            Edition::Ed3
        }
    };
    (pbx.csta).then(|| CstaConfig {
        servers: address
            .map(|ip| {
                ports
                    .iter()
                    .map(|p| std::net::SocketAddr::new(ip, *p))
                    .collect()
            })
            .unwrap_or_default(),
        login,
        timeout: Duration::from_secs(pbx.csta_timeout_seconds),
        edition,
    })
}

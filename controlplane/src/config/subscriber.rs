//! `[subscriber]`: the Softphone users the gateway registers to the PBX.

use super::defaults::*;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscriberSection {
    pub(super) listen: Option<String>,
    pub(super) registrar: Option<String>,
    pub(super) domain: Option<String>,
    #[serde(default = "register_expires")]
    pub(super) expires_seconds: u32,
    #[serde(default = "keepalive")]
    pub(super) keepalive_seconds: u64,
    #[serde(default = "registrations_per_second")]
    pub(super) registrations_per_second: u32,
    #[serde(default)]
    pub(super) user: Vec<SubscriberUser>,
}

impl Default for SubscriberSection {
    fn default() -> Self {
        Self {
            listen: None,
            registrar: None,
            domain: None,
            expires_seconds: register_expires(),
            keepalive_seconds: keepalive(),
            registrations_per_second: registrations_per_second(),
            user: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscriberUser {
    pub(super) extension: String,
    pub(super) password: String,
}

/// The subscriber side's settings: where the gateway registers Softphone
/// users and takes their calls.
#[derive(Clone)]
pub struct SubscriberConfig {
    /// Its UDP listener.
    pub listen: std::net::SocketAddr,
    /// Where users register.
    pub registrar: std::net::SocketAddr,
    /// Their addresses' domain.
    pub domain: String,
    /// Registration life asked for.
    pub expires: u32,
    /// Between OPTIONS to the registrar (zero: none).
    pub keepalive: Duration,
    /// Between two new registrations.
    pub spacing: Duration,
    /// Users configured here: (extension, SIP password).
    pub users: Vec<(String, String)>,
}

impl fmt::Debug for SubscriberConfig {
    /// Never shows a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriberConfig")
            .field("listen", &self.listen)
            .field("registrar", &self.registrar)
            .field("domain", &self.domain)
            .field("expires", &self.expires)
            .field("keepalive", &self.keepalive)
            .field("spacing", &self.spacing)
            .field(
                "users",
                &self.users.iter().map(|(e, _)| e).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The subscriber side's settings, or the problems with them.
pub(super) fn subscriber(
    sub: &SubscriberSection,
    lan: Option<IpAddr>,
    pbx: Option<std::net::SocketAddr>,
    problems: &mut Vec<String>,
) -> Option<SubscriberConfig> {
    let addr = |key: &str, v: &str, problems: &mut Vec<String>| {
        v.parse::<std::net::SocketAddr>()
            .map_err(|_| {
                problems.push(format!(
                    "[subscriber] {key} = {v:?}: an address and port (e.g. \"192.168.1.10:5060\")"
                ))
            })
            .ok()
    };
    let listen = match sub.listen.as_deref() {
        Some("off") => return None,
        Some(v) => addr("listen", v, problems),
        None => lan.map(|ip| std::net::SocketAddr::new(ip, 5070)),
    };
    let registrar = match sub.registrar.as_deref() {
        Some(v) => addr("registrar", v, problems),
        None => pbx,
    };
    if !(60..=86_400).contains(&sub.expires_seconds) {
        problems.push(format!(
            "[subscriber] expires_seconds = {}: use 60 to 86400 (300 is usual)",
            sub.expires_seconds
        ));
    }
    if sub.keepalive_seconds > 3600 {
        problems.push(format!(
            "[subscriber] keepalive_seconds = {}: use 1 to 3600, or 0 for none",
            sub.keepalive_seconds
        ));
    }
    if !(1..=1000).contains(&sub.registrations_per_second) {
        problems.push(format!(
            "[subscriber] registrations_per_second = {}: use 1 to 1000 (20 is usual)",
            sub.registrations_per_second
        ));
    }
    let mut users = Vec::new();
    for u in &sub.user {
        if u.extension.is_empty()
            || u.extension.len() > 16
            || !u
                .extension
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
        {
            problems.push(format!(
                "[[subscriber.user]] extension = {:?}: up to 16 of 0-9 * #",
                u.extension
            ));
        } else if u.password.is_empty() || u.password.contains(['"', '\\']) {
            problems.push(format!(
                "[[subscriber.user]] {}: a password without quotes or backslashes",
                u.extension
            ));
        } else if users.iter().any(|(e, _)| e == &u.extension) {
            problems.push(format!(
                "[[subscriber.user]] extension {:?} is given twice",
                u.extension
            ));
        } else {
            users.push((u.extension.clone(), u.password.clone()));
        }
    }
    let (listen, registrar) = (listen?, registrar?);
    Some(SubscriberConfig {
        listen,
        registrar,
        domain: sub
            .domain
            .clone()
            .unwrap_or_else(|| registrar.ip().to_string()),
        expires: sub.expires_seconds,
        keepalive: Duration::from_secs(sub.keepalive_seconds),
        spacing: Duration::from_secs(1) / sub.registrations_per_second.max(1),
        users,
    })
}

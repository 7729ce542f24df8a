//! Reading a file and checking it as a whole: every problem named, or a
//! [`Config`].

use super::admin::{AdminSection, admin_settings};
use super::capture::{CaptureSection, capture_settings};
use super::checked::Config;
use super::cloud::{CloudSection, CloudTargets};
use super::defaults::*;
use super::digits::DigitsSection;
use super::error::ConfigError;
use super::gateway::GatewaySection;
use super::log::{LOG_LEVELS, LogSection};
use super::pbx::{PbxSection, PbxType, csta_settings};
use super::quality::{QualitySection, quality_settings};
use super::sip::SipSection;
use super::subscriber::{SubscriberSection, subscriber};
use super::support::SupportSection;
use super::tunnel::{TunnelSection, tunnel_settings};
use super::update::{UpdateSection, update_settings};
use super::users::{UsersSection, users_api};

use pbxlink_b2bua::digits::{DigitRule, is_dial_string};
use pbxlink_dataplane::net::Prefix;
use pbxlink_dataplane::profile::Profile;
use pbxlink_dataplane::srtp::Suite;
use pbxlink_sip::digest::Credentials;
use pbxlink_sip::resolve::{Target, Transport};
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    gateway: GatewaySection,
    pbx: PbxSection,
    cloud: CloudSection,
    #[serde(default)]
    sip: SipSection,
    #[serde(default)]
    digits: DigitsSection,
    #[serde(default)]
    admin: AdminSection,
    #[serde(default)]
    users: UsersSection,
    #[serde(default)]
    subscriber: SubscriberSection,
    #[serde(default)]
    tunnel: TunnelSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    update: UpdateSection,
    #[serde(default)]
    support: SupportSection,
    #[serde(default)]
    quality: QualitySection,
    #[serde(default)]
    capture: CaptureSection,
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |p: String| ConfigError {
        file: path.to_owned(),
        problems: vec![p],
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|problems| ConfigError {
        file: path.to_owned(),
        problems,
    })
}

/// Checks a configuration's text; relative file names resolve from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, Vec<String>> {
    let file: File =
        toml::from_str(text).map_err(|e| vec![e.to_string().trim().replace('\n', " ")])?;
    let mut problems = Vec::new();
    let mut ip = |section: &str, key: &str, v: &str| -> Option<IpAddr> {
        v.parse()
            .map_err(|_| {
                problems.push(format!(
                    "[{section}] {key} = {v:?} is not an IP address (e.g. \"192.168.1.20\")"
                ))
            })
            .ok()
    };
    let lan_address = ip("gateway", "lan_address", &file.gateway.lan_address);
    // The packaged file's "0.0.0.0" serves the setup page on every
    // address; calls need the one address the PBX and SDP name.
    let unspecified_lan = lan_address.is_some_and(|a| a.is_unspecified());
    let public_address = file
        .gateway
        .public_address
        .as_deref()
        .map(|v| ip("gateway", "public_address", v));
    let pbx_address = ip("pbx", "address", &file.pbx.address);
    if unspecified_lan {
        problems.push(format!(
            "[gateway] lan_address = {:?}: calls need this gateway's own LAN address \
             (e.g. \"192.168.1.20\"; the wizard's Gateway step sets it with a static address)",
            file.gateway.lan_address
        ));
    }
    let profile = match file.gateway.profile.as_str() {
        "auto" => None,
        p => match p.parse::<Profile>() {
            Ok(p) => Some(p),
            Err(_) => {
                problems.push(format!(
                    "[gateway] profile = {p:?}: use auto, small, smallplus, medium, large or max"
                ));
                None
            }
        },
    };
    let mut networks = Vec::new();
    for n in &file.gateway.networks {
        match n.parse::<Prefix>() {
            Ok(p) => networks.push(p),
            Err(_) => problems.push(format!(
                "[gateway] networks: {n:?} is not a network (e.g. \"192.168.1.0/24\")"
            )),
        }
    }
    if networks.is_empty() {
        // Media may only go where the PBX is.
        if let Some(a) = pbx_address {
            networks.push(a.to_string().parse().expect("an address is a prefix"));
        }
    }
    let pbx_type = PbxType::ALL
        .iter()
        .find(|(n, _)| *n == file.pbx.kind)
        .map(|(_, t)| *t);
    if pbx_type.is_none() {
        problems.push(format!(
            "[pbx] type = {:?}: use mivoice-5000, mivoice-office-400, mx-one or mivoice-business",
            file.pbx.kind
        ));
    }
    let pbx_transport = match file.pbx.transport.as_str() {
        "udp" => Some(Transport::Udp),
        "tcp" => Some(Transport::Tcp),
        other => {
            problems.push(format!("[pbx] transport = {other:?}: use udp or tcp"));
            None
        }
    };
    let cloud = match (&file.cloud.domain, file.cloud.targets.is_empty()) {
        (Some(d), true) if !d.is_empty() && !d.contains(char::is_whitespace) => {
            Some(CloudTargets::Domain(d.clone()))
        }
        (None, false) => {
            let mut list = Vec::new();
            for t in &file.cloud.targets {
                match t.parse::<Target>() {
                    Ok(t) if t.transport == Transport::Udp => problems.push(format!(
                        "[cloud] targets: {:?}: the cloud trunk runs over tls (or tcp for tests)",
                        t.to_string()
                    )),
                    Ok(t) => list.push(t),
                    Err(e) => problems.push(format!("[cloud] {e}")),
                }
            }
            Some(CloudTargets::Static(list))
        }
        (Some(_), false) => {
            problems.push("[cloud] give domain or targets, not both".into());
            None
        }
        _ => {
            problems.push(
                "[cloud] needs domain = \"sip.cloud.example\" or targets = [\"tls:ADDR:5061\"]"
                    .into(),
            );
            None
        }
    };
    let ca = if file.cloud.ca.is_absolute() {
        file.cloud.ca.clone()
    } else {
        base.join(&file.cloud.ca)
    };
    if let Err(e) = std::fs::metadata(&ca) {
        problems.push(format!("[cloud] ca = {:?}: {e}", ca.display().to_string()));
    }
    if !["pbx-trunk", "subscriber", "embedded"].contains(&file.sip.role.as_str()) {
        problems.push(format!(
            "[sip] role = {:?}: use pbx-trunk, subscriber or embedded",
            file.sip.role
        ));
    }
    if file.sip.dscp > 63 {
        problems.push(format!(
            "[sip] dscp = {}: a DSCP is 0 to 63 (CS3 is 24)",
            file.sip.dscp
        ));
    }
    let mut srtp_suites = Vec::new();
    match &file.cloud.srtp_suites {
        None => srtp_suites.extend(Suite::ALL),
        Some(names) => {
            for n in names {
                match Suite::from_sdp_name(n) {
                    Some(s) => srtp_suites.push(s),
                    None => problems.push(format!(
                        "[cloud] srtp_suites: {n:?}: use {}",
                        Suite::ALL.map(|s| s.sdp_name()).join(", ")
                    )),
                }
            }
            if names.is_empty() {
                problems.push("[cloud] srtp_suites: name at least one suite".into());
            }
        }
    }
    let mut trusted = Vec::new();
    for n in &file.pbx.trusted {
        match n.parse::<Prefix>() {
            Ok(p) => trusted.push(p),
            Err(_) => problems.push(format!(
                "[pbx] trusted: {n:?} is not a network (e.g. \"192.168.1.10/32\")"
            )),
        }
    }
    if trusted.is_empty() {
        if let Some(a) = pbx_address {
            trusted.push(a.to_string().parse().expect("an address is a prefix"));
        }
    }
    let reject_untrusted = match file.pbx.untrusted.as_str() {
        "drop" => false,
        "reject" => true,
        other => {
            problems.push(format!("[pbx] untrusted = {other:?}: use drop or reject"));
            false
        }
    };
    if ![503, 486, 480].contains(&file.sip.refuse_with) {
        problems.push(format!(
            "[sip] refuse_with = {}: use 503, 486 or 480",
            file.sip.refuse_with
        ));
    }
    if file.sip.idle_timeout == 0 || file.sip.partial_timeout == 0 {
        problems.push("[sip] idle_timeout and partial_timeout must be at least 1 second".into());
    }
    if file.sip.max_connections == 0 {
        problems.push("[sip] max_connections must be at least 1".into());
    }
    if file.gateway.call_limit == Some(0) {
        problems.push("[gateway] call_limit must be at least 1".into());
    }
    let mut stun = Vec::new();
    for s in &file.cloud.stun {
        match s.parse() {
            Ok(a) => stun.push(a),
            Err(_) => problems.push(format!(
                "[cloud] stun: {s:?} is not an address and port (e.g. \"198.51.100.10:3478\")"
            )),
        }
    }
    if let Some(ntp) = &file.cloud.ntp
        && !ntp
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    {
        problems.push(format!(
            "[cloud] ntp: {ntp:?} is not a host and port (e.g. \"ntp.cloud.example:123\")"
        ));
    }
    if let Some(l) = &file.log.level
        && !LOG_LEVELS.contains(&l.as_str())
    {
        problems.push(format!(
            "[log] level = {l:?}: use error, warn, info, debug or trace"
        ));
    }
    if !(1..=3600).contains(&file.gateway.media_timeout_seconds) {
        problems.push(format!(
            "[gateway] media_timeout_seconds = {}: use 1 to 3600 (60 is usual)",
            file.gateway.media_timeout_seconds
        ));
    }
    if file.gateway.drain_seconds > 3600 {
        problems.push(format!(
            "[gateway] drain_seconds = {}: use 0 to 3600 (30 is usual)",
            file.gateway.drain_seconds
        ));
    }
    if file.cloud.keepalive_seconds == 0 {
        problems.push("[cloud] keepalive_seconds must be at least 1".into());
    }
    let pbx_auth = match (&file.pbx.auth_username, &file.pbx.auth_password) {
        (None, None) => None,
        (Some(u), Some(p)) if !u.is_empty() && p.len() >= 8 && !u.contains(['"', '\\']) => Some((
            file.pbx.auth_realm.clone(),
            Credentials {
                username: u.clone(),
                password: p.clone().into(),
            },
        )),
        (Some(_), Some(_)) => {
            problems.push(
                "[pbx] auth_username must not be empty or hold quotes, and auth_password needs at least 8 characters"
                    .into(),
            );
            None
        }
        _ => {
            problems.push("[pbx] auth_username and auth_password go together".into());
            None
        }
    };
    if file.pbx.auth_realm.is_empty() || file.pbx.auth_realm.contains(['"', '\\']) {
        problems.push(format!(
            "[pbx] auth_realm = {:?}: a name without quotes (e.g. \"pbxlink\")",
            file.pbx.auth_realm
        ));
    }
    if file.pbx.keepalive_seconds > 3600 {
        problems.push(format!(
            "[pbx] keepalive_seconds = {}: use 1 to 3600 (30 is usual), or 0 for none",
            file.pbx.keepalive_seconds
        ));
    }
    let admin = admin_settings(&file.admin, &file.support, lan_address, base, &mut problems);
    let d = &file.digits;
    for (key, v) in [
        ("outbound_strip", &d.outbound_strip),
        ("outbound_prepend", &d.outbound_prepend),
        ("inbound_strip", &d.inbound_strip),
        ("inbound_prepend", &d.inbound_prepend),
    ] {
        if !is_dial_string(v) || v.len() > 16 {
            problems.push(format!(
                "[digits] {key} = {v:?}: use up to 16 of 0-9 * # + (e.g. \"9\")"
            ));
        }
    }
    let csta = csta_settings(&file.pbx, pbx_type, pbx_address, &mut problems);
    let tunnel = tunnel_settings(&file.tunnel, &ca, base, &mut problems);
    let users_api = users_api(&file.users, lan_address, &mut problems);
    let update = update_settings(&file.update, &mut problems);
    let quality = quality_settings(&file.quality, &mut problems);
    let capture = capture_settings(&file.capture, &mut problems);
    let subscriber = subscriber(
        &file.subscriber,
        lan_address,
        pbx_address.map(|a| std::net::SocketAddr::new(a, file.pbx.port)),
        &mut problems,
    );
    if !(1..=1000).contains(&file.users.history_calls) {
        problems.push(format!(
            "[users] history_calls = {}: use 1 to 1000 (20 is usual)",
            file.users.history_calls
        ));
    }
    if let Some(t) = &file.admin.api_token
        && (t.len() < 16 || t.chars().any(char::is_whitespace))
    {
        problems.push(
            "[admin] api_token needs at least 16 characters and no spaces (e.g. from `openssl rand -hex 16`)"
                .into(),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let pbx_type = pbx_type.expect("checked");
    Ok(Config {
        lan_address: lan_address.expect("checked"),
        public_address: public_address.flatten(),
        profile,
        networks,
        media_timeout: Duration::from_secs(file.gateway.media_timeout_seconds),
        pbx_type,
        pbx_address: pbx_address.expect("checked"),
        pbx_port: file.pbx.port,
        pbx_transport: pbx_transport.expect("checked"),
        csta,
        trusted,
        reject_untrusted,
        pbx_auth,
        pbx_keepalive_seconds: file.pbx.keepalive_seconds,
        call_limit: file.gateway.call_limit,
        cdr_file: file.gateway.cdr_file.map(|f| base.join(f)),
        drain: Duration::from_secs(file.gateway.drain_seconds),
        refuse_with: file.sip.refuse_with,
        sip_idle_timeout: file.sip.idle_timeout,
        sip_partial_timeout: file.sip.partial_timeout,
        sip_max_connections: file.sip.max_connections,
        cloud: cloud.expect("checked"),
        cloud_ca: ca,
        cloud_server_name: file.cloud.server_name,
        keepalive_seconds: file.cloud.keepalive_seconds,
        srtp_suites,
        stun,
        ntp: file.cloud.ntp,
        sip_role: file.sip.role,
        sip_port: file.sip.port,
        dscp: file.sip.dscp,
        outbound_digits: DigitRule {
            strip: file.digits.outbound_strip,
            prepend: file.digits.outbound_prepend,
        },
        inbound_digits: DigitRule {
            strip: file.digits.inbound_strip,
            prepend: file.digits.inbound_prepend,
        },
        admin,
        update,
        state_dir: base.join(&file.gateway.state_dir),
        users_api,
        history_calls: file.users.history_calls,
        subscriber,
        tunnel,
        quality,
        capture,
    })
}

/// The file as a table, with the wizard's `overlay` laid over it.
pub fn read_table(path: &Path, overlay: &toml::Table) -> Result<toml::Table, ConfigError> {
    let fail = |p: String| ConfigError {
        file: path.to_owned(),
        problems: vec![p],
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| fail(e.to_string().trim().replace('\n', " ")))?;
    crate::onboarding::merge(&mut table, overlay);
    Ok(table)
}

/// The state directory a file names (before the rest is checked: the
/// wizard's settings are kept there).
pub fn state_dir_of(path: &Path) -> PathBuf {
    let base = path.parent().unwrap_or(Path::new("."));
    let named = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("gateway")?
                .get("state_dir")?
                .as_str()
                .map(PathBuf::from)
        });
    base.join(named.unwrap_or_else(state_dir))
}

/// Reads and checks `path` with the wizard's `overlay` laid over it. An
/// empty overlay reads the file as [`load`] does.
pub fn load_with(path: &Path, overlay: &toml::Table) -> Result<Config, ConfigError> {
    if overlay.is_empty() {
        return load(path);
    }
    let table = read_table(path, overlay)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_table(table, base).map_err(|problems| ConfigError {
        file: path.to_owned(),
        problems,
    })
}

/// Checks a configuration given as a table.
pub fn parse_table(table: toml::Table, base: &Path) -> Result<Config, Vec<String>> {
    let text = toml::to_string(&table).map_err(|e| vec![e.to_string()])?;
    parse(&text, base)
}

/// Whether the file configures the PBX (its address) or the cloud (a
/// `[cloud]` section): site details such as `[pbx] port` may be given
/// before the wizard names the PBX.
pub fn configured(table: &toml::Table, what: &str) -> bool {
    match what {
        "pbx" => table.get("pbx").and_then(|p| p.get("address")).is_some(),
        other => table.contains_key(other),
    }
}

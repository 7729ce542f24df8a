//! The effective configuration as `check-config` prints it.

use super::checked::Config;
use super::cloud::CloudTargets;
use pbxlink_b2bua::digits::DigitRule;
use std::fmt;

impl fmt::Display for Config {
    /// The effective configuration, one line per setting.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gateway: LAN {}, public {}, profile {}, media networks {}, media timeout {} s",
            self.lan_address,
            self.public_address
                .map_or("not set".to_owned(), |a| a.to_string()),
            self.profile.map_or("auto", |p| p.name()),
            self.networks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            self.media_timeout.as_secs()
        )?;
        writeln!(
            f,
            "pbx: {} at {}:{} over {}, {}, keep-alive every {} s, {}",
            self.pbx_type.name(),
            self.pbx_address,
            self.pbx_port,
            self.pbx_transport,
            match &self.pbx_auth {
                Some((realm, c)) => format!("digest auth as {:?} in {realm:?}", c.username),
                None => "no digest auth".into(),
            },
            self.pbx_keepalive_seconds,
            match &self.csta {
                None => "no CSTA link".to_owned(),
                Some(c) => format!(
                    "CSTA {}{}",
                    c.servers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(";"),
                    c.login
                        .as_ref()
                        .map_or(String::new(), |(u, _)| format!(" as {u:?}"))
                ),
            }
        )?;
        let targets = match &self.cloud {
            CloudTargets::Domain(d) => format!("{d} (RFC 3263)"),
            CloudTargets::Static(l) => l
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let name = match (&self.cloud_server_name, &self.cloud) {
            (Some(n), _) => n.clone(),
            (None, CloudTargets::Domain(d)) => d.clone(),
            (None, CloudTargets::Static(_)) => "the target's IP".into(),
        };
        writeln!(
            f,
            "cloud: {targets}, certificate by {} naming {name}, keep-alive every {} s",
            self.cloud_ca.display(),
            self.keepalive_seconds
        )?;
        writeln!(f, "sip: role {}, DSCP {}", self.sip_role, self.dscp)?;
        writeln!(f, "admin: {}", admin_line(&self.admin))?;
        match &self.update.public_key {
            Some(k) => writeln!(
                f,
                "update: releases signed by {k}, health check within {} s",
                self.update.health.as_secs()
            )?,
            None => writeln!(
                f,
                "update: off (no [update] public_key: offers are refused)"
            )?,
        }
        writeln!(
            f,
            "subscriber: {}",
            self.subscriber
                .as_ref()
                .map_or("off".to_owned(), |s| format!(
                    "on {}, users register to {} as sip:EXT@{}, {} configured here",
                    s.listen,
                    s.registrar,
                    s.domain,
                    s.users.len()
                ))
        )?;
        writeln!(
            f,
            "tunnel: {}",
            self.tunnel.as_ref().map_or("off".to_owned(), |t| format!(
                "to {} (certificate by {} naming {}) for account {:?}, outbox {} events, sync {}",
                t.endpoint,
                t.ca.display(),
                t.server_name,
                t.account,
                t.outbox_events,
                t.sync_every
                    .map_or("on push and on demand".to_owned(), |d| format!(
                        "every {} min and on push",
                        d.as_secs() / 60
                    ))
            ))
        )?;
        writeln!(
            f,
            "users: {}, kept in {}",
            self.users_api.as_ref().map_or(
                "user-config API off (set [users] push_password)".to_owned(),
                |u| format!(
                    "user-config API on https://{}/api/v1/users for {:?}",
                    u.listen, u.username
                )
            ),
            self.state_dir.display()
        )?;
        let q = &self.quality;
        writeln!(
            f,
            "quality: a call is poor under MOS {} (receivers rated with a {} ms jitter buffer); alarm poor_calls at {} % poor over 15 min, from {} calls",
            q.poor_mos, q.jitter_buffer_ms, q.poor_alarm_percent, q.poor_alarm_min_calls
        )?;
        writeln!(
            f,
            "capture: {}",
            self.capture.map_or("off".to_owned(), |c| format!(
                "HEP3 over UDP to {} as capture agent {}: SIP of both sides, RTCP reports",
                c.hep, c.capture_id
            ))
        )?;
        let rule = |r: &DigitRule| match (r.strip.as_str(), r.prepend.as_str()) {
            ("", "") => "as dialled".to_owned(),
            (s, p) => format!("strip {s:?} then prepend {p:?}"),
        };
        write!(
            f,
            "digits: to the cloud {}, to the PBX {} (emergency numbers as dialled)",
            rule(&self.outbound_digits),
            rule(&self.inbound_digits)
        )
    }
}

/// Where the admin page and API answer, and whether the API takes commands.
fn admin_line(admin: &super::admin::AdminSettings) -> String {
    let api = admin.listen.map_or("off".to_owned(), |a| {
        format!("API on http://{a}/api/status")
    });
    let page = admin
        .https_listen
        .map_or(String::new(), |a| format!(", page on https://{a}/"));
    let token = if admin.token.is_some() {
        ", commands with the API token"
    } else {
        ", read-only"
    };
    format!("{api}{page}{token}")
}

impl std::fmt::Display for super::setup::SetupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "setup: the admin page alone, no calls until the wizard is done; missing: {}",
            self.missing.join("; ")
        )?;
        writeln!(f, "admin: {}", admin_line(&self.admin))?;
        let tunnel = match (&self.tunnel, self.tunnel_problems.first()) {
            (Some(t), _) => format!("to {} while the wizard waits", t.endpoint),
            (None, Some(p)) => format!("off: {p}"),
            (None, None) => "off (not linked)".to_owned(),
        };
        writeln!(f, "tunnel: {tunnel}")?;
        write!(f, "state: {}", self.state_dir.display())
    }
}

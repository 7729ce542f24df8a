//! The operations interface — what the admin page and the tunnel both act on: the admin page's own
//! parts ([`AdminSetup`]), the node's handles they read ([`AdminState`]),
//! the gateway's status as both report it, and the CTI commands both
//! accept. The HTTP handlers (`api`, `wizard`, …) and the tunnel's
//! commands are adapters over it.

use super::parts::{Diagnostics, RelinkState, TraceState, Wizard};
use crate::admin::{access, mdns};
use crate::config::AdminSettings;
use crate::cti::Cti;
use crate::node_control::NodeControl;
use crate::operations::bundle::Downloads;
use crate::operations::host::Host;
use crate::signalling::{CloudPath, Counters};
use crate::users::Users;
use pbxlink_csta::message::{ConnectionId, Service};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The admin page's own parts: its settings, the account, the wizard,
/// and the doors it opens (restart, the machine, downloads).
#[derive(Debug)]
pub struct AdminSetup {
    /// `[admin]`.
    pub settings: AdminSettings,
    /// The gateway's state directory.
    pub state_dir: PathBuf,
    /// The account admin.
    pub access: access::Access,
    /// The wizard's settings.
    pub wizard: Wizard,
    /// Asks the node to restart.
    pub control: NodeControl,
    /// The machine (LAN settings, restart, resets).
    pub host: Arc<dyn Host>,
    /// The account's name (when linked).
    pub account: Option<String>,
    /// What is not configured yet (empty: the gateway carries calls).
    pub missing: Vec<String>,
    /// Log bundles and call traces behind temporary links.
    pub downloads: Downloads,
    /// Where the gateway's log files are (none: not written to disk).
    pub log_dir: Option<PathBuf>,
    /// The ports a call trace copies.
    pub trace_ports: crate::operations::trace::TracePorts,
    /// The start-up diagnostics.
    pub diagnostics: Diagnostics,
    /// The alarms up (the calls raise `poor_calls` on them too).
    pub alarms: std::sync::Arc<crate::alarms::Alarms>,
    /// The calls' live view (the calls write it).
    pub live: std::sync::Arc<crate::live_calls::LiveCalls>,
    /// Where a relink stands.
    pub relink: std::sync::Mutex<RelinkState>,
    /// The mDNS responder advertising the page, once started.
    pub mdns: std::sync::OnceLock<mdns::Advertised>,
    /// The call trace running or last made.
    pub trace: std::sync::Mutex<TraceState>,
    /// Support's SSH access.
    pub support: crate::operations::support_ssh::SupportSsh,
}

/// What the admin side looks at for the operator: the ports a call
/// trace copies and the checks the diagnostics run (both empty before
/// the gateway is configured).
#[derive(Debug, Default)]
pub struct Watch {
    /// The ports a call trace copies.
    pub trace_ports: crate::operations::trace::TracePorts,
    /// The diagnostics' checks.
    pub diagnostics: crate::diagnostics::Plan,
}

impl AdminSetup {
    /// The admin page for the configuration at `config`, its state in
    /// `state_dir`.
    pub fn open(
        settings: AdminSettings,
        state_dir: &FsPath,
        config: &FsPath,
        control: NodeControl,
        account: Option<String>,
        missing: Vec<String>,
        watch: Watch,
    ) -> anyhow::Result<Arc<AdminSetup>> {
        let host = Arc::new(crate::operations::host::SystemHost {
            interface: settings.network_interface.clone(),
            resolv_conf: settings.resolv_conf.clone(),
            state_dir: state_dir.to_owned(),
            control: control.clone(),
        });
        Ok(Arc::new(AdminSetup {
            access: access::Access::open(state_dir)?,
            wizard: Wizard::open(state_dir, config)?,
            downloads: Downloads::new(settings.log_link),
            log_dir: Some(state_dir.join("logs")),
            trace_ports: watch.trace_ports,
            diagnostics: Diagnostics::new(watch.diagnostics),
            alarms: std::sync::Arc::default(),
            live: std::sync::Arc::default(),
            mdns: std::sync::OnceLock::new(),
            relink: std::sync::Mutex::default(),
            trace: std::sync::Mutex::new(TraceState::Idle),
            support: crate::operations::support_ssh::SupportSsh::new(
                settings.support.clone(),
                state_dir,
            ),
            settings,
            state_dir: state_dir.to_owned(),
            control,
            host,
            account,
            missing,
        }))
    }

    /// Names the admin password must not contain: the account's and the
    /// site's.
    pub fn company(&self) -> Vec<String> {
        let site = self.wizard.get().gateway.map(|g| g.site);
        self.account
            .iter()
            .cloned()
            .chain(site)
            .filter(|n| n.trim().len() >= 3)
            .collect()
    }
}

/// What the API reads.
#[derive(Clone)]
pub struct AdminState {
    /// The admin page's own parts.
    pub admin: Arc<AdminSetup>,
    /// Events for the cloud platform (none: no tunnel).
    pub events: Option<crate::events::EventSink>,
    /// The node's counters.
    pub counters: Arc<Counters>,
    /// The cloud trunk's connection (none while down).
    pub cloud: CloudPath,
    /// When the gateway started.
    pub started: Instant,
    /// The performance profile's name and call limit.
    pub profile: (String, usize),
    /// The CSTA link (none: off).
    pub cti: Option<Cti>,
    /// The PBX's users (none: not kept).
    pub users: Option<Arc<Users>>,
    /// The token that lets requests run commands (none: commands off).
    pub token: Option<String>,
    /// The Softphone users registered to the PBX (none: subscriber side off).
    pub softphones: Option<crate::signalling::Softphones>,
    /// The tunnel to the cloud platform (none: off).
    pub tunnel: Option<crate::tunnel::handle::Tunnel>,
    /// Software updates (none: before onboarding).
    pub update: Option<Arc<crate::operations::update::Updater>>,
}

fn pbx_word(s: &AdminState) -> &'static str {
    match s.counters.pbx_trunk() {
        1 => "up",
        2 => "lost",
        _ => "not known yet",
    }
}

/// The status word, and the onboarding word it may be.
fn status_word(s: &AdminState, pbx: &str) -> (String, String) {
    let onboarding = super::parts::status_word(&s.admin.wizard.get());
    let update_word = s.update.as_ref().and_then(|u| u.status_word());
    let status = if let Some(word) = update_word {
        word
    } else if !s.admin.missing.is_empty() {
        onboarding.clone()
    } else if pbx == "lost" {
        "Lost trunk connection to PBX".into()
    } else {
        "Connected".into()
    };
    (status, onboarding)
}

fn csta_word(s: &AdminState) -> String {
    s.cti.as_ref().map_or("off".to_owned(), Cti::status_word)
}

/// What the tunnel's status events carry, and nothing more: read every
/// two seconds to see a change, so it costs an idle gateway little.
pub(crate) fn status_brief(s: &AdminState) -> Value {
    let pbx = pbx_word(s);
    let cloud = if s.cloud.lock().expect("cloud path").is_some() {
        "connected"
    } else {
        "down"
    };
    json!({
        "status": status_word(s, pbx).0,
        "csta": csta_word(s),
        "pbx_trunk": pbx,
        "cloud_trunk": cloud,
    })
}

/// The gateway's status (`GET /api/status`).
pub(crate) fn status_json(s: &AdminState) -> Value {
    let c = &s.counters;
    let pbx = pbx_word(s);
    let (status, onboarding) = status_word(s, pbx);
    let cloud = s.cloud.lock().expect("cloud path").as_ref().map_or_else(
        || json!({ "state": "down" }),
        |conn| json!({ "state": "connected", "local": conn.local.to_string(), "seen_as": conn.seen_as().to_string() }),
    );
    json!({
        "status": status,
        "onboarding": onboarding,
        "pbx_trunk": pbx,
        "cloud_trunk": cloud,
        "csta": csta_word(s),
        "tunnel": s.tunnel.as_ref().map(|t| t.json()["state"].clone()),
        "users_onboarded": s.users.as_ref().map(|u| u.read(|d| d.onboarded())),
        "softphones_registered": s.softphones.as_ref().map(|p| p.registered().0),
        "alarms": s.admin.alarms.active().len(),
        "calls_in_progress": c.calls_in_progress(),
        "relays": c.get("relays"),
        "profile": s.profile.0,
        "call_limit": s.profile.1,
        "uptime_seconds": s.started.elapsed().as_secs(),
        "versions": super::versions::part_versions(),
        "update": s.update.as_ref().map(|u| u.json()),
        "support_ssh": s.admin.support.json(std::time::SystemTime::now()),
    })
}

/// A CTI command's body: the user and whatever the service needs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CtiCommand {
    device: String,
    call: Option<String>,
    to: Option<String>,
    held_call: Option<String>,
    active_call: Option<String>,
    on: Option<bool>,
}

pub(crate) fn service(name: &str, c: CtiCommand) -> Result<Service, String> {
    let need = |v: Option<String>, field: &str| {
        v.filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("{name} needs \"{field}\""))
    };
    let conn = |call: String| ConnectionId {
        call,
        device: c.device.clone(),
    };
    if c.device.trim().is_empty() || c.device.len() > 64 {
        return Err("\"device\" must name the user's extension".into());
    }
    Ok(match name {
        "make-call" => Service::MakeCall {
            calling: c.device.clone(),
            called: dial(need(c.to, "to")?)?,
        },
        "answer" => Service::AnswerCall(conn(need(c.call, "call")?)),
        "clear" => Service::ClearConnection(conn(need(c.call, "call")?)),
        "hold" => Service::HoldCall(conn(need(c.call, "call")?)),
        "retrieve" => Service::RetrieveCall(conn(need(c.call, "call")?)),
        "consult" => Service::ConsultationCall {
            existing: conn(need(c.call, "call")?),
            consulted: dial(need(c.to, "to")?)?,
        },
        "transfer" => Service::TransferCall {
            held: conn(need(c.held_call, "held_call")?),
            active: conn(need(c.active_call, "active_call")?),
        },
        "message-waiting" => Service::SetMessageWaiting {
            device: c.device.clone(),
            on: c
                .on
                .ok_or_else(|| "message-waiting needs \"on\": true or false".to_owned())?,
        },
        other => {
            return Err(format!(
                "no CTI command {other:?}: use make-call, answer, clear, hold, retrieve, consult, transfer or message-waiting"
            ));
        }
    })
}

/// A number to call: dial characters only (what a phone could dial).
fn dial(n: String) -> Result<String, String> {
    let n = n.trim().to_owned();
    if n.is_empty()
        || n.len() > 32
        || !n
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | '+'))
    {
        return Err(format!(
            "{n:?} is not a number to call: up to 32 of 0-9 * # +"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(json: &str) -> CtiCommand {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn commands_become_services_and_bad_ones_say_what_is_missing() {
        assert_eq!(
            service("make-call", cmd(r#"{"device":"1000","to":" 0612345678 "}"#)),
            Ok(Service::MakeCall {
                calling: "1000".into(),
                called: "0612345678".into()
            })
        );
        assert_eq!(
            service(
                "transfer",
                cmd(r#"{"device":"1000","held_call":"a","active_call":"b"}"#)
            ),
            Ok(Service::TransferCall {
                held: ConnectionId {
                    call: "a".into(),
                    device: "1000".into()
                },
                active: ConnectionId {
                    call: "b".into(),
                    device: "1000".into()
                },
            })
        );
        assert_eq!(
            service("hold", cmd(r#"{"device":"1000"}"#)),
            Err("hold needs \"call\"".into())
        );
        assert!(
            service("make-call", cmd(r#"{"device":"1000","to":"06<x>"}"#))
                .unwrap_err()
                .contains("not a number to call")
        );
        assert!(
            service("park", cmd(r#"{"device":"1000"}"#))
                .unwrap_err()
                .starts_with("no CTI command \"park\"")
        );
        assert!(service("message-waiting", cmd(r#"{"device":"1000"}"#)).is_err());
    }
}

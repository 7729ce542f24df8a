//! The local admin (SPEC §1 "Local admin", §4, §7): the REST API an
//! operator's browser, automation or monitoring reads, the page over it
//! (login, the onboarding wizard, operations), and `/metrics`. It owns no
//! calls: it reads the node's counters, the trunks, the users and the CSTA
//! link, passes commands to them, and keeps only its own parts
//! ([`AdminSetup`]: the account, the wizard's settings, downloads). Where
//! it listens: `listeners`; who may do what: `auth`; the page's endpoints:
//! `wizard`, `console`, `metrics`; the operator's guide: docs/admin.md.
//!
//! Reading:
//! - `GET /api/status`: the status word (SPEC §7: `Connected`, or
//!   `Lost trunk connection to PBX` while the PBX does not answer its
//!   keep-alives), the PBX and cloud trunks, the CSTA link's word, calls
//!   in progress, relays.
//! - `GET /api/counters`: every counter of the node by name (calls by
//!   outcome, refusals by reason, trust and authentication, keep-alives,
//!   CSTA requests and events, user pushes).
//! - `GET /api/users`, `GET /api/users/{extension}`: the PBX's users, each
//!   onboarded with its role or not with the reason; one user with its
//!   call history.
//! - `GET /api/softphones`: the Softphone users the gateway registers to
//!   the PBX, each `registered (N s left)`, `failed: 403 (next try in N s)`,
//!   `waiting`, …, and whether the registrar answers.
//! - `GET /api/cti`: the CSTA link — `Connected` and `Connection
//!   successful`, or `Lost connection` and why — per server.
//! - `GET /api/cti/events?after=N&limit=M`: events from the users'
//!   monitors, in order, with sequence numbers.
//!
//! Commands (the page's session with its CSRF token, or `Authorization:
//! Bearer <[admin] api_token>`; over plain HTTP without a token configured
//! they are refused 403):
//! - `POST /api/cti/{make-call|answer|clear|hold|retrieve|consult|transfer|message-waiting}`
//!   with JSON naming the user (`device`) and the call(s): the CSTA
//!   service on that user's behalf (SPEC §6), answered with its result or
//!   the PBX's refusal.
//! - `POST /api/sync`: a user sync toward the cloud platform now; its
//!   report (`GET /api/tunnel`: the tunnel's state, backlog, counters).
//! - `DELETE /api/pbx`: deletes the PBX connection (closes the CSTA link,
//!   forgets the PBX's users) — refused 409 while a user holds the CTI or
//!   Softphone role or a user sync runs (SPEC §5).

mod access;
mod auth;
mod console;
pub mod diagnostics;
mod listeners;
mod mdns;
mod metrics;
mod page;
mod relink;
pub mod remote;
mod wizard;

pub use listeners::start;

use crate::config::AdminSettings;
use crate::cti::Cti;
use crate::http_error::HttpError;
use crate::node_control::NodeControl;
use crate::operations::bundle::Downloads;
use crate::operations::host::Host;
use crate::signalling::{CloudPath, Counters};
use crate::users::Users;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pbxlink_csta::message::{ConnectionId, Service};
use pbxlink_csta::session::{RequestError, ServiceResult};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
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
    pub wizard: wizard::Wizard,
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
    pub diagnostics: diagnostics::Diagnostics,
    /// The alarms up.
    pub alarms: crate::alarms::Alarms,
    /// Where a relink stands.
    pub relink: std::sync::Mutex<relink::RelinkState>,
    /// The mDNS responder advertising the page, once started.
    pub mdns: std::sync::OnceLock<mdns::Advertised>,
    /// The call trace running or last made.
    pub trace: std::sync::Mutex<console::TraceState>,
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
            wizard: wizard::Wizard::open(state_dir, config)?,
            downloads: Downloads::new(settings.log_link),
            log_dir: Some(state_dir.join("logs")),
            trace_ports: watch.trace_ports,
            diagnostics: diagnostics::Diagnostics::new(watch.diagnostics),
            alarms: crate::alarms::Alarms::default(),
            mdns: std::sync::OnceLock::new(),
            relink: std::sync::Mutex::default(),
            trace: std::sync::Mutex::new(console::TraceState::Idle),
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
    pub tunnel: Option<crate::tunnel::Tunnel>,
}

/// The gateway's status (`GET /api/status`; the tunnel's status events).
pub(crate) fn status_json(s: &AdminState) -> Value {
    let c = &s.counters;
    let pbx = match c.pbx_trunk() {
        1 => "up",
        2 => "lost",
        _ => "not known yet",
    };
    let onboarding = wizard::status_word(&s.admin.wizard.get());
    let status = if !s.admin.missing.is_empty() {
        onboarding.clone()
    } else if pbx == "lost" {
        "Lost trunk connection to PBX".into()
    } else {
        "Connected".into()
    };
    let cloud = s.cloud.lock().expect("cloud path").as_ref().map_or_else(
        || json!({ "state": "down" }),
        |conn| json!({ "state": "connected", "local": conn.local.to_string(), "seen_as": conn.seen_as().to_string() }),
    );
    json!({
        "status": status,
        "onboarding": onboarding,
        "pbx_trunk": pbx,
        "cloud_trunk": cloud,
        "csta": s.cti.as_ref().map_or("off".to_owned(), Cti::status_word),
        "tunnel": s.tunnel.as_ref().map(|t| t.json()["state"].clone()),
        "users_onboarded": s.users.as_ref().map(|u| u.read(|d| d.onboarded())),
        "softphones_registered": s.softphones.as_ref().map(|p| p.registered().0),
        "alarms": s.admin.alarms.active().len(),
        "calls_in_progress": c.calls_in_progress(),
        "relays": c.get("relays"),
        "profile": s.profile.0,
        "call_limit": s.profile.1,
        "uptime_seconds": s.started.elapsed().as_secs(),
    })
}

async fn status(State(s): State<AdminState>) -> Json<Value> {
    Json(status_json(&s))
}

async fn tunnel(State(s): State<AdminState>, _: auth::SignedIn) -> Response {
    match &s.tunnel {
        Some(t) => Json(t.json()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "the tunnel to the cloud platform is off (set [tunnel] endpoint)",
        ),
    }
}

async fn sync_now(State(s): State<AdminState>, _: auth::Commander) -> Response {
    match &s.tunnel {
        Some(t) => match t.sync_now().await {
            Some(report) => Json(report).into_response(),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the tunnel's driver stopped",
            ),
        },
        None => error(
            StatusCode::NOT_FOUND,
            "user sync goes through the tunnel, which is off (set [tunnel] endpoint)",
        ),
    }
}

async fn counters(State(s): State<AdminState>, _: auth::SignedIn) -> Json<Value> {
    let mut all: Map<String, Value> = s
        .counters
        .pairs()
        .into_iter()
        .map(|(n, v)| (n.to_owned(), Value::from(v)))
        .collect();
    if let Some(cti) = &s.cti {
        let c = &cti.counters;
        for (n, v) in [
            ("csta_requests", &c.requests),
            ("csta_requests_ok", &c.requests_ok),
            ("csta_requests_failed", &c.requests_failed),
            ("csta_requests_busy", &c.requests_busy),
            ("csta_events", &c.events),
            ("csta_write_queue_full", &c.write_queue_full),
        ] {
            all.insert(n.into(), v.load(Ordering::Relaxed).into());
        }
    }
    if let Some(u) = &s.users {
        let c = &u.counters;
        for (n, v) in [
            ("user_pushes", &c.pushes),
            ("user_pushes_refused", &c.pushes_refused),
            ("user_push_auth_failures", &c.auth_failures),
        ] {
            all.insert(n.into(), v.load(Ordering::Relaxed).into());
        }
    }
    Json(Value::Object(all))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    HttpError::new(status, message).into_response()
}

async fn users(State(s): State<AdminState>, _: auth::SignedIn) -> Response {
    match &s.users {
        Some(u) => Json(crate::users::api::user_list(u)).into_response(),
        None => error(StatusCode::NOT_FOUND, "users are not kept on this gateway"),
    }
}

async fn user(State(s): State<AdminState>, _: auth::SignedIn, Path(dn): Path<String>) -> Response {
    let Some(u) = &s.users else {
        return error(StatusCode::NOT_FOUND, "users are not kept on this gateway");
    };
    let Some(one) = u.read(|d| d.user(&dn).map(crate::users::api::user_json)) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no user with extension {dn:?}"),
        );
    };
    let history: Vec<Value> = s.cti.as_ref().map_or_else(Vec::new, |c| {
        c.history(&dn)
            .iter()
            .map(|r| {
                json!({
                    "call_id": r.call_id,
                    "direction": r.direction.name(),
                    "peer": r.peer,
                    "started_ms": r.started_ms,
                    "answered_ms": r.answered_ms,
                    "ended_ms": r.ended_ms,
                    "duration_s": r.duration_s(),
                    "outcome": r.outcome.name(),
                })
            })
            .collect()
    });
    Json(json!({ "user": one, "history": history })).into_response()
}

async fn softphones(State(s): State<AdminState>, _: auth::SignedIn) -> Response {
    match &s.softphones {
        Some(p) => Json(p.json()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "the subscriber side is off ([subscriber] listen = \"off\")",
        ),
    }
}

async fn cti_status(State(s): State<AdminState>, _: auth::SignedIn) -> Response {
    match &s.cti {
        Some(c) => Json(c.status_json()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "the CSTA link is off ([pbx] csta = false)",
        ),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn cti_events(
    State(s): State<AdminState>,
    _: auth::SignedIn,
    Query(q): Query<EventsQuery>,
) -> Response {
    let Some(c) = &s.cti else {
        return error(
            StatusCode::NOT_FOUND,
            "the CSTA link is off ([pbx] csta = false)",
        );
    };
    let page = c.events_after(q.after, q.limit.unwrap_or(1000).min(10_000));
    Json(json!({
        "events": page.events,
        "next": page.next,
        "last": page.last,
        "oldest": page.oldest,
    }))
    .into_response()
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

async fn cti_command(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    _: auth::Commander,
    body: axum::body::Bytes,
) -> Response {
    let Some(cti) = &s.cti else {
        return error(
            StatusCode::NOT_FOUND,
            "the CSTA link is off ([pbx] csta = false)",
        );
    };
    let command: CtiCommand = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not a CTI command: {e}"),
            );
        }
    };
    let service = match service(&name, command) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match cti.request(service).await {
        Ok(ServiceResult::Done) => Json(json!({ "result": "done" })).into_response(),
        Ok(ServiceResult::Call(c)) => {
            Json(json!({ "result": "done", "call": c.call, "device": c.device })).into_response()
        }
        Err(e) => {
            let status = match &e {
                RequestError::Refused(_) => StatusCode::CONFLICT,
                RequestError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                RequestError::UnknownDevice(_) => StatusCode::NOT_FOUND,
                RequestError::BadAnswer(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let mut body = json!({ "error": e.to_string() });
            if let RequestError::Refused(c) = &e {
                body["csta_error"] = json!(format!("{}/{}", c.category.name(), c.value));
            }
            (status, Json(body)).into_response()
        }
    }
}

async fn delete_pbx(State(s): State<AdminState>, _: auth::Commander) -> Response {
    let Some(users) = &s.users else {
        return error(
            StatusCode::NOT_FOUND,
            "no PBX connection is kept on this gateway",
        );
    };
    if let Err(why) = users.read(|d| d.connection_deletable(users.sync_running())) {
        return error(StatusCode::CONFLICT, why);
    }
    if let Some(cti) = &s.cti {
        cti.stop().await;
    }
    if let Err(e) = users.push(Vec::new(), true) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    tracing::info!(
        "admin: the PBX connection was deleted: CSTA link closed, the PBX's users forgotten"
    );
    Json(json!({
        "result": "the PBX connection is deleted: the CSTA link is closed and the PBX's users are forgotten; it returns when the gateway starts again with [pbx] configured"
    }))
    .into_response()
}

/// The REST API's reads and commands (the page's and the wizard's are
/// added by [`listeners`]).
fn api_routes() -> axum::Router<AdminState> {
    use axum::routing::{delete, get, post};
    axum::Router::new()
        .route("/api/status", get(status))
        .route(
            "/api/diagnostics",
            get(diagnostics::get).post(diagnostics::rerun),
        )
        .route("/api/alarms", get(diagnostics::alarms))
        .route("/api/counters", get(counters))
        .route("/api/users", get(users))
        .route("/api/users/{dn}", get(user))
        .route("/api/cti", get(cti_status))
        .route("/api/softphones", get(softphones))
        .route("/api/tunnel", get(tunnel))
        .route("/api/sync", post(sync_now))
        .route("/api/cti/events", get(cti_events))
        .route("/api/cti/{command}", post(cti_command))
        .route("/api/pbx", delete(delete_pbx))
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

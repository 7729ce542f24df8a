//! The onboarding wizard's API (SPEC §4), over the model in
//! `onboarding/`: each step read and saved, every bad field named (422
//! with `{"errors": {"field": "what to do"}}`), and the settings applied —
//! the LAN through the host backend, the rest by the gateway restarting
//! itself with them (drained first), so the configuration's own checks run
//! on them and the real CSTA link and tunnel answer the next steps.
//!
//! - `GET /api/onboarding`: the steps, what is done, the values (no
//!   password), the PBX types with their CSTA ports, the status word.
//! - `PUT /api/onboarding/gateway`, `/pbx`, `/connect`, `/advanced`: a
//!   step's form.
//! - `GET /api/onboarding/connect`: the CSTA link's word (`Connection
//!   successful`, or why not) and the users the PBX pushed.
//! - `GET /api/onboarding/deployment`: users with an email, duplicates
//!   flagged; `POST` `{"welcome": ["1000", …]}` sends them welcome
//!   messages through the cloud platform, `{"done": true}` moves on.
//! - `POST /api/onboarding/complete`: `Onboarding complete` once every
//!   step is done.

use super::auth::{Commander, SignedIn};
use crate::http_error::HttpError;
use crate::onboarding::{AdvancedForm, ConnectForm, GatewayForm, Onboarding, PbxForm, pbx_types};
use crate::operations::console::keep;
use crate::operations::parts::{invalid, status_word};
use crate::operations::state::AdminState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pbxlink_users::Status;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

fn onboarding_json(s: &AdminState, o: &Onboarding) -> Value {
    json!({
        "status": status_word(o),
        "complete": o.complete,
        "next": o.next_step(),
        "mode": if s.admin.missing.is_empty() { "running" } else { "setup" },
        "missing": s.admin.missing,
        "steps": o.steps().into_iter().map(|(step, done)| json!({"step": step, "done": done})).collect::<Vec<_>>(),
        "gateway": o.gateway,
        "pbx": o.pbx.as_ref().map(|p| json!({
            "type": p.kind,
            "name": p.name,
            "address": p.address,
            "csta_port": p.csta_ports,
            "username": p.username,
            "password_set": p.password.is_some(),
        })),
        "sync_minutes": o.sync_minutes,
        "welcome_sent": o.welcome_sent,
        "advanced": o.advanced,
        "pbx_types": pbx_types().into_iter().map(|(t, label, port)| json!({"type": t, "label": label, "csta_port": port})).collect::<Vec<_>>(),
    })
}

/// `GET /api/onboarding`.
pub async fn get(State(s): State<AdminState>, _: SignedIn) -> Response {
    Json(onboarding_json(&s, &s.admin.wizard.get())).into_response()
}

/// Saves `next`; restarts the gateway when what it runs with changed.
fn apply(s: &AdminState, before: &Onboarding, next: Onboarding, what: &str) -> Response {
    match saved(s, before, next, what) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn saved(
    s: &AdminState,
    before: &Onboarding,
    next: Onboarding,
    what: &str,
) -> Result<Value, HttpError> {
    let restart = before.overlay() != next.overlay();
    keep(s, next)?;
    tracing::info!("admin: wizard: {what} saved");
    if restart {
        s.admin
            .control
            .restart(&format!("the wizard's {what} changed"));
    }
    Ok(json!({ "saved": true, "restarting": restart }))
}

/// `PUT /api/onboarding/gateway`.
pub async fn gateway(
    State(s): State<AdminState>,
    _: Commander,
    Json(form): Json<GatewayForm>,
) -> Response {
    let step = match form.check() {
        Ok(step) => step,
        Err(e) => return invalid(e).into_response(),
    };
    let before = s.admin.wizard.get();
    let applied = if before.gateway.as_ref().map(|g| &g.lan) != Some(&step.lan) {
        match s.admin.host.apply_lan(&step.lan) {
            Ok(what) => what,
            Err(why) => {
                return invalid(BTreeMap::from([(
                    "lan_mode".into(),
                    format!("the LAN settings could not be applied: {why}"),
                )]))
                .into_response();
            }
        }
    } else {
        "unchanged".into()
    };
    tracing::info!("admin: wizard: LAN: {applied}");
    let next = Onboarding {
        gateway: Some(step),
        ..before.clone()
    };
    if let Err(e) = s.admin.wizard.check_config(&next) {
        return e.into_response();
    }
    match saved(&s, &before, next, "gateway step") {
        Ok(mut v) => {
            v["lan"] = json!(applied);
            Json(v).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `PUT /api/onboarding/pbx`.
pub async fn pbx(State(s): State<AdminState>, _: Commander, Json(form): Json<PbxForm>) -> Response {
    let checked = form.check();
    // A host name: where it resolves now is what the gateway uses. It is
    // looked up whatever else is wrong, so that one answer names every
    // bad field.
    let address = form.address.trim();
    let well_formed = checked
        .as_ref()
        .err()
        .is_none_or(|e| !e.contains_key("address"));
    let mut resolved = None;
    let mut unresolved = None;
    if well_formed && !address.is_empty() && address.parse::<std::net::IpAddr>().is_err() {
        match tokio::net::lookup_host((address, 0)).await {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => resolved = Some(a.ip()),
                None => unresolved = Some(format!("{address} has no address")),
            },
            Err(e) => unresolved = Some(format!("{address} does not resolve: {e}")),
        }
    }
    let mut step = match (checked, unresolved) {
        (Ok(step), None) => step,
        (Ok(_), Some(why)) => {
            return invalid(BTreeMap::from([("address".into(), why)])).into_response();
        }
        (Err(mut e), why) => {
            if let Some(why) = why {
                e.insert("address".into(), why);
            }
            return invalid(e).into_response();
        }
    };
    if step.address_ip.is_none() {
        step.address_ip = resolved;
    }
    let before = s.admin.wizard.get();
    let mut next = before.clone();
    // A password left empty on a second visit keeps the one entered.
    if step.username.is_some()
        && form.password.is_empty()
        && let Some(old) = before.pbx.as_ref().and_then(|p| p.password.clone())
    {
        step.password = Some(old);
    }
    next.pbx = Some(step);
    if let Err(e) = s.admin.wizard.check_config(&next) {
        return e.into_response();
    }
    apply(&s, &before, next, "PBX step")
}

/// `GET /api/onboarding/connect`: the CSTA link, as the Connect step shows it.
pub async fn connect_state(State(s): State<AdminState>, _: SignedIn) -> Response {
    let users = s.users.as_ref().map(|u| {
        u.read(|d| {
            json!({
                "total": d.users().count(),
                "onboarded": d.onboarded(),
            })
        })
    });
    let link = match &s.cti {
        Some(c) => c.status_json(),
        None if !s.admin.missing.is_empty() => json!({
            "status": "Not connected",
            "result": "",
            "why": format!("the gateway does not run calls yet: {}", s.admin.missing.join("; ")),
        }),
        None => {
            json!({ "status": "Not connected", "result": "", "why": "the CSTA link is off ([pbx] csta = false)" })
        }
    };
    Json(json!({
        "link": link,
        "users": users,
        "sync_minutes": s.admin.wizard.get().sync_minutes,
    }))
    .into_response()
}

/// `PUT /api/onboarding/connect`.
pub async fn connect(
    State(s): State<AdminState>,
    _: Commander,
    Json(form): Json<ConnectForm>,
) -> Response {
    let minutes = match form.check() {
        Ok(m) => m,
        Err(e) => return invalid(e).into_response(),
    };
    let before = s.admin.wizard.get();
    if before.pbx.is_none() {
        return HttpError::new(StatusCode::CONFLICT, "the PBX step comes first").into_response();
    }
    let next = Onboarding {
        sync_minutes: Some(minutes),
        ..before.clone()
    };
    apply(&s, &before, next, "sync schedule")
}

/// `GET /api/onboarding/deployment`: users with an email, duplicates
/// flagged, who got a welcome message.
pub async fn deployment_state(State(s): State<AdminState>, _: SignedIn) -> Response {
    let Some(users) = &s.users else {
        return HttpError::new(
            StatusCode::CONFLICT,
            "the PBX's users are not here yet: finish the PBX and Connect steps",
        )
        .into_response();
    };
    let sent = s.admin.wizard.get().welcome_sent;
    let list: Vec<Value> = users.read(|d| {
        let mut by_email: BTreeMap<String, usize> = BTreeMap::new();
        for e in d.users() {
            if !e.user.email.trim().is_empty() {
                *by_email
                    .entry(e.user.email.trim().to_lowercase())
                    .or_default() += 1;
            }
        }
        d.users()
            .filter(|e| !e.user.email.trim().is_empty())
            .map(|e| {
                let duplicate = by_email
                    .get(&e.user.email.trim().to_lowercase())
                    .is_some_and(|n| *n > 1);
                let (eligible, reason) = match &e.status {
                    Status::Onboarded(_) => (!duplicate, None),
                    Status::NotOnboarded(why) => (false, Some(why.clone())),
                };
                json!({
                    "extension": e.user.directory_number,
                    "name": format!("{} {}", e.user.first_name, e.user.last_name).trim().to_owned(),
                    "email": e.user.email,
                    "eligible": eligible,
                    "duplicate": duplicate,
                    "reason": reason,
                    "welcome_sent": sent.contains(&e.user.directory_number),
                })
            })
            .collect()
    });
    let tunnel = s.tunnel.as_ref().map(|t| t.json()["state"].clone());
    Json(json!({ "users": list, "tunnel": tunnel })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentBody {
    #[serde(default)]
    welcome: Vec<String>,
    #[serde(default)]
    done: bool,
}

/// `POST /api/onboarding/deployment`.
pub async fn deployment(
    State(s): State<AdminState>,
    _: Commander,
    Json(b): Json<DeploymentBody>,
) -> Response {
    let mut next = s.admin.wizard.get();
    let mut sent = 0;
    if !b.welcome.is_empty() {
        let (Some(users), Some(events)) = (&s.users, &s.events) else {
            return HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "welcome messages go out through the cloud platform: the tunnel is off ([tunnel] endpoint)",
            )
            .into_response();
        };
        let state = s
            .tunnel
            .as_ref()
            .map(|t| t.json()["state"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        if state != "connected" {
            return HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "welcome messages go out through the cloud platform, and the tunnel is {state}"
                ),
            )
            .into_response();
        }
        let wanted: BTreeSet<&str> = b.welcome.iter().map(String::as_str).collect();
        let (ok, refused): (Vec<Value>, Vec<Value>) = users.read(|d| {
            let mut ok = Vec::new();
            let mut refused = Vec::new();
            for dn in &wanted {
                match d.user(dn) {
                    Some(e) if matches!(e.status, Status::Onboarded(_)) => ok.push(json!({
                        "extension": e.user.directory_number,
                        "email": e.user.email,
                        "first_name": e.user.first_name,
                        "last_name": e.user.last_name,
                    })),
                    Some(e) => refused.push(json!({"extension": dn, "reason": match &e.status {
                        Status::NotOnboarded(why) => why.clone(),
                        Status::Onboarded(_) => String::new(),
                    }})),
                    None => refused.push(json!({"extension": dn, "reason": "no such user"})),
                }
            }
            (ok, refused)
        });
        if !refused.is_empty() {
            return HttpError::with_body(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "error": "no welcome message can go to some of them", "refused": refused }),
            )
            .into_response();
        }
        sent = ok.len();
        for u in &ok {
            if let Some(dn) = u["extension"].as_str() {
                next.welcome_sent.insert(dn.to_owned());
            }
        }
        events.emit("welcome", json!({ "users": ok }));
        tracing::info!(
            "admin: wizard: welcome messages for {sent} user(s) sent to the cloud platform"
        );
    }
    if b.done {
        next.deployment_seen = true;
    }
    if let Err(e) = keep(&s, next) {
        return e.into_response();
    }
    Json(json!({ "sent": sent })).into_response()
}

/// `PUT /api/onboarding/advanced`.
pub async fn advanced(
    State(s): State<AdminState>,
    _: Commander,
    Json(form): Json<AdvancedForm>,
) -> Response {
    let step = match form.check() {
        Ok(step) => step,
        Err(e) => return invalid(e).into_response(),
    };
    let before = s.admin.wizard.get();
    let next = Onboarding {
        advanced: Some(step),
        ..before.clone()
    };
    if let Err(e) = s.admin.wizard.check_config(&next) {
        return e.into_response();
    }
    apply(&s, &before, next, "advanced settings")
}

/// `POST /api/onboarding/complete`.
pub async fn complete(State(s): State<AdminState>, _: Commander) -> Response {
    let mut next = s.admin.wizard.get();
    if let Some(step) = next.next_step() {
        return HttpError::new(
            StatusCode::CONFLICT,
            format!("the {step} step is not done yet"),
        )
        .into_response();
    }
    next.complete = true;
    if let Err(e) = keep(&s, next.clone()) {
        return e.into_response();
    }
    tracing::info!("admin: Onboarding complete");
    Json(json!({ "status": status_word(&next) })).into_response()
}

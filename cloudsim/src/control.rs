//! cloudsim's control API (HTTP, JSON), for tests and the demo:
//!
//! - `GET /status`: each gateway (connected, sessions, events stored by
//!   kind, duplicates dropped, gaps, users, sync errors) and the SIP
//!   totals.
//! - `GET /gateways/{id}/events?kind=K&after=N`: the events stored.
//! - `GET /gateways/{id}/users`: the users its syncs carried, and its
//!   sync errors.
//! - `POST /commands` `{"gateway"?, "id"?, "name", "args"}`: a command
//!   through the tunnel (`cti`, `sync_now`, `status`, …); its result.
//!   An `id` sends a command again as a platform does when its answer
//!   was lost.
//! - `POST /sip/calls` `{"from", "to", "seconds"}`: a call toward the PBX
//!   through the gateway; `GET /sip/calls`: every call kept with its SRTP
//!   counts; `GET /sip/calls/{id}`: one; `GET /sip/stats`: totals over
//!   every call and the calls by state.
//! - `POST /releases`, `GET /releases`, `POST /releases/{version}/offer`:
//!   the release store (`releases`).

use crate::releases::Store;
use crate::sip::SipEndpoint;
use crate::tunnel::{Shared, command};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Clone)]
struct Ctl {
    platform: Shared,
    sip: SipEndpoint,
    releases: Store,
}

fn error(status: StatusCode, m: impl Into<String>) -> Response {
    (status, Json(json!({ "error": m.into() }))).into_response()
}

async fn status(State(c): State<Ctl>) -> Json<Value> {
    let gateways = c.platform.lock().expect("platform").store.summary();
    Json(json!({ "gateways": gateways, "sip_linked": c.sip.linked(), "sip": c.sip.stats() }))
}

#[derive(Deserialize)]
struct EventsQuery {
    kind: Option<String>,
    #[serde(default)]
    after: u64,
}

async fn events(
    State(c): State<Ctl>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Response {
    let p = c.platform.lock().expect("platform");
    let Some(g) = p.store.gateways.get(&id) else {
        return error(StatusCode::NOT_FOUND, format!("no gateway {id:?}"));
    };
    Json(json!(
        g.events
            .iter()
            .filter(|e| e.id > q.after && q.kind.as_deref().is_none_or(|k| k == e.kind))
            .map(|e| json!({ "id": e.id, "kind": e.kind, "at_ms": e.at_ms, "body": e.body }))
            .collect::<Vec<_>>()
    ))
    .into_response()
}

async fn users(State(c): State<Ctl>, Path(id): Path<String>) -> Response {
    let p = c.platform.lock().expect("platform");
    let Some(g) = p.store.gateways.get(&id) else {
        return error(StatusCode::NOT_FOUND, format!("no gateway {id:?}"));
    };
    Json(json!({ "users": g.users, "sync_errors": g.sync_errors })).into_response()
}

#[derive(Deserialize)]
struct Command {
    gateway: Option<String>,
    id: Option<String>,
    name: String,
    #[serde(default)]
    args: Value,
}

async fn send_command(State(c): State<Ctl>, Json(b): Json<Command>) -> Response {
    match command(&c.platform, b.gateway.as_deref(), b.id, &b.name, b.args).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => error(StatusCode::GATEWAY_TIMEOUT, e),
    }
}

#[derive(Deserialize)]
struct Call {
    from: String,
    to: String,
    #[serde(default = "five")]
    seconds: u64,
}

fn five() -> u64 {
    5
}

async fn place(State(c): State<Ctl>, Json(b): Json<Call>) -> Response {
    match c.sip.place(&b.from, &b.to, b.seconds) {
        Ok(id) => Json(json!({ "call": id })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

async fn calls(State(c): State<Ctl>) -> Json<Value> {
    Json(c.sip.calls())
}

async fn call(State(c): State<Ctl>, Path(id): Path<u64>) -> Response {
    match c.sip.call(id) {
        Some(call) => Json(call).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no SIP call {id} (kept: the last 1,000 ended)"),
        ),
    }
}

async fn stats(State(c): State<Ctl>) -> Json<Value> {
    Json(c.sip.stats())
}

#[derive(Deserialize)]
struct NewRelease {
    version: String,
    binary: std::path::PathBuf,
}

async fn add_release(State(c): State<Ctl>, Json(b): Json<NewRelease>) -> Response {
    let store = c.releases.clone();
    match tokio::task::spawn_blocking(move || store.add(&b.version, &b.binary)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_releases(State(c): State<Ctl>) -> Json<Value> {
    Json(json!({ "public_key": c.releases.public_key(), "releases": c.releases.list() }))
}

#[derive(Deserialize)]
struct Offer {
    gateway: Option<String>,
    #[serde(default = "scheduled")]
    apply: String,
    #[serde(default)]
    tamper: bool,
}

fn scheduled() -> String {
    "scheduled".into()
}

async fn offer_release(
    State(c): State<Ctl>,
    Path(version): Path<String>,
    Json(b): Json<Offer>,
) -> Response {
    match c
        .releases
        .offer(
            &c.platform,
            b.gateway.as_deref(),
            &version,
            &b.apply,
            b.tamper,
        )
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// The routes.
pub fn router(platform: Shared, sip: SipEndpoint, releases: Store) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/gateways/{id}/events", get(events))
        .route("/gateways/{id}/users", get(users))
        .route("/commands", post(send_command))
        .route("/sip/calls", get(calls).post(place))
        .route("/sip/calls/{id}", get(call))
        .route("/sip/stats", get(stats))
        .route("/releases", get(list_releases).post(add_release))
        .route("/releases/{version}/offer", post(offer_release))
        .with_state(Ctl {
            platform,
            sip,
            releases,
        })
}

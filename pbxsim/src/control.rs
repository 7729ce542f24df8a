//! pbxsim's control API (HTTP, JSON), for tests and the demo to script
//! the PBX's side of a story:
//!
//! - `GET /status`: each CSTA server (listening, stalled, connections,
//!   sessions, monitors, requests, SystemStatus asked and answered), users,
//!   calls, events sent.
//! - `GET /calls`: calls in progress with their parties.
//! - `POST /servers/{port}/down` | `/up`: take a CSTA server down as a
//!   crash would (connections reset) or bring it back.
//! - `POST /servers/{port}/stall` `{"on": true}`: it reads requests and
//!   answers none (a hung PBX).
//! - `POST /calls` `{"from": "0612345678", "to": "1000"}`: a call from
//!   outside rings a user.
//! - `POST /calls/{call}/answer` | `/clear` `{"device": "1000"}`: a user
//!   picks up or hangs up at the phone (no CSTA involved).
//! - `POST /sip/calls` `{"from", "to", "seconds"}`: the SIP agent places a
//!   call to the gateway (when it runs); `GET /sip/calls`: its calls (the
//!   last 1,000 ended kept); `GET /sip/calls/{id}`: one; `GET /sip/stats`:
//!   RTP over every call, round trips of echoed packets (last second,
//!   whole run), calls by state.

use crate::csta::{self, Shared};
use crate::sip::SipAgent;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Clone)]
struct Ctl {
    sim: Shared,
    sip: Option<SipAgent>,
}

fn error(status: StatusCode, m: impl Into<String>) -> Response {
    (status, Json(json!({ "error": m.into() }))).into_response()
}

async fn status(State(c): State<Ctl>) -> Json<Value> {
    let mut v = c.sim.lock().expect("sim").status();
    if let Some(sip) = &c.sip {
        v["sip"] = sip.status();
    }
    Json(v)
}

async fn calls(State(c): State<Ctl>) -> Json<Value> {
    Json(c.sim.lock().expect("sim").calls())
}

async fn server(
    State(c): State<Ctl>,
    Path((port, what)): Path<(u16, String)>,
    body: Option<Json<Value>>,
) -> Response {
    let ok = match what.as_str() {
        "down" => csta::down(&c.sim, port),
        "up" => match csta::up(&c.sim, port).await {
            Ok(()) => true,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        "stall" => {
            let on = body.and_then(|Json(b)| b["on"].as_bool()).unwrap_or(true);
            csta::stall(&c.sim, port, on)
        }
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no server action {other:?}: down, up or stall"),
            );
        }
    };
    if ok {
        Json(json!({ "result": "done" })).into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            format!("no CSTA server on port {port}"),
        )
    }
}

#[derive(Deserialize)]
struct Incoming {
    from: String,
    to: String,
}

async fn new_call(State(c): State<Ctl>, Json(b): Json<Incoming>) -> Response {
    let mut s = c.sim.lock().expect("sim");
    match s.pbx.incoming(&b.from, &b.to) {
        Ok((call, events)) => {
            s.deliver(&events);
            Json(json!({ "call": call })).into_response()
        }
        Err((cat, val)) => error(StatusCode::CONFLICT, format!("{cat}/{val}")),
    }
}

#[derive(Deserialize)]
struct AtPhone {
    device: String,
}

async fn at_phone(
    State(c): State<Ctl>,
    Path((call, what)): Path<(String, String)>,
    Json(b): Json<AtPhone>,
) -> Response {
    let mut s = c.sim.lock().expect("sim");
    let r = match what.as_str() {
        "answer" => s.pbx.answer(&call, &b.device),
        "clear" => s.pbx.clear(&call, &b.device),
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no call action {other:?}: answer or clear"),
            );
        }
    };
    match r {
        Ok(events) => {
            s.deliver(&events);
            Json(json!({ "result": "done" })).into_response()
        }
        Err((cat, val)) => error(StatusCode::CONFLICT, format!("{cat}/{val}")),
    }
}

#[derive(Deserialize)]
struct SipCall {
    from: String,
    to: String,
    #[serde(default = "five")]
    seconds: u64,
}

fn five() -> u64 {
    5
}

async fn sip_call(State(c): State<Ctl>, Json(b): Json<SipCall>) -> Response {
    let Some(sip) = &c.sip else {
        return error(
            StatusCode::NOT_FOUND,
            "the SIP agent is off (start pbxsim with --sip)",
        );
    };
    match sip.place(&b.from, &b.to, b.seconds) {
        Ok(id) => Json(json!({ "call": id })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

async fn sip_calls(State(c): State<Ctl>) -> Response {
    match &c.sip {
        Some(sip) => Json(sip.calls()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "the SIP agent is off (start pbxsim with --sip)",
        ),
    }
}

async fn sip_call_one(State(c): State<Ctl>, Path(id): Path<u64>) -> Response {
    match c.sip.as_ref().map(|sip| sip.call(id)) {
        Some(Some(call)) => Json(call).into_response(),
        Some(None) => error(
            StatusCode::NOT_FOUND,
            format!("no SIP call {id} (kept: the last 1,000 ended)"),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            "the SIP agent is off (start pbxsim with --sip)",
        ),
    }
}

async fn sip_stats(State(c): State<Ctl>) -> Response {
    match &c.sip {
        Some(sip) => Json(sip.stats()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "the SIP agent is off (start pbxsim with --sip)",
        ),
    }
}

/// The control API's routes.
pub fn router(sim: Shared, sip: Option<SipAgent>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/calls", get(calls).post(new_call))
        .route("/calls/{call}/{what}", post(at_phone))
        .route("/servers/{port}/{what}", post(server))
        .route("/sip/calls", get(sip_calls).post(sip_call))
        .route("/sip/calls/{id}", get(sip_call_one))
        .route("/sip/stats", get(sip_stats))
        .with_state(Ctl { sim, sip })
}

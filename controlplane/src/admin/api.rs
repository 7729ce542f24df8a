//! The REST API's reading and command routes (`/api/status`, counters,
//! users, Softphones, the CSTA link and its commands, the tunnel, the PBX
//! connection).

use super::{auth, diagnostics};
use crate::http_error::HttpError;
use crate::operations::state::{AdminState, CtiCommand, service, status_json};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pbxlink_csta::session::{RequestError, ServiceResult};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;

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

/// `GET /api/calls`: the live view ([`crate::live_calls`]). The first
/// look in a while waits for the calls' core to list the calls afresh
/// (it ticks every 100 ms while calls are up), and the figures follow
/// within a second.
async fn calls(State(s): State<AdminState>, _: auth::SignedIn) -> Json<Value> {
    if !s.admin.live.watch(std::time::Instant::now()) {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    Json(s.admin.live.json())
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
pub(super) fn api_routes() -> axum::Router<AdminState> {
    use axum::routing::{delete, get, post};
    axum::Router::new()
        .route("/api/status", get(status))
        .route(
            "/api/diagnostics",
            get(diagnostics::get).post(diagnostics::rerun),
        )
        .route("/api/alarms", get(diagnostics::alarms))
        .route("/api/counters", get(counters))
        .route("/api/calls", get(calls))
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

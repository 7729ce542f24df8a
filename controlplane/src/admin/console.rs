//! The console functions on the admin page (SPEC §4 "Advanced", §7):
//!
//! - `GET /api/versions`: each software part's version.
//! - `POST /api/operations/logs`: a tar.gz of the gateway's log files and
//!   its status, behind a temporary link (`{"url", "expires_in_s"}`).
//! - `GET /downloads/{token}`: the download while its link lives; 410
//!   once expired, 404 for a link never made. No login: the link is the
//!   secret (128 random bits) and it is short-lived.
//! - `POST /api/operations/trace {"seconds": N}`: a call trace for N
//!   seconds (1–300; one at a time, 409 while one runs); `GET` tells it
//!   running, or done with its download link and what it holds.
//! - `POST /api/operations/reboot {"confirm": "reboot"}`: the gateway
//!   drains and starts again.
//! - `POST /api/operations/reset {"kind": "data"|"factory", "confirm":
//!   "reset"|"factory"}`: forgets what the reset forgets (listed in
//!   `operations::host`), then restarts.
//!
//! Destructive actions need their word typed, so no stray click (or
//! script without the word) can do them.

use super::auth::{Commander, SignedIn};
use crate::http_error::HttpError;
use crate::operations::bundle::Fetch;
use crate::operations::console::{collect_logs, reset_gateway, start_trace};
use crate::operations::host::Reset;
use crate::operations::parts::trace_json;
use crate::operations::state::AdminState;
use crate::operations::versions::part_versions;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Instant;

/// `GET /api/versions`.
pub async fn versions(_: SignedIn) -> Json<Value> {
    Json(part_versions())
}

/// `POST /api/operations/logs`.
pub async fn logs(State(s): State<AdminState>, _: Commander) -> Response {
    match collect_logs(&s) {
        Ok(v) => Json(v).into_response(),
        Err(e) => HttpError::new(StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    }
}

/// `GET /downloads/{token}`.
pub async fn download(State(s): State<AdminState>, Path(token): Path<String>) -> Response {
    match s.admin.downloads.get(&token, Instant::now()) {
        Fetch::Ready(d) => {
            let mut r = (StatusCode::OK, d.bytes).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(d.content_type),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"{}\"", d.file_name))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Fetch::Expired => HttpError::new(
            StatusCode::GONE,
            "this download link expired: make a new one on the admin page",
        )
        .into_response(),
        Fetch::Unknown => HttpError::new(StatusCode::NOT_FOUND, "no such download").into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceBody {
    #[serde(default)]
    seconds: Value,
}

/// `POST /api/operations/trace`.
pub async fn trace(
    State(s): State<AdminState>,
    _: Commander,
    Json(b): Json<TraceBody>,
) -> Response {
    let seconds = b
        .seconds
        .as_u64()
        .or_else(|| b.seconds.as_str().and_then(|t| t.trim().parse().ok()));
    let Some(seconds) = seconds else {
        return HttpError::with_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "how long to trace", "errors": { "seconds": "seconds: from 1 to 300" } }),
        )
        .into_response();
    };
    match start_trace(&s, seconds) {
        Ok(v) => Json(v).into_response(),
        Err((StatusCode::UNPROCESSABLE_ENTITY, why)) => HttpError::with_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": why.clone(), "errors": { "seconds": why } }),
        )
        .into_response(),
        Err((status, why)) => HttpError::new(status, why).into_response(),
    }
}

/// `GET /api/operations/trace`.
pub async fn trace_state(State(s): State<AdminState>, _: SignedIn) -> Json<Value> {
    Json(trace_json(&s.admin.trace.lock().expect("trace")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    #[serde(default)]
    confirm: String,
}

fn typed(confirm: &str, word: &str) -> Result<(), HttpError> {
    if confirm.trim() == word {
        Ok(())
    } else {
        Err(HttpError::with_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "error": format!("type {word:?} to confirm"),
                "errors": { "confirm": format!("type {word} to confirm") },
            }),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportKey {
    key: String,
}

/// `GET /api/operations/support-ssh`: the window, its time left.
pub async fn support_state(State(s): State<AdminState>, _: SignedIn) -> Response {
    Json(s.admin.support.json(std::time::SystemTime::now())).into_response()
}

/// `POST /api/operations/support-ssh {"key"}`: opens support's SSH window.
pub async fn support_on(
    State(s): State<AdminState>,
    _: Commander,
    Json(b): Json<SupportKey>,
) -> Response {
    match crate::operations::console::support_on(&s, &b.key, "the admin page") {
        Ok(v) => Json(v).into_response(),
        Err(e) => HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
    }
}

/// `DELETE /api/operations/support-ssh`: closes it early.
pub async fn support_off(State(s): State<AdminState>, _: Commander) -> Response {
    Json(crate::operations::console::support_off(
        &s,
        "closed from the admin page",
    ))
    .into_response()
}

/// `POST /api/operations/reboot`.
pub async fn reboot(State(s): State<AdminState>, _: Commander, Json(b): Json<Confirm>) -> Response {
    if let Err(e) = typed(&b.confirm, "reboot") {
        return e.into_response();
    }
    tracing::info!("admin: reboot asked from the admin page");
    s.admin.host.restart("reboot from the admin page");
    Json(json!({ "result": "the gateway drains its calls and starts again" })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    kind: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /api/operations/reset`.
pub async fn reset(
    State(s): State<AdminState>,
    _: Commander,
    Json(b): Json<ResetBody>,
) -> Response {
    let (kind, word) = match b.kind.as_str() {
        "data" => (Reset::Data, "reset"),
        "factory" => (Reset::Factory, "factory"),
        other => {
            return HttpError::with_body(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": format!("no reset {other:?}"),
                    "errors": { "kind": "data or factory" },
                }),
            )
            .into_response();
        }
    };
    if let Err(e) = typed(&b.confirm, word) {
        return e.into_response();
    }
    match reset_gateway(&s, kind, "the admin page") {
        Ok(removed) => {
            s.admin
                .host
                .restart(&format!("{} reset from the admin page", b.kind));
            Json(json!({ "removed": removed, "result": "the gateway starts again" }))
                .into_response()
        }
        Err(e) => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

//! The local admin REST API (SPEC §1 "Local admin", port 80 on the LAN by
//! default): what an operator's browser or a monitoring system reads from
//! the gateway, as JSON. Read-only; it owns no state, it reads the node's
//! counters and the trunk's connection.
//!
//! - `GET /api/status`: the status word (SPEC §7: `Connected`, or
//!   `Lost trunk connection to PBX` while the PBX does not answer its
//!   keep-alives), the PBX and cloud trunks, calls in progress, relays.
//! - `GET /api/counters`: every counter of the node by name (calls by
//!   outcome, refusals by reason, trust and authentication, keep-alives).

use crate::signalling::{CloudPath, Counters};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Instant;

/// What the API reads.
#[derive(Clone)]
pub struct AdminState {
    /// The node's counters.
    pub counters: Arc<Counters>,
    /// The cloud trunk's connection (none while down).
    pub cloud: CloudPath,
    /// When the gateway started.
    pub started: Instant,
    /// The performance profile's name and call limit.
    pub profile: (String, usize),
}

async fn status(State(s): State<AdminState>) -> Json<Value> {
    let c = &s.counters;
    let pbx = match c.pbx_trunk() {
        1 => "up",
        2 => "lost",
        _ => "not known yet",
    };
    let status = if pbx == "lost" {
        "Lost trunk connection to PBX"
    } else {
        "Connected"
    };
    let cloud = s.cloud.lock().expect("cloud path").as_ref().map_or_else(
        || json!({ "state": "down" }),
        |conn| json!({ "state": "connected", "local": conn.local.to_string(), "seen_as": conn.seen_as().to_string() }),
    );
    Json(json!({
        "status": status,
        "pbx_trunk": pbx,
        "cloud_trunk": cloud,
        "calls_in_progress": c.calls_in_progress(),
        "relays": c.get("relays"),
        "profile": s.profile.0,
        "call_limit": s.profile.1,
        "uptime_seconds": s.started.elapsed().as_secs(),
    }))
}

async fn counters(State(s): State<AdminState>) -> Json<Value> {
    Json(Value::Object(
        s.counters
            .pairs()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), Value::from(v)))
            .collect::<Map<_, _>>(),
    ))
}

async fn not_found() -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "no such resource; try /api/status or /api/counters" })),
    )
}

/// Serves the API on `listener` for as long as the node runs.
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) {
    let app = axum::Router::new()
        .route("/api/status", get(status))
        .route("/api/counters", get(counters))
        .fallback(not_found)
        .with_state(state);
    if let Err(e) = axum::serve(listener, app).await {
        println!("admin: the API stopped: {e}");
    }
}

//! Replacing a gateway (SPEC §7): the platform keeps each gateway's
//! onboarding settings (every save goes to it as an `onboarding` event,
//! without the PBX password); a new gateway linked to the same account
//! takes over an old one's after two confirmations on the page and the
//! typed word `link`, keeping either the stored network settings or its
//! own.
//!
//! - `POST /api/operations/relink {"replaces": "gw-…", "network":
//!   "stored"|"own", "confirm": "link"}`: asks the platform (a
//!   `relink_request` event); 202, then the platform answers with the
//!   `relink` command.
//! - `GET /api/operations/relink`: `idle`, `waiting` (for the platform),
//!   `failed` and why.
//! - the tunnel's `relink` command `{"replaces", "network", "onboarding"}`
//!   (or `{"replaces", "error"}`): the settings are taken, the LAN
//!   applied when the stored one is kept, and the gateway starts again
//!   with them.

use super::auth::{Commander, SignedIn};
use crate::http_error::HttpError;
use crate::operations::parts::{RelinkState, state_json};
use crate::operations::state::AdminState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelinkBody {
    #[serde(default)]
    replaces: String,
    #[serde(default)]
    network: String,
    #[serde(default)]
    confirm: String,
}

fn refused(errors: Value) -> Response {
    HttpError::with_body(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "error": "the relink was not asked for", "errors": errors }),
    )
    .into_response()
}

/// `POST /api/operations/relink`.
pub async fn ask(State(s): State<AdminState>, _: Commander, Json(b): Json<RelinkBody>) -> Response {
    let (Some(events), Some(tunnel)) = (&s.events, &s.tunnel) else {
        return HttpError::new(
            StatusCode::CONFLICT,
            "this gateway is not linked to the platform ([tunnel] account and token): nothing to relink through",
        )
        .into_response();
    };
    let replaces = b.replaces.trim();
    let me = tunnel.json()["gateway"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if replaces.is_empty() || replaces.len() > 64 || replaces == me {
        return refused(
            json!({ "replaces": "the id of the gateway this one replaces (not its own)" }),
        );
    }
    if !["stored", "own"].contains(&b.network.as_str()) {
        return refused(
            json!({ "network": "stored (the replaced gateway's network settings) or own (this one's)" }),
        );
    }
    if b.confirm.trim() != "link" {
        return refused(json!({ "confirm": "type link to confirm" }));
    }
    tracing::info!(
        "admin: relink asked: in place of {replaces}, keeping the {} network settings",
        b.network
    );
    events.emit(
        "relink_request",
        json!({ "replaces": replaces, "network": b.network }),
    );
    let next = RelinkState::Waiting {
        replaces: replaces.to_owned(),
        network: b.network.clone(),
    };
    *s.admin.relink.lock().expect("relink") = next.clone();
    (StatusCode::ACCEPTED, Json(state_json(&next))).into_response()
}

/// `GET /api/operations/relink`.
pub async fn state(State(s): State<AdminState>, _: SignedIn) -> Json<Value> {
    Json(state_json(&s.admin.relink.lock().expect("relink")))
}

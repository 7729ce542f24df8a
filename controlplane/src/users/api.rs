//! The PBX user-config API (SPEC §3: PBX → gateway, TCP 8086, HTTPS): the
//! PBX pushes its users and its role table here. Only the PBX's trusted
//! addresses may connect, and every request carries HTTP Basic credentials
//! (`[users] push_username`/`push_password`); five wrong ones from an
//! address within a minute make it wait a minute (429).
//!
//! - `PUT /api/v1/users` `{"users": [...]}`: the whole list (users not in
//!   it are removed).
//! - `POST /api/v1/users` `{"users": [...]}`: add or update these.
//! - `DELETE /api/v1/users/{extension}`: remove one.
//! - `PUT /api/v1/roles` `{"roles": [...]}`: the role table.
//! - `GET /api/v1/users`: every user with its status.
//!
//! A user is `{"directory_number", "first_name", "last_name", "email",
//! "role"}` (role: the table's index or a role's name; none: Basic). A
//! push is answered 200 with `accepted`, `refused` (each not-onboarded user
//! with its reason), `removed` and `onboarded`: bad users are refused one
//! by one and the rest kept. A body that is not such JSON is answered 400
//! naming where it breaks; nothing changes then.

use super::{ChangeError, Users};
use crate::http_error::HttpError;
use crate::https::Peer;
use crate::throttle::Throttle;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use pbxlink_users::{Entry, PbxUser, Role, Status};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest body accepted: 20,000 users of a few hundred bytes each.
const MAX_BODY: usize = 8 << 20;

/// Wrong credentials from one address before it must wait.
const MAX_FAILURES: u32 = 5;

/// How long it waits, and the window failures are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// What the API needs.
#[derive(Clone)]
pub struct ApiState {
    users: Arc<Users>,
    username: String,
    password: String,
    failures: Arc<Mutex<Throttle>>,
}

impl ApiState {
    /// The API over `users`, for the PBX holding these credentials.
    pub fn new(users: Arc<Users>, username: String, password: String) -> Self {
        Self {
            users,
            username,
            password,
            failures: Arc::new(Mutex::new(Throttle::new(MAX_FAILURES, FAILURE_WINDOW))),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersBody {
    users: Vec<PbxUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesBody {
    roles: Vec<Role>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    HttpError::new(status, message).into_response()
}

/// Checks the request's credentials; the refusal to send otherwise.
fn authorize(s: &ApiState, headers: &HeaderMap, peer: IpAddr) -> Result<(), HttpError> {
    let now = Instant::now();
    if s.failures
        .lock()
        .expect("failures lock")
        .wait(peer, now)
        .is_some()
    {
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong credentials from this address: wait a minute",
        )
        .with_header(header::RETRY_AFTER, "60"));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let ok = given
        .as_deref()
        .and_then(|g| g.split_once(':'))
        .is_some_and(|(u, p)| {
            use subtle::ConstantTimeEq;
            let user = u.as_bytes().ct_eq(s.username.as_bytes());
            let pass = p.as_bytes().ct_eq(s.password.as_bytes());
            bool::from(user & pass)
        });
    if ok {
        return Ok(());
    }
    s.users
        .counters
        .auth_failures
        .fetch_add(1, Ordering::Relaxed);
    if given.is_some() {
        s.failures.lock().expect("failures lock").failed(peer, now);
    }
    Err(HttpError::new(
        StatusCode::UNAUTHORIZED,
        "HTTP Basic credentials of the PBX are needed ([users] push_username and push_password)",
    )
    .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"pbxlink users\""))
}

/// The push's body; a body that is not one is counted and refused.
fn body<T: serde::de::DeserializeOwned>(
    s: &ApiState,
    bytes: &[u8],
    shape: &str,
) -> Result<T, HttpError> {
    serde_json::from_slice(bytes).map_err(|e| {
        s.users
            .counters
            .pushes_refused
            .fetch_add(1, Ordering::Relaxed);
        HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not {shape}: {e}; nothing was changed"),
        )
    })
}

fn outcome<T: serde::Serialize>(r: Result<T, ChangeError>) -> Response {
    match r {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(ChangeError::Push(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e @ ChangeError::Save(_)) => {
            tracing::info!("users: {e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn put_users(
    State(s): State<ApiState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    take_users(s, peer.ip(), headers, bytes, true)
}

async fn post_users(
    State(s): State<ApiState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    take_users(s, peer.ip(), headers, bytes, false)
}

fn take_users(
    s: ApiState,
    peer: IpAddr,
    headers: HeaderMap,
    bytes: Bytes,
    replace: bool,
) -> Response {
    if let Err(r) = authorize(&s, &headers, peer) {
        return r.into_response();
    }
    let parsed: UsersBody = match body(&s, &bytes, "{\"users\": [...]}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let n = parsed.users.len();
    let r = s.users.push(parsed.users, replace);
    if let Ok(report) = &r {
        tracing::info!(
            "users: the PBX pushed {n} user(s) ({}): {} onboarded in all, {} not onboarded, {} removed",
            if replace { "the whole list" } else { "changes" },
            report.onboarded,
            report.refused.len(),
            report.removed
        );
    }
    outcome(r)
}

async fn put_roles(
    State(s): State<ApiState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if let Err(r) = authorize(&s, &headers, peer.ip()) {
        return r.into_response();
    }
    let parsed: RolesBody = match body(&s, &bytes, "{\"roles\": [...]}") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let n = parsed.roles.len();
    let r = s.users.set_roles(parsed.roles);
    if r.is_ok() {
        tracing::info!("users: the PBX pushed a role table of {n} role(s)");
    }
    outcome(r)
}

async fn delete_user(
    State(s): State<ApiState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
    Path(dn): Path<String>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, peer.ip()) {
        return r.into_response();
    }
    match s.users.remove(&dn) {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("no user with extension {dn:?}"),
        ),
        Err(e) => outcome::<()>(Err(e)),
    }
}

async fn get_users(
    State(s): State<ApiState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&s, &headers, peer.ip()) {
        return r.into_response();
    }
    Json(user_list(&s.users)).into_response()
}

/// Every user with its status, as JSON (shared with the admin API).
pub fn user_list(users: &Users) -> Value {
    users.read(|d| {
        json!({
            "onboarded": d.onboarded(),
            "roles": d.roles(),
            "users": d.users().map(user_json).collect::<Vec<_>>(),
        })
    })
}

/// One user with its status, as JSON.
pub fn user_json(e: &Entry) -> Value {
    let (onboarded, role, reason) = match &e.status {
        Status::Onboarded(r) => (true, Some(r.name.clone()), None),
        Status::NotOnboarded(why) => (false, None, Some(why.clone())),
    };
    json!({
        "directory_number": e.user.directory_number,
        "first_name": e.user.first_name,
        "last_name": e.user.last_name,
        "email": e.user.email,
        "onboarded": onboarded,
        "role": role,
        "reason": reason,
    })
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such resource; try /api/v1/users or /api/v1/roles",
    )
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/api/v1/users",
            get(get_users).put(put_users).post(post_users),
        )
        .route("/api/v1/users/{dn}", delete(delete_user))
        .route("/api/v1/roles", axum::routing::put(put_roles))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

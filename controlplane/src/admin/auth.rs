//! Who a request is: the admin page's session (over HTTPS, with its CSRF
//! token for anything that changes something) or automation with the
//! `[admin] api_token` as a bearer token (either listener). Extractors
//! for the handlers — [`SignedIn`] to read what only the admin may see,
//! [`Commander`] to change something — and the page's login API:
//!
//! - `GET /api/auth`: whether a password is set, whether this request is
//!   signed in (with its CSRF token), the password rules.
//! - `POST /api/auth/setup {"password"}`: the first login sets the
//!   password (SPEC §4's rules; each broken rule named); signs in.
//! - `POST /api/auth/login {"password"}`: a session cookie (`HttpOnly`,
//!   `Secure`, `SameSite=Strict`); five wrong passwords from an address
//!   within a minute: 429 with `Retry-After`.
//! - `POST /api/auth/logout`, `POST /api/auth/password {"old", "new"}`:
//!   every session ends.

use super::access::{COOKIE, LoginError, SESSION, Session, SetError};
use crate::http_error::HttpError;
use crate::https::Peer;
use crate::operations::state::AdminState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via {
    /// Over TLS (the page's listener).
    pub tls: bool,
}

/// Now, in Unix seconds (what cookies and file names carry).
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The page's session a request carries (HTTPS only).
pub(crate) fn session_of(s: &AdminState, headers: &HeaderMap, via: Via) -> Option<Session> {
    if !via.tls {
        return None;
    }
    s.admin.access.session(cookie(headers, COOKIE)?, unix_now())
}

fn bearer_ok(s: &AdminState, headers: &HeaderMap) -> Option<bool> {
    let token = s.token.as_ref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    use subtle::ConstantTimeEq;
    Some(bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
}

fn via(parts: &Parts) -> Via {
    parts
        .extensions
        .get::<Via>()
        .copied()
        .unwrap_or(Via { tls: false })
}

/// A request that may change something: the page's session with its
/// CSRF token, or the API token.
#[derive(Debug)]
pub struct Commander;

impl FromRequestParts<AdminState> for Commander {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Self, HttpError> {
        if let Some(session) = session_of(s, &parts.headers, via(parts)) {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            use subtle::ConstantTimeEq;
            return if bool::from(sent.as_bytes().ct_eq(session.csrf.as_bytes())) {
                Ok(Commander)
            } else {
                Err(HttpError::new(
                    StatusCode::FORBIDDEN,
                    "a change from the page must carry its X-CSRF-Token (reload the page)",
                ))
            };
        }
        match bearer_ok(s, &parts.headers) {
            Some(true) => Ok(Commander),
            Some(false) => Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "a command needs 'Authorization: Bearer TOKEN' with the gateway's [admin] api_token, or the admin page's session",
            )),
            None if s.token.is_none() && !via(parts).tls => Err(HttpError::new(
                StatusCode::FORBIDDEN,
                "commands are off on this gateway: set [admin] api_token and send it as 'Authorization: Bearer TOKEN', or use the admin page (HTTPS)",
            )),
            None => Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "log in on the admin page first (or send the API token as 'Authorization: Bearer TOKEN')",
            )),
        }
    }
}

/// A request that may read what only the admin sees: the page's session
/// or the API token.
#[derive(Debug)]
pub struct SignedIn;

impl FromRequestParts<AdminState> for SignedIn {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, s: &AdminState) -> Result<Self, HttpError> {
        if session_of(s, &parts.headers, via(parts)).is_some()
            || bearer_ok(s, &parts.headers) == Some(true)
        {
            return Ok(SignedIn);
        }
        let _ = Method::GET;
        Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "log in on the admin page first (or send the API token as 'Authorization: Bearer TOKEN')",
        ))
    }
}

const RULES: &str = "at least 8 characters; at least three of upper case, lower case, digits and other characters; not the company's name; no character three times in a row";

/// `GET /api/auth`.
pub async fn state(
    State(s): State<AdminState>,
    Extension(v): Extension<Via>,
    headers: HeaderMap,
) -> Response {
    let session = session_of(&s, &headers, v);
    Json(json!({
        "password_set": s.admin.access.has_password(),
        "signed_in": session.is_some(),
        "csrf": session.as_ref().map(|s| s.csrf.clone()),
        "rules": RULES,
        "https": v.tls,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    old: String,
    new: String,
}

fn https_only(v: Via) -> Result<(), HttpError> {
    if v.tls {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "the admin page signs in over HTTPS only ([admin] https_listen)",
        ))
    }
}

fn signed_in_response(s: &AdminState, session: &Session) -> Response {
    let value = s.admin.access.cookie_value(session);
    let mut r = Json(json!({ "signed_in": true, "csrf": session.csrf })).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        SESSION.as_secs()
    )) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn set_error(e: SetError) -> HttpError {
    match e {
        SetError::Rules(rules) => HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the password needs: {}", rules.join("; ")),
        ),
        SetError::AlreadySet => HttpError::new(
            StatusCode::CONFLICT,
            "the admin password is set already: log in, or change it with the old one",
        ),
        SetError::Wrong => HttpError::new(StatusCode::FORBIDDEN, "the old password is wrong"),
        SetError::Store(why) => HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the password cannot be kept: {why}"),
        ),
    }
}

/// `POST /api/auth/setup`.
pub async fn setup(
    State(s): State<AdminState>,
    Extension(v): Extension<Via>,
    Extension(Peer(peer)): Extension<Peer>,
    Json(b): Json<PasswordBody>,
) -> Response {
    if let Err(e) = https_only(v) {
        return e.into_response();
    }
    let company = s.admin.company();
    let names: Vec<&str> = company.iter().map(String::as_str).collect();
    if let Err(e) = s.admin.access.set_first(&b.password, &names) {
        return set_error(e).into_response();
    }
    tracing::info!("admin: the admin password was set (from {})", peer.ip());
    match s
        .admin
        .access
        .login(peer.ip(), &b.password, Instant::now(), unix_now())
    {
        Ok(session) => signed_in_response(&s, &session),
        Err(_) => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "log in now").into_response(),
    }
}

/// `POST /api/auth/login`.
pub async fn login(
    State(s): State<AdminState>,
    Extension(v): Extension<Via>,
    Extension(Peer(peer)): Extension<Peer>,
    Json(b): Json<PasswordBody>,
) -> Response {
    if let Err(e) = https_only(v) {
        return e.into_response();
    }
    match s
        .admin
        .access
        .login(peer.ip(), &b.password, Instant::now(), unix_now())
    {
        Ok(session) => signed_in_response(&s, &session),
        Err(LoginError::NoPassword) => HttpError::new(
            StatusCode::CONFLICT,
            "no admin password is set yet: set it first (the first login sets it)",
        )
        .into_response(),
        Err(LoginError::Wrong) => {
            tracing::info!("admin: wrong password from {}", peer.ip());
            HttpError::new(StatusCode::UNAUTHORIZED, "wrong password").into_response()
        }
        Err(LoginError::Throttled(wait)) => {
            let secs = wait.as_secs().max(1);
            let mut r = HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many wrong passwords from this address: wait {secs} s"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
    }
}

fn cleared() -> Response {
    let mut r = Json(json!({ "signed_in": false })).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "pbxlink_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

/// `POST /api/auth/logout`.
pub async fn logout(State(s): State<AdminState>, _: Commander) -> Response {
    match s.admin.access.end_sessions() {
        Ok(()) => cleared(),
        Err(e) => set_error(e).into_response(),
    }
}

/// `POST /api/auth/password`.
pub async fn change(
    State(s): State<AdminState>,
    _: Commander,
    Json(b): Json<ChangeBody>,
) -> Response {
    let company = s.admin.company();
    let names: Vec<&str> = company.iter().map(String::as_str).collect();
    match s.admin.access.change(&b.old, &b.new, &names) {
        Ok(()) => {
            tracing::info!("admin: the admin password was changed; every session ended");
            cleared()
        }
        Err(e) => set_error(e).into_response(),
    }
}

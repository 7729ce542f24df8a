//! The admin page: one HTML document, its script and its style, built
//! into the binary (no files to deploy, nothing fetched from elsewhere).
//! The script drives the REST API the same way automation does; the page
//! owns no state of its own. Served over HTTPS only (over plain HTTP `/`
//! redirects there).

use super::auth::Via;
use axum::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
/// The live view's script (`/calls.js`, after `app.js`).
const CALLS_SCRIPT: &str = include_str!("page/calls.js");
const STYLE: &str = include_str!("page/app.css");
/// uPlot, the live view's charts (`page/vendor/README.md`).
const CHART_SCRIPT: &str = include_str!("page/vendor/uPlot.iife.min.js");
const CHART_STYLE: &str = include_str!("page/vendor/uPlot.min.css");

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /`.
pub async fn index(Extension(v): Extension<Via>) -> Response {
    if !v.tls {
        return (
            StatusCode::FORBIDDEN,
            "the admin page is served over HTTPS only ([admin] https_listen)\n",
        )
            .into_response();
    }
    asset(INDEX, "text/html; charset=utf-8")
}

/// `GET /app.js`.
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /app.css`.
pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// `GET /calls.js`.
pub async fn calls_script() -> Response {
    asset(CALLS_SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /vendor/uplot.js`.
pub async fn chart_script() -> Response {
    asset(CHART_SCRIPT, "text/javascript; charset=utf-8")
}

/// `GET /vendor/uplot.css`.
pub async fn chart_style() -> Response {
    asset(CHART_STYLE, "text/css; charset=utf-8")
}

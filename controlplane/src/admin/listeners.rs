//! Where the admin page and API listen.
//!
//! - HTTP (`[admin] listen`, port 80 on the LAN): health (`/healthz`,
//!   `/ready`), `/metrics`, the REST API (commands with the API token),
//!   and a browser asking for `/` is sent on to the page over HTTPS.
//! - HTTPS (`[admin] https_listen`, port 443): the page, its login and
//!   wizard, and the same API. The certificate is the operator's or one
//!   made at first start (rcgen) and kept in the state directory.
//!
//! One router serves both; each request carries [`Via`] (which listener)
//! and [`Peer`](crate::https::Peer) (who).
//!
//! Before onboarding the node runs these listeners alone
//! (`crate::node::setup`).

use super::auth::{self, Via};
use super::{console, metrics, page, wizard};
use crate::https::{Limits, Peer};
use crate::operations::state::AdminState;
use axum::Extension;
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

fn router(state: AdminState) -> axum::Router<()> {
    super::api::api_routes()
        .route("/api/auth", get(auth::state))
        .route("/api/auth/setup", post(auth::setup))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/password", post(auth::change))
        .route("/api/onboarding", get(wizard::get))
        .route("/api/onboarding/gateway", put(wizard::gateway))
        .route("/api/onboarding/pbx", put(wizard::pbx))
        .route(
            "/api/onboarding/connect",
            get(wizard::connect_state).put(wizard::connect),
        )
        .route(
            "/api/onboarding/deployment",
            get(wizard::deployment_state).post(wizard::deployment),
        )
        .route("/api/onboarding/advanced", put(wizard::advanced))
        .route("/api/onboarding/complete", post(wizard::complete))
        .route("/api/versions", get(console::versions))
        .route("/api/operations/logs", post(console::logs))
        .route(
            "/api/operations/trace",
            get(console::trace_state).post(console::trace),
        )
        .route("/api/operations/reboot", post(console::reboot))
        .route(
            "/api/operations/support-ssh",
            get(console::support_state)
                .post(console::support_on)
                .delete(console::support_off),
        )
        .route("/api/operations/reset", post(console::reset))
        .route(
            "/api/operations/relink",
            get(super::relink::state).post(super::relink::ask),
        )
        .route("/downloads/{token}", get(console::download))
        .route("/healthz", get(metrics::healthz))
        .route("/ready", get(metrics::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/calls.js", get(page::calls_script))
        .route("/vendor/uplot.js", get(page::chart_script))
        .route("/vendor/uplot.css", get(page::chart_style))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> Response {
    crate::http_error::HttpError::new(
        StatusCode::NOT_FOUND,
        "no such resource; the page is at /, the API under /api (try /api/status)",
    )
    .into_response()
}

/// Plain HTTP: a browser asking for the page goes to HTTPS.
async fn to_https(https_port: Option<u16>, req: Request, next: Next) -> Response {
    if let (Some(port), "/") = (https_port, req.uri().path()) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| {
                h.rsplit_once(':')
                    .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
                    .map_or(h, |(name, _)| name)
            })
            .unwrap_or("pbxlink.local")
            .to_owned();
        let at = if port == 443 {
            format!("https://{host}/")
        } else {
            format!("https://{host}:{port}/")
        };
        return Redirect::temporary(&at).into_response();
    }
    next.run(req).await
}

async fn peer_of(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    req.extensions_mut().insert(Peer(peer));
    next.run(req).await
}

/// Starts the admin listeners `state.admin.settings` names (inside a tokio
/// runtime), and advertises the page by mDNS. A port that cannot be bound
/// is told and left off.
pub async fn start(state: AdminState) -> anyhow::Result<()> {
    let settings = state.admin.settings.clone();
    let page_port = settings.listen.or(settings.https_listen).map(|a| a.port());
    if let (Some((name, addr)), Some(port)) = (&settings.mdns, page_port)
        && let Some(a) = super::mdns::advertise(name, *addr, port)
    {
        let _ = state.admin.mdns.set(a);
    }
    let app = router(state.clone());
    if let Some(addr) = settings.listen {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                let https_port = settings.https_listen.map(|a| a.port());
                let plain = app
                    .clone()
                    .layer(axum::middleware::from_fn(move |req, next| {
                        to_https(https_port, req, next)
                    }))
                    .layer(axum::middleware::from_fn(peer_of))
                    .layer(Extension(Via { tls: false }));
                tracing::info!(
                    "admin: API on http://{addr}/api/status, /metrics, /healthz, /ready"
                );
                tokio::spawn(async move {
                    let service = plain.into_make_service_with_connect_info::<SocketAddr>();
                    if let Err(e) = axum::serve(l, service).await {
                        tracing::info!("admin: the HTTP listener stopped: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(
                    "warning: the admin API cannot listen on {addr}: {e} (set [admin] listen)"
                )
            }
        }
    }
    if let Some(addr) = settings.https_listen {
        let mut names = vec![addr.ip().to_string(), "pbxlink.local".to_owned()];
        if addr.ip().is_unspecified() {
            names.push("localhost".into());
        }
        let (cert, key) = crate::https::certificate(
            settings.cert.clone(),
            &state.admin.state_dir,
            "admin",
            &names,
        )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(crate::tls::server(&cert, &key)?);
        match TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(
                    "admin: page on https://{addr}/ (certificate {}, SHA-256 {})",
                    cert.display(),
                    crate::https::fingerprint(&cert)?
                );
                tokio::spawn(crate::https::serve(
                    l,
                    acceptor,
                    app.layer(Extension(Via { tls: true })),
                    Arc::new(|_| true),
                    Limits::default(),
                ));
            }
            Err(e) => tracing::warn!(
                "warning: the admin page cannot listen on {addr}: {e} (set [admin] https_listen)"
            ),
        }
    }
    Ok(())
}

//! The start-up diagnostics on the admin side (SPEC §7): run once the
//! gateway starts, again every [`RERUN_FAILING`] while a check fails (so
//! an alarm clears by itself once the network is fixed) or every
//! [`RERUN_PASSING`] otherwise, and on demand. Each result is written to
//! the log; each failed check raises an alarm (log line, `alarm` event to
//! the platform), cleared the same way when it passes again.
//!
//! - `GET /api/diagnostics`: the last run (`running`, when, each check
//!   passed / failed / skipped with what it found or why).
//! - `POST /api/diagnostics`: run them again now (202).
//! - `GET /api/alarms`: the alarms up.

use super::auth::{Commander, SignedIn};
use crate::alarms::{DIAGNOSTIC_FAILED, Raised};
use crate::cdr::rfc3339;
use crate::diagnostics::Outcome;
use crate::operations::parts::{Diagnostics, Report};
use crate::operations::state::AdminState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// Between runs while a check fails.
pub const RERUN_FAILING: Duration = Duration::from_secs(300);
/// Between runs while all pass.
pub const RERUN_PASSING: Duration = Duration::from_secs(3600);

/// Runs the diagnostics now and then, for as long as the gateway runs.
pub fn start(s: AdminState) {
    if s.admin.diagnostics.plan.probes.is_empty() {
        return;
    }
    tokio::spawn(async move {
        loop {
            let failing = run(&s).await;
            let wait = if failing {
                RERUN_FAILING
            } else {
                RERUN_PASSING
            };
            let _ = tokio::time::timeout(wait, s.admin.diagnostics.again.notified()).await;
        }
    });
}

/// One run: results logged, alarms raised and cleared; whether any
/// check failed.
async fn run(s: &AdminState) -> bool {
    let d = &s.admin.diagnostics;
    d.running.store(true, std::sync::atomic::Ordering::Relaxed);
    let checks = d.plan.run().await;
    let mut failing = Vec::new();
    for c in &checks {
        let source = format!("{} {}", c.check, c.target);
        match &c.outcome {
            Outcome::Passed(found) => tracing::info!("diagnostics: {source}: passed: {found}"),
            Outcome::Skipped(why) => tracing::warn!("diagnostics: {source}: skipped: {why}"),
            Outcome::Failed(why) => {
                tracing::warn!("diagnostics: {source}: FAILED: {why}");
                let text = format!("{} check failed: {why}", c.check);
                let raised = s.admin.alarms.raise(
                    DIAGNOSTIC_FAILED,
                    &source,
                    &text,
                    rfc3339(SystemTime::now()),
                );
                if raised != Raised::Same {
                    alarm_event(s, &source, &text, true);
                }
                failing.push(source);
            }
        }
    }
    for source in s.admin.alarms.sources(DIAGNOSTIC_FAILED) {
        if !failing.contains(&source)
            && let Some(a) = s.admin.alarms.clear(DIAGNOSTIC_FAILED, &source)
        {
            alarm_event(s, &source, &a.text, false);
        }
    }
    *d.last.lock().expect("diagnostics") = Some(Report {
        at: SystemTime::now(),
        checks,
    });
    d.running.store(false, std::sync::atomic::Ordering::Relaxed);
    !failing.is_empty()
}

fn alarm_event(s: &AdminState, source: &str, text: &str, raised: bool) {
    let word = if raised { "raised" } else { "cleared" };
    tracing::warn!("alarm {word}: {DIAGNOSTIC_FAILED} ({source}): {text}");
    if let Some(events) = &s.events {
        events.emit(
            "alarm",
            json!({ "alarm": DIAGNOSTIC_FAILED, "raised": raised, "source": source, "detail": text }),
        );
    }
}

/// The last run as the page and the platform read it.
pub fn report_json(d: &Diagnostics) -> Value {
    let running = d.running.load(std::sync::atomic::Ordering::Relaxed);
    match d.last() {
        _ if d.plan.probes.is_empty() => json!({
            "state": "not configured",
            "checks": [],
            "why": "the diagnostics run once the wizard has the PBX and the cloud",
        }),
        None => json!({ "state": "running", "checks": [] }),
        Some(r) => json!({
            "state": if running { "running" } else { "done" },
            "at": rfc3339(r.at),
            "checks": r.checks,
            "failed": r.checks.iter().filter(|c| matches!(c.outcome, Outcome::Failed(_))).count(),
        }),
    }
}

/// `GET /api/diagnostics`.
pub async fn get(State(s): State<AdminState>, _: SignedIn) -> Json<Value> {
    Json(report_json(&s.admin.diagnostics))
}

/// `POST /api/diagnostics`.
pub async fn rerun(State(s): State<AdminState>, _: Commander) -> Response {
    if s.admin.diagnostics.plan.probes.is_empty() {
        return crate::http_error::HttpError::new(
            StatusCode::CONFLICT,
            "the diagnostics run once the wizard has the PBX and the cloud",
        )
        .into_response();
    }
    s.admin.diagnostics.again.notify_one();
    (StatusCode::ACCEPTED, Json(json!({ "result": "running" }))).into_response()
}

/// `GET /api/alarms`.
pub async fn alarms(State(s): State<AdminState>, _: SignedIn) -> Json<Value> {
    Json(json!({ "alarms": s.admin.alarms.active() }))
}

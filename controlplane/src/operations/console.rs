//! The operations both the admin page and the cloud platform run, by the
//! same code: the parts' versions, a log bundle, a call trace, a reset,
//! the wizard's settings kept (and told to the platform), a relink
//! taken, and support's SSH window opened and closed. The page's handlers (`crate::admin`) and the tunnel's commands
//! ([`super::commands`]) call these.

use super::bundle::{Download, log_bundle};
use super::host::Reset;
use super::parts::{RelinkState, TraceState, trace_json};
use super::state::AdminState;
use super::versions::part_versions;
use crate::http_error::HttpError;
use crate::onboarding::Onboarding;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::time::Instant;

/// Makes a log bundle and its link (the admin page and the tunnel's
/// `collect_logs`).
pub fn collect_logs(s: &AdminState) -> Result<Value, String> {
    let Some(dir) = &s.admin.log_dir else {
        return Err("this gateway does not write its log to disk".into());
    };
    let status = serde_json::to_string_pretty(&super::state::status_json(s)).unwrap_or_default();
    let versions = serde_json::to_string_pretty(&part_versions()).unwrap_or_default();
    let bytes = log_bundle(dir, &[("status.json", status), ("versions.json", versions)])
        .map_err(|e| format!("the log bundle could not be made: {e}"))?;
    let size = bytes.len();
    let token = s.admin.downloads.add(
        Download {
            file_name: format!("pbxlink-logs-{}.tar.gz", crate::events::unix_ms() / 1000),
            content_type: "application/gzip",
            bytes,
        },
        Instant::now(),
    );
    tracing::info!(
        "admin: log bundle made ({size} bytes), its link expires in {} s",
        s.admin.downloads.ttl().as_secs()
    );
    Ok(json!({
        "url": format!("/downloads/{token}"),
        "bytes": size,
        "expires_in_s": s.admin.downloads.ttl().as_secs(),
    }))
}

/// Starts a call trace (the admin page and the tunnel's `trace`).
pub fn start_trace(s: &AdminState, seconds: u64) -> Result<Value, (StatusCode, String)> {
    use crate::operations::trace::{MAX_SECONDS, capture};
    if !(1..=MAX_SECONDS).contains(&seconds) {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("seconds: from 1 to {MAX_SECONDS}"),
        ));
    }
    {
        let mut t = s.admin.trace.lock().expect("trace");
        if let TraceState::Running { .. } = *t {
            return Err((
                StatusCode::CONFLICT,
                "a call trace is running already".into(),
            ));
        }
        *t = TraceState::Running {
            until: Instant::now() + std::time::Duration::from_secs(seconds),
        };
    }
    tracing::info!("trace: capturing SIP and media headers for {seconds} s");
    let admin = s.admin.clone();
    tokio::task::spawn_blocking(move || {
        let next = match capture(&admin.trace_ports, seconds) {
            Ok(c) => {
                let bytes = c.pcap.len();
                let token = admin.downloads.add(
                    Download {
                        file_name: format!(
                            "pbxlink-trace-{}.pcap",
                            crate::events::unix_ms() / 1000
                        ),
                        content_type: "application/vnd.tcpdump.pcap",
                        bytes: c.pcap,
                    },
                    Instant::now(),
                );
                tracing::info!(
                    "trace: done: {} SIP and {} media packet(s), {bytes} bytes{}",
                    c.sip,
                    c.media,
                    c.cut
                        .map_or(String::new(), |why| format!(" (stopped at {why})"))
                );
                TraceState::Done(json!({
                    "url": format!("/downloads/{token}"),
                    "bytes": bytes,
                    "sip_packets": c.sip,
                    "media_packets": c.media,
                    "stopped_at": c.cut,
                    "expires_in_s": admin.downloads.ttl().as_secs(),
                }))
            }
            Err(e) => {
                tracing::warn!("trace: failed: {e}");
                TraceState::Failed(e.to_string())
            }
        };
        *admin.trace.lock().expect("trace") = next;
    });
    Ok(trace_json(&s.admin.trace.lock().expect("trace")))
}

/// Forgets what `kind` forgets (the admin page and the tunnel's
/// `data_reset`); the files removed. The caller restarts the gateway.
pub fn reset_gateway(s: &AdminState, kind: Reset, from: &str) -> Result<Vec<String>, String> {
    let name = match kind {
        Reset::Data => "data",
        Reset::Factory => "factory",
    };
    if kind == Reset::Factory {
        s.admin.access.forget().map_err(|e| format!("{e:?}"))?;
    }
    let removed = s.admin.host.reset(kind)?;
    s.admin.wizard.forget().map_err(|e| format!("{e:#}"))?;
    tracing::info!(
        "admin: {name} reset from {from}: removed {}",
        removed.join(", ")
    );
    Ok(removed)
}

/// Keeps `next`, and tells the platform (an `onboarding` event, no
/// password in it): it holds each gateway's settings for a replacement
/// to relink to.
pub fn keep(s: &AdminState, next: Onboarding) -> Result<(), HttpError> {
    s.admin.wizard.save(next.clone())?;
    if let Some(events) = &s.events {
        let mut told = next;
        if let Some(pbx) = &mut told.pbx {
            pbx.password = None;
        }
        events.emit(
            "onboarding",
            serde_json::to_value(&told).unwrap_or_default(),
        );
    }
    Ok(())
}

/// The platform's `relink` command: takes the stored settings (the
/// caller restarts the gateway).
pub fn take(s: &AdminState, args: &Value) -> Result<Value, String> {
    let replaces = args["replaces"].as_str().unwrap_or_default();
    let network = {
        let waiting = s.admin.relink.lock().expect("relink");
        match &*waiting {
            RelinkState::Waiting {
                replaces: r,
                network,
            } if r == replaces => network.clone(),
            _ => {
                return Err(format!(
                    "no relink in place of {replaces:?} was asked for here"
                ));
            }
        }
    };
    let fail = |why: String| {
        tracing::warn!("admin: relink failed: {why}");
        *s.admin.relink.lock().expect("relink") = RelinkState::Failed(why.clone());
        Err(why)
    };
    if let Some(why) = args["error"].as_str() {
        return fail(format!("the platform says: {why}"));
    }
    let mut next: Onboarding = match serde_json::from_value(args["onboarding"].clone()) {
        Ok(o) => o,
        Err(e) => return fail(format!("the stored settings cannot be read: {e}")),
    };
    let own = s.admin.wizard.get().gateway;
    match (&mut next.gateway, network.as_str()) {
        (Some(g), "stored") => {
            if let Err(why) = s.admin.host.apply_lan(&g.lan) {
                return fail(format!(
                    "the stored LAN settings could not be applied: {why}"
                ));
            }
        }
        (Some(g), _) => {
            g.lan = own.map_or(crate::onboarding::Lan::Dhcp, |o| o.lan);
        }
        (None, _) => {}
    }
    if let Err(e) = keep(s, next) {
        return fail(format!("the settings cannot be kept: {e:?}"));
    }
    *s.admin.relink.lock().expect("relink") = RelinkState::Idle;
    tracing::info!("admin: relinked in place of {replaces} ({network} network settings)");
    Ok(json!({ "relinked": replaces, "network": network }))
}

/// Tells the log and the platform what support's SSH did
/// (`support_ssh` events).
fn support_event(events: &Option<crate::events::EventSink>, body: Value) {
    tracing::info!("support ssh: {body}");
    if let Some(e) = events {
        e.emit("support_ssh", body);
    }
}

/// What sshd saw, told to the log and the platform.
fn support_seen(
    events: Option<crate::events::EventSink>,
) -> impl Fn(super::support_ssh::Seen) + Send + 'static {
    use super::support_ssh::Seen;
    move |seen| match seen {
        Seen::Login { user, from, key } => support_event(
            &events,
            json!({ "event": "login", "user": user, "from": from, "key": key }),
        ),
        Seen::Refused { line } => {
            support_event(&events, json!({ "event": "refused", "detail": line }))
        }
        Seen::Exited(why) => tracing::info!("support ssh: sshd stopped ({why})"),
    }
}

/// Opens support's SSH window for `key` (the page and the platform's
/// `support_ssh`); `by` says who asked.
pub fn support_on(s: &AdminState, key: &str, by: &str) -> Result<Value, String> {
    let now = std::time::SystemTime::now();
    let until = s
        .admin
        .support
        .open(key, now, support_seen(s.events.clone()))?;
    support_event(
        &s.events,
        json!({ "event": "started", "by": by, "until": crate::cdr::rfc3339(until) }),
    );
    Ok(s.admin.support.json(now))
}

/// Closes support's SSH window (asked early, or its end).
pub fn support_off(s: &AdminState, why: &str) -> Value {
    if s.admin.support.close() {
        support_event(&s.events, json!({ "event": "stopped", "why": why }));
    }
    s.admin.support.json(std::time::SystemTime::now())
}

/// At start: the window kept on disk resumed for what is left; then its
/// end watched (asleep until it comes).
pub fn support_watch(s: AdminState) {
    let now = std::time::SystemTime::now();
    match s.admin.support.resume(now, support_seen(s.events.clone())) {
        Some(Ok(until)) => support_event(
            &s.events,
            json!({ "event": "started", "by": "a restart (the window goes on)", "until": crate::cdr::rfc3339(until) }),
        ),
        Some(Err(why)) => {
            tracing::warn!("support ssh: the window kept on disk cannot resume: {why}")
        }
        None => {}
    }
    // No ticking: it sleeps until the open window's end, or until one opens.
    tokio::spawn(async move {
        loop {
            let left = s.admin.support.until().map(|u| {
                u.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
            });
            match left {
                None => s.admin.support.opened.notified().await,
                Some(left) => {
                    tokio::select! {
                        () = tokio::time::sleep(left) => {}
                        () = s.admin.support.opened.notified() => continue,
                    }
                    if s.admin.support.ended(std::time::SystemTime::now()) {
                        support_off(&s, "the window ended");
                    }
                }
            }
        }
    });
}

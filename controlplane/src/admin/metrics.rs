//! What monitoring reads, without a login (plain HTTP, `[admin] listen`):
//!
//! - `GET /healthz`: 200 `ok` while the process serves requests.
//! - `GET /ready`: 200 when the gateway takes calls — onboarded, not
//!   draining or restarting, the cloud trunk connected, the PBX not lost;
//!   503 with the reasons otherwise (a load balancer or supervisor keeps
//!   calls away).
//! - `GET /metrics`: Prometheus text (version 0.0.4): calls active and by
//!   outcome, relays, media packets, drops by reason and by direction,
//!   SRTP failures, the CSTA and tunnel links, user syncs, the CSTA
//!   request time histogram, and every node counter as
//!   `pbxlink_node_<name>`.

use crate::operations::state::AdminState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use pbxlink_dataplane::drops::DropReason;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Why the gateway does not take calls now (empty: it does).
pub fn not_ready(s: &AdminState) -> Vec<String> {
    let mut why: Vec<String> = s
        .admin
        .missing
        .iter()
        .map(|m| format!("not configured: {m}"))
        .collect();
    if s.admin.control.pending() {
        why.push("restarting".into());
    }
    if s.counters.draining() {
        why.push("draining".into());
    }
    if s.admin.missing.is_empty() && s.cloud.lock().map(|c| c.is_none()).unwrap_or(true) {
        why.push("the cloud trunk is not connected".into());
    }
    if s.counters.pbx_trunk() == 2 {
        why.push("Lost trunk connection to PBX".into());
    }
    why
}

/// `GET /ready`.
pub async fn ready(State(s): State<AdminState>) -> Response {
    let why = not_ready(&s);
    if why.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        )
            .into_response()
    }
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        let _ = write!(self.0, "{name}");
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            let _ = write!(self.0, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.0, " {v}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], v);
    }
}

const SRTP_FAILURES: [DropReason; 5] = [
    DropReason::AuthFailed,
    DropReason::Unprotected,
    DropReason::Replay,
    DropReason::ReplayOld,
    DropReason::SrtpError,
];

/// The metrics as Prometheus text.
pub fn render(s: &AdminState) -> String {
    let c = &s.counters;
    let mut t = Text(String::with_capacity(16 * 1024));
    t.one("pbxlink_up", "gauge", "1 while the gateway runs.", 1);
    t.one(
        "pbxlink_onboarded",
        "gauge",
        "1 when the gateway carries calls (configured), 0 while its wizard waits.",
        u8::from(s.admin.missing.is_empty()),
    );
    t.one(
        "pbxlink_ready",
        "gauge",
        "1 when the gateway takes calls (see /ready).",
        u8::from(not_ready(s).is_empty()),
    );
    t.one(
        "pbxlink_uptime_seconds",
        "gauge",
        "Seconds since the gateway started.",
        s.started.elapsed().as_secs(),
    );
    t.one(
        "pbxlink_calls_active",
        "gauge",
        "Calls in progress.",
        c.calls_in_progress(),
    );
    t.family(
        "pbxlink_calls_total",
        "counter",
        "Calls by outcome (admitted, then how they ended; refused never started).",
    );
    for (outcome, name) in [
        ("admitted", "calls"),
        ("completed", "calls_completed"),
        ("cancelled", "calls_cancelled"),
        ("rejected", "calls_rejected"),
        ("failed", "calls_failed"),
        ("unrouted", "calls_unrouted"),
        ("refused", "calls_refused"),
        ("refused_at_limit", "refused_at_limit"),
        ("refused_draining", "refused_draining"),
    ] {
        t.sample("pbxlink_calls_total", &[("outcome", outcome)], c.get(name));
    }
    t.one(
        "pbxlink_relays",
        "gauge",
        "Relays the data plane runs.",
        c.get("relays"),
    );
    t.family(
        "pbxlink_media_packets_total",
        "counter",
        "Media datagrams the data plane received and sent.",
    );
    t.sample(
        "pbxlink_media_packets_total",
        &[("way", "received")],
        c.get("media_received"),
    );
    t.sample(
        "pbxlink_media_packets_total",
        &[("way", "sent")],
        c.get("media_sent"),
    );
    let drops = c.media_drops();
    t.family(
        "pbxlink_media_drops_total",
        "counter",
        "Media datagrams the data plane dropped, by reason (every relay).",
    );
    for r in DropReason::ALL {
        t.sample(
            "pbxlink_media_drops_total",
            &[("reason", r.name())],
            drops.by_reason.get(r),
        );
    }
    t.sample(
        "pbxlink_media_drops_total",
        &[("reason", "kernel")],
        c.get("media_kernel_drops"),
    );
    t.sample(
        "pbxlink_media_drops_total",
        &[("reason", "xdp_foreign_source")],
        c.get("media_xdp_foreign_dropped"),
    );
    t.family(
        "pbxlink_media_drops_by_direction_total",
        "counter",
        "Ended relays' drops by direction (from_pbx, from_cloud, relay) and reason.",
    );
    for (dir, d) in [
        ("from_pbx", &drops.from_pbx),
        ("from_cloud", &drops.from_cloud),
        ("relay", &drops.relay),
    ] {
        for (r, n) in d.nonzero() {
            t.sample(
                "pbxlink_media_drops_by_direction_total",
                &[("direction", dir), ("reason", r.name())],
                n,
            );
        }
        t.sample(
            "pbxlink_media_drops_by_direction_total",
            &[("direction", dir), ("reason", "all")],
            d.total(),
        );
    }
    t.one(
        "pbxlink_srtp_failures_total",
        "counter",
        "SRTP/SRTCP packets refused: authentication, replay, unprotected, cipher errors.",
        SRTP_FAILURES
            .iter()
            .map(|r| drops.by_reason.get(*r))
            .sum::<u64>(),
    );
    t.one(
        "pbxlink_pbx_trunk_up",
        "gauge",
        "1 while the PBX answers its keep-alives (0 lost or not known yet).",
        u8::from(c.pbx_trunk() == 1),
    );
    t.one(
        "pbxlink_cloud_trunk_up",
        "gauge",
        "1 while the SIP-TLS trunk to the cloud is connected.",
        u8::from(s.cloud.lock().map(|c| c.is_some()).unwrap_or(false)),
    );
    let name = "pbxlink_call_setup_added_seconds";
    t.0.push_str(&format!(
        "# HELP {name} What the gateway adds to a call's set-up: step=\"invite\", a new call's INVITE in to its INVITE out to the other side; step=\"answer\", the answer (2xx) in to the answer out.\n# TYPE {name} histogram\n"
    ));
    s.counters
        .setup_invite
        .0
        .series(&mut t.0, name, "step=\"invite\"");
    s.counters
        .setup_answer
        .0
        .series(&mut t.0, name, "step=\"answer\"");
    s.counters.quality.prometheus(&mut t.0);
    s.counters.capture.prometheus(&mut t.0);
    if let Some(cti) = &s.cti {
        let k = &cti.counters;
        t.one(
            "pbxlink_csta_link_up",
            "gauge",
            "1 while a CSTA session to the PBX is open.",
            u8::from(cti.status_word() == "Connected"),
        );
        t.family(
            "pbxlink_csta_requests_total",
            "counter",
            "CSTA service requests by result.",
        );
        for (result, v) in [
            ("ok", &k.requests_ok),
            ("failed", &k.requests_failed),
            ("busy", &k.requests_busy),
        ] {
            t.sample(
                "pbxlink_csta_requests_total",
                &[("result", result)],
                v.load(Ordering::Relaxed),
            );
        }
        t.one(
            "pbxlink_csta_events_total",
            "counter",
            "CSTA events received for monitored users.",
            k.events.load(Ordering::Relaxed),
        );
        t.0.push_str(&k.request_time.prometheus(
            "pbxlink_csta_request_seconds",
            "How long CSTA service requests took, sent to answered.",
        ));
    }
    t.one(
        "pbxlink_alarms_active",
        "gauge",
        "Alarms up (GET /api/alarms lists them).",
        s.admin.alarms.active().len(),
    );
    if let Some(r) = s.admin.diagnostics.last() {
        t.family(
            "pbxlink_diagnostic_passed",
            "gauge",
            "The last start-up diagnostics: 1 passed, 0 failed, per check and target (skipped ones left out).",
        );
        for c in &r.checks {
            let passed = match c.outcome {
                crate::diagnostics::Outcome::Passed(_) => 1,
                crate::diagnostics::Outcome::Failed(_) => 0,
                crate::diagnostics::Outcome::Skipped(_) => continue,
            };
            t.sample(
                "pbxlink_diagnostic_passed",
                &[("check", c.check), ("target", &c.target)],
                passed,
            );
        }
    }
    if let Some(tunnel) = &s.tunnel {
        let v = tunnel.json();
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        t.one(
            "pbxlink_tunnel_up",
            "gauge",
            "1 while the tunnel to the cloud platform is connected.",
            u8::from(v["state"] == "connected"),
        );
        t.one(
            "pbxlink_tunnel_backlog",
            "gauge",
            "Events waiting for the platform's ack.",
            n("backlog"),
        );
        t.one(
            "pbxlink_tunnel_events_sent_total",
            "counter",
            "Events sent to the platform.",
            n("events_sent"),
        );
        t.one(
            "pbxlink_tunnel_outbox_dropped_total",
            "counter",
            "Events the full outbox dropped.",
            n("outbox_dropped"),
        );
        t.one(
            "pbxlink_tunnel_connects_total",
            "counter",
            "Tunnel sessions opened.",
            n("connects"),
        );
        t.one(
            "pbxlink_user_syncs_total",
            "counter",
            "User syncs toward the platform.",
            n("syncs"),
        );
    }
    if let Some(u) = &s.users {
        let k = &u.counters;
        t.one(
            "pbxlink_users_onboarded",
            "gauge",
            "The PBX's users onboarded.",
            u.read(|d| d.onboarded()),
        );
        t.family(
            "pbxlink_user_pushes_total",
            "counter",
            "User pushes from the PBX by result.",
        );
        t.sample(
            "pbxlink_user_pushes_total",
            &[("result", "taken")],
            k.pushes.load(Ordering::Relaxed),
        );
        t.sample(
            "pbxlink_user_pushes_total",
            &[("result", "refused")],
            k.pushes_refused.load(Ordering::Relaxed),
        );
    }
    for (name, v) in c.pairs() {
        let kind = if matches!(name, "relays" | "pbx_trunk" | "draining") {
            "gauge"
        } else {
            "counter"
        };
        t.one(
            &format!("pbxlink_node_{name}"),
            kind,
            &format!("The node's {name} counter (GET /api/counters)."),
            v,
        );
    }
    t.0
}

/// `GET /metrics`.
pub async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&s),
    )
        .into_response()
}

//! What the node saw, by outcome: the counters every part of the SIP side
//! and the call driver bump, and the admin API, `/metrics` and the tunnel
//! read.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the node saw, by outcome.
#[derive(Debug, Default)]
pub struct Counters {
    /// What the gateway adds to a call's set-up: a new call's INVITE in
    /// to its INVITE out to the other side…
    pub setup_invite: crate::latency::Added,
    /// …and the answer (2xx to that INVITE) in to the answer out.
    pub setup_answer: crate::latency::Added,
    /// The media quality of the calls that ended.
    pub quality: crate::call_quality::QualityMetrics,
    /// HEP3 capture's copies sent and dropped.
    pub capture: std::sync::Arc<crate::capture::CaptureCounters>,
    pub(super) requests: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) not_implemented: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) responses_ignored: AtomicU64,
    pub(super) responses_unmatched: AtomicU64,
    /// Responses for calls that had just ended (the BYE's 200), absorbed.
    pub(super) responses_after_end: AtomicU64,
    pub(super) retransmissions: AtomicU64,
    pub(super) stateless: AtomicU64,
    pub(super) acks_unmatched: AtomicU64,
    pub(super) cancels: AtomicU64,
    pub(super) keepalives: AtomicU64,
    pub(super) connections: AtomicU64,
    pub(super) connections_refused: AtomicU64,
    pub(super) closed_on_error: AtomicU64,
    /// Connections closed after the idle time in silence.
    pub(super) closed_idle: AtomicU64,
    /// Connections closed because a message took longer than the partial
    /// time to arrive whole (a slow or stalled sender).
    pub(super) closed_slow: AtomicU64,
    pub(super) write_queue_full: AtomicU64,
    pub(super) tls_handshake_failures: AtomicU64,
    pub(super) trunk_connects: AtomicU64,
    pub(super) trunk_failures: AtomicU64,
    pub(super) trunk_pings_sent: AtomicU64,
    pub(super) trunk_pings_ok: AtomicU64,
    pub(super) calls: AtomicU64,
    pub(super) calls_refused: AtomicU64,
    pub(super) calls_ended: AtomicU64,
    /// Calls that ended by a BYE from either side (answered, then hung up).
    pub(super) calls_completed: AtomicU64,
    /// Calls the caller cancelled before the answer.
    pub(super) calls_cancelled: AtomicU64,
    /// Calls the callee refused.
    pub(super) calls_rejected: AtomicU64,
    /// Calls the gateway ended (media timeout, no ACK, shutdown, …).
    pub(super) calls_failed: AtomicU64,
    pub(super) calls_unrouted: AtomicU64,
    /// Calls ended by their phase's bound: no final answer within Timer
    /// C, no answer to a CANCEL, no ACK for an answer.
    pub(super) calls_timed_out: AtomicU64,
    pub(super) media_timeouts: AtomicU64,
    pub(super) relays_failed: AtomicU64,
    /// Calls refused at the call limit (or with no relay ports left).
    pub(super) refused_at_limit: AtomicU64,
    /// Calls to emergency numbers admitted.
    pub(super) emergency_calls: AtomicU64,
    /// Calls refused (503 with Retry-After) while the gateway drained.
    pub(super) refused_draining: AtomicU64,
    /// Requests from outside the PBX trunk's trusted addresses.
    pub(super) untrusted: AtomicU64,
    /// The PBX's INVITEs challenged for digest credentials (401).
    pub(super) auth_challenges: AtomicU64,
    /// The PBX's INVITEs with wrong credentials (403).
    pub(super) auth_failures: AtomicU64,
    /// Call records that could not be written.
    pub(super) cdrs_failed: AtomicU64,
    /// Forwarded re-INVITEs that met glare (491) and wait to be retried.
    pub(super) glare: AtomicU64,
    /// Relays the data plane last reported running (a gauge).
    pub(super) relays: AtomicU64,
    /// Relay port pairs another process held (set aside for a while).
    pub(super) ports_unbindable: AtomicU64,
    /// OPTIONS sent to the PBX (retransmissions included).
    pub(super) pbx_pings_sent: AtomicU64,
    /// Whether the PBX answers (a gauge: 0 not known yet, 1 yes, 2 lost).
    pub(super) pbx_trunk: AtomicU64,
    /// Media datagrams the data plane received (as its workers last
    /// reported, once a second).
    pub(super) media_received: AtomicU64,
    /// Media datagrams it sent.
    pub(super) media_sent: AtomicU64,
    /// Of those, sent as AF_XDP frames (the xdp backend's fast path).
    pub(super) media_sent_xdp: AtomicU64,
    /// Media datagrams that came in through the XDP program (xdp backend).
    pub(super) media_received_xdp: AtomicU64,
    /// Media datagrams the kernel dropped before the data plane saw them.
    pub(super) media_kernel_drops: AtomicU64,
    /// Media datagrams to a LAN leg from another source than its peer,
    /// dropped by the XDP program (xdp backend).
    pub(super) media_xdp_foreign_dropped: AtomicU64,
    /// Whether the gateway drains (a gauge: new calls get 503).
    pub(super) draining: AtomicU64,
    /// Media port pairs calls hold now (a gauge).
    pub(super) port_pairs_in_use: AtomicU64,
    /// Commands to the data plane waiting for room in a worker's full
    /// queue (a gauge: back-pressure now).
    pub(super) dataplane_commands_waiting: AtomicU64,
    /// Commands that had to wait for room (sent later, in order).
    pub(super) dataplane_commands_delayed: AtomicU64,
    /// New relays refused because their worker's queue was full (the
    /// call fails: `relays_failed`).
    pub(super) dataplane_relays_refused: AtomicU64,
    /// Commands refused because the waiting room was full too.
    pub(super) dataplane_commands_refused: AtomicU64,
    /// Events the workers dropped because the control plane did not take
    /// them in time.
    pub(super) dataplane_events_dropped: AtomicU64,
    /// Media drops by reason and by direction.
    pub(super) media_drops: std::sync::Mutex<MediaDrops>,
}

/// The data plane's drops as the admin API and `/metrics` show them.
#[derive(Debug, Default, Clone)]
pub struct MediaDrops {
    /// Every relay's drops by reason, as the workers last reported
    /// (running relays and ended ones).
    pub by_reason: pbxlink_dataplane::drops::DropCounters,
    /// Ended relays' drops by direction: from the PBX, from the cloud, and
    /// the relay's own (neither direction).
    pub from_pbx: pbxlink_dataplane::drops::DropCounters,
    /// See `from_pbx`.
    pub from_cloud: pbxlink_dataplane::drops::DropCounters,
    /// See `from_pbx`.
    pub relay: pbxlink_dataplane::drops::DropCounters,
}

impl Counters {
    /// Every counter by name, in a stable order.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        [
            ("requests", &self.requests),
            ("ok", &self.ok),
            ("not_implemented", &self.not_implemented),
            ("rejected", &self.rejected),
            ("dropped", &self.dropped),
            ("responses_ignored", &self.responses_ignored),
            ("responses_unmatched", &self.responses_unmatched),
            ("responses_after_end", &self.responses_after_end),
            ("retransmissions", &self.retransmissions),
            ("stateless", &self.stateless),
            ("acks_unmatched", &self.acks_unmatched),
            ("cancels", &self.cancels),
            ("keepalives", &self.keepalives),
            ("connections", &self.connections),
            ("connections_refused", &self.connections_refused),
            ("closed_on_error", &self.closed_on_error),
            ("closed_idle", &self.closed_idle),
            ("closed_slow", &self.closed_slow),
            ("write_queue_full", &self.write_queue_full),
            ("tls_handshake_failures", &self.tls_handshake_failures),
            ("trunk_connects", &self.trunk_connects),
            ("trunk_failures", &self.trunk_failures),
            ("trunk_pings_sent", &self.trunk_pings_sent),
            ("trunk_pings_ok", &self.trunk_pings_ok),
            ("calls", &self.calls),
            ("calls_refused", &self.calls_refused),
            ("calls_ended", &self.calls_ended),
            ("calls_completed", &self.calls_completed),
            ("calls_cancelled", &self.calls_cancelled),
            ("calls_rejected", &self.calls_rejected),
            ("calls_failed", &self.calls_failed),
            ("calls_unrouted", &self.calls_unrouted),
            ("calls_timed_out", &self.calls_timed_out),
            ("media_timeouts", &self.media_timeouts),
            ("relays_failed", &self.relays_failed),
            ("glare", &self.glare),
            ("refused_at_limit", &self.refused_at_limit),
            ("emergency_calls", &self.emergency_calls),
            ("refused_draining", &self.refused_draining),
            ("untrusted", &self.untrusted),
            ("auth_challenges", &self.auth_challenges),
            ("auth_failures", &self.auth_failures),
            ("cdrs_failed", &self.cdrs_failed),
            ("relays", &self.relays),
            ("ports_unbindable", &self.ports_unbindable),
            ("pbx_pings_sent", &self.pbx_pings_sent),
            ("pbx_trunk", &self.pbx_trunk),
            ("media_received", &self.media_received),
            ("media_sent", &self.media_sent),
            ("media_sent_xdp", &self.media_sent_xdp),
            ("media_received_xdp", &self.media_received_xdp),
            ("media_kernel_drops", &self.media_kernel_drops),
            ("media_xdp_foreign_dropped", &self.media_xdp_foreign_dropped),
            ("draining", &self.draining),
            ("port_pairs_in_use", &self.port_pairs_in_use),
            (
                "dataplane_commands_waiting",
                &self.dataplane_commands_waiting,
            ),
            (
                "dataplane_commands_delayed",
                &self.dataplane_commands_delayed,
            ),
            ("dataplane_relays_refused", &self.dataplane_relays_refused),
            (
                "dataplane_commands_refused",
                &self.dataplane_commands_refused,
            ),
            ("dataplane_events_dropped", &self.dataplane_events_dropped),
        ]
        .iter()
        .map(|(n, v)| (*n, v.load(Ordering::Relaxed)))
        .collect()
    }

    /// One counter by name (0 when there is none by that name).
    pub fn get(&self, name: &str) -> u64 {
        self.pairs()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| v)
    }

    /// Whether the PBX answers: 0 not known (or not asked), 1 yes, 2 lost.
    pub fn pbx_trunk(&self) -> u64 {
        self.pbx_trunk.load(Ordering::Relaxed)
    }

    /// The media drops so far.
    pub fn media_drops(&self) -> MediaDrops {
        self.media_drops.lock().expect("media drops").clone()
    }

    /// Whether the gateway drains.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed) != 0
    }

    /// Calls admitted and not yet ended.
    pub fn calls_in_progress(&self) -> u64 {
        let started = self.calls.load(Ordering::Relaxed);
        started.saturating_sub(self.calls_ended.load(Ordering::Relaxed))
    }

    pub fn line(&self) -> String {
        self.pairs()
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Counts one more of something.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

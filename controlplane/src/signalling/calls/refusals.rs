//! Answers the gateway gives instead of a call (busy, unavailable, the
//! call limit), counted and recorded; and the relay ports calls take and
//! give back.

use super::*;
use crate::cdr::{Cdr, Flow, rfc3339};
use pbxlink_b2bua::leg::Side;
use pbxlink_sip::normalize::Head;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

impl Calls {
    /// The response refusing an INVITE before it became a call, and its
    /// record.
    pub(super) fn refuse(
        &mut self,
        side: Side,
        head: &Head,
        code: u16,
        phrase: &str,
    ) -> Option<Vec<u8>> {
        self.refuse_with_reason(side, head, code, phrase, None)
    }

    /// A `503` refusing an INVITE for a reason the record and the log
    /// name (`Refused(503): the cloud trunk is down`).
    pub(super) fn unavailable(
        &mut self,
        side: Side,
        head: &Head,
        reason: &'static str,
    ) -> Option<Vec<u8>> {
        let to = head.start_line.split(' ').nth(1).unwrap_or_default();
        tracing::warn!(
            "call from the {} to {to} refused 503: {reason}",
            match side {
                Side::Pbx => "PBX",
                Side::Cloud => "cloud",
            }
        );
        self.refuse_with_reason(side, head, 503, "Service Unavailable", Some(reason))
    }

    pub(super) fn refuse_with_reason(
        &mut self,
        side: Side,
        head: &Head,
        code: u16,
        phrase: &str,
        reason: Option<&str>,
    ) -> Option<Vec<u8>> {
        self.refused(side, head, code, reason);
        pbxlink_b2bua::leg::Leg::from_invite(
            side,
            head,
            "refused".into(),
            String::new(),
            String::new(),
        )
        .map(|leg| leg.response(head, code, phrase, None))
    }

    /// The record of an INVITE refused before it became a call (number 0).
    pub(super) fn refused(&mut self, side: Side, head: &Head, code: u16, reason: Option<&str>) {
        let user = |v: &str| pbxlink_b2bua::call::user_of(pbxlink_b2bua::leg::uri_of(v)).to_owned();
        let now = rfc3339(SystemTime::now());
        let call_id = head.get("Call-ID").unwrap_or_default().to_owned();
        let (pbx_call_id, cloud_call_id) = match side {
            Side::Pbx => (call_id, String::new()),
            Side::Cloud => (String::new(), call_id),
        };
        let cdr = Cdr {
            call: 0,
            direction: crate::cdr::direction(side),
            pbx_call_id,
            cloud_call_id,
            from: user(head.get("From").unwrap_or_default()),
            to: user(head.start_line.split(' ').nth(1).unwrap_or_default()),
            codec: String::new(),
            start: now.clone(),
            answer: None,
            end: now,
            cause: match reason {
                Some(why) => format!("Refused({code}): {why}"),
                None => format!("Refused({code})"),
            },
            to_cloud: Flow::default(),
            to_pbx: Flow::default(),
            quality: None,
        };
        self.record(&cdr);
    }

    /// Writes a call's record (counted when it cannot be).
    pub(super) fn record(&mut self, cdr: &Cdr) {
        if let Some(q) = &cdr.quality {
            let poor_mos = self.cfg.quality.poor_mos;
            self.counters.quality.observe(q, poor_mos);
            if let Some(change) = self.poor.ended(Instant::now(), q.is_poor(poor_mos)) {
                self.poor_calls_changed(change);
            }
        }
        if let Some(log) = self.cdrs.as_mut() {
            if log.write(cdr).is_err() {
                self.counters.cdrs_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(events) = &self.events {
            events.emit("cdr", serde_json::to_value(cdr).unwrap_or_default());
        }
        if let Some(l) = &self.live {
            l.view.ended(cdr);
        }
    }

    /// The `poor_calls` alarm raised or cleared: on the page's list, in
    /// the log, and to the platform.
    pub(super) fn poor_calls_changed(&self, change: crate::poor_calls::Change) {
        use crate::alarms::POOR_CALLS;
        use crate::poor_calls::Change;
        let detail = change.detail();
        let raised = matches!(change, Change::Raised { .. });
        if raised {
            tracing::warn!("alarm raised: {POOR_CALLS}: {detail}");
        } else {
            tracing::info!("alarm cleared: {POOR_CALLS}: {detail}");
        }
        if let Some(alarms) = &self.alarms {
            if raised {
                alarms.raise(
                    POOR_CALLS,
                    "calls",
                    &detail,
                    crate::cdr::rfc3339(SystemTime::now()),
                );
            } else {
                alarms.clear(POOR_CALLS, "calls");
            }
        }
        if let Some(events) = &self.events {
            events.emit(
                "alarm",
                serde_json::json!({ "alarm": POOR_CALLS, "raised": raised, "detail": detail }),
            );
        }
    }

    /// A call's two port pairs (LAN leg, cloud leg), each bindable now:
    /// the SDP will name them, and the relay binding them later cannot
    /// change them. Pairs another process holds are set aside and counted;
    /// none is kept when the second cannot be found.
    pub(super) fn take_call_ports(&mut self, now: Instant) -> Option<(u16, u16)> {
        let ip = self.cfg.lan_ip;
        let free = |port: u16| std::net::UdpSocket::bind(SocketAddr::new(ip, port)).is_ok();
        let taken = self.ports.take_call(now, |p| free(p) && free(p + 1));
        self.counters
            .ports_unbindable
            .store(self.ports.unbindable_count(), Ordering::Relaxed);
        self.ports_changed();
        taken
    }

    /// Tells the counters how many port pairs calls hold (a soak shows it
    /// back at zero once the calls are over: none leaked).
    pub(super) fn ports_changed(&self) {
        self.counters
            .port_pairs_in_use
            .store(self.ports.in_use() as u64, Ordering::Relaxed);
    }

    /// Sets a pair another process holds aside (it rests like a freed
    /// one); the counter shows the pool's count.
    pub(super) fn set_aside(&mut self, now: Instant, rtp_port: u16) {
        self.ports.unbindable(now, rtp_port);
        self.counters
            .ports_unbindable
            .store(self.ports.unbindable_count(), Ordering::Relaxed);
    }
}

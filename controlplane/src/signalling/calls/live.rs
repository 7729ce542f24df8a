//! The calls' side of the admin page's live view ([`crate::live_calls`]):
//! while someone looks, each relayed call's figures are read from its
//! worker once a second (`ReadStats`, answered by an `Event::Stats` the
//! tick drains) and rated as its record would be; every ten seconds the
//! calls up and the packets relayed are sampled for the view's hour.

use super::Calls;
use crate::call_quality::CallQuality;
use crate::events::unix_ms as wall_ms;
use crate::live_calls::{LiveCall, REFRESH, SAMPLE};
use pbxlink_dataplane::control::Command;
use pbxlink_dataplane::relay::RelayStats;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

impl Calls {
    /// A relay's figures, asked for by [`Calls::live_tick`].
    pub(super) fn live_stats(&mut self, id: u64, stats: &RelayStats) {
        let Some(feed) = self.live.as_mut() else {
            return;
        };
        if let Some(a) = self.active.get(&id) {
            let q = CallQuality::of(stats, &self.cfg.quality, &a.codec);
            feed.quality.insert(id, q);
        }
    }

    /// Samples when due; while watched, asks the relays for their figures
    /// and lists the calls up with the last ones.
    pub(super) fn live_tick(&mut self, now: Instant) {
        let Some(feed) = self.live.as_mut() else {
            return;
        };
        if now >= feed.sample_at {
            feed.sample_at = now + SAMPLE;
            let up = self.active.values().filter(|a| a.relay).count() as u64;
            let sent = self.counters.media_sent.load(Ordering::Relaxed);
            feed.view.sample(wall_ms(), up, sent);
        }
        if !feed.view.watched(now) {
            // Nobody looks: the list goes, so that the next look never
            // shows calls gone meanwhile (an idle core may not tick until
            // its next sample; with calls up it ticks every 100 ms).
            if feed.read_at.take().is_some() {
                feed.quality.clear();
                feed.view.set_calls(Vec::new(), wall_ms());
            }
            return;
        }
        if feed.read_at.is_some_and(|at| now < at + REFRESH) {
            return;
        }
        feed.read_at = Some(now);
        feed.quality.retain(|id, _| self.active.contains_key(id));
        let mut calls = Vec::with_capacity(self.active.len());
        for (&id, a) in &self.active {
            if a.relay {
                // Refused when the worker's queue is full: counted there,
                // and the figures shown are the last ones.
                let _ = self.plane.command(id, Command::ReadStats { id });
            }
            let (from, to) = a.call.parties();
            calls.push(LiveCall {
                call: id,
                direction: crate::cdr::direction(a.call.caller_side()),
                from,
                to,
                start: crate::cdr::rfc3339(a.started),
                duration_s: a
                    .answered
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map_or(0, |d| d.as_secs()),
                pbx_media: a.pbx_media.map(|m| m.to_string()),
                cloud_media: a.cloud_media.map(|m| m.to_string()),
                codec: a.codec.clone(),
                quality: feed.quality.get(&id).copied(),
            });
        }
        calls.sort_by_key(|c| c.call);
        feed.view.set_calls(calls, wall_ms());
    }
}

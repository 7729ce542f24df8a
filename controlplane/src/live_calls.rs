//! What the admin page's live view shows (`GET /api/calls`): the calls up
//! now with their media figures as the relays last reported them, the
//! last 100 calls that ended with their records' quality, and an hour of
//! ten-second samples (calls up, packets relayed a second, how the calls
//! that ended rated). The calls' core writes it; the admin API reads it.
//!
//! Reading the relays' figures costs a command and an event per call, so
//! the core asks for them only while someone looks: each read of the view
//! keeps it watched for [`WATCHED_FOR`]. The samples are taken whether or
//! not anyone looks (a handful of numbers every ten seconds). Time is an
//! input: the core passes its `now` and the wall clock's milliseconds.

use crate::call_quality::CallQuality;
use crate::cdr::Cdr;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a read of the view keeps the relays' figures coming.
pub const WATCHED_FOR: Duration = Duration::from_secs(30);
/// How often the calls' figures are read while watched.
pub const REFRESH: Duration = Duration::from_secs(1);
/// One sample of the history.
pub const SAMPLE: Duration = Duration::from_secs(10);
/// Samples kept: an hour.
const SAMPLES: usize = 360;
/// Ended calls kept.
const RECENT: usize = 100;
/// Upper bounds of the MOS bands the history counts ended calls in (G.107
/// Annex B: nearly all users dissatisfied, many, some, satisfied; the
/// last band is everything above).
pub const MOS_BANDS: [f64; 4] = [2.58, 3.1, 3.6, 4.03];

/// One call up, as the view lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveCall {
    /// The gateway's number for the call.
    pub call: u64,
    /// `pbx-to-cloud` or `cloud-to-pbx`.
    pub direction: &'static str,
    /// Caller and callee.
    pub from: String,
    pub to: String,
    /// When the INVITE came (RFC 3339).
    pub start: String,
    /// Seconds since the answer (0 before it).
    pub duration_s: u64,
    /// Where the PBX and the cloud take the call's media.
    pub pbx_media: Option<String>,
    pub cloud_media: Option<String>,
    /// The voice codec's encoding name.
    pub codec: String,
    /// Its figures as the relay last reported them (none: not read yet).
    pub quality: Option<CallQuality>,
}

/// Ten seconds of the gateway.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Sample {
    /// When the sample ended (Unix ms).
    pub at_ms: u64,
    /// Calls up then.
    pub calls: u64,
    /// Packets the relays sent a second over the sample.
    pub packets_per_s: f64,
    /// Calls that ended in the sample with their worse direction's MOS in
    /// each band of [`MOS_BANDS`] (and above the last).
    pub mos: [u32; 5],
}

#[derive(Debug, Default)]
struct Board {
    watched_until: Option<Instant>,
    calls: Vec<LiveCall>,
    /// When `calls` was written (Unix ms).
    calls_at_ms: u64,
    recent: VecDeque<Cdr>,
    history: VecDeque<Sample>,
    /// The sample being counted: its ended calls' bands.
    ending: [u32; 5],
    /// The packet count at the last sample, and when (Unix ms).
    last_packets: Option<(u64, u64)>,
    /// `[quality] poor_mos`: the page marks directions under it.
    poor_mos: f64,
}

/// The live view's board.
#[derive(Debug, Default)]
pub struct LiveCalls {
    board: Mutex<Board>,
}

/// The band of a MOS in [`Sample::mos`].
fn band(mos: f64) -> usize {
    MOS_BANDS.iter().take_while(|&&b| mos >= b).count()
}

impl LiveCalls {
    fn with<T>(&self, f: impl FnOnce(&mut Board) -> T) -> T {
        let mut b = self.board.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut b)
    }

    /// Someone looks at the view: the calls' figures are read for the
    /// next [`WATCHED_FOR`]. Whether they were being read already (if
    /// not, the list is as old as the last look until the next tick).
    pub fn watch(&self, now: Instant) -> bool {
        self.with(|b| {
            let was = b.watched_until.is_some_and(|u| now < u);
            b.watched_until = Some(now + WATCHED_FOR);
            was
        })
    }

    /// The MOS under which a direction is poor (`[quality] poor_mos`).
    pub fn set_poor_mos(&self, mos: f64) {
        self.with(|b| b.poor_mos = mos);
    }

    /// Whether the calls' figures are wanted.
    pub fn watched(&self, now: Instant) -> bool {
        self.with(|b| b.watched_until.is_some_and(|u| now < u))
    }

    /// The calls up now.
    pub fn set_calls(&self, calls: Vec<LiveCall>, wall_ms: u64) {
        self.with(|b| {
            b.calls = calls;
            b.calls_at_ms = wall_ms;
        });
    }

    /// A call's record, written as it ended.
    pub fn ended(&self, cdr: &Cdr) {
        self.with(|b| {
            if let Some(q) = &cdr.quality {
                b.ending[band(q.to_cloud.mos.min(q.to_pbx.mos))] += 1;
            }
            if b.recent.len() == RECENT {
                b.recent.pop_front();
            }
            b.recent.push_back(cdr.clone());
        });
    }

    /// Closes a sample: `calls` up now, `packets` the relays' sent count
    /// so far.
    pub fn sample(&self, wall_ms: u64, calls: u64, packets: u64) {
        self.with(|b| {
            let packets_per_s = match b.last_packets {
                Some((p, at)) if wall_ms > at => {
                    packets.saturating_sub(p) as f64 * 1000.0 / (wall_ms - at) as f64
                }
                _ => 0.0,
            };
            b.last_packets = Some((packets, wall_ms));
            if b.history.len() == SAMPLES {
                b.history.pop_front();
            }
            b.history.push_back(Sample {
                at_ms: wall_ms,
                calls,
                packets_per_s: (packets_per_s * 10.0).round() / 10.0,
                mos: std::mem::take(&mut b.ending),
            });
        });
    }

    /// The view, newest ended call first.
    pub fn json(&self) -> Value {
        self.with(|b| {
            json!({
                "calls": b.calls,
                "calls_at_ms": b.calls_at_ms,
                "poor_mos": b.poor_mos,
                "recent": b.recent.iter().rev().collect::<Vec<_>>(),
                "history": {
                    "sample_s": SAMPLE.as_secs(),
                    "mos_bands": MOS_BANDS,
                    "samples": b.history,
                },
            })
        })
    }
}

/// What the calls' core keeps for the live view
/// (`signalling::calls::live` drives it).
#[derive(Debug)]
pub struct LiveFeed {
    pub view: std::sync::Arc<LiveCalls>,
    /// When the calls' figures were last asked for.
    pub read_at: Option<Instant>,
    /// When the next sample is due.
    pub sample_at: Instant,
    /// Each call's last rating (gone with the call).
    pub quality: std::collections::HashMap<u64, CallQuality>,
}

impl LiveFeed {
    pub fn new(view: std::sync::Arc<LiveCalls>, now: Instant, poor_mos: f64) -> Self {
        view.set_poor_mos(poor_mos);
        Self {
            view,
            read_at: None,
            sample_at: now + SAMPLE,
            quality: Default::default(),
        }
    }

    /// When the feed next needs the time.
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        match self.read_at {
            Some(at) if self.view.watched(now) => (at + REFRESH).min(self.sample_at),
            _ => self.sample_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::Flow;

    fn cdr(call: u64, mos: Option<(f64, f64)>) -> Cdr {
        Cdr {
            call,
            direction: "pbx-to-cloud",
            pbx_call_id: format!("p{call}"),
            cloud_call_id: format!("c{call}"),
            from: "201".into(),
            to: "301".into(),
            codec: "PCMA".into(),
            start: "2026-12-07T10:00:00.000Z".into(),
            answer: None,
            end: "2026-12-07T10:00:10.000Z".into(),
            cause: "Hangup(Pbx)".into(),
            to_cloud: Flow::default(),
            to_pbx: Flow::default(),
            quality: mos.map(|(a, b)| {
                let mut q = CallQuality::default();
                q.to_cloud.mos = a;
                q.to_pbx.mos = b;
                q
            }),
        }
    }

    #[test]
    fn the_view_is_read_only_while_watched() {
        let t = Instant::now();
        let v = LiveCalls::default();
        assert!(!v.watched(t));
        assert!(!v.watch(t), "not watched before");
        assert!(v.watch(t), "watched since");
        assert!(v.watched(t + WATCHED_FOR - Duration::from_millis(1)));
        assert!(!v.watched(t + WATCHED_FOR));
    }

    #[test]
    fn the_last_hundred_calls_are_kept_newest_first() {
        let v = LiveCalls::default();
        for n in 1..=130 {
            v.ended(&cdr(n, None));
        }
        let j = v.json();
        let recent = j["recent"].as_array().unwrap();
        assert_eq!(recent.len(), 100);
        assert_eq!(recent[0]["call"], 130);
        assert_eq!(recent[99]["call"], 31);
    }

    #[test]
    fn a_sample_counts_the_rate_and_the_ended_calls_worse_mos() {
        let v = LiveCalls::default();
        v.sample(10_000, 0, 1_000);
        v.ended(&cdr(1, Some((4.4, 3.0)))); // worse: 3.0, band 1
        v.ended(&cdr(2, Some((4.4, 4.3)))); // band 4
        v.ended(&cdr(3, Some((2.0, 4.3)))); // band 0
        v.ended(&cdr(4, None)); // no media: not rated
        v.sample(20_000, 3, 51_000);
        let j = v.json();
        let s = &j["history"]["samples"];
        assert_eq!(s[0]["packets_per_s"], 0.0, "no rate without a start");
        assert_eq!(s[1]["packets_per_s"], 5000.0);
        assert_eq!(s[1]["calls"], 3);
        assert_eq!(s[1]["mos"], json!([1, 1, 0, 0, 1]));
        v.sample(30_000, 3, 51_000);
        assert_eq!(
            v.json()["history"]["samples"][2]["mos"],
            json!([0, 0, 0, 0, 0])
        );
        assert_eq!(band(3.6), 3, "a band's bound is in the band above");
    }

    #[test]
    fn an_hour_of_samples_is_kept() {
        let v = LiveCalls::default();
        for n in 0..400u64 {
            v.sample(n * 10_000, n, n);
        }
        let j = v.json();
        let s = j["history"]["samples"].as_array().unwrap();
        assert_eq!(s.len(), SAMPLES);
        assert_eq!(s[0]["calls"], 40);
    }
}

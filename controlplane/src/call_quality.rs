//! A call's media quality as its record carries it, per leg and direction,
//! from the relay's final figures: what the gateway measured of each far
//! end's stream (received, lost, late, RFC 3550 jitter), what each far end
//! reported of the stream the gateway sent it (its RTCP reception reports),
//! and each leg's round trip (SR → RR through the gateway); and per
//! direction of the call a G.107 rating and MOS (see [`Score`]). Times in
//! milliseconds, loss in percent.

use crate::config::QualitySettings;
use crate::latency::Latency;
use pbxlink_dataplane::quality::LegQuality;
use pbxlink_dataplane::relay::RelayStats;
use pbxlink_dataplane::stats::StreamSummary;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// Both legs of a call, and the score of each direction.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct CallQuality {
    /// Between the PBX and the gateway.
    pub pbx_leg: Leg,
    /// Between the gateway and the cloud.
    pub cloud_leg: Leg,
    /// PBX → cloud: what the cloud's user hears of the PBX's.
    pub to_cloud: Score,
    /// Cloud → PBX.
    pub to_pbx: Score,
    /// The codec figures (G.113 Appendix I) the scores were rated with
    /// ([`crate::emodel::Codec::of_encoding`]).
    pub rated_as: &'static str,
}

/// One direction of a call rated by the G.107 E-model ([`crate::emodel`])
/// from what the gateway knows of it end to end: the loss of both hops
/// (the one it measured coming in, the one the far end reported going
/// out); the packets the receiver's de-jitter buffer (`[quality]
/// jitter_buffer_ms`) would discard as late, at the worse hop's jitter
/// ([`crate::emodel::late_discard_percent`]); and a one-way delay of half
/// of both legs' round trips (a leg with no round trip counts nothing)
/// plus that buffer plus one 20 ms packet. The codec's impairment and loss
/// robustness are G.113 Appendix I's for the call's codec (G.711 with
/// concealment, Ie 0 and Bpl 25.1, for one not in its table). Everything
/// else keeps G.107's defaults.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Score {
    /// The network's loss, percent (both hops).
    pub loss_percent: f64,
    /// Of what arrived, the share a receiver's de-jitter buffer discards
    /// as late, percent (estimated from the jitter).
    pub late_percent: f64,
    /// The one-way delay rated, ms.
    pub delay_ms: f64,
    /// Transmission rating R, 0–100.
    pub r: f64,
    /// MOS-CQ, 1–4.5.
    pub mos: f64,
}

/// One packet, the least a receiver buffers, ms.
const PACKET_MS: f64 = 20.0;

impl Score {
    /// `inbound` the first hop as measured here, `outbound` the second as
    /// its receiver reported it, `sent` the packets sent on that hop;
    /// `rtt_ms` both legs' round trips.
    fn of(
        inbound: &Received,
        outbound: Option<&Reported>,
        sent: u64,
        rtt_ms: [Option<Spread>; 2],
        model: &QualitySettings,
        codec: crate::emodel::Codec,
    ) -> Self {
        let first = inbound.loss_percent.clamp(0.0, 100.0) / 100.0;
        let second = outbound
            .map(|o| {
                if sent == 0 {
                    o.loss_percent
                } else {
                    o.lost.max(0) as f64 * 100.0 / sent as f64
                }
            })
            .unwrap_or(0.0)
            .clamp(0.0, 100.0)
            / 100.0;
        let loss_percent = (1.0 - (1.0 - first) * (1.0 - second)) * 100.0;
        // The call's mean where measured here; a far end's last report.
        let jitter = outbound
            .map_or(0.0, |o| o.jitter_ms)
            .max(inbound.jitter_avg_ms);
        let buffer = f64::from(model.jitter_buffer_ms);
        let late_percent = crate::emodel::late_discard_percent(jitter, buffer);
        let unheard = 1.0 - (1.0 - loss_percent / 100.0) * (1.0 - late_percent / 100.0);
        let network: f64 = rtt_ms.iter().flatten().map(|s| s.avg / 2.0).sum();
        let delay_ms = network + buffer + PACKET_MS;
        let r = crate::emodel::rating(&crate::emodel::Conditions {
            delay_ms,
            loss_percent: unheard * 100.0,
            burst_ratio: 1.0,
            codec,
        });
        Self {
            loss_percent: r2(loss_percent),
            late_percent: r2(late_percent),
            delay_ms: r2(delay_ms),
            r: r2(r),
            mos: r2(crate::emodel::mos(r)),
        }
    }
}

/// One leg.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Leg {
    /// Toward the gateway: the far end's stream as the gateway received it.
    pub inbound: Received,
    /// Away from the gateway: the far end's own reports on what it got
    /// (none when it sent no RTCP report).
    pub outbound: Option<Reported>,
    /// The leg's round trip, when an SR and its report passed.
    pub rtt_ms: Option<Spread>,
    /// What the far end said of its own hearing in RTCP XR VoIP metrics
    /// (none when it sent none).
    pub xr: Option<FarEndMetrics>,
}

/// A far end's last RTCP XR VoIP metrics block (RFC 3611 §4.7) on the
/// stream the gateway sent it: what its jitter buffer and codec made of
/// it. A figure the far end gave as unavailable (127) is none.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct FarEndMetrics {
    /// Blocks received.
    pub reports: u64,
    /// Lost in the network, percent.
    pub loss_percent: f64,
    /// Discarded by its jitter buffer, percent.
    pub discard_percent: f64,
    /// Its round trip to the other end point, ms.
    pub round_trip_ms: u16,
    /// Its own delay (buffer, codec), ms.
    pub end_system_delay_ms: u16,
    /// Its jitter buffer's nominal delay, ms.
    pub jitter_buffer_ms: u16,
    /// Its R factor.
    pub r: Option<u8>,
    /// Its MOS, listening quality and conversational.
    pub mos_lq: Option<f64>,
    pub mos_cq: Option<f64>,
}

impl FarEndMetrics {
    fn of(q: &LegQuality) -> Option<Self> {
        let m = &q.xr;
        let given = |v: u8| (v != 127).then_some(v);
        (q.xr_reports > 0).then(|| Self {
            reports: q.xr_reports,
            loss_percent: r2(f64::from(m.loss_rate) * 100.0 / 256.0),
            discard_percent: r2(f64::from(m.discard_rate) * 100.0 / 256.0),
            round_trip_ms: m.round_trip_ms,
            end_system_delay_ms: m.end_system_delay_ms,
            jitter_buffer_ms: m.jb_nominal_ms,
            r: given(m.r_factor),
            mos_lq: given(m.mos_lq).map(|v| f64::from(v) / 10.0),
            mos_cq: given(m.mos_cq).map(|v| f64::from(v) / 10.0),
        })
    }
}

/// A stream as the gateway received it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Received {
    /// Packets received.
    pub packets: u64,
    /// Sequence gaps: expected less received (RFC 3550 A.3).
    pub lost: i64,
    /// `lost` over expected, percent.
    pub loss_percent: f64,
    /// Packets late or duplicated.
    pub late: u64,
    /// Interarrival jitter at the end, ms.
    pub jitter_ms: f64,
    /// Its mean over the call, ms.
    pub jitter_avg_ms: f64,
    /// The most the jitter was, ms.
    pub jitter_max_ms: f64,
}

/// A stream as its receiver reported it (its RTCP reception reports).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Reported {
    /// Reports received.
    pub reports: u64,
    /// Its last cumulative loss.
    pub lost: i64,
    /// Its last fraction lost, percent.
    pub loss_percent: f64,
    /// The most any report said, percent.
    pub loss_max_percent: f64,
    /// Its last jitter, ms.
    pub jitter_ms: f64,
    /// The most any report said, ms.
    pub jitter_max_ms: f64,
}

/// Least, mean and most.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Spread {
    /// Least.
    pub min: f64,
    /// Mean.
    pub avg: f64,
    /// Most.
    pub max: f64,
}

/// Rounds to 0.01 (records stay readable).
fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// RTP units at `clock_hz` in ms (an unknown clock: 8 kHz, G.711's).
fn rtp_ms(units: u32, clock_hz: u32) -> f64 {
    let hz = if clock_hz == 0 { 8000 } else { clock_hz };
    r2(units as f64 * 1000.0 / hz as f64)
}

impl Received {
    fn of(s: &StreamSummary) -> Self {
        let loss = if s.expected == 0 {
            0.0
        } else {
            (s.lost.max(0) as f64) * 100.0 / s.expected as f64
        };
        Self {
            packets: s.received,
            lost: s.lost,
            loss_percent: r2(loss),
            late: s.late,
            jitter_ms: rtp_ms(s.jitter, s.clock_rate_hz),
            jitter_avg_ms: rtp_ms(s.jitter_mean, s.clock_rate_hz),
            jitter_max_ms: rtp_ms(s.jitter_max, s.clock_rate_hz),
        }
    }
}

impl Leg {
    /// `inbound` measured here; `q` from the far end's reports on the
    /// stream sent to it, clocked at `out_clock_hz`.
    fn of(inbound: &StreamSummary, q: &LegQuality, out_clock_hz: u32) -> Self {
        let outbound = (q.reports > 0).then(|| Reported {
            reports: q.reports,
            lost: q.cumulative_lost as i64,
            loss_percent: r2(q.fraction_lost as f64 * 100.0 / 256.0),
            loss_max_percent: r2(q.fraction_lost_max as f64 * 100.0 / 256.0),
            jitter_ms: rtp_ms(q.jitter, out_clock_hz),
            jitter_max_ms: rtp_ms(q.jitter_max, out_clock_hz),
        });
        let rtt_ms = q.rtt_mean_us().map(|mean| Spread {
            min: r2(q.rtt_min_us as f64 / 1000.0),
            avg: r2(mean as f64 / 1000.0),
            max: r2(q.rtt_max_us as f64 / 1000.0),
        });
        Self {
            inbound: Received::of(inbound),
            outbound,
            rtt_ms,
            xr: FarEndMetrics::of(q),
        }
    }
}

impl CallQuality {
    /// Whether either direction rates under `poor_mos`.
    pub fn is_poor(&self, poor_mos: f64) -> bool {
        self.to_cloud.mos < poor_mos || self.to_pbx.mos < poor_mos
    }

    /// From a relay's figures and the call's codec (its SDP encoding
    /// name). The stream the gateway sends a far end is the other far
    /// end's, so its clock is that one's.
    pub fn of(stats: &RelayStats, model: &QualitySettings, codec: &str) -> Self {
        let (model_codec, rated_as) = crate::emodel::Codec::of_encoding(codec);
        let pbx_leg = Leg::of(
            &stats.from_pbx,
            &stats.pbx_leg,
            stats.from_cloud.clock_rate_hz,
        );
        let cloud_leg = Leg::of(
            &stats.from_cloud,
            &stats.cloud_leg,
            stats.from_pbx.clock_rate_hz,
        );
        let rtt = [pbx_leg.rtt_ms, cloud_leg.rtt_ms];
        Self {
            to_cloud: Score::of(
                &pbx_leg.inbound,
                cloud_leg.outbound.as_ref(),
                stats.lan_to_cloud.rtp_out,
                rtt,
                model,
                model_codec,
            ),
            to_pbx: Score::of(
                &cloud_leg.inbound,
                pbx_leg.outbound.as_ref(),
                stats.cloud_to_lan.rtp_out,
                rtt,
                model,
                model_codec,
            ),
            pbx_leg,
            cloud_leg,
            rated_as,
        }
    }
}

/// MOS buckets: G.107 Annex B's bands (4.34 very satisfied, 4.03
/// satisfied, 3.6 some users dissatisfied, 3.1 many, 2.58 nearly all).
const MOS_BUCKETS: [f64; 9] = [1.5, 2.0, 2.58, 3.1, 3.6, 4.03, 4.2, 4.34, 4.5];
/// Jitter buckets, seconds.
const JITTER_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5];
/// Loss buckets, ratio.
const LOSS_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5];

/// Quality over the calls that ended, for `/metrics`: a histogram of each
/// direction's MOS, of each leg's and way's jitter and loss, and the poor
/// calls (a direction under `[quality] poor_mos`).
#[derive(Debug)]
pub struct QualityMetrics {
    mos: [Latency; 2],
    jitter: [Latency; 4],
    loss: [Latency; 4],
    poor: [AtomicU64; 2],
}

impl Default for QualityMetrics {
    fn default() -> Self {
        let h = |b: &'static [f64]| Latency::new(b);
        Self {
            mos: [h(&MOS_BUCKETS), h(&MOS_BUCKETS)],
            jitter: std::array::from_fn(|_| h(&JITTER_BUCKETS)),
            loss: std::array::from_fn(|_| h(&LOSS_BUCKETS)),
            poor: Default::default(),
        }
    }
}

/// Directions, as labelled.
const DIRECTIONS: [&str; 2] = ["to_cloud", "to_pbx"];
/// Leg and way of each hop, as labelled: the way is seen from the gateway
/// (in: measured here; out: the far end's reports).
const HOPS: [(&str, &str); 4] = [
    ("pbx", "in"),
    ("pbx", "out"),
    ("cloud", "in"),
    ("cloud", "out"),
];

impl QualityMetrics {
    /// Counts a call that ended with these figures.
    pub fn observe(&self, q: &CallQuality, poor_mos: f64) {
        for (i, s) in [q.to_cloud, q.to_pbx].iter().enumerate() {
            self.mos[i].observe_value(s.mos);
            if s.mos < poor_mos {
                self.poor[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        for (i, leg) in [q.pbx_leg, q.cloud_leg].iter().enumerate() {
            self.jitter[2 * i].observe_value(leg.inbound.jitter_avg_ms / 1000.0);
            self.loss[2 * i].observe_value(leg.inbound.loss_percent / 100.0);
            if let Some(out) = leg.outbound {
                self.jitter[2 * i + 1].observe_value(out.jitter_ms / 1000.0);
                self.loss[2 * i + 1].observe_value(out.loss_percent / 100.0);
            }
        }
    }

    /// Poor calls so far, per direction.
    pub fn poor(&self) -> [u64; 2] {
        [0, 1].map(|i| self.poor[i].load(Ordering::Relaxed))
    }

    /// The families in Prometheus text.
    pub fn prometheus(&self, out: &mut String) {
        let name = "pbxlink_call_mos";
        out.push_str(&format!(
            "# HELP {name} Each ended call's MOS-CQ per direction (G.107 E-model).\n# TYPE {name} histogram\n"
        ));
        for (h, d) in self.mos.iter().zip(DIRECTIONS) {
            h.series(out, name, &format!("direction=\"{d}\""));
        }
        let name = "pbxlink_call_poor_total";
        out.push_str(&format!(
            "# HELP {name} Calls that ended with a direction's MOS under [quality] poor_mos.\n# TYPE {name} counter\n"
        ));
        for (n, d) in self.poor().iter().zip(DIRECTIONS) {
            out.push_str(&format!("{name}{{direction=\"{d}\"}} {n}\n"));
        }
        for (name, help, hs) in [
            (
                "pbxlink_call_jitter_seconds",
                "Each ended call's jitter per leg: way=\"in\" measured by the gateway, way=\"out\" as the far end reported it.",
                &self.jitter,
            ),
            (
                "pbxlink_call_loss_ratio",
                "Each ended call's packet loss per leg: way=\"in\" measured by the gateway, way=\"out\" as the far end reported it.",
                &self.loss,
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
            for (h, (leg, way)) in hs.iter().zip(HOPS) {
                h.series(out, name, &format!("leg=\"{leg}\",way=\"{way}\""));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_become_milliseconds_and_percent_per_leg_and_direction() {
        let stats = RelayStats {
            from_pbx: StreamSummary {
                clock_rate_hz: 8000,
                received: 1000,
                expected: 1000,
                lost: 0,
                late: 0,
                jitter: 8,
                jitter_max: 16,
                jitter_mean: 8,
            },
            from_cloud: StreamSummary {
                clock_rate_hz: 8000,
                received: 970,
                expected: 1000,
                lost: 30,
                late: 4,
                jitter: 320,
                jitter_max: 400,
                jitter_mean: 240,
            },
            cloud_leg: LegQuality {
                reports: 3,
                fraction_lost: 8,
                fraction_lost_max: 13,
                cumulative_lost: 25,
                jitter: 80,
                jitter_max: 160,
                rtt_samples: 2,
                rtt_last_us: 60_000,
                rtt_min_us: 40_000,
                rtt_max_us: 60_000,
                rtt_sum_us: 100_000,
                ..LegQuality::default()
            },
            ..RelayStats::default()
        };
        let q = CallQuality::of(&stats, &QualitySettings::default(), "PCMA");
        let cloud_in = q.cloud_leg.inbound;
        assert_eq!(
            (cloud_in.packets, cloud_in.lost, cloud_in.late),
            (970, 30, 4)
        );
        assert_eq!(cloud_in.loss_percent, 3.0);
        assert_eq!(
            (
                cloud_in.jitter_ms,
                cloud_in.jitter_avg_ms,
                cloud_in.jitter_max_ms
            ),
            (40.0, 30.0, 50.0)
        );
        let out = q.cloud_leg.outbound.unwrap();
        assert_eq!((out.reports, out.lost), (3, 25));
        assert_eq!((out.loss_percent, out.loss_max_percent), (3.13, 5.08));
        assert_eq!((out.jitter_ms, out.jitter_max_ms), (10.0, 20.0));
        assert_eq!(
            q.cloud_leg.rtt_ms,
            Some(Spread {
                min: 40.0,
                avg: 50.0,
                max: 60.0
            })
        );
        // The PBX sent no report: its outbound side and round trip unknown.
        assert_eq!(q.pbx_leg.outbound, None);
        assert_eq!(q.pbx_leg.rtt_ms, None);
        assert_eq!(q.pbx_leg.inbound.jitter_ms, 1.0);
        // PBX → cloud: no loss coming in, 25 of the 0 sent reported lost
        // going out (no count sent: the report's last fraction, 3.13 %);
        // cloud → PBX: 3 % measured, the PBX reported nothing.
        assert_eq!(q.to_cloud.loss_percent, 3.13);
        assert_eq!(q.to_pbx.loss_percent, 3.0);
        // Delay: half the cloud leg's 50 ms round trip, the 40 ms buffer,
        // one packet. At 30 ms of jitter the buffer lets 6.62 % go late:
        // with the 3 % lost, 9.4 % unheard: a poor call.
        assert_eq!(q.to_pbx.delay_ms, 25.0 + 40.0 + 20.0);
        assert_eq!(q.to_pbx.late_percent, 6.62);
        assert!(q.to_pbx.mos < 3.6 && q.to_pbx.mos > 2.5, "{:?}", q.to_pbx);
        assert!(q.is_poor(3.6), "{:?}", q.to_pbx);
        println!("{:?}", q.to_pbx);
        // PBX → cloud: the cloud reported 10 ms of jitter: nothing late.
        assert_eq!(q.to_cloud.late_percent, 0.0);
        let json = serde_json::to_value(q).unwrap();
        assert_eq!(json["cloud_leg"]["inbound"]["loss_percent"], 3.0);
        assert!(json["pbx_leg"]["outbound"].is_null());
        assert!(json["to_pbx"]["mos"].as_f64().is_some());
        // Into the metrics: the cloud's inbound 3 % loss and 30 ms jitter.
        let m = QualityMetrics::default();
        m.observe(&q, 3.6);
        let mut text = String::new();
        m.prometheus(&mut text);
        for line in [
            "pbxlink_call_loss_ratio_bucket{leg=\"cloud\",way=\"in\",le=\"0.02\"} 0\n",
            "pbxlink_call_loss_ratio_bucket{leg=\"cloud\",way=\"in\",le=\"0.03\"} 1\n",
            "pbxlink_call_jitter_seconds_bucket{leg=\"cloud\",way=\"in\",le=\"0.03\"} 1\n",
            "pbxlink_call_jitter_seconds_bucket{leg=\"cloud\",way=\"in\",le=\"0.02\"} 0\n",
            "pbxlink_call_jitter_seconds_count{leg=\"pbx\",way=\"out\"} 0\n",
            "pbxlink_call_mos_count{direction=\"to_pbx\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn a_clean_call_scores_g107s_default_less_its_packet() {
        let clean = StreamSummary {
            clock_rate_hz: 8000,
            received: 500,
            expected: 500,
            ..StreamSummary::default()
        };
        let q = CallQuality::of(
            &RelayStats {
                from_pbx: clean,
                from_cloud: clean,
                ..RelayStats::default()
            },
            &QualitySettings::default(),
            "PCMA",
        );
        for s in [q.to_cloud, q.to_pbx] {
            assert_eq!(
                (s.loss_percent, s.late_percent, s.delay_ms),
                (0.0, 0.0, 60.0)
            );
            assert!(s.mos >= 4.35, "{s:?}");
        }
        assert!(!q.is_poor(3.6));
    }

    #[test]
    fn loss_alone_is_fair_and_jitter_beyond_the_buffer_makes_it_poor() {
        let stream = |lost: u64, jitter: u32| StreamSummary {
            clock_rate_hz: 8000,
            received: 1000 - lost,
            expected: 1000,
            lost: lost as i64,
            jitter_mean: jitter,
            ..StreamSummary::default()
        };
        let rate = |lost, jitter| {
            CallQuality::of(
                &RelayStats {
                    from_pbx: stream(0, 0),
                    from_cloud: stream(lost, jitter),
                    ..RelayStats::default()
                },
                &QualitySettings::default(),
                "PCMA",
            )
            .to_pbx
        };
        // 3 % lost, 1 ms of jitter; then 30 ms (240 units at 8 kHz).
        let (fair, poor) = (rate(30, 8), rate(30, 240));
        println!("3 % alone: {fair:?}; with 30 ms of jitter: {poor:?}");
        assert!(fair.mos > 3.9 && fair.late_percent == 0.0, "{fair:?}");
        assert!(poor.mos < 3.6, "{poor:?}");
    }

    #[test]
    fn a_far_ends_xr_metrics_are_in_its_leg_and_unavailable_ones_are_none() {
        let mut q = LegQuality {
            xr_reports: 2,
            ..LegQuality::default()
        };
        q.xr.loss_rate = 8;
        q.xr.discard_rate = 128;
        q.xr.r_factor = 127;
        q.xr.mos_cq = 38;
        q.xr.mos_lq = 127;
        q.xr.jb_nominal_ms = 40;
        let m = FarEndMetrics::of(&q).unwrap();
        assert_eq!(
            (m.reports, m.loss_percent, m.discard_percent),
            (2, 3.13, 50.0)
        );
        assert_eq!((m.r, m.mos_lq, m.mos_cq), (None, None, Some(3.8)));
        assert_eq!(m.jitter_buffer_ms, 40);
        assert_eq!(FarEndMetrics::of(&LegQuality::default()), None);
    }

    #[test]
    fn the_calls_codec_sets_its_impairment() {
        let clean = StreamSummary {
            clock_rate_hz: 8000,
            received: 500,
            expected: 500,
            ..StreamSummary::default()
        };
        let stats = RelayStats {
            from_pbx: clean,
            from_cloud: clean,
            ..RelayStats::default()
        };
        let g711 = CallQuality::of(&stats, &QualitySettings::default(), "PCMU");
        let g729 = CallQuality::of(&stats, &QualitySettings::default(), "G729");
        assert_eq!(g729.rated_as, "G.729A with VAD");
        assert!((g711.to_pbx.r - g729.to_pbx.r - 11.0).abs() < 0.02, "Ie 11");
        let wide = CallQuality::of(&stats, &QualitySettings::default(), "G722");
        assert_eq!(wide.to_pbx, g711.to_pbx);
        assert!(wide.rated_as.contains("rated as G.711"));
    }
}

//! `[quality]`: how calls are rated (the E-model's receiver) and when poor
//! calls raise an alarm.

use super::defaults::{jitter_buffer_ms, poor_alarm_min_calls, poor_alarm_percent, poor_mos};
use serde::Deserialize;

/// `[quality]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QualitySection {
    /// A direction rated under this MOS makes a poor call.
    #[serde(default = "poor_mos")]
    pub(super) poor_mos: f64,
    /// The receivers' de-jitter buffer the rating assumes, ms.
    #[serde(default = "jitter_buffer_ms")]
    pub(super) jitter_buffer_ms: u32,
    /// The share of poor calls over 15 minutes that raises `poor_calls`.
    #[serde(default = "poor_alarm_percent")]
    pub(super) poor_alarm_percent: f64,
    /// Calls ended in those 15 minutes before the share is judged.
    #[serde(default = "poor_alarm_min_calls")]
    pub(super) poor_alarm_min_calls: u32,
}

impl Default for QualitySection {
    fn default() -> Self {
        Self {
            poor_mos: poor_mos(),
            jitter_buffer_ms: jitter_buffer_ms(),
            poor_alarm_percent: poor_alarm_percent(),
            poor_alarm_min_calls: poor_alarm_min_calls(),
        }
    }
}

/// How calls are rated, and when poor ones raise the alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualitySettings {
    /// A direction rated under this MOS makes a poor call.
    pub poor_mos: f64,
    /// The de-jitter buffer the rating assumes at each receiver, ms: its
    /// delay is rated, and packets later than it count lost.
    pub jitter_buffer_ms: u32,
    /// The share of poor calls (percent) over 15 minutes that raises the
    /// `poor_calls` alarm; under it, the alarm clears.
    pub poor_alarm_percent: f64,
    /// Calls ended in the window before the share is judged.
    pub poor_alarm_min_calls: u32,
}

impl Default for QualitySettings {
    fn default() -> Self {
        quality_settings(&QualitySection::default(), &mut Vec::new())
    }
}

pub(super) fn quality_settings(q: &QualitySection, problems: &mut Vec<String>) -> QualitySettings {
    if !(1.0..=4.5).contains(&q.poor_mos) {
        problems.push(format!(
            "[quality] poor_mos = {}: a MOS from 1 to 4.5 (3.6, the default, is where some users are dissatisfied)",
            q.poor_mos
        ));
    }
    if q.jitter_buffer_ms > 1000 {
        problems.push(format!(
            "[quality] jitter_buffer_ms = {}: from 0 to 1000 (40 by default)",
            q.jitter_buffer_ms
        ));
    }
    if !(q.poor_alarm_percent > 0.0 && q.poor_alarm_percent <= 100.0) {
        problems.push(format!(
            "[quality] poor_alarm_percent = {}: over 0, at most 100 (20 by default)",
            q.poor_alarm_percent
        ));
    }
    if !(1..=100_000).contains(&q.poor_alarm_min_calls) {
        problems.push(format!(
            "[quality] poor_alarm_min_calls = {}: from 1 to 100000 (10 by default)",
            q.poor_alarm_min_calls
        ));
    }
    QualitySettings {
        poor_mos: q.poor_mos,
        jitter_buffer_ms: q.jitter_buffer_ms,
        poor_alarm_percent: q.poor_alarm_percent,
        poor_alarm_min_calls: q.poor_alarm_min_calls,
    }
}

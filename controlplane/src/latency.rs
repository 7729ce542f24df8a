//! A latency histogram the way Prometheus reads one: fixed buckets
//! (seconds, cumulative on output), a sum and a count, all atomics, so
//! any task may observe and `/metrics` may read without a lock. The same
//! holds other values (a MOS, a loss ratio) in their own unit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (`+Inf` follows).
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Finer bounds for what the gateway itself adds (a message in to its
/// counterpart out: well under a millisecond when all is well), in seconds.
pub const FINE_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// A histogram of [`FINE_BUCKETS`]: what the gateway adds to a step.
#[derive(Debug)]
pub struct Added(pub Latency);

impl Default for Added {
    fn default() -> Self {
        Self(Latency::new(&FINE_BUCKETS))
    }
}

/// One histogram.
#[derive(Debug)]
pub struct Latency {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new(&BUCKETS)
    }
}

impl Latency {
    /// An empty histogram with these bucket bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        self.observe_value(took.as_secs_f64());
    }

    /// Counts one observation of a value in the bounds' unit (a MOS, a
    /// ratio); a negative or non-finite one counts as 0.
    pub fn observe_value(&self, v: f64) {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6).round() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The histogram in Prometheus text (with its HELP and TYPE lines).
    pub fn prometheus(&self, name: &str, help: &str) -> String {
        let mut out = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        self.series(&mut out, name, "");
        out
    }

    /// The histogram's samples in Prometheus text, each with `labels`
    /// (`step="invite"`; empty: none) before `le`: one series of a family
    /// whose HELP and TYPE lines the caller writes.
    pub fn series(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut below = 0;
        for (b, n) in self.bounds.iter().zip(self.buckets.iter()) {
            below += n.load(Ordering::Relaxed);
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {below}\n"
            ));
        }
        let count = self.count();
        out.push_str(&format!(
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}\n"
        ));
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        out.push_str(&format!(
            "{name}_sum{braces} {}\n{name}_count{braces} {count}\n",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inf_holds_everything() {
        let h = Latency::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(9));
        let text = h.prometheus("x_seconds", "test");
        assert!(text.contains("x_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("x_seconds_count 3\n"));
        assert!(text.contains("x_seconds_sum 9.0305\n"));
    }

    #[test]
    fn a_labelled_series_puts_its_labels_before_le() {
        let h = Latency::new(&FINE_BUCKETS);
        h.observe(Duration::from_micros(180));
        let mut text = String::new();
        h.series(&mut text, "y_seconds", "step=\"invite\"");
        assert!(text.contains("y_seconds_bucket{step=\"invite\",le=\"0.0001\"} 0\n"));
        assert!(text.contains("y_seconds_bucket{step=\"invite\",le=\"0.00025\"} 1\n"));
        assert!(text.contains("y_seconds_bucket{step=\"invite\",le=\"+Inf\"} 1\n"));
        assert!(text.contains("y_seconds_count{step=\"invite\"} 1\n"));
    }
}

//! A latency histogram the way Prometheus reads one: fixed buckets
//! (seconds, cumulative on output), a sum and a count, all atomics, so
//! any task may observe and `/metrics` may read without a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (`+Inf` follows).
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// One histogram.
#[derive(Debug, Default)]
pub struct Latency {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Latency {
    /// Counts one observation.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The histogram in Prometheus text (with its HELP and TYPE lines).
    pub fn prometheus(&self, name: &str, help: &str) -> String {
        let mut out = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut below = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            below += n.load(Ordering::Relaxed);
            out.push_str(&format!("{name}_bucket{{le=\"{b}\"}} {below}\n"));
        }
        let count = self.count();
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {count}\n"));
        out.push_str(&format!(
            "{name}_sum {}\n{name}_count {count}\n",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
        out
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
}

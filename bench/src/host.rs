//! The host's CPU time from /proc/stat: how busy the machine was over a
//! run, and how much of it the hypervisor took (steal), so that a figure
//! measured on a shared VM says what the machine was doing meanwhile.

/// CPU time of all cores (or one), in clock ticks, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Ticks spent running anything (all but idle and iowait).
    pub busy: u64,
    /// Every tick, steal included.
    pub all: u64,
    /// Ticks the hypervisor ran something else while this guest's CPU
    /// had work: time a runnable thread waited with no fault of its own.
    pub steal: u64,
}

impl CpuTimes {
    /// All cores together (the `cpu` line).
    pub fn now() -> CpuTimes {
        Self::read("cpu ")
    }

    /// One core (the `cpuN` line); zeros if there is no such core.
    pub fn core(cpu: usize) -> CpuTimes {
        Self::read(&format!("cpu{cpu} "))
    }

    fn read(prefix: &str) -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(prefix))
            .map(Self::parse)
            .unwrap_or_default()
    }

    /// One `/proc/stat` cpu line: user nice system idle iowait irq
    /// softirq steal (guest time is inside user already).
    pub fn parse(line: &str) -> CpuTimes {
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let all: u64 = v.iter().take(8).sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        CpuTimes {
            busy: all.saturating_sub(idle),
            all,
            steal: v.get(7).copied().unwrap_or(0),
        }
    }

    /// Of the time between `self` and a later reading, the share busy
    /// (percent).
    pub fn busy_percent(&self, later: &CpuTimes) -> f64 {
        later.busy.saturating_sub(self.busy) as f64 * 100.0 / self.span(later)
    }

    /// Of the time between `self` and a later reading, the share stolen
    /// by the hypervisor (percent).
    pub fn steal_percent(&self, later: &CpuTimes) -> f64 {
        later.steal.saturating_sub(self.steal) as f64 * 100.0 / self.span(later)
    }

    fn span(&self, later: &CpuTimes) -> f64 {
        later.all.saturating_sub(self.all).max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proc_stat_line_gives_busy_all_and_steal() {
        let t = CpuTimes::parse("cpu0 100 5 50 800 10 3 2 30 0 0");
        assert_eq!(t.all, 1000);
        assert_eq!(t.busy, 190);
        assert_eq!(t.steal, 30);
        let later = CpuTimes::parse("cpu0 150 5 60 1000 10 3 2 70 0 0");
        assert!((t.steal_percent(&later) - 40.0 * 100.0 / 300.0).abs() < 1e-9);
        assert!((t.busy_percent(&later) - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_missing_or_short_line_is_zeros_not_a_panic() {
        assert_eq!(CpuTimes::parse(""), CpuTimes::default());
        assert_eq!(CpuTimes::parse("cpu 1 2").steal, 0);
        assert_eq!(CpuTimes::core(100_000), CpuTimes::default());
    }
}

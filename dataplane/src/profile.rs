//! Performance profiles (SPEC §2): how many workers, calls, memory and which
//! local ports a gateway uses, picked from the CPUs and memory the process
//! may use (affinity mask and cgroup limits count), or pinned by the operator.

use std::ops::RangeInclusive;

/// A performance profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// 1 core, 1 GiB: 25 calls.
    Small,
    /// 2 cores, 2 GiB: 40 calls.
    SmallPlus,
    /// 4 cores, 2 GiB: 30 calls (the vendor's tested figure, kept as given).
    Medium,
    /// 8 cores, 4 GiB: 125 calls.
    Large,
    /// Every core the process may use and a wide port range: beyond the
    /// vendor's figures, for capacity tests and big sites.
    Max,
}

/// What a profile grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSpec {
    /// Data-plane workers (one pinned thread each).
    pub workers: usize,
    /// Memory the host must have for the profile to be picked, bytes.
    pub min_memory: u64,
    /// Simultaneous calls admitted.
    pub call_limit: u32,
    /// Memory budget of the gateway process, bytes.
    pub memory_budget: u64,
    /// Local media port ranges (before removing the kernel's ephemeral range).
    pub port_ranges: Vec<RangeInclusive<u16>>,
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

impl Profile {
    /// The vendor profiles in selection rank order (SPEC §2).
    pub const VENDOR: [Profile; 4] = [
        Profile::Small,
        Profile::SmallPlus,
        Profile::Medium,
        Profile::Large,
    ];

    /// Name as used in config, flags and logs.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Small => "small",
            Profile::SmallPlus => "smallplus",
            Profile::Medium => "medium",
            Profile::Large => "large",
            Profile::Max => "max",
        }
    }

    /// SPEC §2 rank: the highest-ranked profile that fits is picked.
    fn rank(self) -> u32 {
        match self {
            Profile::Small => 25,
            Profile::SmallPlus => 28,
            Profile::Medium => 30,
            Profile::Large => 125,
            Profile::Max => u32::MAX,
        }
    }

    /// What the profile grants on a host with `cpus` usable CPUs.
    pub fn spec(self, cpus: usize) -> ProfileSpec {
        let (workers, min_memory, call_limit, memory_budget, ports): (
            usize,
            u64,
            u32,
            u64,
            Vec<RangeInclusive<u16>>,
        ) = match self {
            Profile::Small => (1, GIB, 25, 256 * MIB, vec![65336..=65534]),
            Profile::SmallPlus => (2, 2 * GIB, 40, 256 * MIB, vec![65198..=65534]),
            Profile::Medium => (4, 2 * GIB, 30, 256 * MIB, vec![65296..=65534]),
            Profile::Large => (8, 4 * GIB, 125, 512 * MIB, vec![61536..=65534]),
            Profile::Max => (
                cpus.max(1),
                GIB,
                u32::MAX,
                4 * GIB,
                vec![16384..=32767, 61000..=65534],
            ),
        };
        ProfileSpec {
            workers,
            min_memory,
            call_limit,
            memory_budget,
            port_ranges: ports,
        }
    }

    /// SPEC §2 selection: the highest-ranked vendor profile whose cores and
    /// memory the host has; Small when even that does not fit.
    pub fn select(cpus: usize, memory: u64) -> Profile {
        Profile::VENDOR
            .into_iter()
            .filter(|p| {
                let s = p.spec(cpus);
                cpus >= s.workers && memory >= s.min_memory
            })
            .max_by_key(|p| p.rank())
            .unwrap_or(Profile::Small)
    }

    /// The start-up log line SPEC §2 shows: the profile's RAM figure (the
    /// host's for `max`) and the port ranges in use.
    pub fn startup_line(self, host_memory: u64, ports: &[RangeInclusive<u16>]) -> String {
        let memory = if self == Profile::Max {
            host_memory
        } else {
            self.spec(1).min_memory
        };
        let ranges: Vec<String> = ports
            .iter()
            .map(|r| format!("{}-{}", r.start(), r.end()))
            .collect();
        format!(
            "performance profile: {} ({} GiB RAM), RTP port range: {}",
            self.name(),
            (memory as f64 / GIB as f64).round() as u64,
            ranges.join(",")
        )
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
            "small" => Ok(Profile::Small),
            "smallplus" => Ok(Profile::SmallPlus),
            "medium" => Ok(Profile::Medium),
            "large" => Ok(Profile::Large),
            "max" => Ok(Profile::Max),
            _ => Err(format!(
                "unknown performance profile {s:?}: use small, smallplus, medium, large or max"
            )),
        }
    }
}

/// Removes the kernel's ephemeral port range from `ranges`, so relay ports
/// never collide with outgoing connections' source ports.
pub fn without_ephemeral(
    ranges: &[RangeInclusive<u16>],
    ephemeral: RangeInclusive<u16>,
) -> Vec<RangeInclusive<u16>> {
    let mut out = Vec::new();
    for r in ranges {
        let (a, b) = (*r.start(), *r.end());
        let (ea, eb) = (*ephemeral.start(), *ephemeral.end());
        if b < ea || a > eb {
            out.push(a..=b);
            continue;
        }
        if a < ea {
            out.push(a..=ea - 1);
        }
        if b > eb {
            out.push(eb + 1..=b);
        }
    }
    out
}

/// What the host gives this process: CPUs in the affinity mask and memory
/// under the cgroup limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// CPUs the process may run on (ids), in order.
    pub cpus: Vec<usize>,
    /// Bytes of memory usable.
    pub memory: u64,
    /// The kernel's ephemeral port range.
    pub ephemeral_ports: RangeInclusive<u16>,
}

impl Resources {
    /// Reads the affinity mask, cgroup v2/v1 limits, /proc/meminfo and the
    /// ephemeral port range.
    pub fn detect() -> Resources {
        let mut cpus = crate::sys::allowed_cpus();
        if let Some(quota) = cgroup_cpu_quota() {
            cpus.truncate(quota.max(1));
        }
        let total = meminfo_total().unwrap_or(GIB);
        let memory = cgroup_memory_limit().map_or(total, |l| l.min(total));
        let ephemeral_ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|x| x.parse::<u16>());
                Some(it.next()?.ok()?..=it.next()?.ok()?)
            })
            .unwrap_or(32768..=60999);
        Resources {
            cpus,
            memory,
            ephemeral_ports,
        }
    }
}

impl Resources {
    /// The start-up line for `profile` on this host: its RAM figure and the
    /// port ranges it will use, the ephemeral range removed.
    pub fn startup_line(&self, profile: Profile) -> String {
        let ranges = profile.spec(self.cpus.len()).port_ranges;
        profile.startup_line(
            self.memory,
            &without_ephemeral(&ranges, self.ephemeral_ports.clone()),
        )
    }
}

fn meminfo_total() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn cgroup_memory_limit() -> Option<u64> {
    for path in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(v) = s.trim().parse::<u64>() {
                return Some(v);
            }
        }
    }
    None
}

/// Whole CPUs granted by a cgroup v2 `cpu.max` quota, if one is set.
fn cgroup_cpu_quota() -> Option<usize> {
    let s = std::fs::read_to_string("/sys/fs/cgroup/cpu.max").ok()?;
    let mut it = s.split_whitespace();
    let quota: u64 = it.next()?.parse().ok()?;
    let period: u64 = it.next()?.parse().ok()?;
    Some((quota / period.max(1)) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_follows_spec_rank() {
        assert_eq!(Profile::select(1, GIB), Profile::Small);
        assert_eq!(Profile::select(2, 2 * GIB), Profile::SmallPlus);
        // Medium ranks above Small Plus (30 > 28) though it carries fewer calls.
        assert_eq!(Profile::select(4, 2 * GIB), Profile::Medium);
        assert_eq!(Profile::select(4, 8 * GIB), Profile::Medium);
        assert_eq!(Profile::select(8, 4 * GIB), Profile::Large);
        assert_eq!(Profile::select(8, 3 * GIB), Profile::Medium);
        assert_eq!(Profile::select(2, GIB), Profile::Small, "memory counts");
        assert_eq!(Profile::select(1, 512 * MIB), Profile::Small);
    }

    #[test]
    fn startup_line_matches_spec() {
        let p = Profile::Small;
        assert_eq!(
            p.startup_line(24 * GIB, &p.spec(1).port_ranges),
            "performance profile: small (1 GiB RAM), RTP port range: 65336-65534"
        );
    }

    #[test]
    fn ephemeral_range_is_cut_out() {
        let max = Profile::Max.spec(2).port_ranges;
        assert_eq!(without_ephemeral(&max, 32768..=60999), max);
        assert_eq!(
            without_ephemeral(&max, 20000..=62000),
            vec![16384..=19999, 62001..=65534]
        );
        assert_eq!(without_ephemeral(&[100..=200], 100..=200), vec![]);
    }

    #[test]
    fn names_parse() {
        for p in [
            Profile::Small,
            Profile::SmallPlus,
            Profile::Medium,
            Profile::Large,
            Profile::Max,
        ] {
            assert_eq!(p.name().parse::<Profile>().unwrap(), p);
        }
        assert_eq!("Small Plus".parse::<Profile>().unwrap(), Profile::SmallPlus);
        assert!("huge".parse::<Profile>().is_err());
    }
}

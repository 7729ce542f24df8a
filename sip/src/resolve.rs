//! Where requests for the cloud go (RFC 3263), sans-IO: the ordering rules
//! applied to DNS answers the caller fetched, and the failover between the
//! resulting targets (§4.3) with time as an input.
//!
//! - NAPTR records pick the transport: lowest order, then preference, only
//!   services the gateway speaks (`SIPS+D2T`, `SIP+D2T`, `SIP+D2U`) with
//!   the `s` flag ([`naptr_services`]). Without NAPTR, the SRV names of
//!   each supported transport are tried in the caller's order
//!   ([`srv_names`]).
//! - SRV records order the hosts: lowest priority first, and within a
//!   priority a weighted random pick per RFC 2782 ([`srv_order`]).
//! - [`Failover`] walks the targets: a target that failed (no connection,
//!   a handshake refused, a timeout, a 503) is set aside for a hold time
//!   and the next one is tried.
//!
//! A static list in the configuration is the same [`Target`]s, in order.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A SIP transport a target is reached over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS (sips).
    Tls,
}

impl Transport {
    /// RFC 3263 §4.2 default port.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
    /// NAPTR service field (RFC 3263 §4.1).
    pub fn naptr_service(self) -> &'static str {
        match self {
            Transport::Udp => "SIP+D2U",
            Transport::Tcp => "SIP+D2T",
            Transport::Tls => "SIPS+D2T",
        }
    }
    /// SRV name prefix (RFC 3263 §4.2).
    pub fn srv_prefix(self) -> &'static str {
        match self {
            Transport::Udp => "_sip._udp",
            Transport::Tcp => "_sip._tcp",
            Transport::Tls => "_sips._tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

/// One place to send requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Transport to reach it over.
    pub transport: Transport,
    /// Its address.
    pub addr: SocketAddr,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

/// Why a configured target does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {0:?}: expected udp:ADDR:PORT, tcp:ADDR:PORT or tls:ADDR:PORT")]
pub struct BadTarget(String);

impl FromStr for Target {
    type Err = BadTarget;
    /// `tls:192.0.2.1:5061`, `tcp:[2001:db8::1]:5060`, `udp:…`.
    fn from_str(s: &str) -> Result<Self, BadTarget> {
        let bad = || BadTarget(s.to_owned());
        let (t, addr) = s.split_once(':').ok_or_else(bad)?;
        let transport = match t.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(bad()),
        };
        let addr = addr.parse().map_err(|_| bad())?;
        Ok(Target { transport, addr })
    }
}

/// A NAPTR record (RFC 3403) as the resolver returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Order: lower first; later orders only if nothing earlier applies.
    pub order: u16,
    /// Preference within an order.
    pub preference: u16,
    /// Flags (`s`: the replacement is an SRV name).
    pub flags: String,
    /// Service, e.g. `SIPS+D2T`.
    pub service: String,
    /// The SRV name to look up next.
    pub replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower first.
    pub priority: u16,
    /// Relative weight within a priority.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Host name.
    pub target: String,
}

/// The SRV names to look up, by transport, from NAPTR records (RFC 3263
/// §4.1): only services in `supported`, `s` flag, by order then preference.
pub fn naptr_services(records: &[Naptr], supported: &[Transport]) -> Vec<(Transport, String)> {
    let mut usable: Vec<&Naptr> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter(|r| {
            supported
                .iter()
                .any(|t| r.service.eq_ignore_ascii_case(t.naptr_service()))
        })
        .collect();
    usable.sort_by_key(|r| (r.order, r.preference));
    usable
        .into_iter()
        .filter_map(|r| {
            let t = supported
                .iter()
                .find(|t| r.service.eq_ignore_ascii_case(t.naptr_service()))?;
            Some((*t, r.replacement.trim_end_matches('.').to_owned()))
        })
        .collect()
}

/// Without NAPTR records: the SRV names of each supported transport, in
/// the caller's preference order (RFC 3263 §4.1).
pub fn srv_names(domain: &str, supported: &[Transport]) -> Vec<(Transport, String)> {
    supported
        .iter()
        .map(|t| (*t, format!("{}.{domain}", t.srv_prefix())))
        .collect()
}

/// Orders SRV records per RFC 2782: by priority, and within a priority by
/// repeated weighted random selection. `pick(n)` returns a number in
/// `0..=n` (the caller's randomness; tests pass a fixed sequence).
/// A record with target `.` means "no service" and is dropped.
pub fn srv_order(records: &[Srv], mut pick: impl FnMut(u32) -> u32) -> Vec<Srv> {
    let mut rest: Vec<Srv> = records
        .iter()
        .filter(|r| r.target != ".")
        .cloned()
        .collect();
    rest.sort_by_key(|r| (r.priority, r.weight));
    let mut out = Vec::with_capacity(rest.len());
    while let Some(first) = rest.first() {
        let priority = first.priority;
        let mut group: Vec<Srv> = Vec::new();
        rest.retain(|r| {
            if r.priority == priority {
                group.push(r.clone());
                false
            } else {
                true
            }
        });
        // Zero weights first (RFC 2782), then pick by running sum.
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let n = pick(total).min(total);
            let mut sum = 0;
            let at = group
                .iter()
                .position(|r| {
                    sum += u32::from(r.weight);
                    sum >= n
                })
                .unwrap_or(0);
            out.push(group.remove(at));
        }
    }
    out
}

/// Failover over an ordered list of targets (RFC 3263 §4.3).
#[derive(Debug, Clone)]
pub struct Failover {
    targets: Vec<Target>,
    held_until: Vec<Option<Instant>>,
    hold: Duration,
}

impl Failover {
    /// Targets in the order to try them; a failed one is held back `hold`.
    pub fn new(targets: Vec<Target>, hold: Duration) -> Self {
        let held_until = vec![None; targets.len()];
        Self {
            targets,
            held_until,
            hold,
        }
    }

    /// The targets, in order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The first target not held back at `now`, with its index. When all
    /// are held, the one whose hold ends first (a gateway keeps trying).
    pub fn next(&self, now: Instant) -> Option<(usize, &Target)> {
        let free = self
            .held_until
            .iter()
            .position(|h| h.is_none_or(|until| until <= now));
        let i = free.or_else(|| {
            (0..self.targets.len()).min_by_key(|&i| self.held_until[i].unwrap_or(now))
        })?;
        Some((i, &self.targets[i]))
    }

    /// Until when target `i` is held back, if it is.
    pub fn held_until(&self, i: usize) -> Option<Instant> {
        self.held_until.get(i).copied().flatten()
    }

    /// Target `i` failed at `now`: hold it back.
    pub fn failed(&mut self, now: Instant, i: usize) {
        if let Some(h) = self.held_until.get_mut(i) {
            *h = Some(now + self.hold);
        }
    }

    /// Target `i` worked: it is preferred again.
    pub fn succeeded(&mut self, i: usize) {
        if let Some(h) = self.held_until.get_mut(i) {
            *h = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5061,
            target: target.into(),
        }
    }

    #[test]
    fn naptr_picks_supported_services_by_order_then_preference() {
        // RFC 3263 §4.1's example, plus a service we do not speak.
        let n = |order, preference, service: &str, r: &str| Naptr {
            order,
            preference,
            flags: "s".into(),
            service: service.into(),
            replacement: r.into(),
        };
        let records = [
            n(90, 50, "SIP+D2T", "_sip._tcp.example.com."),
            n(100, 50, "SIP+D2U", "_sip._udp.example.com."),
            n(50, 50, "SIPS+D2T", "_sips._tcp.example.com."),
            n(10, 10, "SIP+D2S", "_sip._sctp.example.com."),
        ];
        let got = naptr_services(&records, &[Transport::Tls, Transport::Tcp]);
        assert_eq!(
            got,
            vec![
                (Transport::Tls, "_sips._tcp.example.com".into()),
                (Transport::Tcp, "_sip._tcp.example.com".into())
            ]
        );
        assert_eq!(
            srv_names("example.com", &[Transport::Tls])[0].1,
            "_sips._tcp.example.com"
        );
    }

    #[test]
    fn srv_orders_by_priority_then_weight() {
        let records = [
            srv(20, 0, "backup.example.com"),
            srv(10, 60, "a.example.com"),
            srv(10, 40, "b.example.com"),
            srv(30, 0, "."),
        ];
        // pick returns its maximum: the heaviest remaining record wins.
        let order: Vec<String> = srv_order(&records, |n| n)
            .into_iter()
            .map(|r| r.target)
            .collect();
        assert_eq!(
            order,
            ["a.example.com", "b.example.com", "backup.example.com"]
        );
        // pick returns 0: the first in running-sum order (lightest) wins.
        let order: Vec<String> = srv_order(&records, |_| 0)
            .into_iter()
            .map(|r| r.target)
            .collect();
        assert_eq!(
            order,
            ["b.example.com", "a.example.com", "backup.example.com"]
        );
    }

    #[test]
    fn failover_holds_failed_targets_and_returns_to_them() {
        let t0 = Instant::now();
        let targets: Vec<Target> = ["tls:127.0.0.1:5061", "tls:127.0.0.2:5061"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut f = Failover::new(targets, Duration::from_secs(30));
        assert_eq!(f.next(t0).unwrap().0, 0);
        f.failed(t0, 0);
        assert_eq!(f.next(t0).unwrap().0, 1, "the next target");
        f.failed(t0 + Duration::from_secs(1), 1);
        assert_eq!(
            f.next(t0 + Duration::from_secs(2)).unwrap().0,
            0,
            "all held: the one free first"
        );
        assert_eq!(
            f.next(t0 + Duration::from_secs(30)).unwrap().0,
            0,
            "hold over"
        );
        f.succeeded(1);
        assert_eq!(f.next(t0 + Duration::from_secs(2)).unwrap().0, 1);
        assert!("sctp:1.2.3.4:5060".parse::<Target>().is_err());
        assert!("tls:nowhere".parse::<Target>().is_err());
    }
}

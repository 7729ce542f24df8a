//! The networks media may come from and go to. The gateway never latches to
//! nor sends media to an address outside them (no RTP bleed, no reflection).

use std::net::IpAddr;

/// One IPv4 or IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// Whether `ip` lies inside this prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.len as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.len as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V6(_), IpAddr::V4(v4)) => self.contains(IpAddr::V6(v4.to_ipv6_mapped())),
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network (like 10.1.0.0/16)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = if len.is_empty() {
            max
        } else {
            len.parse::<u8>()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?
        };
        Ok(Prefix { addr, len })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A set of prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<Prefix>);

impl Networks {
    /// The given prefixes.
    pub fn new(prefixes: Vec<Prefix>) -> Self {
        Self(prefixes)
    }

    /// Loopback only (127.0.0.0/8 and ::1): the default for tests and demos.
    pub fn loopback() -> Self {
        Self(vec![
            Prefix {
                addr: IpAddr::from([127, 0, 0, 0]),
                len: 8,
            },
            Prefix {
                addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                len: 128,
            },
        ])
    }

    /// Whether `ip` is inside any prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|p| p.contains(ip))
    }

    /// The prefixes.
    pub fn prefixes(&self) -> &[Prefix] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership() {
        let n = Networks::new(vec![
            "10.1.0.0/16".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("fd12::1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Networks::loopback().contains("127.0.0.2".parse().unwrap()));
        assert!(!Networks::loopback().contains("192.168.1.1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Prefix>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("ten".parse::<Prefix>().is_err());
    }
}

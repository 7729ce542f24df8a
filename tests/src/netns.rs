//! A NAT in network namespaces the test creates (as root; iproute2 and
//! iptables are installed by `tests/run`), torn down when dropped:
//!
//! ```text
//!  gateway ns            router ns (MASQUERADE out)          cloud ns
//!  10.77.1.2 ── veth ── 10.77.1.1 | 10.77.2.1 ── veth ── 10.77.2.2
//! ```
//!
//! The gateway's default route is the router; the cloud has no route to
//! 10.77.1.0/24, so it can only ever reach the router's outside address —
//! whatever reaches the gateway from the cloud crossed the NAT.

use crate::baresip::Place;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// The gateway's address, behind the NAT.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
/// The router's outside address: all the cloud sees of the gateway.
pub const ROUTER_OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 1);
/// The cloud's address.
pub const CLOUD: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);

/// The three namespaces and their links.
#[derive(Debug)]
pub struct Nat {
    /// The gateway's namespace (the PBX runs there too, on loopback).
    pub gateway: String,
    /// The router's.
    pub router: String,
    /// The cloud's.
    pub cloud: String,
}

fn run(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip runs (tests/run installs iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (the NAT test needs root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Nat {
    /// Builds the NAT; names carry the process id.
    pub fn new() -> Nat {
        let id = std::process::id();
        let nat = Nat {
            gateway: format!("pbxl-gw-{id}"),
            router: format!("pbxl-nat-{id}"),
            cloud: format!("pbxl-cloud-{id}"),
        };
        let (g, r, c) = (&nat.gateway, &nat.router, &nat.cloud);
        for ns in [g, r, c] {
            run(&["netns", "add", ns]);
            run(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (gi, ri) = (format!("pg{id}"), format!("pr{id}"));
        let (ro, co) = (format!("po{id}"), format!("pc{id}"));
        run(&["link", "add", &gi, "type", "veth", "peer", "name", &ri]);
        run(&["link", "set", &gi, "netns", g]);
        run(&["link", "set", &ri, "netns", r]);
        run(&["link", "add", &ro, "type", "veth", "peer", "name", &co]);
        run(&["link", "set", &ro, "netns", r]);
        run(&["link", "set", &co, "netns", c]);
        for (ns, dev, addr) in [
            (g, &gi, "10.77.1.2/24"),
            (r, &ri, "10.77.1.1/24"),
            (r, &ro, "10.77.2.1/24"),
            (c, &co, "10.77.2.2/24"),
        ] {
            run(&["-n", ns, "addr", "add", addr, "dev", dev]);
            run(&["-n", ns, "link", "set", dev, "up"]);
        }
        run(&["-n", g, "route", "add", "default", "via", "10.77.1.1"]);
        let sh = |ns: &str, script: &str| {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c", script])
                .output()
                .expect("ip netns exec runs");
            assert!(
                out.status.success(),
                "{script}: {} (tests/run installs iptables)",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        };
        sh(r, "echo 1 > /proc/sys/net/ipv4/ip_forward");
        sh(
            r,
            &format!("iptables -t nat -A POSTROUTING -o {ro} -j MASQUERADE"),
        );
        nat
    }

    /// A place in the gateway's namespace.
    pub fn at_gateway(&self, addr: Ipv4Addr) -> Place {
        Place {
            netns: Some(self.gateway.clone()),
            addr: IpAddr::V4(addr),
        }
    }

    /// The cloud's place.
    pub fn at_cloud(&self) -> Place {
        Place {
            netns: Some(self.cloud.clone()),
            addr: IpAddr::V4(CLOUD),
        }
    }
}

impl Default for Nat {
    fn default() -> Self {
        Nat::new()
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends (and their peers).
        for ns in [&self.gateway, &self.router, &self.cloud] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

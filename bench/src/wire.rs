//! Where the capacity generator and the target meet: loopback, or a veth
//! pair whose far end sits in a network namespace the harness creates
//! (and deletes) itself — a link with Ethernet addresses and a driver with
//! native XDP, as a gateway's media interface has, and each side's receive
//! path separate from the other's.
#![allow(unsafe_code)]

use anyhow::{Context, ensure};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;

const NETNS: &str = "pbxlink-capacity";
const TARGET_IF: &str = "pbxcap0";
const GENERATOR_IF: &str = "pbxcap1";
const TARGET_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
const GENERATOR_IP: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
/// The link's prefix: the only network the target may send media to.
pub const VETH_NET: &str = "10.213.0.0/30";

/// The generator's and the target's meeting place.
#[derive(Debug)]
pub enum Wire {
    /// Both on 127.0.0.1.
    Loopback,
    /// Target on the host end of a veth pair, generator in a namespace.
    Veth,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(args)
        .status()
        .context("running ip (iproute2)")?;
    ensure!(status.success(), "ip {} failed", args.join(" "));
    Ok(())
}

impl Wire {
    /// Sets the wire up (`veth`: creates the namespace and the pair,
    /// replacing what an interrupted run left).
    pub fn open(kind: &str) -> anyhow::Result<Wire> {
        match kind {
            "loopback" => Ok(Wire::Loopback),
            "veth" => {
                // What an interrupted run left (the namespace's deletion
                // takes its end of the pair lazily: delete ours too).
                for args in [&["netns", "del", NETNS][..], &["link", "del", TARGET_IF]] {
                    let _ = Command::new("ip")
                        .args(args)
                        .stderr(std::process::Stdio::null())
                        .status();
                }
                ip(&["netns", "add", NETNS])?;
                ip(&[
                    "link",
                    "add",
                    TARGET_IF,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    GENERATOR_IF,
                    "netns",
                    NETNS,
                ])?;
                ip(&["addr", "add", &format!("{TARGET_IP}/30"), "dev", TARGET_IF])?;
                ip(&["link", "set", TARGET_IF, "up"])?;
                let ns = ["-n", NETNS];
                ip(&[&ns[..], &["link", "set", "lo", "up"]].concat())?;
                ip(&[
                    &ns[..],
                    &[
                        "addr",
                        "add",
                        &format!("{GENERATOR_IP}/30"),
                        "dev",
                        GENERATOR_IF,
                    ],
                ]
                .concat())?;
                ip(&[&ns[..], &["link", "set", GENERATOR_IF, "up"]].concat())?;
                Ok(Wire::Veth)
            }
            other => anyhow::bail!("unknown --wire {other:?}: use veth or loopback"),
        }
    }

    /// The target's address.
    pub fn target_ip(&self) -> Ipv4Addr {
        match self {
            Wire::Loopback => Ipv4Addr::LOCALHOST,
            Wire::Veth => TARGET_IP,
        }
    }

    /// The generator's address.
    pub fn generator_ip(&self) -> Ipv4Addr {
        match self {
            Wire::Loopback => Ipv4Addr::LOCALHOST,
            Wire::Veth => GENERATOR_IP,
        }
    }

    /// The target's interface.
    pub fn target_interface(&self) -> &'static str {
        match self {
            Wire::Loopback => "lo",
            Wire::Veth => TARGET_IF,
        }
    }

    /// The networks the target may exchange media with.
    pub fn networks(&self) -> &'static str {
        match self {
            Wire::Loopback => "127.0.0.0/8",
            Wire::Veth => VETH_NET,
        }
    }

    /// A generator socket on an ephemeral port (in the namespace for veth;
    /// the calling thread returns to its own namespace after).
    pub fn generator_socket(&self) -> anyhow::Result<UdpSocket> {
        let bind = || UdpSocket::bind(SocketAddr::from((self.generator_ip(), 0)));
        match self {
            Wire::Loopback => Ok(bind()?),
            Wire::Veth => {
                let home = File::open("/proc/thread-self/ns/net")?;
                let there = File::open(format!("/run/netns/{NETNS}"))?;
                setns(&there)?;
                let s = bind();
                setns(&home)?;
                Ok(s?)
            }
        }
    }
}

/// Moves the calling thread into the network namespace `ns`.
pub(crate) fn setns(ns: &File) -> anyhow::Result<()> {
    // SAFETY: setns on a namespace file we hold open; affects only the
    // calling thread's network namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    ensure!(
        rc == 0,
        "setns: {} (needs root)",
        std::io::Error::last_os_error()
    );
    Ok(())
}

impl Drop for Wire {
    fn drop(&mut self) {
        if let Wire::Veth = self {
            for args in [&["link", "del", TARGET_IF][..], &["netns", "del", NETNS]] {
                let _ = Command::new("ip").args(args).status();
            }
        }
    }
}

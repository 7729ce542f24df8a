//! Runs coturn's `turnserver` as a STUN-only server (no TURN, no TLS, no
//! CLI) for the tests that need a real STUN peer: the NAT test's cloud
//! and the admin page's diagnostics. Stopped when dropped.

use crate::lines::Lines;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running STUN server.
#[derive(Debug)]
pub struct Stun {
    child: Child,
}

impl Stun {
    /// Starts `turnserver` from `base` (a plain `Command::new`, or one
    /// inside a network namespace) listening on `at`, its files in `dir`.
    pub fn start(mut base: Command, at: SocketAddr, dir: &Path) -> Stun {
        let mut child = base
            .args(["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls"])
            .args(["--listening-ip", &at.ip().to_string()])
            .args(["--listening-port", &at.port().to_string()])
            .args(["--log-file", "stdout", "--simple-log"])
            .arg("--pidfile")
            .arg(dir.join(format!("turnserver-{}.pid", at.port())))
            .arg("--db")
            .arg(dir.join(format!("turndb-{}", at.port())))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver runs (tests/run installs coturn)");
        let log = Lines::default();
        log.capture(child.stdout.take().unwrap());
        log.wait_for(
            "turnserver",
            "Total General servers",
            Duration::from_secs(10),
        );
        Stun { child }
    }
}

impl Drop for Stun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Runs `cloudsim` (the workspace's cloud platform simulator) as a real
//! process for the end-to-end tests, and talks to its control API.

use crate::http;
use crate::lines::Lines;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cloudsim.
#[derive(Debug)]
pub struct CloudSim {
    child: Child,
    lines: Lines,
    /// Its control API.
    pub control: SocketAddr,
    /// The CA the gateway must trust.
    pub ca: PathBuf,
}

impl CloudSim {
    /// Starts cloudsim with its tunnel on `tunnel`, SIP-TLS on `sip`, the
    /// control API on `control`, account `ACME:token`, its CA written in
    /// `dir`.
    pub fn start(
        dir: &Path,
        tunnel: SocketAddr,
        sip: SocketAddr,
        control: SocketAddr,
        token: &str,
    ) -> CloudSim {
        Self::start_with(dir, tunnel, sip, control, token, &[])
    }

    /// [`CloudSim::start`] with more arguments (`--ntp ADDR`).
    pub fn start_with(
        dir: &Path,
        tunnel: SocketAddr,
        sip: SocketAddr,
        control: SocketAddr,
        token: &str,
        extra: &[&str],
    ) -> CloudSim {
        let ca = dir.join("cloudsim-ca.pem");
        let mut child = Command::new(crate::gateway::workspace_binary("cloudsim"))
            .args(["--tunnel", &tunnel.to_string(), "--sip", &sip.to_string()])
            .args(["--control", &control.to_string()])
            .args(["--seconds", &crate::gateway::peer_lifetime_seconds()])
            .args(extra)
            .args(["--account", &format!("ACME:{token}")])
            .arg("--ca-out")
            .arg(&ca)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cloudsim starts");
        let lines = Lines::default();
        lines.capture(child.stdout.take().unwrap());
        lines.capture(child.stderr.take().unwrap());
        lines.wait_for("cloudsim", "control API on", Duration::from_secs(20));
        CloudSim {
            child,
            lines,
            control,
            ca,
        }
    }

    /// Everything it printed.
    pub fn output(&self) -> Vec<String> {
        self.lines.all()
    }

    /// `GET path` on the control API.
    pub fn get(&self, path: &str) -> Value {
        http::request(self.control, "GET", path, &[], "").json
    }

    /// `POST path` with `body`; the answer.
    pub fn post(&self, path: &str, body: &str) -> http::Answer {
        http::request(self.control, "POST", path, &[], body)
    }

    /// The (only) gateway's summary, once it has one.
    pub fn gateway(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.get("/status");
            if let Some(g) = s["gateways"].as_array().and_then(|g| g.first()) {
                return g.clone();
            }
            assert!(Instant::now() < deadline, "no gateway ever connected: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `check` holds on the gateway's summary.
    pub fn wait_gateway(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let g = self.gateway();
            if check(&g) {
                return g;
            }
            assert!(Instant::now() < deadline, "cloudsim never saw {what}: {g}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for CloudSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! Runs `pbxsim` (the workspace's PBX simulator) as a real process for the
//! end-to-end tests, and talks to its control API.

use crate::http;
use crate::lines::Lines;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `pbxsim run`.
#[derive(Debug)]
pub struct PbxSim {
    child: Child,
    lines: Lines,
    /// Its control API.
    pub control: SocketAddr,
}

impl PbxSim {
    /// Starts `pbxsim run --control CONTROL ARGS...` (for at most
    /// [`peer_lifetime_seconds`](crate::gateway::peer_lifetime_seconds))
    /// and waits for its control API.
    pub fn start(control: SocketAddr, args: &[&str]) -> PbxSim {
        let mut child = Command::new(crate::gateway::workspace_binary("pbxsim"))
            .args(["run", "--control", &control.to_string()])
            .args(["--seconds", &crate::gateway::peer_lifetime_seconds()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pbxsim starts");
        let lines = Lines::default();
        lines.capture(child.stdout.take().unwrap());
        lines.capture(child.stderr.take().unwrap());
        let sim = PbxSim {
            child,
            lines,
            control,
        };
        sim.lines
            .wait_for("pbxsim", "control API on", Duration::from_secs(20));
        sim
    }

    /// Its SIP calls counted by state (`connected`, `ended by pbxsim`,
    /// `ended by the gateway`, …).
    pub fn sip_calls(&self) -> serde_json::Value {
        crate::http::request(self.control, "GET", "/sip/stats", &[], "").json["calls"].clone()
    }

    /// Everything it printed.
    pub fn output(&self) -> Vec<String> {
        self.lines.all()
    }

    /// `GET /status`.
    pub fn status(&self) -> serde_json::Value {
        http::request(self.control, "GET", "/status", &[], "").json
    }

    /// `POST path` with `body` on the control API; fails unless 200.
    pub fn post(&self, path: &str, body: &str) -> serde_json::Value {
        let a = http::request(self.control, "POST", path, &[], body);
        assert_eq!(a.status, 200, "pbxsim {path}: {}", a.text);
        a.json
    }

    /// Places a SIP call from extension `from` to `to`, hung up by pbxsim
    /// after `seconds`; its id.
    pub fn place_call(&self, from: &str, to: &str, seconds: u64) -> u64 {
        let body = serde_json::json!({"from": from, "to": to, "seconds": seconds});
        let a = self.post("/sip/calls", &body.to_string());
        a["call"]
            .as_u64()
            .unwrap_or_else(|| panic!("pbxsim placed no call: {a}"))
    }

    /// One CSTA server's entry in the status.
    pub fn server(&self, port: u16) -> serde_json::Value {
        self.status()["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["port"] == port)
            .cloned()
            .unwrap_or_else(|| panic!("no CSTA server {port} in pbxsim"))
    }

    /// Waits until `check` holds on the status (up to `within`).
    pub fn wait_status(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let s = self.status();
            if check(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "pbxsim never reached {what}: {s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PbxSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

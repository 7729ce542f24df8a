//! Runs the `pbxlink` binary as a real process for end-to-end tests and
//! reads what it prints.

use crate::lines::Lines;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `pbxlink` binary of this workspace, built on first use.
pub fn binary() -> PathBuf {
    workspace_binary("pbxlink")
}

/// A binary of this workspace's package of the same name, built once per
/// test process on first use: the debug build, or the release build when
/// `PBXLINK_TEST_PROFILE=release` (the long runs, the product as shipped).
pub fn workspace_binary(name: &'static str) -> PathBuf {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static BUILT: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let release = match std::env::var("PBXLINK_TEST_PROFILE").as_deref() {
        Ok("release") => true,
        Ok("debug") | Err(_) => false,
        Ok(other) => panic!("PBXLINK_TEST_PROFILE={other:?}: use debug or release"),
    };
    let mut built = BUILT.lock().unwrap();
    if built.get_or_insert_with(HashSet::new).insert(name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", name, "--bin", name])
            .args(release.then_some("--release"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building {name} failed");
    }
    target
        .join(if release { "release" } else { "debug" })
        .join(name)
}

/// How long a simulated peer (pbxsim, cloudsim) may live: its own bound,
/// should a test die without stopping it. 240 s, and as much longer as a
/// long soak asks for (`PBXLINK_SOAK_SECONDS`).
pub fn peer_lifetime_seconds() -> String {
    let soak: u64 = std::env::var("PBXLINK_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (240 + soak).to_string()
}

/// A running `pbxlink` with its output captured line by line.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    lines: Lines,
}

impl Gateway {
    /// Starts `pbxlink ARGS...`.
    pub fn start(args: &[String]) -> Gateway {
        Gateway::start_at(&crate::baresip::Place::default(), args)
    }

    /// Starts `pbxlink ARGS...` at `place` (in its network namespace).
    pub fn start_at(place: &crate::baresip::Place, args: &[String]) -> Gateway {
        let mut command = place.command(binary());
        command.args(args);
        Gateway::spawn(command)
    }

    /// Starts `pbxlink run --config CONFIG --seconds SECONDS`.
    pub fn run(config: &std::path::Path, seconds: u64) -> Gateway {
        Gateway::start(&[
            "run".into(),
            "--config".into(),
            config.display().to_string(),
            "--seconds".into(),
            seconds.to_string(),
        ])
    }

    /// Starts `command`, which must exec `pbxlink` in the end (through
    /// `ip netns exec`, `unshare`, …: the process id stays its).
    pub fn spawn(mut command: Command) -> Gateway {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pbxlink starts");
        let lines = Lines::default();
        lines.capture(child.stdout.take().unwrap());
        lines.capture(child.stderr.take().unwrap());
        Gateway { child, lines }
    }

    /// Its process id (the same across the restarts it execs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.all()
    }

    /// Waits until a line containing `needle` is printed; returns it.
    pub fn wait_for(&self, needle: &str, within: Duration) -> String {
        self.lines.wait_for("pbxlink", needle, within)
    }

    /// Waits until the data plane's latest relay count (`pbxlink run`
    /// prints it as the workers report it, every second) is zero; `after`
    /// names what should have freed them.
    pub fn wait_relays_gone(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.output();
            let latest = lines.iter().rev().find(|l| l.contains("relay(s) running"));
            if latest.is_none_or(|l| l.contains(": 0 relay(s)")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "a relay is still running after {after:?}:\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `n` lines containing `needle` were printed.
    pub fn wait_count(&self, needle: &str, n: usize, within: Duration) {
        self.lines.wait_count("pbxlink", needle, n, within);
    }

    /// Sends SIGTERM without waiting (the gateway drains its calls).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the output.
    pub fn stop(mut self) -> Vec<String> {
        // `kill` from the shell keeps this crate free of unsafe code.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                let out = self.output();
                assert!(
                    status.success(),
                    "pbxlink exited with {status}:\n{}",
                    out.join("\n")
                );
                return out;
            }
            assert!(Instant::now() < deadline, "pbxlink did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `final:` counters line among a stopped gateway's `lines`.
pub fn final_line(lines: &[String]) -> &str {
    lines
        .iter()
        .find(|l| l.starts_with("final:"))
        .expect("a final: line")
}

/// The value of `name=N` in a stats line.
pub fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

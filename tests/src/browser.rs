//! Headless Chromium for the admin page's tests: Debian's chromium,
//! driven by npm's playwright-core from the scripts in `tests/browser/`
//! (both installed by `tests/run`).

use std::path::{Path, PathBuf};

/// `tests/browser`, once its playwright-core and Debian's chromium are
/// there.
pub fn dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run ./tests/run (it installs chromium and npm's playwright-core)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run ./tests/run (it installs Debian's chromium)"
    );
    dir
}

/// `target/test-artifacts/NAME`, emptied.
pub fn artifacts(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("test-artifacts").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A script of `tests/browser/` running under node, what it says kept.
#[derive(Debug)]
pub struct Script {
    child: std::process::Child,
    said: crate::lines::Lines,
}

impl Script {
    /// Starts `tests/browser/NAME` with `env`.
    pub fn start(name: &str, env: &[(&str, String)]) -> Script {
        let dir = dir();
        let mut child = std::process::Command::new("node")
            .arg(dir.join(name))
            .current_dir(&dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("node runs");
        let said = crate::lines::Lines::default();
        said.capture(child.stdout.take().unwrap());
        said.capture(child.stderr.take().unwrap());
        Script { child, said }
    }

    /// Whether it has ended.
    pub fn ended(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// What it said so far.
    pub fn said(&self) -> String {
        self.said.all().join("\n")
    }

    /// Waits for its end (killed and failed past `within`); what it said,
    /// once it said `browser: passed` and ended well (else a panic with
    /// its words and `context`).
    pub fn passes(mut self, within: std::time::Duration, context: impl Fn() -> String) -> String {
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(s) = self.ended() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the browser script did not finish:\n{}", self.said());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        // The last lines are read after the end.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let said = self.said();
        println!("{said}");
        assert!(
            status.success() && said.contains("browser: passed"),
            "the browser script failed:\n{said}\n{}",
            context()
        );
        said
    }
}

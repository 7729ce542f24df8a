//! The demo's child processes: the gateway, pbxsim and cloudsim, each
//! started from the binary next to `pbxlink`, in a process group of its
//! own (Ctrl-C reaches the demo, which then stops them in order), its
//! output written to a log file in the demo's directory. Their ids are
//! kept in `pids` there, so a demo that was killed outright has its
//! leftovers stopped by the next one.
//!
//! It owns starting, signalling and reaping; what the processes do is
//! the demo's business, through their APIs.

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running child.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The binary `name` next to the running `pbxlink-demo` (the same build).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("finding the pbxlink-demo binary")?;
    let path = me.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} is not built next to {} (./demo builds it; or: cargo build --release -p pbxlink -p pbxsim -p cloudsim)",
            name,
            me.display()
        );
    }
    Ok(path)
}

impl Process {
    /// Starts `binary` with `args`; its output goes to `dir/NAME.log`.
    pub fn start(
        name: &'static str,
        binary: &Path,
        args: &[String],
        dir: &Path,
    ) -> anyhow::Result<Process> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut pids = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("pids"))?;
        std::io::Write::write_all(&mut pids, format!("{} {name}\n", child.id()).as_bytes())?;
        Ok(Process { name, child, log })
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its log so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails when it has exited (with the end of its log).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let out = self.output();
            let tail: Vec<&str> = out.lines().rev().take(8).collect();
            bail!(
                "{} exited ({status}); the end of {}:\n  {}",
                self.name,
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n  ")
            );
        }
        Ok(())
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL. Whether
    /// it exited by itself.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return true;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Stops what a previous demo left running (listed in `dir/pids`, still
/// carrying the name of one of the demo's binaries), then forgets it.
pub fn stop_leftovers(dir: &Path) {
    let Ok(list) = std::fs::read_to_string(dir.join("pids")) else {
        return;
    };
    for line in list.lines() {
        let Some((pid, name)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let binary = match name {
            "gateway" => "pbxlink",
            other => other,
        };
        let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if first.ends_with(binary.as_bytes()) {
            println!("stopping {name} (pid {pid}) left by an earlier demo");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(dir.join("pids"));
}

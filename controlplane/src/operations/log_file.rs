//! The gateway's log on disk (SPEC §7 "log download"): every line the
//! gateway prints (stdout and stderr) still reaches the terminal or the
//! supervisor's journal, and is also written, with a UTC timestamp, to
//! `DIR/gateway.log`, rotated at a size (`gateway.log.1` … `.N`, oldest
//! dropped), so the log bundle has the last hours of plain text to carry.
//!
//! It works below the printing: stdout and stderr are pointed at a pipe
//! whose reader copies each line to the old stdout and to the file. Lines
//! are never held back for the file: if it cannot be written (disk
//! full), the line still reaches the terminal and the failure is told
//! there once.

use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// The log's file name in its directory.
pub const NAME: &str = "gateway.log";

/// The structured log's (JSON lines, `operations::structured_log`).
pub const JSON_NAME: &str = "gateway.jsonl";

/// New log files: the gateway's user and its group (operators) may read
/// them, no one else — they carry extensions, names and addresses.
const LOG_MODE: u32 = 0o640;

/// How the file rotates.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    /// Bytes in `gateway.log` before it becomes `gateway.log.1`.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: 8 << 20,
            keep: 4,
        }
    }
}

/// The rotating file (the part that knows nothing of pipes).
#[derive(Debug)]
pub struct Rotating {
    dir: PathBuf,
    name: &'static str,
    rotation: Rotation,
    file: Option<File>,
    size: u64,
}

impl Rotating {
    /// Appends to `dir/name`.
    pub fn open(dir: &Path, name: &'static str, rotation: Rotation) -> anyhow::Result<Rotating> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_MODE)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(Rotating {
            dir: dir.to_owned(),
            name,
            rotation,
            file: Some(file),
            size,
        })
    }

    /// Writes one line (with its newline), rotating first when it would
    /// not fit.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(LOG_MODE)
                    .open(self.dir.join(self.name))?,
            ),
        };
        file.write_all(line.as_bytes())?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let current = self.dir.join(self.name);
        let name = |n: u32| self.dir.join(format!("{}.{n}", self.name));
        let _ = std::fs::remove_file(name(self.rotation.keep));
        for n in (1..self.rotation.keep).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        if self.rotation.keep > 0 {
            std::fs::rename(&current, name(1))?;
        } else {
            std::fs::remove_file(&current)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// The log files of `dir` (plain and structured), newest first.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<((usize, u32), PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (kind, rest) = [NAME, JSON_NAME]
                .iter()
                .enumerate()
                .find_map(|(k, n)| Some((k, name.strip_prefix(n)?)))?;
            let rank: u32 = match rest {
                "" => 0,
                n => n.strip_prefix('.')?.parse().ok()?,
            };
            Some(((kind, rank), e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The log running: stdout and stderr go through it.
#[derive(Debug)]
pub struct LogFile {
    terminal: OwnedFd,
    copier: Option<JoinHandle<()>>,
}

impl LogFile {
    /// Sends stdout and stderr through the log in `dir` from now on.
    pub fn start(dir: &Path, rotation: Rotation) -> anyhow::Result<LogFile> {
        let mut file = Rotating::open(dir, NAME, rotation)?;
        let terminal = nix::unistd::dup(std::io::stdout()).context("keeping stdout")?;
        let (reader, writer) = nix::unistd::pipe().context("making the log's pipe")?;
        let reader = File::from(reader);
        let mut out = File::from(terminal.try_clone().context("keeping stdout")?);
        let mut failures = 0u64;
        let copier = std::thread::Builder::new()
            .name("log-file".into())
            .spawn(move || {
                let mut lines = BufReader::new(reader);
                let mut line = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    if !line.ends_with('\n') {
                        line.push('\n');
                    }
                    let _ = out.write_all(line.as_bytes());
                    if file
                        .write_line(&format!("{} {line}", crate::cdr::rfc3339(std::time::SystemTime::now())))
                        .is_err()
                    {
                        failures += 1;
                        if failures == 1 {
                            let _ = out.write_all(
                                b"warning: the log file cannot be written (disk full?); lines go to the terminal only\n",
                            );
                        }
                    }
                }
            })
            .context("starting the log's thread")?;
        std::io::stdout().flush().ok();
        nix::unistd::dup2_stdout(&writer).context("sending stdout to the log")?;
        nix::unistd::dup2_stderr(&writer).context("sending stderr to the log")?;
        drop(writer);
        Ok(LogFile {
            terminal,
            copier: Some(copier),
        })
    }

    /// Gives stdout and stderr back and waits until every line is written
    /// (before the process execs itself or ends).
    pub fn stop(mut self) {
        std::io::stdout().flush().ok();
        let _ = nix::unistd::dup2_stdout(&self.terminal);
        let _ = nix::unistd::dup2_stderr(&self.terminal);
        if let Some(c) = self.copier.take() {
            let _ = c.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rotate_at_the_size_and_the_oldest_go() {
        let dir = std::env::temp_dir().join(format!("pbxlink-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut r = Rotating::open(
            &dir,
            NAME,
            Rotation {
                max_bytes: 100,
                keep: 2,
            },
        )
        .unwrap();
        for i in 0..20 {
            r.write_line(&format!("line {i:02} {}\n", "x".repeat(30)))
                .unwrap();
        }
        let names: Vec<String> = files(&dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["gateway.log", "gateway.log.1", "gateway.log.2"]);
        let newest = std::fs::read_to_string(dir.join(NAME)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "not for everyone's eyes");
        assert!(newest.contains("line 19"));
        assert!(newest.len() <= 100);
        let all: String = files(&dir)
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(!all.contains("line 00"), "the oldest lines are dropped");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

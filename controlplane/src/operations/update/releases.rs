//! The releases on disk, in the state directory:
//!
//! ```text
//! releases/0.1.0/pbxlink -> /usr/bin/pbxlink   the package's binary (a link)
//! releases/0.2.0/pbxlink                       a staged release (executable)
//! releases/current -> 0.2.0                    the version that runs
//! update.journal                               where an update stands
//! ```
//!
//! Staging writes the executable beside its final name, syncs it and
//! renames it; the switch points a new link at the version and renames it
//! over `current` (one `rename(2)`), then syncs the directory. Whatever
//! moment the power goes, `current` names one whole version.

use flate2::read::GzDecoder;
use pbxlink_update::Version;
use pbxlink_update::journal::Journal;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The largest executable a release may unpack to.
const MAX_EXECUTABLE: u64 = 512 << 20;

/// The release store under a state directory.
#[derive(Debug, Clone)]
pub struct Releases {
    dir: PathBuf,
    journal: PathBuf,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Releases {
    /// The store of the gateway whose state directory is `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("releases"),
            journal: state_dir.join("update.journal"),
        }
    }

    /// The executable of `version`.
    pub fn executable(&self, version: &Version) -> PathBuf {
        self.dir.join(version.to_string()).join("pbxlink")
    }

    /// Whether `exe` is one of the releases' executables (not the
    /// package's binary, which the base release only links to).
    pub fn holds(&self, exe: &Path) -> bool {
        match (exe.canonicalize(), self.dir.canonicalize()) {
            (Ok(exe), Ok(dir)) => exe.starts_with(dir),
            _ => false,
        }
    }

    /// The version `current` names, if any.
    pub fn current(&self) -> Option<Version> {
        let target = fs::read_link(self.dir.join("current")).ok()?;
        Version::parse(target.to_str()?).ok()
    }

    /// The journal, if there is one (a journal that does not parse is
    /// an error: the caller says so and runs what `current` names).
    pub fn journal(&self) -> Result<Option<Journal>, String> {
        match fs::read(&self.journal) {
            Ok(b) => Journal::from_bytes(&b)
                .map(Some)
                .map_err(|e| format!("{}: {e}", self.journal.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", self.journal.display())),
        }
    }

    /// Writes the journal whole or not at all, synced.
    pub fn write_journal(&self, j: &Journal) -> std::io::Result<()> {
        crate::state_file::write(&self.journal, &j.to_bytes())
    }

    /// Makes `version` the running binary's release (a link to `exe`)
    /// unless it is one already: the version an update rolls back to.
    pub fn keep_running(&self, version: &Version, exe: &Path) -> std::io::Result<()> {
        let bin = self.executable(version);
        if fs::symlink_metadata(&bin).is_ok() {
            return Ok(());
        }
        let dir = bin.parent().expect("a version directory");
        fs::create_dir_all(dir)?;
        let tmp = dir.join("pbxlink.link");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(exe, &tmp)?;
        fs::rename(&tmp, &bin)?;
        sync_dir(dir)
    }

    /// Unpacks a verified release (a gzip-compressed executable) as
    /// `version`'s executable: written beside, synced, renamed.
    pub fn stage(&self, version: &Version, gz: &[u8]) -> Result<PathBuf, String> {
        let bin = self.executable(version);
        let dir = bin.parent().expect("a version directory");
        fs::create_dir_all(dir).map_err(|e| format!("making {}: {e}", dir.display()))?;
        let part = dir.join("pbxlink.partial");
        let written = (|| -> std::io::Result<u64> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o750)
                .open(&part)?;
            let mut reader = std::io::Read::take(GzDecoder::new(gz), MAX_EXECUTABLE + 1);
            let n = std::io::copy(&mut reader, &mut f)?;
            f.flush()?;
            f.sync_all()?;
            Ok(n)
        })();
        let fail = |why: String| {
            let _ = fs::remove_file(&part);
            why
        };
        let n = written.map_err(|e| fail(format!("unpacking the release: {e}")))?;
        if n > MAX_EXECUTABLE {
            return Err(fail(format!(
                "the release unpacks to more than {MAX_EXECUTABLE} bytes"
            )));
        }
        let mut head = [0u8; 4];
        let is_elf = File::open(&part)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
            && head == *b"\x7fELF";
        if !is_elf {
            return Err(fail("the release is not an executable (ELF)".into()));
        }
        fs::rename(&part, &bin).map_err(|e| fail(format!("placing the release: {e}")))?;
        sync_dir(dir).map_err(|e| format!("syncing {}: {e}", dir.display()))?;
        Ok(bin)
    }

    /// Points `current` at `version` in one rename, synced. `pause` is
    /// a test's window into the critical phase (after the rename, before
    /// the journal says the switch is done); zero otherwise.
    pub fn switch(&self, version: &Version, pause: std::time::Duration) -> std::io::Result<()> {
        let tmp = self.dir.join("current.new");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(version.to_string(), &tmp)?;
        fs::rename(&tmp, self.dir.join("current"))?;
        sync_dir(&self.dir)?;
        if !pause.is_zero() {
            tracing::warn!(
                "update: critical phase: switched `current` to {version}; pausing {} ms (PBXLINK_TEST_SWITCH_PAUSE_MS)",
                pause.as_millis()
            );
            std::thread::sleep(pause);
        }
        Ok(())
    }

    /// Forgets `current` (the package's binary runs): a package upgrade
    /// brought a newer version than the releases hold.
    pub fn forget_current(&self) -> std::io::Result<()> {
        match fs::remove_file(self.dir.join("current")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(&self.dir).or(Ok(())),
        }
    }

    /// Removes releases other than `keep` (half-staged ones too).
    pub fn prune(&self, keep: &[&Version]) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(v) = Version::parse(name) else {
                continue;
            };
            if !keep.contains(&&v) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn staging_and_switching_leave_whole_versions() {
        let dir = std::env::temp_dir().join(format!("pbxlink-releases-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let r = Releases::new(&dir);
        let v1 = Version::new(0, 1, 0);
        let v2 = Version::new(0, 2, 0);
        assert_eq!(r.current(), None);
        assert_eq!(r.journal(), Ok(None));
        r.keep_running(&v1, Path::new("/usr/bin/pbxlink")).unwrap();
        assert_eq!(
            fs::read_link(r.executable(&v1)).unwrap(),
            Path::new("/usr/bin/pbxlink")
        );
        // Not an executable, or not gzip: refused, nothing left.
        assert!(
            r.stage(&v2, &gz(b"#!/bin/sh\n"))
                .unwrap_err()
                .contains("ELF")
        );
        assert!(r.stage(&v2, b"plain").unwrap_err().contains("unpacking"));
        assert!(!r.executable(&v2).exists());
        let bin = r.stage(&v2, &gz(b"\x7fELF rest")).unwrap();
        assert_eq!(fs::read(&bin).unwrap(), b"\x7fELF rest");
        r.switch(&v2, std::time::Duration::ZERO).unwrap();
        assert_eq!(r.current(), Some(v2.clone()));
        r.switch(&v1, std::time::Duration::ZERO).unwrap();
        assert_eq!(r.current(), Some(v1.clone()));
        let j = Journal::Switching {
            version: v2.clone(),
            from: v1.clone(),
        };
        r.write_journal(&j).unwrap();
        assert_eq!(r.journal(), Ok(Some(j)));
        r.prune(&[&v1]);
        assert!(!r.executable(&v2).exists());
        assert!(r.executable(&v1).symlink_metadata().is_ok());
        fs::write(dir.join("update.journal"), b"nonsense").unwrap();
        assert!(r.journal().is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}

//! Writing one of the gateway's state files (users, the admin account,
//! the wizard's settings, the outbox's acknowledgements, the sync state):
//! whole or not at all — a temporary file, synced, renamed over the old
//! one, the directory synced — so a crash or a full disk leaves the
//! previous version, never half of one. Readable by the gateway's user
//! only (they hold personal data and secrets).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `path` whole or not at all, mode 0600.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself must survive a power cut.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

//! The wizard's settings on disk (`state_dir/onboarding.json`), so the
//! gateway restarting itself to apply them, or a power cut, keeps them.
//! Written whole (`state_file`); readable by the gateway's user only (the
//! PBX's CloudLink password is in it).

use super::Onboarding;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where the wizard's settings are kept.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("onboarding.json"),
        }
    }

    /// What was saved (nothing yet: a fresh wizard).
    pub fn load(&self) -> anyhow::Result<Onboarding> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| {
                format!(
                    "{} is not the wizard's settings (move it aside to onboard again)",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Onboarding::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    /// Saves `o` in place of what was there.
    pub fn save(&self, o: &Onboarding) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let bytes = serde_json::to_vec_pretty(o)?;
        crate::state_file::write(&self.path, &bytes)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Forgets it (a data or factory reset).
    pub fn forget(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

//! The start of `pbxlink run`, before anything else: the journal read and
//! acted on (a cut critical phase or a failing new version rolled back, a
//! new version's start counted), then the version `current` names run —
//! this binary, or the release's executable in its place (exec, same
//! arguments, same process).

use super::releases::Releases;
use super::running_version;
use pbxlink_update::journal::{Journal, Start};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use crate::node_control::{ROLLED_BACK, TAKEN_OVER};

/// What the start found.
#[derive(Debug, Default)]
pub struct Launch {
    /// The journal after the start acted on it.
    pub journal: Option<Journal>,
    /// Whether this start rolled back (its alarm is told to the platform).
    pub rolled_back_now: bool,
}

/// Acts on the journal in `state_dir` and runs the version `current`
/// names: returns when that is this binary; otherwise execs the release
/// (and returns only if that fails, running this binary instead).
pub fn take_over(state_dir: &Path, health: Duration) -> Launch {
    let releases = Releases::new(state_dir);
    let read = || match releases.journal() {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!("update: {e}; left as it is");
            None
        }
    };
    let running = running_version();
    // Handed over by a start that acted on the journal already.
    if std::env::var(TAKEN_OVER).is_ok_and(|v| v == running.to_string()) {
        return Launch {
            journal: read(),
            rolled_back_now: std::env::var_os(ROLLED_BACK).is_some(),
        };
    }
    let mut launch = Launch {
        journal: read(),
        rolled_back_now: false,
    };
    if let Some(j) = &launch.journal {
        match j.at_start(crate::events::unix_ms(), health.as_millis() as u64) {
            Start::Run => {}
            Start::Check(next) => {
                if let Err(e) = releases.write_journal(&next) {
                    tracing::warn!("update: writing the journal: {e}");
                }
                launch.journal = Some(next);
            }
            Start::RollBack { journal, to, then } => {
                tracing::warn!("update: rolling back to {to}");
                let done = releases
                    .write_journal(&journal)
                    .and_then(|()| releases.switch(&to, Duration::ZERO))
                    .and_then(|()| releases.write_journal(&then));
                if let Err(e) = done {
                    tracing::warn!("update: rolling back: {e}");
                }
                launch.journal = Some(then);
                launch.rolled_back_now = true;
            }
        }
    }
    let Some(current) = releases.current() else {
        return launch;
    };
    if current == running {
        return launch;
    }
    let is_release = std::env::current_exe().is_ok_and(|exe| releases.holds(&exe));
    if current < running && !is_release && !matches!(launch.journal, Some(Journal::Checking { .. }))
    {
        // A package upgrade brought a newer binary than the releases.
        tracing::info!(
            "update: this binary ({running}) is newer than the release {current}: it runs"
        );
        if let Err(e) = releases.forget_current() {
            tracing::warn!("update: forgetting the release link: {e}");
        }
        return launch;
    }
    let exe = releases.executable(&current);
    tracing::info!("update: running release {current} ({})", exe.display());
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(TAKEN_OVER, current.to_string());
    if launch.rolled_back_now {
        cmd.env(ROLLED_BACK, "1");
    } else {
        cmd.env_remove(ROLLED_BACK);
    }
    let e = cmd.exec();
    tracing::warn!(
        "update: starting release {current} ({}): {e}; this binary ({running}) runs",
        exe.display()
    );
    launch
}

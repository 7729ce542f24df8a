//! Asking the running gateway to stop and start again: the wizard applies
//! settings that way, and `reboot` (SPEC §4, §7) is the process restarting
//! itself. A request is a reason; the node drains its calls (as on
//! SIGTERM), stops, and `run` starts the binary again in the same process
//! (exec), so a supervisor sees no exit and the configuration is read anew.

use std::sync::Arc;
use tokio::sync::watch;

/// How a node run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// SIGINT, SIGTERM or `--seconds`: the process ends.
    Stop,
    /// Start again, for this reason.
    Restart(String),
}

/// A handle to ask the node to restart.
#[derive(Debug, Clone)]
pub struct NodeControl {
    tx: Arc<watch::Sender<Option<String>>>,
}

impl Default for NodeControl {
    fn default() -> Self {
        Self {
            tx: Arc::new(watch::channel(None).0),
        }
    }
}

impl NodeControl {
    /// Asks for a restart (the first reason is kept).
    pub fn restart(&self, why: &str) {
        self.tx.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(why.to_owned());
                true
            } else {
                false
            }
        });
    }

    /// Waits until a restart is asked for; its reason.
    pub async fn requested(&self) -> String {
        let mut rx = self.tx.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether a restart is pending.
    pub fn pending(&self) -> bool {
        self.tx.borrow().is_some()
    }
}

/// Set on the release a start hands over to (`operations::update::launch`):
/// the update journal was acted on.
pub const TAKEN_OVER: &str = "PBXLINK_UPDATE_TAKEN_OVER";
/// Set with it when that start rolled back.
pub const ROLLED_BACK: &str = "PBXLINK_UPDATE_ROLLED_BACK";

/// Starts this binary again in this process, with the same arguments;
/// returns only if that fails.
pub fn exec_self() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return anyhow::anyhow!("finding the pbxlink binary to restart: {e}"),
    };
    tracing::info!("restarting: {}", me.display());
    let mut cmd = std::process::Command::new(&me);
    cmd.args(std::env::args_os().skip(1));
    // The next start acts on the update journal anew.
    cmd.env_remove(TAKEN_OVER).env_remove(ROLLED_BACK);
    let e = cmd.exec();
    anyhow::anyhow!("restarting {}: {e}", me.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn the_first_reason_is_kept() {
        let c = NodeControl::default();
        assert!(!c.pending());
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.requested().await }
        });
        c.restart("the PBX's settings changed");
        c.restart("reboot");
        assert_eq!(waiting.await.unwrap(), "the PBX's settings changed");
        assert_eq!(c.requested().await, "the PBX's settings changed");
    }
}

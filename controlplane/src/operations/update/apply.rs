//! Applying a staged release when it is due: at the time the journal's
//! `Staged` names (the wizard's update time, or at once), or sooner when
//! a newer release is staged meanwhile.

use super::Updater;
use pbxlink_update::journal::Journal;
use std::sync::Arc;
use std::time::Duration;

/// Waits for a staged release to be due, then applies it (the node
/// restarts into it). Runs for the node's life.
pub async fn run(u: Arc<Updater>) {
    loop {
        let due = match u.journal() {
            Some(Journal::Staged { apply_at_ms, .. }) => Some(apply_at_ms),
            _ => None,
        };
        let Some(at) = due else {
            u.staged.notified().await;
            continue;
        };
        let wait = Duration::from_millis(at.saturating_sub(crate::events::unix_ms()));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = u.staged.notified() => continue,
        }
        let switching = u.clone();
        match tokio::task::spawn_blocking(move || switching.switch_now()).await {
            Ok(Ok(v)) => {
                tracing::info!("update: switched to {v}; restarting into it");
                return;
            }
            Ok(Err(why)) => tracing::warn!("update: not applied: {why}"),
            Err(e) => tracing::warn!("update: the switch stopped: {e}"),
        }
    }
}

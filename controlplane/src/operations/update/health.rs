//! The health check after a switch: the new version must have the PBX
//! trunk, the cloud trunk and the tunnel up by the journal's deadline,
//! or it rolls back to the previous version by itself.

use super::Updater;
use pbxlink_update::journal::Journal;
use std::sync::Arc;
use std::time::Duration;

/// Checks `check` each second until it passes or the deadline goes by;
/// returns at once when no check is owed.
pub async fn run(u: Arc<Updater>, check: impl Fn() -> Result<(), String>) {
    let Some(Journal::Checking {
        version,
        deadline_ms,
        ..
    }) = u.journal()
    else {
        return;
    };
    tracing::info!(
        "update: {version} runs; health check (PBX trunk, cloud trunk, tunnel) within {} s",
        deadline_ms.saturating_sub(crate::events::unix_ms()) / 1000
    );
    loop {
        let verdict = check();
        match verdict {
            Ok(()) => {
                tracing::info!("update: {version} passed its health check");
                u.finish(Ok(()));
                return;
            }
            Err(why) if crate::events::unix_ms() >= deadline_ms => {
                tracing::warn!("update: {version} failed its health check: {why}");
                u.finish(Err(why));
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// The verdict on the gateway's status (`/api/status`): each part that
/// must be up, or what is not. The PBX trunk counts when it is watched
/// (`[pbx] keepalive_seconds` above 0: without OPTIONS the gateway cannot
/// know it).
pub fn verdict(status: &serde_json::Value, pbx_watched: bool) -> Result<(), String> {
    let mut down = Vec::new();
    if pbx_watched && status["pbx_trunk"] != "up" {
        down.push(format!("the PBX trunk is {}", status["pbx_trunk"]));
    }
    if status["cloud_trunk"]["state"] != "connected" {
        down.push(format!(
            "the cloud trunk is {}",
            status["cloud_trunk"]["state"]
        ));
    }
    match &status["tunnel"] {
        serde_json::Value::Null => {}
        t if t == "connected" => {}
        t => down.push(format!("the tunnel is {t}")),
    }
    if down.is_empty() {
        Ok(())
    } else {
        Err(down.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_part_must_be_up() {
        let up = json!({"pbx_trunk": "up", "cloud_trunk": {"state": "connected"}, "tunnel": "connected"});
        assert_eq!(verdict(&up, true), Ok(()));
        let no_tunnel =
            json!({"pbx_trunk": "up", "cloud_trunk": {"state": "connected"}, "tunnel": null});
        assert_eq!(verdict(&no_tunnel, true), Ok(()), "no tunnel configured");
        let unwatched = json!({"pbx_trunk": "not known yet", "cloud_trunk": {"state": "connected"}, "tunnel": "connected"});
        assert_eq!(verdict(&unwatched, false), Ok(()), "keepalive_seconds = 0");
        assert!(verdict(&unwatched, true).is_err(), "not up yet");
        let down = json!({"pbx_trunk": "lost", "cloud_trunk": {"state": "down"}, "tunnel": "down: refused"});
        assert_eq!(
            verdict(&down, true),
            Err("the PBX trunk is \"lost\", the cloud trunk is \"down\", the tunnel is \"down: refused\"".into())
        );
    }
}

//! User sync toward the cloud platform (SPEC §5): what changed among the
//! onboarded users since the last sync — added or changed (a name or an
//! email edited on the PBX), and removed — plus every user not onboarded
//! with the reason. The last synced state is kept in
//! `STATE_DIR/synced.json`, so a restart does not send everyone again.
//! Pure apart from that file; the tunnel's driver runs it (on a push from
//! the PBX, on the schedule, on demand) and puts its batches in the
//! outbox before it commits.

use pbxlink_users::{Directory, Status};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Users per `sync_batch` event: each stays well under the tunnel's
/// 1 MiB message.
const USERS_PER_BATCH: usize = 500;

/// One sync's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRun {
    /// Its number.
    pub sync: u64,
    /// The events to deliver, in order: (kind, body).
    pub events: Vec<(String, Value)>,
    /// Users added or changed.
    pub upserted: usize,
    /// Users removed.
    pub removed: usize,
    /// Users not onboarded.
    pub errors: usize,
    synced: BTreeMap<String, Value>,
}

impl SyncRun {
    /// What the platform is told, as a command's result.
    pub fn report(&self) -> Value {
        json!({
            "sync": self.sync,
            "upserted": self.upserted,
            "removed": self.removed,
            "errors": self.errors,
        })
    }
}

/// The sync's memory.
#[derive(Debug)]
pub struct UserSync {
    path: PathBuf,
    synced: BTreeMap<String, Value>,
    count: u64,
}

/// A user as the platform gets it (no SIP password).
fn user_json(e: &pbxlink_users::Entry, role: &str) -> Value {
    json!({
        "directory_number": e.user.directory_number,
        "first_name": e.user.first_name,
        "last_name": e.user.last_name,
        "email": e.user.email,
        "role": role,
    })
}

impl UserSync {
    /// The sync state kept in `state_dir`.
    pub fn open(state_dir: &std::path::Path) -> Self {
        let path = state_dir.join("synced.json");
        let (synced, count) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|v| {
                let users = v["users"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                (users, v["count"].as_u64().unwrap_or(0))
            })
            .unwrap_or_default();
        Self {
            path,
            synced,
            count,
        }
    }

    /// What a sync of `directory` would send now.
    pub fn run(&self, directory: &Directory) -> SyncRun {
        let sync = self.count + 1;
        let mut now: BTreeMap<String, Value> = BTreeMap::new();
        let mut errors = Vec::new();
        for e in directory.users() {
            match &e.status {
                Status::Onboarded(role) => {
                    now.insert(e.user.directory_number.clone(), user_json(e, &role.name));
                }
                Status::NotOnboarded(reason) => errors.push(json!({
                    "user": e.user.directory_number,
                    "email": e.user.email,
                    "reason": reason,
                })),
            }
        }
        let upserted: Vec<Value> = now
            .iter()
            .filter(|(dn, u)| self.synced.get(*dn) != Some(u))
            .map(|(_, u)| u.clone())
            .collect();
        let removed: Vec<String> = self
            .synced
            .keys()
            .filter(|dn| !now.contains_key(*dn))
            .cloned()
            .collect();
        let mut events = Vec::new();
        let chunks: Vec<&[Value]> = upserted.chunks(USERS_PER_BATCH).collect();
        if chunks.is_empty() {
            events.push((
                "sync_batch".to_owned(),
                json!({ "sync": sync, "upserted": [], "removed": removed }),
            ));
        }
        for (i, chunk) in chunks.iter().enumerate() {
            events.push((
                "sync_batch".to_owned(),
                json!({
                    "sync": sync,
                    "upserted": chunk,
                    // Removals ride with the first batch.
                    "removed": if i == 0 { removed.clone() } else { Vec::new() },
                }),
            ));
        }
        events.push((
            "sync_errors".to_owned(),
            json!({ "sync": sync, "errors": errors }),
        ));
        SyncRun {
            sync,
            upserted: upserted.len(),
            removed: removed.len(),
            errors: errors.len(),
            events,
            synced: now,
        }
    }

    /// Records `run` as done (its events are in the outbox).
    pub fn commit(&mut self, run: SyncRun) -> std::io::Result<()> {
        self.synced = run.synced;
        self.count = run.sync;
        let text = serde_json::to_vec(&json!({
            "count": self.count,
            "users": self.synced,
        }))
        .map_err(std::io::Error::other)?;
        crate::state_file::write(&self.path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbxlink_users::{PbxUser, RoleRef};

    fn user(dn: &str, first: &str, email: &str) -> PbxUser {
        PbxUser {
            directory_number: dn.into(),
            first_name: first.into(),
            email: email.into(),
            role: Some(RoleRef::Index(1)),
            ..PbxUser::default()
        }
    }

    #[test]
    fn only_what_changed_is_sent_and_errors_every_time() {
        let dir = std::env::temp_dir().join(format!("pbxlink-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Directory::default();
        d.push(
            vec![
                user("1000", "Ada", "ada@example.com"),
                user("1001", "Bob", "bob@example.com"),
                user("1002", "Cy", "admin@example.com"),
            ],
            true,
        )
        .unwrap();
        let mut s = UserSync::open(&dir);
        let first = s.run(&d);
        assert_eq!(
            (first.sync, first.upserted, first.removed, first.errors),
            (1, 2, 0, 1)
        );
        assert_eq!(
            first.events[1].1["errors"][0]["reason"]
                .as_str()
                .unwrap()
                .split(' ')
                .next(),
            Some("role-based")
        );
        s.commit(first).unwrap();
        // A name changed on the PBX, a user removed.
        d.push(vec![user("1000", "Ada", "ada.lovelace@example.com")], true)
            .unwrap();
        let s = UserSync::open(&dir);
        let second = s.run(&d);
        assert_eq!(second.sync, 2, "the count kept across a restart");
        assert_eq!((second.upserted, second.removed), (1, 1));
        assert_eq!(
            second.events[0].1["upserted"][0]["email"],
            "ada.lovelace@example.com"
        );
        assert_eq!(second.events[0].1["removed"][0], "1001");
        // Nothing changed: still one (empty) sync_batch and one sync_errors
        // (docs/protocols-tunnel.md), so the platform sees every sync complete.
        let mut s = UserSync::open(&dir);
        s.commit(second).unwrap();
        let third = s.run(&d);
        let kinds: Vec<&str> = third.events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["sync_batch", "sync_errors"]);
        assert_eq!(third.events[0].1["upserted"], serde_json::json!([]));
        assert_eq!(third.events[0].1["removed"], serde_json::json!([]));
        assert_eq!(third.events[1].1["errors"], serde_json::json!([]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

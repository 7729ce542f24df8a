//! The Softphone users as the rest of the node sees them: written by the
//! subscriber loop, read by the calls (which route by them) and the admin
//! API (which shows them).

use pbxlink_sip::digest::Credentials;
use pbxlink_sip::register::RegState;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One Softphone user as calls and the admin API see them.
#[derive(Debug, Clone)]
pub(super) struct Softphone {
    pub(super) creds: Option<Credentials>,
    /// Its registration (none: not registering, see `note`).
    pub(super) state: Option<RegState>,
    /// Why it is not registering.
    pub(super) note: Option<&'static str>,
}

impl Softphone {
    fn registered(&self, now: Instant) -> bool {
        matches!(self.state, Some(RegState::Registered { until }) if until > now)
    }
}

#[derive(Debug, Default)]
pub(super) struct View {
    pub(super) users: BTreeMap<String, Softphone>,
    pub(super) registrar: String,
}

/// The Softphone users, shared by the subscriber loop (which writes),
/// the calls (which route by them) and the admin API (which shows them).
#[derive(Debug, Clone, Default)]
pub struct Softphones(pub(super) Arc<Mutex<View>>);

impl Softphones {
    /// `user`'s credentials when it is a Softphone user with a password.
    pub fn credentials(&self, user: &str) -> Option<Credentials> {
        self.0
            .lock()
            .expect("softphones")
            .users
            .get(user)
            .and_then(|s| s.creds.clone())
    }

    /// Whether `user` is a Softphone user here.
    pub fn contains(&self, user: &str) -> bool {
        self.0.lock().expect("softphones").users.contains_key(user)
    }

    /// Users registered now, and users in all.
    pub fn registered(&self) -> (usize, usize) {
        let now = Instant::now();
        let v = self.0.lock().expect("softphones");
        (
            v.users.values().filter(|s| s.registered(now)).count(),
            v.users.len(),
        )
    }

    /// Every user and its state, for the admin API.
    pub fn json(&self) -> Value {
        let now = Instant::now();
        let v = self.0.lock().expect("softphones");
        json!({
            "registrar": v.registrar,
            "users": v.users.len(),
            "registered": v.users.values().filter(|s| s.registered(now)).count(),
            "softphones": v.users.iter().map(|(u, s)| json!({
                "extension": u,
                "registered": s.registered(now),
                "state": match (&s.state, s.note) {
                    (_, Some(note)) => note.to_owned(),
                    (Some(state), None) => describe(state, now),
                    (None, None) => "waiting".to_owned(),
                },
            })).collect::<Vec<_>>(),
        })
    }
}

fn describe(state: &RegState, now: Instant) -> String {
    match state {
        RegState::Waiting => "waiting".into(),
        RegState::Registering => "registering".into(),
        RegState::Registered { until } => format!(
            "registered ({} s left)",
            until.saturating_duration_since(now).as_secs()
        ),
        RegState::Failed { reason, retry_at } => format!(
            "failed: {reason} (next try in {} s)",
            retry_at.saturating_duration_since(now).as_secs()
        ),
        RegState::Unregistering => "unregistering".into(),
    }
}

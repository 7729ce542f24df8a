//! cloudsim's account store: the accounts and their tokens, and per
//! gateway what it delivered — every event once (ids at or below the
//! highest stored are duplicates, counted and dropped; a jump in ids is a
//! gap, counted), the users its syncs carried, and its sync errors.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// One stored event.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its id.
    pub id: u64,
    /// Its kind.
    pub kind: String,
    /// When the gateway made it.
    pub at_ms: u64,
    /// Its content.
    pub body: Value,
}

/// What a gateway delivered.
#[derive(Debug, Default)]
pub struct Gateway {
    /// Its account.
    pub account: String,
    /// Whether its tunnel is up.
    pub connected: bool,
    /// Its sessions so far.
    pub sessions: u64,
    /// The highest event id stored.
    pub highest: u64,
    /// Every event stored, in id order.
    pub events: Vec<Stored>,
    /// Events received again (already stored), dropped.
    pub duplicates: u64,
    /// Ids skipped (events the gateway dropped before delivering).
    pub gaps: u64,
    /// Its users, from its syncs.
    pub users: BTreeMap<String, Value>,
    /// Its latest sync errors.
    pub sync_errors: Vec<Value>,
    /// Its profile and versions, from its hello.
    pub hello: Value,
    /// Its onboarding settings, as it last sent them (what a replacement
    /// relinks to).
    pub onboarding: Value,
}

/// Every account and gateway.
#[derive(Debug, Default)]
pub struct Store {
    tokens: HashMap<String, String>,
    /// Gateways by id.
    pub gateways: BTreeMap<String, Gateway>,
}

impl Store {
    /// A store knowing `accounts` (name, token).
    pub fn new(accounts: Vec<(String, String)>) -> Self {
        Self {
            tokens: accounts.into_iter().collect(),
            gateways: BTreeMap::new(),
        }
    }

    /// Whether `token` is `account`'s.
    pub fn admits(&self, account: &str, token: &str) -> bool {
        self.tokens.get(account).is_some_and(|t| t == token)
    }

    /// A gateway said hello; the highest id stored for it.
    pub fn hello(&mut self, gateway: &str, account: &str, hello: Value) -> u64 {
        let g = self.gateways.entry(gateway.to_owned()).or_default();
        g.account = account.to_owned();
        g.connected = true;
        g.sessions += 1;
        g.hello = hello;
        g.highest
    }

    /// Stores an event; whether it was new.
    pub fn event(&mut self, gateway: &str, e: Stored) -> bool {
        let g = self.gateways.entry(gateway.to_owned()).or_default();
        if e.id <= g.highest {
            g.duplicates += 1;
            return false;
        }
        g.gaps += e.id - g.highest - 1;
        g.highest = e.id;
        match e.kind.as_str() {
            "sync_batch" => {
                for u in e.body["upserted"].as_array().into_iter().flatten() {
                    if let Some(dn) = u["directory_number"].as_str() {
                        g.users.insert(dn.to_owned(), u.clone());
                    }
                }
                for dn in e.body["removed"].as_array().into_iter().flatten() {
                    if let Some(dn) = dn.as_str() {
                        g.users.remove(dn);
                    }
                }
            }
            "sync_errors" => {
                g.sync_errors = e.body["errors"].as_array().cloned().unwrap_or_default();
            }
            "onboarding" => g.onboarding = e.body.clone(),
            _ => {}
        }
        g.events.push(e);
        true
    }

    /// What `gateway` asking to replace `replaces` gets: the `relink`
    /// command's arguments (the stored settings, or why there are none).
    pub fn relink(&self, gateway: &str, replaces: &str, network: &Value) -> Value {
        let account = self.gateways.get(gateway).map(|g| g.account.as_str());
        match self.gateways.get(replaces) {
            Some(old) if Some(old.account.as_str()) == account && !old.onboarding.is_null() => {
                json!({ "replaces": replaces, "network": network, "onboarding": old.onboarding })
            }
            _ => json!({
                "replaces": replaces,
                "error": format!("the account has no gateway {replaces:?} with stored settings"),
            }),
        }
    }

    /// A gateway's tunnel went down.
    pub fn gone(&mut self, gateway: &str) {
        if let Some(g) = self.gateways.get_mut(gateway) {
            g.connected = false;
        }
    }

    /// A summary of every gateway.
    pub fn summary(&self) -> Value {
        json!(
            self.gateways
                .iter()
                .map(|(id, g)| {
                    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
                    for e in &g.events {
                        *kinds.entry(e.kind.as_str()).or_default() += 1;
                    }
                    json!({
                        "gateway": id,
                        "account": g.account,
                        "connected": g.connected,
                        "sessions": g.sessions,
                        "highest": g.highest,
                        "events": g.events.len(),
                        "by_kind": kinds,
                        "duplicates": g.duplicates,
                        "gaps": g.gaps,
                        "users": g.users.len(),
                        "sync_errors": g.sync_errors.len(),
                        "hello": g.hello,
                    })
                })
                .collect::<Vec<_>>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64, kind: &str, body: Value) -> Stored {
        Stored {
            id,
            kind: kind.into(),
            at_ms: 0,
            body,
        }
    }

    #[test]
    fn each_event_is_stored_once_and_syncs_build_the_user_list() {
        let mut s = Store::new(vec![("ACME".into(), "t".into())]);
        assert!(s.admits("ACME", "t") && !s.admits("ACME", "x") && !s.admits("X", "t"));
        assert_eq!(s.hello("gw", "ACME", Value::Null), 0);
        let users = json!({"upserted": [{"directory_number": "1000"}, {"directory_number": "1001"}], "removed": []});
        assert!(s.event("gw", ev(1, "sync_batch", users)));
        assert!(
            !s.event("gw", ev(1, "sync_batch", Value::Null)),
            "again: a duplicate"
        );
        assert!(s.event(
            "gw",
            ev(
                3,
                "sync_batch",
                json!({"upserted": [], "removed": ["1000"]})
            )
        ));
        let g = &s.gateways["gw"];
        assert_eq!((g.events.len(), g.duplicates, g.gaps), (2, 1, 1));
        assert_eq!(g.users.keys().collect::<Vec<_>>(), ["1001"]);
    }
}

//! The gateway's alarms (SPEC §7): conditions an operator must act on.
//! An alarm is raised once (again only when its text changes) with when
//! and why, and cleared when its condition goes. Whoever raises or clears
//! one tells the log and the platform (an `alarm` event, docs/protocols-tunnel.md);
//! this module only keeps the list the page (`GET /api/alarms`) and
//! `/metrics` read.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A diagnostic check failed (its source names the check and target).
pub const DIAGNOSTIC_FAILED: &str = "diagnostic_failed";
/// The CSTA link to the PBX is lost.
pub const CSTA_LOST: &str = "csta_lost";
/// The outbox was full: events for the platform were dropped.
pub const OUTBOX_OVERFLOW: &str = "outbox_overflow";
/// Too many of the calls that ended in the last 15 minutes were poor
/// (`[quality] poor_alarm_percent`).
pub const POOR_CALLS: &str = "poor_calls";

/// One active alarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alarm {
    /// What kind of alarm.
    pub code: &'static str,
    /// What it is about (`stun 198.51.100.10:3479`).
    pub source: String,
    /// Why, for the operator.
    pub text: String,
    /// When it was raised (RFC 3339, UTC).
    pub since: String,
}

/// What raising changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raised {
    /// A new alarm.
    New,
    /// Already up, with a new text.
    Changed,
    /// Already up as it is.
    Same,
}

/// The active alarms.
#[derive(Debug, Default)]
pub struct Alarms {
    active: Mutex<BTreeMap<(&'static str, String), Alarm>>,
}

impl Alarms {
    /// Raises `code` for `source` at `since`.
    pub fn raise(&self, code: &'static str, source: &str, text: &str, since: String) -> Raised {
        let mut active = self.active.lock().expect("alarms");
        match active.get_mut(&(code, source.to_owned())) {
            Some(a) if a.text == text => Raised::Same,
            Some(a) => {
                a.text = text.to_owned();
                Raised::Changed
            }
            None => {
                active.insert(
                    (code, source.to_owned()),
                    Alarm {
                        code,
                        source: source.to_owned(),
                        text: text.to_owned(),
                        since,
                    },
                );
                Raised::New
            }
        }
    }

    /// Clears `code` for `source`; the alarm if it was up.
    pub fn clear(&self, code: &'static str, source: &str) -> Option<Alarm> {
        self.active
            .lock()
            .expect("alarms")
            .remove(&(code, source.to_owned()))
    }

    /// The alarms up, by code and source.
    pub fn active(&self) -> Vec<Alarm> {
        self.active
            .lock()
            .expect("alarms")
            .values()
            .cloned()
            .collect()
    }

    /// The sources with `code` up.
    pub fn sources(&self, code: &'static str) -> Vec<String> {
        self.active
            .lock()
            .expect("alarms")
            .keys()
            .filter(|(c, _)| *c == code)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_is_raised_once_changed_and_cleared() {
        let a = Alarms::default();
        let t = || "2026-12-05T08:00:00Z".to_owned();
        assert_eq!(
            a.raise(DIAGNOSTIC_FAILED, "ntp x:123", "no answer", t()),
            Raised::New
        );
        assert_eq!(
            a.raise(DIAGNOSTIC_FAILED, "ntp x:123", "no answer", t()),
            Raised::Same
        );
        assert_eq!(
            a.raise(DIAGNOSTIC_FAILED, "ntp x:123", "refused", t()),
            Raised::Changed
        );
        assert_eq!(a.active().len(), 1);
        assert_eq!(a.active()[0].text, "refused");
        assert_eq!(a.sources(DIAGNOSTIC_FAILED), ["ntp x:123"]);
        assert!(a.clear(DIAGNOSTIC_FAILED, "ntp x:123").is_some());
        assert!(a.clear(DIAGNOSTIC_FAILED, "ntp x:123").is_none());
        assert!(a.active().is_empty());
    }
}

//! Each monitored user's call history, built from the events of their
//! monitor: the last calls with direction, the other party, when they
//! started, how long they were connected and how they ended. Owns only
//! the records; time comes in with each event (Unix milliseconds), and it
//! never asks the PBX anything.

use crate::message::{ConnectionId, DeviceId, Event, EventKind, number};
use std::collections::{HashMap, VecDeque};

/// Which way a call went, for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The user was called.
    Incoming,
    /// The user called.
    Outgoing,
}

impl Direction {
    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// How a call ended for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not over yet.
    InProgress,
    /// Connected, then ended.
    Answered,
    /// Rang at the user, never answered.
    Missed,
    /// The user called, nobody answered.
    Unanswered,
    /// The far end was busy.
    Busy,
    /// It failed for another reason (the PBX's cause).
    Failed(String),
    /// The user transferred it away.
    Transferred,
}

impl Outcome {
    /// Its name (`failed: …` with the cause).
    pub fn name(&self) -> String {
        match self {
            Outcome::InProgress => "in progress".into(),
            Outcome::Answered => "answered".into(),
            Outcome::Missed => "missed".into(),
            Outcome::Unanswered => "unanswered".into(),
            Outcome::Busy => "busy".into(),
            Outcome::Failed(c) => format!("failed: {c}"),
            Outcome::Transferred => "transferred".into(),
        }
    }
}

/// One call in a user's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The PBX's call id (the latest, after a transfer).
    pub call_id: String,
    /// Which way.
    pub direction: Direction,
    /// The other party's number, when known.
    pub peer: Option<String>,
    /// When it started (Unix ms).
    pub started_ms: u64,
    /// When it was answered.
    pub answered_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl CallRecord {
    /// Seconds connected (0 if never answered).
    pub fn duration_s(&self) -> u64 {
        match (self.answered_ms, self.ended_ms) {
            (Some(a), Some(e)) => e.saturating_sub(a) / 1000,
            _ => 0,
        }
    }
}

#[derive(Debug, Default)]
struct DeviceHistory {
    /// Calls in progress (a few at most: one active, one held, one ringing).
    open: Vec<CallRecord>,
    /// Ended calls, newest last.
    done: VecDeque<CallRecord>,
    /// Calls the event being handled ended.
    closed: Vec<CallRecord>,
}

/// Most calls in progress kept per user: more than any phone has lines;
/// past it the oldest is closed as failed (its end was never reported).
const MAX_OPEN: usize = 8;

/// Every monitored user's history.
#[derive(Debug)]
pub struct CallHistory {
    keep: usize,
    devices: HashMap<DeviceId, DeviceHistory>,
}

fn same(a: &str, b: &str) -> bool {
    number(a) == number(b)
}

impl CallHistory {
    /// Keeps the last `keep` ended calls per user.
    pub fn new(keep: usize) -> Self {
        Self {
            keep: keep.max(1),
            devices: HashMap::new(),
        }
    }

    /// A user's calls, newest first (those in progress before the ended).
    pub fn calls(&self, device: &str) -> Vec<CallRecord> {
        self.devices.get(device).map_or_else(Vec::new, |h| {
            h.open
                .iter()
                .rev()
                .chain(h.done.iter().rev())
                .cloned()
                .collect()
        })
    }

    /// Forgets a user (no longer monitored).
    pub fn forget(&mut self, device: &str) {
        self.devices.remove(device);
    }

    /// `event` from `device`'s monitor, at `at_ms`; the calls it ended.
    pub fn handle_event(&mut self, at_ms: u64, device: &str, event: &Event) -> Vec<CallRecord> {
        let h = self.devices.entry(device.to_owned()).or_default();
        let call = event.connection.as_ref().map(|c| c.call.as_str());
        let is_me = |d: &Option<String>| d.as_deref().is_some_and(|d| same(d, device));
        let find =
            |h: &mut DeviceHistory, call: &str| h.open.iter().position(|r| r.call_id == call);
        match &event.kind {
            EventKind::ServiceInitiated | EventKind::Originated => {
                let Some(call) = call else { return Vec::new() };
                if find(h, call).is_none() {
                    open(h, at_ms, call, Direction::Outgoing, None);
                }
                if let (Some(i), Some(called)) = (find(h, call), &event.called) {
                    h.open[i].peer = Some(number(called).to_owned());
                }
            }
            EventKind::Delivered => {
                let Some(call) = call else { return Vec::new() };
                if is_me(&event.subject) {
                    if find(h, call).is_none() {
                        let peer = event.calling.as_deref().map(|c| number(c).to_owned());
                        open(h, at_ms, call, Direction::Incoming, peer);
                    }
                } else if let Some(i) = find(h, call) {
                    let peer = event.subject.as_ref().or(event.called.as_ref());
                    if let Some(p) = peer {
                        h.open[i].peer = Some(number(p).to_owned());
                    }
                }
            }
            EventKind::Established => {
                let Some(call) = call else { return Vec::new() };
                let i = match find(h, call) {
                    Some(i) => i,
                    None => {
                        // The monitor started mid-call.
                        let (dir, peer) = if is_me(&event.subject) {
                            (Direction::Incoming, event.calling.as_ref())
                        } else {
                            (
                                Direction::Outgoing,
                                event.subject.as_ref().or(event.called.as_ref()),
                            )
                        };
                        open(h, at_ms, call, dir, peer.map(|p| number(p).to_owned()));
                        h.open.len() - 1
                    }
                };
                h.open[i].answered_ms.get_or_insert(at_ms);
            }
            EventKind::Failed => {
                if let Some(i) = call.and_then(|c| find(h, c)) {
                    h.open[i].outcome = match event.cause.as_deref() {
                        Some("busy") => Outcome::Busy,
                        Some(c) => Outcome::Failed(c.to_owned()),
                        None => Outcome::Failed("unknown".into()),
                    };
                }
            }
            EventKind::ConnectionCleared => {
                let dropped_me = event
                    .connection
                    .as_ref()
                    .is_some_and(|c| c.device.is_empty() || same(&c.device, device))
                    || is_me(&event.subject);
                if dropped_me && let Some(i) = call.and_then(|c| find(h, c)) {
                    close(h, i, at_ms, self.keep, None);
                }
            }
            EventKind::CallCleared => {
                if let Some(i) = call.and_then(|c| find(h, c)) {
                    close(h, i, at_ms, self.keep, None);
                }
            }
            EventKind::Transferred => {
                let old: Vec<&ConnectionId> = event
                    .connection
                    .iter()
                    .chain(event.secondary.iter())
                    .collect();
                if is_me(&event.subject) {
                    for c in old {
                        if let Some(i) = find(h, &c.call) {
                            close(h, i, at_ms, self.keep, Some(Outcome::Transferred));
                        }
                    }
                } else if let Some(i) = old.iter().find_map(|c| find(h, &c.call)) {
                    // The user stays in the call, now with someone else.
                    let r = &mut h.open[i];
                    if let Some(mine) = event
                        .new_connections
                        .iter()
                        .find(|c| same(&c.device, device))
                    {
                        r.call_id = mine.call.clone();
                    }
                    let other = event
                        .new_connections
                        .iter()
                        .find(|c| !c.device.is_empty() && !same(&c.device, device))
                        .map(|c| c.device.clone())
                        .or_else(|| event.transferred_to.clone());
                    if let Some(o) = other {
                        r.peer = Some(number(&o).to_owned());
                    }
                }
            }
            _ => {}
        }
        self.devices
            .get_mut(device)
            .map(|h| std::mem::take(&mut h.closed))
            .unwrap_or_default()
    }
}

fn open(h: &mut DeviceHistory, at_ms: u64, call: &str, direction: Direction, peer: Option<String>) {
    if h.open.len() >= MAX_OPEN {
        let mut oldest = h.open.remove(0);
        oldest.ended_ms = Some(at_ms);
        oldest.outcome = Outcome::Failed("its end was never reported".into());
        h.closed.push(oldest.clone());
        h.done.push_back(oldest);
    }
    h.open.push(CallRecord {
        call_id: call.to_owned(),
        direction,
        peer,
        started_ms: at_ms,
        answered_ms: None,
        ended_ms: None,
        outcome: Outcome::InProgress,
    });
}

fn close(h: &mut DeviceHistory, i: usize, at_ms: u64, keep: usize, outcome: Option<Outcome>) {
    let mut r = h.open.remove(i);
    r.ended_ms = Some(at_ms);
    r.outcome = match (outcome, &r.outcome) {
        (Some(o), _) => o,
        (None, Outcome::InProgress) => match (r.answered_ms, r.direction) {
            (Some(_), _) => Outcome::Answered,
            (None, Direction::Incoming) => Outcome::Missed,
            (None, Direction::Outgoing) => Outcome::Unanswered,
        },
        (None, o) => o.clone(),
    };
    h.closed.push(r.clone());
    h.done.push_back(r);
    while h.done.len() > keep {
        h.done.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, call: &str, at: &str) -> Event {
        Event {
            kind,
            cross_ref: "x".into(),
            connection: Some(ConnectionId {
                call: call.into(),
                device: at.into(),
            }),
            subject: Some(at.into()),
            calling: None,
            called: None,
            cause: None,
            secondary: None,
            transferred_to: None,
            new_connections: Vec::new(),
            message_waiting: None,
        }
    }

    #[test]
    fn an_outgoing_call_is_recorded_with_its_peer_and_duration() {
        let mut h = CallHistory::new(10);
        h.handle_event(
            1_000,
            "1000",
            &ev(EventKind::ServiceInitiated, "c1", "1000"),
        );
        let mut o = ev(EventKind::Originated, "c1", "1000");
        o.called = Some("N<0612345678>;noa=nk".into());
        h.handle_event(1_100, "1000", &o);
        h.handle_event(2_000, "1000", &ev(EventKind::Delivered, "c1", "0612345678"));
        h.handle_event(
            3_000,
            "1000",
            &ev(EventKind::Established, "c1", "0612345678"),
        );
        assert_eq!(h.calls("1000")[0].outcome, Outcome::InProgress);
        h.handle_event(
            65_500,
            "1000",
            &ev(EventKind::ConnectionCleared, "c1", "1000"),
        );
        let r = &h.calls("1000")[0];
        assert_eq!(
            (
                r.direction,
                r.peer.as_deref(),
                r.started_ms,
                r.duration_s(),
                &r.outcome
            ),
            (
                Direction::Outgoing,
                Some("0612345678"),
                1_000,
                62,
                &Outcome::Answered
            )
        );
    }

    #[test]
    fn unanswered_calls_are_missed_or_unanswered_and_busy_is_kept() {
        let mut h = CallHistory::new(2);
        let mut d = ev(EventKind::Delivered, "c1", "1001");
        d.calling = Some("1000".into());
        h.handle_event(0, "1001", &d);
        h.handle_event(
            9_000,
            "1001",
            &ev(EventKind::ConnectionCleared, "c1", "1001"),
        );
        h.handle_event(10_000, "1000", &ev(EventKind::Originated, "c2", "1000"));
        let mut f = ev(EventKind::Failed, "c2", "0612");
        f.cause = Some("busy".into());
        h.handle_event(10_500, "1000", &f);
        h.handle_event(
            11_000,
            "1000",
            &ev(EventKind::ConnectionCleared, "c2", "1000"),
        );
        h.handle_event(12_000, "1000", &ev(EventKind::Originated, "c3", "1000"));
        h.handle_event(13_000, "1000", &ev(EventKind::CallCleared, "c3", "1000"));
        assert_eq!(h.calls("1001")[0].outcome, Outcome::Missed);
        assert_eq!(h.calls("1001")[0].peer.as_deref(), Some("1000"));
        let mine: Vec<String> = h.calls("1000").iter().map(|r| r.outcome.name()).collect();
        assert_eq!(mine, ["unanswered", "busy"], "newest first");
        // Only the last two kept.
        h.handle_event(14_000, "1000", &ev(EventKind::Originated, "c4", "1000"));
        h.handle_event(15_000, "1000", &ev(EventKind::CallCleared, "c4", "1000"));
        assert_eq!(h.calls("1000").len(), 2);
    }

    #[test]
    fn a_transfer_closes_the_transferrer_and_moves_the_others() {
        let mut h = CallHistory::new(10);
        // 1001 called 1000; 1000 consults 1002 and transfers.
        let mut d = ev(EventKind::Delivered, "c1", "1000");
        d.calling = Some("1001".into());
        h.handle_event(0, "1000", &d);
        h.handle_event(0, "1001", &ev(EventKind::Originated, "c1", "1001"));
        h.handle_event(1_000, "1000", &ev(EventKind::Established, "c1", "1000"));
        h.handle_event(1_000, "1001", &ev(EventKind::Established, "c1", "1000"));
        h.handle_event(2_000, "1000", &ev(EventKind::Originated, "c2", "1000"));
        let mut t = ev(EventKind::Transferred, "c1", "1000");
        t.secondary = Some(ConnectionId {
            call: "c2".into(),
            device: "1000".into(),
        });
        t.transferred_to = Some("1002".into());
        t.new_connections = ["1001", "1002"]
            .iter()
            .map(|d| ConnectionId {
                call: "c3".into(),
                device: (*d).into(),
            })
            .collect();
        h.handle_event(5_000, "1000", &t);
        h.handle_event(5_000, "1001", &t);
        let mine: Vec<String> = h.calls("1000").iter().map(|r| r.outcome.name()).collect();
        assert_eq!(mine, ["transferred", "transferred"]);
        let other = &h.calls("1001")[0];
        assert_eq!(
            (
                other.call_id.as_str(),
                other.peer.as_deref(),
                &other.outcome
            ),
            ("c3", Some("1002"), &Outcome::InProgress)
        );
        h.handle_event(
            9_000,
            "1001",
            &ev(EventKind::ConnectionCleared, "c3", "1001"),
        );
        assert_eq!(h.calls("1001")[0].outcome, Outcome::Answered);
        assert_eq!(h.calls("1001")[0].duration_s(), 8);
    }
}

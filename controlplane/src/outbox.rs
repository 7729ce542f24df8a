//! The events the gateway owes the cloud platform, on disk until the
//! platform acknowledges them (docs/protocols-tunnel.md): call records, CTI events,
//! call histories, user syncs, status and alarms. Each event gets the next
//! id and is appended to `STATE_DIR/outbox/events.log` (one JSON line) and
//! synced before it may be sent; the highest acknowledged id is kept in
//! `acked` (written whole, then renamed). A restart reads both and sends
//! again what is not acknowledged.
//!
//! Bounded: past `limit` unacknowledged events the oldest are dropped,
//! counted, and the caller raises an alarm — once per overflow episode:
//! from the first drop until the platform has acknowledged every event
//! that was left at the last one. The alarm's own events (raised, then
//! cleared) are kept outside the bound, so an overflow never fills the
//! outbox with news of itself. A disk that refuses a write is
//! counted too; the event is still kept in memory and sent (it is lost
//! only if the gateway stops before the platform has it). A refused write
//! may leave a torn line at the log's end, so the next append writes the
//! whole log anew (every unacknowledged event, then rename) instead of
//! adding to it: once the disk has room again, the log holds them all.

use pbxlink_tunnel::client::OutEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Acknowledged lines kept in the log before it is rewritten without them.
const COMPACT_AFTER: usize = 10_000;

#[derive(Serialize, Deserialize)]
struct Line {
    id: u64,
    kind: String,
    at_ms: u64,
    #[serde(default)]
    body: Value,
    /// Kept outside the bound (the overflow alarm's own events).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    outside: bool,
}

/// What the outbox counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounters {
    /// Events appended.
    pub appended: u64,
    /// Events dropped, oldest first, because the outbox was full.
    pub dropped: u64,
    /// Appends or syncs the disk refused.
    pub write_failures: u64,
}

/// The outbox.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    log: Option<File>,
    next_id: u64,
    acked: u64,
    pending: VecDeque<OutEvent>,
    limit: usize,
    /// Lines in the log that are acknowledged (rewritten away past
    /// [`COMPACT_AFTER`]).
    stale_lines: usize,
    /// A write failed: the log may miss events or end in a torn line, and
    /// is written anew at the next append.
    torn: bool,
    counters: OutboxCounters,
    /// Ids of pending events kept outside the bound.
    outside: std::collections::BTreeSet<u64>,
    /// The overflow episode under way: events dropped in it, and the
    /// highest id given at its last drop.
    overflow: Option<(u64, u64)>,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, holding at most `limit`
    /// unacknowledged events.
    pub fn open(dir: &Path, limit: usize) -> anyhow::Result<Self> {
        use anyhow::Context;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let acked = match std::fs::read_to_string(dir.join("acked")) {
            Ok(t) => t
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{}: not an event id", dir.join("acked").display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).context("reading the outbox's acknowledgement"),
        };
        let mut pending = VecDeque::new();
        let mut next_id = acked + 1;
        let mut stale_lines = 0;
        let mut outside = std::collections::BTreeSet::new();
        let path = dir.join("events.log");
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                // A line cut short by a crash is the last one: skipped.
                let Ok(l) = serde_json::from_str::<Line>(&line) else {
                    continue;
                };
                next_id = next_id.max(l.id + 1);
                if l.id > acked {
                    if l.outside {
                        outside.insert(l.id);
                    }
                    pending.push_back(OutEvent {
                        id: l.id,
                        kind: l.kind,
                        at_ms: l.at_ms,
                        body: l.body,
                    });
                } else {
                    stale_lines += 1;
                }
            }
        }
        // Events dropped before a restart are still in the log (it is
        // only appended to): drop them again, uncounted (they were).
        while pending.len() - outside.len() > limit.max(1) {
            match pending.iter().position(|e| !outside.contains(&e.id)) {
                Some(i) => {
                    pending.remove(i);
                }
                None => break,
            }
        }
        let mut outbox = Self {
            dir: dir.to_owned(),
            log: None,
            next_id,
            acked,
            pending,
            limit: limit.max(1),
            stale_lines,
            torn: false,
            counters: OutboxCounters::default(),
            outside,
            overflow: None,
        };
        outbox.rewrite()?;
        Ok(outbox)
    }

    /// The highest id the platform acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The highest id ever given (0: none yet), across restarts.
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Every event not acknowledged, in id order.
    pub fn pending(&self) -> Vec<OutEvent> {
        self.pending.iter().cloned().collect()
    }

    /// Events not acknowledged.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// What it counted.
    pub fn counters(&self) -> OutboxCounters {
        self.counters
    }

    /// Adds events, synced to disk as one batch; the events with their
    /// ids, and how many old ones were dropped to make room.
    pub fn append(&mut self, batch: Vec<(String, u64, Value)>) -> (Vec<OutEvent>, usize) {
        self.add(batch, false)
    }

    /// Adds events outside the bound (the overflow alarm's): they drop
    /// nothing and are never dropped.
    pub fn append_outside_bound(&mut self, batch: Vec<(String, u64, Value)>) -> Vec<OutEvent> {
        self.add(batch, true).0
    }

    /// The overflow episode under way: events dropped since it began.
    pub fn overflowing(&self) -> Option<u64> {
        self.overflow.map(|(dropped, _)| dropped)
    }

    /// Ends the overflow episode once the platform has acknowledged every
    /// event that was left at its last drop: the events it dropped.
    pub fn overflow_over(&mut self) -> Option<u64> {
        match self.overflow {
            Some((dropped, upto)) if self.acked >= upto => {
                self.overflow = None;
                Some(dropped)
            }
            _ => None,
        }
    }

    fn add(&mut self, batch: Vec<(String, u64, Value)>, outside: bool) -> (Vec<OutEvent>, usize) {
        let mut text = String::new();
        let mut added = Vec::with_capacity(batch.len());
        for (kind, at_ms, body) in batch {
            let e = OutEvent {
                id: self.next_id,
                kind,
                at_ms,
                body,
            };
            self.next_id += 1;
            if let Ok(l) = serde_json::to_string(&Line {
                id: e.id,
                kind: e.kind.clone(),
                at_ms: e.at_ms,
                body: e.body.clone(),
                outside,
            }) {
                text.push_str(&l);
                text.push('\n');
            }
            if outside {
                self.outside.insert(e.id);
            }
            added.push(e);
        }
        self.counters.appended += added.len() as u64;
        self.pending.extend(added.iter().cloned());
        let mut dropped = 0;
        while self.pending.len() - self.outside.len() > self.limit {
            // The oldest event inside the bound.
            let Some(i) = self
                .pending
                .iter()
                .position(|e| !self.outside.contains(&e.id))
            else {
                break;
            };
            self.pending.remove(i);
            dropped += 1;
        }
        self.counters.dropped += dropped as u64;
        if dropped > 0 {
            let upto = self.next_id - 1;
            let episode = self.overflow.get_or_insert((0, upto));
            *episode = (episode.0 + dropped as u64, upto);
        }
        let written = if self.torn {
            self.rewrite()
        } else {
            match self.log.as_mut() {
                Some(f) => f.write_all(text.as_bytes()).and_then(|()| f.sync_data()),
                None => Err(std::io::ErrorKind::NotFound.into()),
            }
        };
        self.torn = written.is_err();
        if self.torn {
            self.counters.write_failures += 1;
        }
        (added, dropped)
    }

    /// The platform stored every event up to `upto`.
    pub fn ack(&mut self, upto: u64) {
        if upto <= self.acked {
            return;
        }
        let before = self.pending.len();
        self.pending.retain(|e| e.id > upto);
        self.outside.retain(|&id| id > upto);
        self.stale_lines += before - self.pending.len();
        self.acked = upto;
        if crate::state_file::write(&self.dir.join("acked"), upto.to_string().as_bytes()).is_err() {
            self.counters.write_failures += 1;
        }
        if self.stale_lines >= COMPACT_AFTER && self.rewrite().is_err() {
            self.counters.write_failures += 1;
        }
    }

    /// Writes the log anew with the unacknowledged events only.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut text = String::new();
        for e in &self.pending {
            if let Ok(l) = serde_json::to_string(&Line {
                id: e.id,
                kind: e.kind.clone(),
                at_ms: e.at_ms,
                body: e.body.clone(),
                outside: self.outside.contains(&e.id),
            }) {
                text.push_str(&l);
                text.push('\n');
            }
        }
        let path = self.dir.join("events.log");
        self.log = None;
        crate::state_file::write(&path, text.as_bytes())?;
        self.log = Some(OpenOptions::new().append(true).open(&path)?);
        self.stale_lines = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pbxlink-outbox-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn ev(n: u64) -> (String, u64, Value) {
        ("cdr".into(), n, json!({"call": n}))
    }

    #[test]
    fn what_is_not_acknowledged_survives_a_restart() {
        let d = dir("restart");
        let mut o = Outbox::open(&d, 100).unwrap();
        let (added, _) = o.append((1..=5).map(ev).collect());
        assert_eq!(
            added.iter().map(|e| e.id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        o.ack(3);
        drop(o);
        let mut o = Outbox::open(&d, 100).unwrap();
        assert_eq!(o.acked(), 3);
        assert_eq!(o.pending().iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(o.pending()[0].body["call"], 4);
        // Ids go on after the highest ever given, acknowledged or not.
        assert_eq!(o.append(vec![ev(6)]).0[0].id, 6);
        // A line cut short by a crash is skipped, the rest kept.
        drop(o);
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.join("events.log"))
            .unwrap();
        f.write_all(b"{\"id\":7,\"kind\":\"cd").unwrap();
        let o = Outbox::open(&d, 100).unwrap();
        assert_eq!(
            o.pending().iter().map(|e| e.id).collect::<Vec<_>>(),
            [4, 5, 6]
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_refused_write_is_healed_by_writing_the_log_anew() {
        let d = dir("torn");
        let mut o = Outbox::open(&d, 100).unwrap();
        o.append(vec![ev(1)]);
        // The disk refuses the next append (a handle that cannot write
        // stands in for a full disk), leaving a torn line behind.
        let path = d.join("events.log");
        o.log = Some(File::open(&path).unwrap());
        o.append(vec![ev(2)]);
        assert_eq!(o.counters().write_failures, 1);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":2,\"ki")
            .unwrap();
        // Room again: the next append writes every event whole.
        o.append(vec![ev(3)]);
        assert_eq!(o.counters().write_failures, 1);
        drop(o);
        let o = Outbox::open(&d, 100).unwrap();
        let ids: Vec<u64> = o.pending().iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3], "nothing lost across the refused write");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts_them() {
        let d = dir("full");
        let mut o = Outbox::open(&d, 3).unwrap();
        let (_, dropped) = o.append((1..=5).map(ev).collect());
        assert_eq!(dropped, 2);
        assert_eq!(
            o.pending().iter().map(|e| e.id).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(o.counters().dropped, 2);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_overflow_is_one_episode_and_its_alarm_takes_no_slot() {
        let d = dir("episode");
        let mut o = Outbox::open(&d, 20).unwrap();
        assert_eq!(o.overflowing(), None);
        // Overflowing batch after batch: one episode.
        let mut raised = 0;
        for batch in 0..10u64 {
            let was = o.overflowing().is_some();
            o.append((batch * 5..batch * 5 + 5).map(ev).collect());
            if !was && o.overflowing().is_some() {
                raised += 1;
                o.append_outside_bound(vec![("alarm".into(), 0, json!({"raised": true}))]);
            }
        }
        assert_eq!(raised, 1);
        assert_eq!(o.overflowing(), Some(30));
        // Twenty events kept, none of them the alarm; the alarm besides.
        let kinds: Vec<String> = o.pending().iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds.iter().filter(|k| *k == "cdr").count(), 20);
        assert_eq!(kinds.iter().filter(|k| *k == "alarm").count(), 1);
        // Still kept outside the bound across a restart.
        drop(o);
        let mut o = Outbox::open(&d, 20).unwrap();
        o.append(vec![ev(99)]);
        assert_eq!(o.pending().iter().filter(|e| e.kind == "alarm").count(), 1);
        // Over once the platform took what was left at the last drop.
        let last = o.last_id();
        o.ack(last - 1);
        assert_eq!(o.overflow_over(), None, "one event left at the last drop");
        o.ack(last);
        assert_eq!(o.overflow_over(), Some(1), "the restart's own drop");
        assert_eq!(o.overflowing(), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_log_is_rewritten_without_what_was_acknowledged() {
        let d = dir("compact");
        let mut o = Outbox::open(&d, 100_000).unwrap();
        o.append((1..=(COMPACT_AFTER as u64 + 5)).map(ev).collect());
        o.ack(COMPACT_AFTER as u64);
        let lines = std::fs::read_to_string(d.join("events.log"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(lines, 5);
        let _ = std::fs::remove_dir_all(&d);
    }
}

//! The gateway's side of the tunnel, sans-IO: `hello` on connect, events
//! sent in id order with at most [`ClientConfig::window`] unacknowledged,
//! acknowledgements passed up so the outbox can forget, heartbeats, and
//! commands carried out once each however often the platform sends them.
//! What it cannot read is answered (`unknown_type`, `bad_message`) or ends
//! the connection (broken framing, another version) — never ignored.
//!
//! The outbox (on disk, in the control plane) is the source of truth for
//! events: on every connect the driver hands over everything not yet
//! acknowledged, and this session forgets its queues when the connection
//! goes.

use crate::frame::{self, Decoder};
use crate::message::{Message, Received, read};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Who the gateway is and how the session runs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The account it belongs to.
    pub account: String,
    /// Its id.
    pub gateway: String,
    /// Its secret.
    pub token: String,
    /// Software versions, as JSON.
    pub versions: Value,
    /// Its performance profile.
    pub profile: String,
    /// Events in flight unacknowledged, at most.
    pub window: usize,
    /// How long the platform has to welcome us.
    pub hello_timeout: Duration,
}

/// An event to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct OutEvent {
    /// Its id.
    pub id: u64,
    /// Its kind.
    pub kind: String,
    /// When (Unix ms).
    pub at_ms: u64,
    /// Its content.
    pub body: Value,
}

/// What the session asks of its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOutput {
    /// Send these bytes.
    Transmit(Vec<u8>),
    /// The platform welcomed us.
    Up {
        /// Its session id.
        session: String,
    },
    /// Events up to this id are stored by the platform: the outbox may
    /// forget them.
    Acked(u64),
    /// A command to carry out; answer with [`TunnelClient::answer`].
    Command {
        /// Its id.
        id: String,
        /// What.
        name: String,
        /// Its arguments.
        args: Value,
    },
    /// The platform said something was wrong (logged).
    PeerError(String),
    /// Close the connection (reconnect after a back-off).
    Close(String),
    /// The platform refused us (credentials, version): close, and retry
    /// only after the longest back-off.
    Refused(String),
}

/// Commands remembered with their results.
const REMEMBERED_COMMANDS: usize = 1000;

/// The largest result remembered. A bigger one (a piece of a download)
/// is forgotten once sent: the command, sent again, is carried out
/// again, which only reads may do.
pub const REMEMBERED_RESULT_BYTES: usize = 16 << 10;

#[derive(Debug, PartialEq)]
enum State {
    Idle,
    Hello { since: Instant },
    Up { heartbeat: Duration },
}

/// What the session counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Events sent (resends after a reconnect included).
    pub events_sent: u64,
    /// Commands carried out.
    pub commands: u64,
    /// Commands received again and answered from memory.
    pub commands_repeated: u64,
    /// Messages answered `unknown_type` or `bad_message`.
    pub refused_messages: u64,
    /// Errors the platform sent.
    pub peer_errors: u64,
    /// Acks for ids never sent on the connection (taken only up to the
    /// highest sent: a confused platform cannot make the outbox forget
    /// events it never received).
    pub acks_beyond_sent: u64,
}

/// The gateway's tunnel session.
#[derive(Debug)]
pub struct TunnelClient {
    cfg: ClientConfig,
    state: State,
    decoder: Decoder,
    queue: VecDeque<OutEvent>,
    in_flight: VecDeque<u64>,
    acked: u64,
    /// The highest event id sent on this connection (or acknowledged).
    highest_sent: u64,
    last_rx: Instant,
    last_tx: Instant,
    start: Instant,
    commands: HashMap<String, Option<Vec<u8>>>,
    command_order: VecDeque<String>,
    out: VecDeque<ClientOutput>,
    counters: ClientCounters,
}

impl TunnelClient {
    /// A session, not connected; the platform stored events up to `acked`.
    pub fn new(now: Instant, cfg: ClientConfig, acked: u64) -> Self {
        Self {
            cfg,
            state: State::Idle,
            decoder: Decoder::new(),
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            acked,
            highest_sent: acked,
            last_rx: now,
            last_tx: now,
            start: now,
            commands: HashMap::new(),
            command_order: VecDeque::new(),
            out: VecDeque::new(),
            counters: ClientCounters::default(),
        }
    }

    /// Whether the platform welcomed us.
    pub fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// The highest id the platform stored.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Events waiting or in flight.
    pub fn backlog(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// What it counted.
    pub fn counters(&self) -> ClientCounters {
        self.counters
    }

    /// The connection is open: `pending` is every event the outbox holds
    /// unacknowledged, in id order.
    pub fn handle_connected(&mut self, now: Instant, pending: Vec<OutEvent>) {
        self.reset();
        self.queue = pending.into_iter().filter(|e| e.id > self.acked).collect();
        self.state = State::Hello { since: now };
        self.last_rx = now;
        let hello = Message::Hello {
            account: self.cfg.account.clone(),
            gateway: self.cfg.gateway.clone(),
            token: self.cfg.token.clone(),
            versions: self.cfg.versions.clone(),
            profile: self.cfg.profile.clone(),
            resume_after: self.acked,
        };
        self.send(now, &hello);
    }

    /// The connection is gone.
    pub fn handle_closed(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        self.state = State::Idle;
        self.decoder = Decoder::new();
        self.queue.clear();
        self.in_flight.clear();
        self.highest_sent = self.acked;
        // Commands in progress keep their place: their results are sent
        // when they come, or again if the platform asks again.
    }

    /// A new event (already in the outbox). While down it is not queued:
    /// the next connect hands over the outbox.
    pub fn offer(&mut self, now: Instant, event: OutEvent) {
        if self.state == State::Idle || event.id <= self.acked {
            return;
        }
        self.queue.push_back(event);
        self.pump(now);
    }

    /// A command's outcome.
    pub fn answer(&mut self, now: Instant, id: &str, result: Result<Value, String>) {
        let msg = match result {
            Ok(body) => Message::Result {
                reference: id.to_owned(),
                ok: true,
                body,
                error: None,
            },
            Err(e) => Message::Result {
                reference: id.to_owned(),
                ok: false,
                body: Value::Null,
                error: Some(e),
            },
        };
        let bytes = msg.to_json();
        if bytes.len() > REMEMBERED_RESULT_BYTES {
            self.commands.remove(id);
            self.command_order.retain(|c| c != id);
        } else if let Some(slot) = self.commands.get_mut(id) {
            *slot = Some(bytes.clone());
        }
        if self.is_up()
            && let Ok(framed) = frame::encode(&bytes)
        {
            self.last_tx = now;
            self.out.push_back(ClientOutput::Transmit(framed));
        }
    }

    /// Bytes from the connection.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) {
        if self.state == State::Idle {
            return;
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_message() {
                Ok(Some(m)) => {
                    self.last_rx = now;
                    self.handle_message(now, &m);
                    if self.state == State::Idle {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.close(e.to_string());
                    return;
                }
            }
        }
    }

    fn handle_message(&mut self, now: Instant, bytes: &[u8]) {
        match read(bytes) {
            Received::Message(m) => self.handle(now, m),
            Received::UnknownType(t) => {
                self.counters.refused_messages += 1;
                self.send(now, &Message::error("unknown_type", None, Some(t)));
            }
            Received::Bad { kind, why } => {
                self.counters.refused_messages += 1;
                self.send(now, &Message::error("bad_message", Some(why), Some(kind)));
            }
            Received::OtherVersion(v) => {
                self.send(
                    now,
                    &Message::error(
                        "version",
                        Some(format!("this gateway speaks version 1, not {v}")),
                        None,
                    ),
                );
                self.close(format!("the platform speaks protocol version {v}"));
            }
            Received::NotJson(why) => {
                self.close(format!("the platform sent what is not a message: {why}"))
            }
        }
    }

    fn handle(&mut self, now: Instant, m: Message) {
        match (m, &self.state) {
            (
                Message::Welcome {
                    session,
                    heartbeat_s,
                },
                State::Hello { .. },
            ) => {
                self.state = State::Up {
                    heartbeat: Duration::from_secs(heartbeat_s.clamp(1, 300)),
                };
                self.out.push_back(ClientOutput::Up { session });
                // A result the cut kept from the platform is sent when the
                // platform asks again (it sends unanswered commands again).
                self.pump(now);
            }
            (Message::Error { code, message, .. }, State::Hello { .. })
                if code == "unauthorized" || code == "version" =>
            {
                let why = format!(
                    "{code}{}",
                    message.map_or(String::new(), |m| format!(": {m}"))
                );
                self.out.push_back(ClientOutput::Refused(why.clone()));
                self.close(why);
            }
            (
                Message::Error {
                    code,
                    message,
                    ref_type,
                },
                _,
            ) => {
                self.counters.peer_errors += 1;
                self.out.push_back(ClientOutput::PeerError(format!(
                    "{code}{}{}",
                    message.map_or(String::new(), |m| format!(": {m}")),
                    ref_type.map_or(String::new(), |t| format!(" (about {t})"))
                )));
            }
            (Message::Ack { upto }, State::Up { .. }) => {
                if upto > self.highest_sent {
                    self.counters.acks_beyond_sent += 1;
                }
                let upto = upto.min(self.highest_sent);
                while self.in_flight.front().is_some_and(|&id| id <= upto) {
                    self.in_flight.pop_front();
                }
                if upto > self.acked {
                    self.acked = upto;
                    self.out.push_back(ClientOutput::Acked(upto));
                }
                self.pump(now);
            }
            (Message::Command { id, name, args }, State::Up { .. }) => match self.commands.get(&id)
            {
                Some(Some(result)) => {
                    self.counters.commands_repeated += 1;
                    if let Ok(framed) = frame::encode(result) {
                        self.last_tx = now;
                        self.out.push_back(ClientOutput::Transmit(framed));
                    }
                }
                Some(None) => self.counters.commands_repeated += 1,
                None => {
                    self.counters.commands += 1;
                    self.commands.insert(id.clone(), None);
                    self.command_order.push_back(id.clone());
                    while self.command_order.len() > REMEMBERED_COMMANDS {
                        if let Some(old) = self.command_order.pop_front() {
                            self.commands.remove(&old);
                        }
                    }
                    self.out.push_back(ClientOutput::Command { id, name, args });
                }
            },
            (Message::Ping { t }, _) => self.send(now, &Message::Pong { t }),
            (Message::Pong { .. }, _) => {}
            (other, _) => {
                self.counters.refused_messages += 1;
                let kind = serde_json::to_value(&other)
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
                self.send(
                    now,
                    &Message::error(
                        "bad_message",
                        Some("not a message a gateway takes now".into()),
                        kind,
                    ),
                );
            }
        }
    }

    /// Sends queued events while the window has room.
    fn pump(&mut self, now: Instant) {
        if !self.is_up() {
            return;
        }
        while self.in_flight.len() < self.cfg.window {
            let Some(e) = self.queue.pop_front() else {
                return;
            };
            if e.id <= self.acked {
                continue;
            }
            self.counters.events_sent += 1;
            self.in_flight.push_back(e.id);
            self.highest_sent = self.highest_sent.max(e.id);
            self.send(
                now,
                &Message::Event {
                    id: e.id,
                    kind: e.kind,
                    at_ms: e.at_ms,
                    body: e.body,
                },
            );
        }
    }

    /// Time passed: heartbeats, a silent platform, a welcome that never came.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Idle => {}
            State::Hello { since } => {
                if now.duration_since(since) >= self.cfg.hello_timeout {
                    self.close(format!(
                        "the platform did not welcome the gateway within {} s",
                        self.cfg.hello_timeout.as_secs()
                    ));
                }
            }
            State::Up { heartbeat } => {
                if now.duration_since(self.last_rx) >= 3 * heartbeat {
                    self.close(format!(
                        "nothing from the platform for {} s",
                        (3 * heartbeat).as_secs()
                    ));
                } else if now.duration_since(self.last_tx) >= heartbeat {
                    let t = now.duration_since(self.start).as_millis() as u64;
                    self.send(now, &Message::Ping { t });
                }
            }
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => None,
            State::Hello { since } => Some(since + self.cfg.hello_timeout),
            State::Up { heartbeat } => {
                Some((self.last_tx + heartbeat).min(self.last_rx + 3 * heartbeat))
            }
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    fn send(&mut self, now: Instant, m: &Message) {
        if let Ok(framed) = frame::encode(&m.to_json()) {
            self.last_tx = now;
            self.out.push_back(ClientOutput::Transmit(framed));
        }
    }

    fn close(&mut self, why: String) {
        self.reset();
        self.out.push_back(ClientOutput::Close(why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> ClientConfig {
        ClientConfig {
            account: "ACME".into(),
            gateway: "gw-1".into(),
            token: "t0ken".into(),
            versions: json!({"pbxlink": "0.1.0"}),
            profile: "small".into(),
            window: 2,
            hello_timeout: Duration::from_secs(10),
        }
    }

    fn ev(id: u64) -> OutEvent {
        OutEvent {
            id,
            kind: "cdr".into(),
            at_ms: 1,
            body: json!({"call": id}),
        }
    }

    /// The platform's side: frames what it says, reads what it hears.
    fn say(m: serde_json::Value) -> Vec<u8> {
        frame::encode(&serde_json::to_vec(&m).unwrap()).unwrap()
    }

    fn heard(c: &mut TunnelClient) -> (Vec<serde_json::Value>, Vec<ClientOutput>) {
        let (mut sent, mut other) = (Vec::new(), Vec::new());
        while let Some(o) = c.poll_output() {
            match o {
                ClientOutput::Transmit(b) => {
                    let mut d = Decoder::new();
                    d.push(&b);
                    sent.push(serde_json::from_slice(&d.next_message().unwrap().unwrap()).unwrap());
                }
                o => other.push(o),
            }
        }
        (sent, other)
    }

    fn welcomed(t0: Instant, acked: u64, pending: Vec<OutEvent>) -> TunnelClient {
        let mut c = TunnelClient::new(t0, cfg(), acked);
        c.handle_connected(t0, pending);
        let (sent, _) = heard(&mut c);
        assert_eq!(sent[0]["type"], "hello");
        assert_eq!(
            (sent[0]["v"].as_u64(), sent[0]["resume_after"].as_u64()),
            (Some(1), Some(acked))
        );
        c.handle_input(
            t0,
            &say(json!({"v":1,"type":"welcome","session":"s1","heartbeat_s":15})),
        );
        c
    }

    #[test]
    fn events_go_in_order_within_the_window_and_acks_free_the_outbox() {
        let t0 = Instant::now();
        let mut c = welcomed(t0, 3, (1..=6).map(ev).collect());
        let (sent, other) = heard(&mut c);
        assert!(other.contains(&ClientOutput::Up {
            session: "s1".into()
        }));
        let ids: Vec<u64> = sent.iter().map(|m| m["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, [4, 5], "acknowledged ones skipped, two in flight");
        c.handle_input(t0, &say(json!({"v":1,"type":"ack","upto":4})));
        let (sent, other) = heard(&mut c);
        assert_eq!(other, [ClientOutput::Acked(4)]);
        assert_eq!(sent[0]["id"], 6);
        c.offer(t0, ev(7));
        assert!(heard(&mut c).0.is_empty(), "the window is full");
        c.handle_input(t0, &say(json!({"v":1,"type":"ack","upto":6})));
        let (sent, other) = heard(&mut c);
        assert_eq!(other, [ClientOutput::Acked(6)]);
        assert_eq!(sent[0]["id"], 7, "room again: the next goes");
        // A cut: nothing queued survives in the session; the outbox hands
        // over again on the next connect, and only what is unacknowledged.
        c.handle_closed();
        c.offer(t0, ev(8));
        c.handle_connected(t0, vec![ev(6), ev(7), ev(8)]);
        c.handle_input(t0, &say(json!({"v":1,"type":"welcome","session":"s2"})));
        let (sent, _) = heard(&mut c);
        let ids: Vec<u64> = sent
            .iter()
            .filter(|m| m["type"] == "event")
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [7, 8], "7 was never acknowledged: sent again");
    }

    #[test]
    fn an_ack_beyond_what_was_sent_frees_only_what_was_sent() {
        let t0 = Instant::now();
        let mut c = welcomed(t0, 0, (1..=2).map(ev).collect());
        heard(&mut c);
        c.offer(t0, ev(3));
        heard(&mut c);
        // The window (2) holds 1 and 2; 3 waits. A platform acking 1,000
        // must not make the outbox forget 3.
        c.handle_input(t0, &say(json!({"v":1,"type":"ack","upto":1000})));
        let (sent, other) = heard(&mut c);
        assert_eq!(other, [ClientOutput::Acked(2)]);
        assert_eq!(sent[0]["id"], 3, "3 is still delivered");
        assert_eq!(c.acked(), 2);
        assert_eq!(c.counters().acks_beyond_sent, 1);
    }

    #[test]
    fn a_command_is_carried_out_once_however_often_it_comes() {
        let t0 = Instant::now();
        let mut c = welcomed(t0, 0, Vec::new());
        heard(&mut c);
        let cmd = json!({"v":1,"type":"command","id":"c-1","name":"sync_now"});
        c.handle_input(t0, &say(cmd.clone()));
        c.handle_input(t0, &say(cmd.clone()));
        let (_, other) = heard(&mut c);
        assert_eq!(other.len(), 1, "in progress: not twice");
        c.answer(t0, "c-1", Ok(json!({"sync": 1})));
        let (sent, _) = heard(&mut c);
        assert_eq!(
            (
                sent[0]["type"].as_str(),
                sent[0]["ref"].as_str(),
                sent[0]["ok"].as_bool()
            ),
            (Some("result"), Some("c-1"), Some(true))
        );
        // Asked again after the answer (it was lost in a cut): the same
        // answer, nothing carried out.
        c.handle_input(t0, &say(cmd));
        let (sent, other) = heard(&mut c);
        assert!(other.is_empty());
        assert_eq!(sent[0]["body"]["sync"], 1);
        assert_eq!(c.counters().commands, 1);
        assert_eq!(c.counters().commands_repeated, 2);
    }

    #[test]
    fn a_big_result_is_sent_then_forgotten_so_the_read_runs_again() {
        let t0 = Instant::now();
        let mut c = welcomed(t0, 0, Vec::new());
        heard(&mut c);
        let cmd = json!({"v":1,"type":"command","id":"c-9","name":"download"});
        c.handle_input(t0, &say(cmd.clone()));
        let piece = "x".repeat(REMEMBERED_RESULT_BYTES);
        c.answer(t0, "c-9", Ok(json!({ "piece": piece })));
        let (sent, _) = heard(&mut c);
        assert_eq!(sent[0]["ref"], "c-9");
        c.handle_input(t0, &say(cmd));
        let (sent, other) = heard(&mut c);
        assert!(sent.is_empty(), "nothing answered from memory");
        assert_eq!(other.len(), 1, "carried out again");
        assert_eq!(c.counters().commands, 2);
    }

    #[test]
    fn what_cannot_be_read_is_answered_or_ends_the_connection() {
        let t0 = Instant::now();
        let mut c = welcomed(t0, 0, Vec::new());
        heard(&mut c);
        c.handle_input(t0, &say(json!({"v":1,"type":"teleport"})));
        c.handle_input(t0, &say(json!({"v":1,"type":"command","name":"x"})));
        c.handle_input(
            t0,
            &say(json!({"v":1,"type":"event","id":1,"kind":"x","at_ms":1})),
        );
        let (sent, _) = heard(&mut c);
        let codes: Vec<&str> = sent.iter().map(|m| m["code"].as_str().unwrap()).collect();
        assert_eq!(codes, ["unknown_type", "bad_message", "bad_message"]);
        assert!(c.is_up(), "the connection stays");
        c.handle_input(t0, &say(json!({"v":2,"type":"ack","upto":1})));
        let (sent, other) = heard(&mut c);
        assert_eq!(sent[0]["code"], "version");
        assert!(matches!(&other[0], ClientOutput::Close(why) if why.contains("version 2")));
        // Refused at hello.
        let mut c = TunnelClient::new(t0, cfg(), 0);
        c.handle_connected(t0, Vec::new());
        heard(&mut c);
        c.handle_input(
            t0,
            &say(json!({"v":1,"type":"error","code":"unauthorized","message":"bad token"})),
        );
        let (_, other) = heard(&mut c);
        assert!(
            matches!(&other[0], ClientOutput::Refused(why) if why == "unauthorized: bad token")
        );
        // Broken framing.
        let mut c = welcomed(t0, 0, Vec::new());
        heard(&mut c);
        c.handle_input(t0, &[0, 0, 0, 0]);
        assert!(matches!(&heard(&mut c).1[0], ClientOutput::Close(_)));
    }

    #[test]
    fn heartbeats_keep_it_alive_and_silence_ends_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut c = welcomed(t0, 0, Vec::new());
        heard(&mut c);
        assert_eq!(c.poll_timeout(), Some(t0 + 15 * s));
        c.handle_timeout(t0 + 15 * s);
        let (sent, _) = heard(&mut c);
        assert_eq!(sent[0]["type"], "ping");
        c.handle_input(t0 + 16 * s, &say(json!({"v":1,"type":"ping","t":5})));
        let (sent, _) = heard(&mut c);
        assert_eq!(
            (sent[0]["type"].as_str(), sent[0]["t"].as_u64()),
            (Some("pong"), Some(5))
        );
        c.handle_timeout(t0 + 61 * s);
        let (_, other) = heard(&mut c);
        assert!(
            matches!(&other.last(), Some(ClientOutput::Close(why)) if why.contains("45 s")),
            "{other:?}"
        );
        // No welcome at all.
        let mut c = TunnelClient::new(t0, cfg(), 0);
        c.handle_connected(t0, Vec::new());
        heard(&mut c);
        c.handle_timeout(t0 + 10 * s);
        assert!(matches!(&heard(&mut c).1[0], ClientOutput::Close(why) if why.contains("welcome")));
    }

    #[test]
    fn the_welcomes_heartbeat_is_obeyed_within_1_to_300_seconds() {
        let t0 = Instant::now();
        for (asked, kept) in [(0u64, 1u64), (1, 1), (40, 40), (300, 300), (3600, 300)] {
            let mut c = TunnelClient::new(t0, cfg(), 0);
            c.handle_connected(t0, Vec::new());
            heard(&mut c);
            c.handle_input(
                t0,
                &say(json!({"v":1,"type":"welcome","session":"s1","heartbeat_s":asked})),
            );
            heard(&mut c);
            assert_eq!(
                c.poll_timeout(),
                Some(t0 + Duration::from_secs(kept)),
                "heartbeat_s {asked}"
            );
        }
    }
}

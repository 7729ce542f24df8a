//! What the node does with a received message, whatever carried it: parse
//! and check it (the SIP core), reject it with the reason or drop and count
//! it, match it to a server transaction (RFC 3261 §17.2.3; a CANCEL to its
//! INVITE, §9.2), and answer in a new one: 200 to OPTIONS, 501 to what the
//! B2BUA (issue 6) will handle. Responses go back to the caller (a trunk's
//! client transactions). No I/O: bytes in, bytes out; time passed in.

use super::calls::Calls;
use super::counters::Counters;
pub use super::peer::Peer;
use super::udp::UdpDest;
use pbxlink_b2bua::leg::{Side, param};
use pbxlink_sip::digest::{Challenger, Verdict};
use pbxlink_sip::message::{Parsed, request_method};
use pbxlink_sip::normalize::Head;
use pbxlink_sip::transaction::{
    InviteServer, NonInviteServer, Output, ServerKey, State, Timers, Transport, cancel_target,
    server_key,
};
use pbxlink_sip::{parse, reject};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Server transactions held at most; past this, requests are answered
/// statelessly (and counted).
const TRANSACTIONS: usize = 65_536;

/// What a received message led to.
#[derive(Debug)]
pub enum Inbound {
    /// Bytes to send back on the path it came in (possibly none).
    Reply(Vec<Vec<u8>>),
    /// A response, for the client transactions of whoever sent the request.
    Response(Box<Parsed>),
}

#[derive(Debug)]
enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

impl ServerTx {
    fn drain(&mut self, out: &mut Vec<Vec<u8>>) {
        loop {
            let o = match self {
                ServerTx::Invite(t) => t.poll_output(),
                ServerTx::NonInvite(t) => t.poll_output(),
            };
            match o {
                Some(Output::Transmit(b)) => out.push(b),
                Some(Output::Event(_)) => {}
                None => return,
            }
        }
    }
    fn state(&self) -> State {
        match self {
            ServerTx::Invite(t) => t.state(),
            ServerTx::NonInvite(t) => t.state(),
        }
    }
}

/// Who may use the PBX trunk: requests from elsewhere never reach the
/// B2BUA; they are dropped, or answered 403 statelessly (`reject`). With
/// `auth`, the PBX's new calls must also carry digest credentials: an
/// INVITE without them (or on a stale nonce) is challenged 401, one with
/// wrong ones refused 403 — both statelessly (RFC 3261 §8.2.7), nothing
/// kept until the caller proves who it is.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The PBX's addresses.
    pub networks: pbxlink_dataplane::net::Networks,
    /// The subscriber side's registrar (`[subscriber] registrar`): trusted
    /// there besides `networks`, where it may stand apart from the trunk.
    pub registrar: Option<std::net::IpAddr>,
    /// Answer others 403 instead of nothing.
    pub reject: bool,
    /// Credentials the PBX's INVITEs must carry.
    pub auth: Option<Challenger>,
}

/// The node's server transactions and answers.
#[derive(Debug)]
pub struct Core {
    table: HashMap<ServerKey, (ServerTx, Peer)>,
    counters: Arc<Counters>,
    calls: Option<Calls>,
    trust: Option<Trust>,
    /// Notified when a message turns a quiet core busy, so the loop that
    /// runs its timers ([`Core::next_tick`]) stops sleeping.
    kick: Arc<tokio::sync::Notify>,
}

/// How often a busy core's timers run: transactions' retransmissions and
/// time-outs, the data plane's events, the calls' own timers.
pub const TICK: Duration = Duration::from_millis(100);

/// A response to `head` with `code`, echoing what RFC 3261 §8.2.6.2 asks.
fn response(head: &Head, code: u16, phrase: &str) -> Option<Vec<u8>> {
    let mut out = format!("SIP/2.0 {code} {phrase}\r\n");
    for via in head.all("Via") {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    let to = head.get("To")?;
    let call_id = head.get("Call-ID")?;
    let to = if to.contains(";tag=") {
        to.to_owned()
    } else {
        format!("{to};tag=pbxlink-{:08x}", call_id.len() as u32 ^ 0x5eed)
    };
    out.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {}\r\n",
        head.get("From")?,
        head.get("CSeq")?
    ));
    if code == 200 || code == 501 {
        out.push_str("Allow: OPTIONS, CANCEL, ACK\r\nAccept: application/sdp\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

impl Core {
    /// An empty table counting into `counters`.
    pub fn new(counters: Arc<Counters>) -> Self {
        Self {
            table: HashMap::new(),
            counters,
            calls: None,
            trust: None,
            kick: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// What is notified when the core turns busy.
    pub fn kick(&self) -> Arc<tokio::sync::Notify> {
        self.kick.clone()
    }

    /// Nothing in flight: no transaction, and the calls (if carried) quiet.
    fn quiet(&self) -> bool {
        self.table.is_empty() && self.calls.as_ref().is_none_or(Calls::quiet)
    }

    /// When [`Core::tick`] and [`Core::timeouts`] should next run: a tick
    /// from now while anything is in flight; else the PBX watch's next
    /// OPTIONS; else never (an idle gateway's signalling sleeps until a
    /// message comes).
    pub fn next_tick(&self, now: Instant) -> Option<Instant> {
        if self.quiet() {
            self.calls.as_ref().and_then(|c| c.next_timeout(now))
        } else {
            Some(now + TICK)
        }
    }

    /// A core that carries calls (the B2BUA) besides answering, for the
    /// PBX trunk's trusted addresses only (all, when `trust` is none).
    pub fn with_calls(counters: Arc<Counters>, calls: Calls, trust: Option<Trust>) -> Self {
        Self {
            calls: Some(calls),
            trust,
            ..Self::new(counters)
        }
    }

    /// Whether `ip` may use the PBX trunk; counted when not.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.trusts_on(ip, false)
    }

    /// Whether `ip` may reach the subscriber side (the trusted addresses
    /// and the registrar); counted when not.
    pub fn trusts_subscriber(&self, ip: std::net::IpAddr) -> bool {
        self.trusts_on(ip, true)
    }

    /// Whether `ip` may reach the PBX trunk (or, with `subscriber`, the
    /// subscriber side, where the registrar is trusted too); counted
    /// when not.
    fn trusts_on(&self, ip: std::net::IpAddr, subscriber: bool) -> bool {
        let ok = self
            .trust
            .as_ref()
            .is_none_or(|t| t.networks.contains(ip) || (subscriber && t.registrar == Some(ip)));
        if !ok {
            self.count(|c| &c.untrusted);
        }
        ok
    }

    /// The refusal of a new call from the PBX that did not prove who it
    /// is (none: go on). Without `auth` configured, everything goes on.
    fn authenticate(&self, side: Side, head: &Head) -> Option<Option<Vec<u8>>> {
        let gate = self
            .trust
            .as_ref()?
            .auth
            .as_ref()
            .filter(|_| side == Side::Pbx)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let uri = head.start_line.split(' ').nth(1).unwrap_or_default();
        let verdict = gate.verify(now, "INVITE", uri, head.get("Authorization"));
        let (code, phrase, stale) = match verdict {
            Verdict::Accepted => return None,
            Verdict::Missing => (401, "Unauthorized", false),
            Verdict::Stale => (401, "Unauthorized", true),
            _ => (403, "Forbidden", false),
        };
        if code == 401 {
            self.count(|c| &c.auth_challenges);
        } else {
            self.count(|c| &c.auth_failures);
        }
        let reply = response(head, code, phrase);
        Some(if code == 401 {
            reply.map(|r| {
                pbxlink_b2bua::leg::insert_headers(
                    &r,
                    &format!("WWW-Authenticate: {}\r\n", gate.challenge(now, stale)),
                )
            })
        } else {
            reply
        })
    }

    /// The calls, when this core carries them.
    pub fn calls(&mut self) -> Option<&mut Calls> {
        self.calls.as_mut()
    }

    /// Periodic work of the calls (data-plane events).
    pub fn tick(&mut self, now: Instant) {
        if let Some(calls) = &mut self.calls {
            calls.tick(now);
        }
    }

    fn count(&self, f: impl Fn(&Counters) -> &std::sync::atomic::AtomicU64) {
        f(&self.counters).fetch_add(1, Ordering::Relaxed);
    }

    /// Handles one framed message received from `peer` on `side`.
    pub fn receive(&mut self, now: Instant, msg: &[u8], peer: Peer, side: Side) -> Inbound {
        let was_quiet = self.quiet();
        let inbound = self.handle(now, msg, peer, side);
        if was_quiet && !self.quiet() {
            self.kick.notify_one();
        }
        inbound
    }

    fn handle(&mut self, now: Instant, msg: &[u8], peer: Peer, side: Side) -> Inbound {
        if let (Side::Pbx, Peer::Udp(from) | Peer::Subscriber(from)) = (side, &peer) {
            if !self.trusts_on(from.ip(), matches!(peer, Peer::Subscriber(_))) {
                // Cheaply: nothing kept, no transaction; 403 if asked for.
                let reject = self.trust.as_ref().is_some_and(|t| t.reject);
                let reply = reject
                    .then(|| parse(msg).ok())
                    .flatten()
                    .filter(|p| request_method(&p.head.start_line).is_some_and(|m| m != "ACK"))
                    .and_then(|p| response(&p.head, 403, "Forbidden"));
                return Inbound::Reply(reply.into_iter().collect());
            }
        }
        let p = match parse(msg) {
            Ok(p) => p,
            Err(e) => {
                return Inbound::Reply(match reject::response(msg, &e) {
                    Some(r) => {
                        self.count(|c| &c.rejected);
                        vec![r]
                    }
                    None => {
                        self.count(|c| &c.dropped);
                        Vec::new()
                    }
                });
            }
        };
        let Some(method) = request_method(&p.head.start_line).map(str::to_owned) else {
            if let Some(calls) = &mut self.calls {
                if calls.on_response(now, side, &p, msg) {
                    return Inbound::Reply(Vec::new());
                }
            }
            return Inbound::Response(Box::new(p));
        };
        self.count(|c| &c.requests);
        let dialog = p.head.get("To").and_then(|t| param(t, "tag")).is_some();
        // The PBX calling a user the gateway registered is not challenged:
        // a phone does not ask its own PBX who it is.
        if method == "INVITE" && !dialog && !matches!(peer, Peer::Subscriber(_)) {
            if let Some(refusal) = self.authenticate(side, &p.head) {
                return Inbound::Reply(refusal.into_iter().collect());
            }
        }
        if let Some(calls) = &mut self.calls {
            if calls.owns(side, &p.head) && (dialog || method != "INVITE") {
                calls.on_request(now, side, &p, msg);
                return Inbound::Reply(Vec::new());
            }
            if method == "INVITE" && !dialog {
                return Inbound::Reply(
                    calls
                        .incoming(now, side, &p, msg, peer)
                        .into_iter()
                        .collect(),
                );
            }
        }
        let key = server_key(&p.head);
        if let Some(k) = &key {
            // A transaction that ended (reliable ones end at once) matches
            // nothing: the request starts anew.
            if self
                .table
                .get(k)
                .is_some_and(|(tx, _)| tx.state() == State::Terminated)
            {
                self.table.remove(k);
            }
        }
        let mut out = Vec::new();
        if let Some((tx, _)) = key.as_ref().and_then(|k| self.table.get_mut(k)) {
            match tx {
                ServerTx::Invite(t) if method == "ACK" => t.handle_ack(now),
                ServerTx::Invite(t) => t.handle_retransmission(),
                ServerTx::NonInvite(t) => t.handle_retransmission(),
            }
            tx.drain(&mut out);
            if method != "ACK" {
                self.count(|c| &c.retransmissions);
            }
            return Inbound::Reply(out);
        }
        if method == "ACK" {
            // The ACK of a 2xx (none sent here) or of a transaction gone.
            self.count(|c| &c.acks_unmatched);
            return Inbound::Reply(out);
        }
        let (code, phrase) = match method.as_str() {
            "OPTIONS" => (200, "OK"),
            "CANCEL" => {
                self.count(|c| &c.cancels);
                // §9.2: a CANCEL for a transaction that already sent its
                // final response is answered 200 and changes nothing.
                // A transaction that ended matches nothing, whether or not
                // the timer has swept it away yet: the answer must not
                // depend on when the sweep ran.
                let live = |k: &ServerKey| {
                    self.table
                        .get(k)
                        .is_some_and(|(tx, _)| tx.state() != State::Terminated)
                };
                match cancel_target(&p.head).filter(|k| live(k)) {
                    Some(_) => (200, "OK"),
                    None => (481, "Call/Transaction Does Not Exist"),
                }
            }
            _ => (501, "Not Implemented"),
        };
        let Some(reply) = response(&p.head, code, phrase) else {
            self.count(|c| &c.dropped);
            return Inbound::Reply(out);
        };
        match code {
            200 => self.count(|c| &c.ok),
            501 => self.count(|c| &c.not_implemented),
            _ => {}
        }
        let Some(key) = key.filter(|_| self.table.len() < TRANSACTIONS) else {
            self.count(|c| &c.stateless);
            return Inbound::Reply(vec![reply]);
        };
        let transport = match peer {
            Peer::Udp(_) | Peer::Subscriber(_) => Transport::Unreliable,
            Peer::Stream(_) => Transport::Reliable,
        };
        let mut tx = if method == "INVITE" {
            let mut t = InviteServer::new(transport, Timers::default());
            t.send_response(now, code, reply);
            ServerTx::Invite(t)
        } else {
            let mut t = NonInviteServer::new(transport, Timers::default());
            t.send_response(now, code, reply);
            ServerTx::NonInvite(t)
        };
        tx.drain(&mut out);
        self.table.insert(key, (tx, peer));
        Inbound::Reply(out)
    }

    /// Runs transaction timers: UDP retransmissions to send, by destination.
    pub fn timeouts(&mut self, now: Instant) -> Vec<(UdpDest, Vec<u8>)> {
        let mut sends = Vec::new();
        for (tx, peer) in self.table.values_mut() {
            match tx {
                ServerTx::Invite(t) => t.handle_timeout(now),
                ServerTx::NonInvite(t) => t.handle_timeout(now),
            }
            let mut out = Vec::new();
            tx.drain(&mut out);
            if let Some(to) = peer.udp_dest() {
                sends.extend(out.into_iter().map(|b| (to, b)));
            }
        }
        self.table
            .retain(|_, (tx, _)| tx.state() != State::Terminated);
        sends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, branch: &str, cseq_method: &str) -> Vec<u8> {
        format!(
            "{method} sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch={branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:pbx@127.0.0.1>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 {cseq_method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn status(i: Inbound) -> Vec<String> {
        let Inbound::Reply(out) = i else {
            panic!("a reply")
        };
        out.iter()
            .map(|b| {
                String::from_utf8_lossy(&b[..b.iter().position(|&c| c == b'\r').unwrap()])
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn cancel_matches_its_invite_or_gets_481() {
        let c = Arc::new(Counters::default());
        let mut core = Core::new(c.clone());
        let now = Instant::now();
        assert_eq!(
            status(core.receive(
                now,
                &req("CANCEL", "z9hG4bKa", "CANCEL"),
                Peer::Stream(None),
                Side::Pbx
            )),
            ["SIP/2.0 481 Call/Transaction Does Not Exist"]
        );
        assert_eq!(
            status(core.receive(
                now,
                &req("INVITE", "z9hG4bKb", "INVITE"),
                Peer::Stream(None),
                Side::Pbx
            )),
            ["SIP/2.0 501 Not Implemented"]
        );
        assert_eq!(
            status(core.receive(
                now,
                &req("CANCEL", "z9hG4bKb", "CANCEL"),
                Peer::Stream(None),
                Side::Pbx
            )),
            ["SIP/2.0 200 OK"],
            "the INVITE's transaction exists (final response sent): 200, no effect"
        );
        assert!(
            status(core.receive(
                now,
                &req("ACK", "z9hG4bKb", "ACK"),
                Peer::Stream(None),
                Side::Pbx
            ))
            .is_empty()
        );
        assert_eq!(c.cancels.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn requests_from_outside_the_trusted_addresses_are_dropped_or_refused() {
        let c = Arc::new(Counters::default());
        let trust = |reject| Trust {
            networks: pbxlink_dataplane::net::Networks::new(vec!["127.0.0.1/32".parse().unwrap()]),
            registrar: Some("127.0.0.3".parse().unwrap()),
            reject,
            auth: None,
        };
        let mut core = Core {
            trust: Some(trust(false)),
            ..Core::new(c.clone())
        };
        let now = Instant::now();
        let pbx = Peer::Udp("127.0.0.1:5999".parse().unwrap());
        let stranger = Peer::Udp("127.0.0.2:5999".parse().unwrap());
        let options = req("OPTIONS", "z9hG4bKt", "OPTIONS");
        assert_eq!(
            status(core.receive(now, &options, pbx, Side::Pbx)),
            ["SIP/2.0 200 OK"]
        );
        assert!(status(core.receive(now, &options, stranger.clone(), Side::Pbx)).is_empty());
        core.trust = Some(trust(true));
        assert_eq!(
            status(core.receive(now, &options, stranger.clone(), Side::Pbx)),
            ["SIP/2.0 403 Forbidden"]
        );
        // Only the PBX side is filtered (the cloud comes over the trunk).
        let cloud = req("OPTIONS", "z9hG4bKc", "OPTIONS");
        assert_eq!(
            status(core.receive(now, &cloud, stranger, Side::Cloud)),
            ["SIP/2.0 200 OK"]
        );
        assert_eq!(c.untrusted.load(Ordering::Relaxed), 2);
        assert_eq!(c.requests.load(Ordering::Relaxed), 2, "never handled");
        // The subscriber side: the trusted addresses and the registrar;
        // the registrar is no one special on the trunk.
        let registrar = "127.0.0.3:5060".parse().unwrap();
        let options = req("OPTIONS", "z9hG4bKs", "OPTIONS");
        assert_eq!(
            status(core.receive(now, &options, Peer::Subscriber(registrar), Side::Pbx)),
            ["SIP/2.0 200 OK"]
        );
        let again = req("OPTIONS", "z9hG4bKs2", "OPTIONS");
        assert_eq!(
            status(core.receive(
                now,
                &again,
                Peer::Subscriber("127.0.0.1:5060".parse().unwrap()),
                Side::Pbx
            )),
            ["SIP/2.0 200 OK"]
        );
        core.trust = Some(trust(false));
        let stranger_there = Peer::Subscriber("127.0.0.2:5060".parse().unwrap());
        assert!(status(core.receive(now, &options, stranger_there, Side::Pbx)).is_empty());
        assert!(status(core.receive(now, &options, Peer::Udp(registrar), Side::Pbx)).is_empty());
        assert_eq!(c.untrusted.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn with_digest_auth_the_pbx_invites_are_challenged_and_only_right_answers_pass() {
        use pbxlink_sip::digest::{Algorithm, Credentials, answer};
        let c = Arc::new(Counters::default());
        let creds = |p: &str| Credentials {
            username: "officelinkmv5000".into(),
            password: p.to_owned().into(),
        };
        let mut core = Core {
            trust: Some(Trust {
                networks: pbxlink_dataplane::net::Networks::new(vec![
                    "127.0.0.1/32".parse().unwrap(),
                ]),
                registrar: None,
                reject: false,
                auth: Some(Challenger::new(
                    "pbxlink",
                    Algorithm::Md5,
                    creds("right-password"),
                    [1; 32],
                )),
            }),
            ..Core::new(c.clone())
        };
        let now = Instant::now();
        let pbx = Peer::Udp("127.0.0.1:5999".parse().unwrap());
        let Inbound::Reply(r) = core.receive(
            now,
            &req("INVITE", "z9hG4bK1", "INVITE"),
            pbx.clone(),
            Side::Pbx,
        ) else {
            panic!("a reply")
        };
        let challenge = parse(&r[0]).unwrap().head;
        assert!(challenge.start_line.starts_with("SIP/2.0 401"));
        let www = challenge.get("WWW-Authenticate").unwrap().to_owned();
        let with = |password: &str, branch: &str| {
            let auth = answer(
                &www,
                &creds(password),
                "INVITE",
                "sip:gw@127.0.0.1",
                1,
                "cn",
            )
            .unwrap();
            let plain = String::from_utf8(req("INVITE", branch, "INVITE")).unwrap();
            plain
                .replace(
                    "Content-Length",
                    &format!("Authorization: {auth}\r\nContent-Length"),
                )
                .into_bytes()
        };
        assert_eq!(
            status(core.receive(now, &with("wrong", "z9hG4bK2"), pbx.clone(), Side::Pbx)),
            ["SIP/2.0 403 Forbidden"]
        );
        assert_eq!(
            status(core.receive(
                now,
                &with("right-password", "z9hG4bK3"),
                pbx.clone(),
                Side::Pbx
            )),
            ["SIP/2.0 501 Not Implemented"],
            "past authentication (no calls in this core)"
        );
        // OPTIONS (keep-alives) are never challenged.
        assert_eq!(
            status(core.receive(now, &req("OPTIONS", "z9hG4bK4", "OPTIONS"), pbx, Side::Pbx)),
            ["SIP/2.0 200 OK"]
        );
        assert_eq!(c.auth_challenges.load(Ordering::Relaxed), 1);
        assert_eq!(c.auth_failures.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn udp_retransmissions_are_answered_from_the_transaction() {
        let c = Arc::new(Counters::default());
        let mut core = Core::new(c.clone());
        let now = Instant::now();
        let from = Peer::Udp("127.0.0.1:5999".parse().unwrap());
        let first = status(core.receive(
            now,
            &req("OPTIONS", "z9hG4bKo", "OPTIONS"),
            from.clone(),
            Side::Pbx,
        ));
        let again = status(core.receive(
            now,
            &req("OPTIONS", "z9hG4bKo", "OPTIONS"),
            from.clone(),
            Side::Pbx,
        ));
        assert_eq!(first, again);
        assert_eq!(c.retransmissions.load(Ordering::Relaxed), 1);
        assert_eq!(c.ok.load(Ordering::Relaxed), 1, "handled once");
        // Timer J (32 s on UDP) ends it.
        core.timeouts(now + std::time::Duration::from_secs(33));
        assert!(core.table.is_empty());
    }
}

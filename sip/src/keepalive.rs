//! Whether a peer answers (the gateway watching its PBX): an OPTIONS every
//! interval (the keep-alive SIP trunks exchange both ways), each in a
//! client transaction (retransmitted over UDP, RFC 3261 §17.1.2), and the
//! peer's state from the answers. Any response means the peer is there (a
//! PBX may answer OPTIONS 403 or 405 and still take calls); [`MISSES`]
//! OPTIONS in a row unanswered by the time the next one is due mean it is
//! not — for the PBX, the status `Lost trunk connection to PBX` (SPEC §7),
//! cleared by the next answer. Sans-IO: time is an input, messages and
//! state changes are outputs; the node carries them.

use crate::message::status_code;
use crate::normalize::Head;
use crate::transaction::{ClientKey, NonInviteClient, Output, Timers, Transport, client_key};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// OPTIONS in a row without an answer before the PBX counts as lost.
pub const MISSES: u32 = 2;

/// What the gateway knows of the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// No OPTIONS answered or missed yet.
    Unknown,
    /// The PBX answered the last OPTIONS.
    Up,
    /// [`MISSES`] OPTIONS in a row went unanswered.
    Lost,
}

/// What the watch asks the node to do.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchOutput {
    /// Send these bytes to the PBX.
    Transmit(Vec<u8>),
    /// The PBX's state changed.
    Changed(Liveness),
}

/// The OPTIONS keep-alive toward the PBX and what it tells.
#[derive(Debug)]
pub struct PbxWatch {
    interval: Duration,
    pbx: SocketAddr,
    /// Via sent-by with protocol, e.g. `SIP/2.0/UDP 10.0.0.5:5060`.
    via: String,
    transport: Transport,
    next_at: Instant,
    pending: Option<(ClientKey, NonInviteClient)>,
    misses: u32,
    state: Liveness,
    cseq: u32,
    tag: String,
    /// The Call-ID of every OPTIONS (late answers are known by it).
    call_id: String,
    out: VecDeque<WatchOutput>,
}

impl PbxWatch {
    /// Watches `pbx` from `via` (the gateway's PBX-side Via), the first
    /// OPTIONS at `now`; `tag` makes its Call-ID and branches unique.
    pub fn new(
        now: Instant,
        interval: Duration,
        pbx: SocketAddr,
        via: &str,
        reliable: bool,
        tag: &str,
    ) -> Self {
        Self {
            interval,
            pbx,
            via: via.to_owned(),
            transport: if reliable {
                Transport::Reliable
            } else {
                Transport::Unreliable
            },
            next_at: now,
            pending: None,
            misses: 0,
            state: Liveness::Unknown,
            cseq: 0,
            tag: tag.to_owned(),
            call_id: format!(
                "keepalive-{tag}@{}",
                via.rsplit(' ').next().unwrap_or_default()
            ),
            out: VecDeque::new(),
        }
    }

    fn set(&mut self, state: Liveness) {
        if self.state != state {
            self.state = state;
            self.out.push_back(WatchOutput::Changed(state));
        }
    }

    fn options(&self, branch: &str) -> Vec<u8> {
        let sent_by = self.via.rsplit(' ').next().unwrap_or_default();
        format!(
            "OPTIONS sip:{pbx} SIP/2.0\r\nVia: {via};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:pbxlink@{sent_by}>;tag={tag}\r\nTo: <sip:{pbx}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} OPTIONS\r\nUser-Agent: pbxlink\r\nContent-Length: 0\r\n\r\n",
            pbx = self.pbx,
            via = self.via,
            tag = self.tag,
            call_id = self.call_id,
            cseq = self.cseq,
        )
        .into_bytes()
    }

    /// Time passed: retransmissions, and the next OPTIONS when it is due
    /// (the one before it, unanswered, counts as missed).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, tx)) = &mut self.pending {
            tx.handle_timeout(now);
            while let Some(o) = tx.poll_output() {
                if let Output::Transmit(b) = o {
                    self.out.push_back(WatchOutput::Transmit(b));
                }
            }
        }
        if now < self.next_at {
            return;
        }
        if self.pending.take().is_some() {
            self.misses += 1;
            if self.misses >= MISSES {
                self.set(Liveness::Lost);
            }
        }
        self.cseq += 1;
        self.next_at = now + self.interval;
        let branch = format!("z9hG4bK-{}-{}", self.tag, self.cseq);
        let mut tx = NonInviteClient::new(
            now,
            self.transport,
            Timers::default(),
            self.options(&branch),
        );
        while let Some(o) = tx.poll_output() {
            if let Output::Transmit(b) = o {
                self.out.push_back(WatchOutput::Transmit(b));
            }
        }
        let key = ClientKey {
            branch,
            method: "OPTIONS".into(),
        };
        self.pending = Some((key, tx));
    }

    /// A response from the PBX side; false when it is not for the watch.
    pub fn handle_response(&mut self, now: Instant, head: &Head) -> bool {
        let ours =
            client_key(head).is_some_and(|k| self.pending.as_ref().is_some_and(|(p, _)| *p == k));
        if !ours {
            // A late answer to an OPTIONS already given up on is still ours.
            return head.get("Call-ID").is_some_and(|c| c == self.call_id);
        }
        let code = status_code(&head.start_line);
        if let Some((_, tx)) = &mut self.pending {
            tx.handle_response(now, code);
        }
        if code >= 200 {
            self.pending = None;
            self.misses = 0;
            self.set(Liveness::Up);
        }
        true
    }

    /// When [`PbxWatch::handle_timeout`] is next due: the next OPTIONS, or
    /// the pending one's retransmission or time-out if sooner.
    pub fn poll_timeout(&self) -> Instant {
        self.pending
            .as_ref()
            .and_then(|(_, tx)| tx.poll_timeout())
            .map_or(self.next_at, |t| t.min(self.next_at))
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<WatchOutput> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn answer(request: &[u8], code: u16) -> Head {
        let h = parse(request).unwrap().head;
        let text = format!(
            "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=pbx\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
            h.get("Via").unwrap(),
            h.get("From").unwrap(),
            h.get("To").unwrap(),
            h.get("Call-ID").unwrap(),
            h.get("CSeq").unwrap()
        );
        parse(text.as_bytes()).unwrap().head
    }

    fn drain(w: &mut PbxWatch) -> (Vec<Vec<u8>>, Vec<Liveness>) {
        let (mut sent, mut changes) = (Vec::new(), Vec::new());
        while let Some(o) = w.poll_output() {
            match o {
                WatchOutput::Transmit(b) => sent.push(b),
                WatchOutput::Changed(s) => changes.push(s),
            }
        }
        (sent, changes)
    }

    #[test]
    fn two_unanswered_keepalives_lose_the_pbx_and_an_answer_brings_it_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = PbxWatch::new(
            t0,
            5 * s,
            "10.0.0.2:5060".parse().unwrap(),
            "SIP/2.0/UDP 10.0.0.5:5060",
            false,
            "w1",
        );
        w.handle_timeout(t0);
        let (sent, changes) = drain(&mut w);
        assert_eq!(sent.len(), 1);
        assert!(changes.is_empty());
        let first = sent[0].clone();
        assert!(String::from_utf8_lossy(&first).starts_with("OPTIONS sip:10.0.0.2:5060 SIP/2.0"));
        // Answered (even 405 says the PBX is there).
        assert!(w.handle_response(t0 + s, &answer(&first, 405)));
        assert_eq!(drain(&mut w).1, [Liveness::Up]);
        // Unanswered: retransmitted over UDP (Timer E), then missed twice.
        w.handle_timeout(t0 + 5 * s);
        let (sent, _) = drain(&mut w);
        w.handle_timeout(t0 + 5 * s + Duration::from_millis(600));
        assert_eq!(drain(&mut w).0, sent, "the same OPTIONS again");
        w.handle_timeout(t0 + 10 * s);
        assert_eq!(drain(&mut w).1, [], "one miss is not a loss");
        w.handle_timeout(t0 + 15 * s);
        let (sent, changes) = drain(&mut w);
        assert_eq!(changes, [Liveness::Lost]);
        // A late answer to an abandoned OPTIONS is absorbed, changes nothing.
        assert!(w.handle_response(t0 + 15 * s, &answer(&first, 200)));
        assert_eq!(drain(&mut w).1, []);
        let newest = sent.last().unwrap();
        assert!(w.handle_response(t0 + 16 * s, &answer(newest, 200)));
        assert_eq!(drain(&mut w).1, [Liveness::Up]);
        // Someone else's response is not the watch's.
        let other = parse(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: call-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap().head;
        assert!(!w.handle_response(t0 + 16 * s, &other));
    }

    #[test]
    fn over_tcp_nothing_is_retransmitted() {
        let t0 = Instant::now();
        let mut w = PbxWatch::new(
            t0,
            Duration::from_secs(5),
            "10.0.0.2:5060".parse().unwrap(),
            "SIP/2.0/TCP 10.0.0.5:5060",
            true,
            "w2",
        );
        w.handle_timeout(t0);
        assert_eq!(drain(&mut w).0.len(), 1);
        w.handle_timeout(t0 + Duration::from_secs(4));
        assert!(drain(&mut w).0.is_empty());
    }

    #[test]
    fn the_watch_asks_for_the_time_only_when_something_is_due() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = PbxWatch::new(
            t0,
            Duration::from_secs(30),
            "10.0.0.2:5060".parse().unwrap(),
            "SIP/2.0/UDP 10.0.0.5:5060",
            false,
            "w3",
        );
        assert_eq!(w.poll_timeout(), t0, "the first OPTIONS at once");
        w.handle_timeout(t0);
        let (sent, _) = drain(&mut w);
        // Unanswered over UDP: its retransmission (Timer E, 500 ms) first.
        assert_eq!(w.poll_timeout(), t0 + ms(500));
        // Answered: nothing until the next OPTIONS, 30 s on.
        assert!(w.handle_response(t0 + ms(20), &answer(&sent[0], 200)));
        assert_eq!(w.poll_timeout(), t0 + Duration::from_secs(30));
    }
}

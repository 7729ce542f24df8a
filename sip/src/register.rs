//! Users registered to the PBX's registrar (RFC 3261 §10), sans-IO: the
//! gateway acting as each Softphone user's phone on the PBX's subscriber
//! side. Per user a REGISTER in a client transaction, digest credentials
//! when challenged (401 or 407; the challenge kept and reused with the
//! next nonce count for refreshes, answered again when stale), a refresh
//! at about half the granted life, and after a failure a retry with a
//! back-off that doubles from [`RETRY_FIRST`] to [`RETRY_MAX`], drawn
//! between half and all of it.
//!
//! New users are started [`Registrations::new`]'s `spacing` apart, so
//! hundreds do not reach the PBX in one burst; a user taken away is
//! unregistered (`Expires: 0`) and forgotten. Time is an input; the node
//! carries the bytes.

use crate::digest::{self, Credentials};
use crate::message::status_code;
use crate::normalize::Head;
use crate::transaction::{
    ClientKey, Event, NonInviteClient, Output, Timers, Transport, client_key,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// First wait after a failed registration.
pub const RETRY_FIRST: Duration = Duration::from_secs(5);

/// Longest wait between attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// Where and how users register.
#[derive(Debug, Clone)]
pub struct RegistrarTarget {
    /// Where REGISTERs go.
    pub registrar: SocketAddr,
    /// The domain of the users' addresses of record (`sip:1000@DOMAIN`).
    pub domain: String,
    /// Via sent-by with protocol, e.g. `SIP/2.0/UDP 10.0.0.5:5070`.
    pub via: String,
    /// Host and port the users' Contacts name (the subscriber listener).
    pub contact: String,
    /// Registration life asked for, in seconds.
    pub expires: u32,
    /// Whether the transport is reliable (no retransmissions).
    pub reliable: bool,
}

/// Where one user's registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegState {
    /// Waiting for its turn to start.
    Waiting,
    /// A REGISTER is out.
    Registering,
    /// Registered until then.
    Registered {
        /// When the registration lapses unless refreshed.
        until: Instant,
    },
    /// The last attempt failed; tried again at `retry_at`.
    Failed {
        /// Why (`403`, `wrong password (401)`, `no answer`).
        reason: String,
        /// Next attempt.
        retry_at: Instant,
    },
    /// Being unregistered (the user lost the Softphone role).
    Unregistering,
}

/// What the registrations ask the node to do or know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegOutput {
    /// Send these bytes to the registrar.
    Transmit(Vec<u8>),
    /// A user's registration changed.
    Changed {
        /// The user.
        user: String,
        /// Its new state.
        state: RegState,
    },
    /// A user was unregistered and forgotten.
    Removed {
        /// The user.
        user: String,
    },
}

#[derive(Debug)]
struct Registration {
    creds: Credentials,
    call_id: String,
    tag: String,
    cseq: u32,
    state: RegState,
    tx: Option<(ClientKey, NonInviteClient)>,
    /// The challenge to answer (header name to answer with, its value),
    /// and how many times its nonce was used.
    challenge: Option<(&'static str, String, u32)>,
    /// Whether this attempt already answered a fresh challenge.
    answered: bool,
    failures: u32,
    /// When the next REGISTER goes out (start, refresh, retry).
    due: Option<Instant>,
    expires: u32,
    /// Being unregistered: forgotten once answered.
    leaving: bool,
}

/// Every user's registration.
#[derive(Debug)]
pub struct Registrations {
    target: RegistrarTarget,
    users: BTreeMap<String, Registration>,
    by_call_id: HashMap<String, String>,
    spacing: Duration,
    next_start: Instant,
    token: String,
    counter: u64,
    rng: u64,
    out: VecDeque<RegOutput>,
}

impl Registrations {
    /// Registrations toward `target`, new ones `spacing` apart; `token`
    /// makes Call-IDs, tags and branches unique, `seed` the jitter.
    pub fn new(
        now: Instant,
        target: RegistrarTarget,
        spacing: Duration,
        token: &str,
        seed: u64,
    ) -> Self {
        Self {
            target,
            users: BTreeMap::new(),
            by_call_id: HashMap::new(),
            spacing,
            next_start: now,
            token: token.to_owned(),
            counter: 0,
            rng: seed | 1,
            out: VecDeque::new(),
        }
    }

    /// Each user's state.
    pub fn states(&self) -> impl Iterator<Item = (&String, &RegState)> {
        self.users.iter().map(|(u, r)| (u, &r.state))
    }

    /// Whether `user` is registered now.
    pub fn is_registered(&self, user: &str) -> bool {
        matches!(
            self.users.get(user).map(|r| &r.state),
            Some(RegState::Registered { .. })
        )
    }

    /// `user`'s credentials, if it is one of ours.
    pub fn credentials(&self, user: &str) -> Option<&Credentials> {
        self.users
            .get(user)
            .filter(|r| !r.leaving)
            .map(|r| &r.creds)
    }

    /// The users to register, with their credentials: new ones are
    /// started (spaced), those gone are unregistered, a changed password
    /// registers again.
    pub fn set_users(&mut self, now: Instant, users: Vec<(String, Credentials)>) {
        let wanted: BTreeMap<String, Credentials> = users.into_iter().collect();
        let gone: Vec<String> = self
            .users
            .iter()
            .filter(|(u, r)| !wanted.contains_key(*u) && !r.leaving)
            .map(|(u, _)| u.clone())
            .collect();
        for user in gone {
            self.unregister(now, &user);
        }
        for (user, creds) in wanted {
            match self.users.get_mut(&user) {
                Some(r) if r.creds.password == creds.password && !r.leaving => {}
                Some(r) => {
                    r.creds = creds;
                    r.leaving = false;
                    r.challenge = None;
                    r.failures = 0;
                    let at = self.next_start.max(now);
                    self.next_start = at + self.spacing;
                    r.due = Some(at);
                }
                None => {
                    self.counter += 1;
                    let call_id = format!("reg-{}-{}@pbxlink", self.token, self.counter);
                    let at = self.next_start.max(now);
                    self.next_start = at + self.spacing;
                    self.by_call_id.insert(call_id.clone(), user.clone());
                    self.users.insert(
                        user.clone(),
                        Registration {
                            creds,
                            call_id,
                            tag: format!("{}{}", self.token, self.counter),
                            cseq: 0,
                            state: RegState::Waiting,
                            tx: None,
                            challenge: None,
                            answered: false,
                            failures: 0,
                            due: Some(at),
                            expires: self.target.expires,
                            leaving: false,
                        },
                    );
                    self.out.push_back(RegOutput::Changed {
                        user,
                        state: RegState::Waiting,
                    });
                }
            }
        }
    }

    /// Registers everyone again, spaced (the registrar came back and may
    /// have forgotten them).
    pub fn register_all_again(&mut self, now: Instant) {
        let mut at = now;
        for r in self.users.values_mut().filter(|r| !r.leaving) {
            r.due = Some(at);
            r.failures = 0;
            at += self.spacing;
        }
        self.next_start = self.next_start.max(at);
    }

    fn unregister(&mut self, now: Instant, user: &str) {
        let Some(r) = self.users.get_mut(user) else {
            return;
        };
        r.leaving = true;
        let was_registered = matches!(r.state, RegState::Registered { .. } | RegState::Registering);
        if was_registered {
            r.due = Some(now);
            self.set_state(user, RegState::Unregistering);
        } else {
            self.forget(user);
        }
    }

    fn forget(&mut self, user: &str) {
        if let Some(r) = self.users.remove(user) {
            self.by_call_id.remove(&r.call_id);
            self.out.push_back(RegOutput::Removed {
                user: user.to_owned(),
            });
        }
    }

    fn set_state(&mut self, user: &str, state: RegState) {
        if let Some(r) = self.users.get_mut(user)
            && r.state != state
        {
            r.state = state.clone();
            self.out.push_back(RegOutput::Changed {
                user: user.to_owned(),
                state,
            });
        }
    }

    /// Time passed: REGISTERs due, retransmissions, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let users: Vec<String> = self.users.keys().cloned().collect();
        for user in users {
            let mut timed_out = false;
            if let Some(r) = self.users.get_mut(&user)
                && let Some((_, tx)) = &mut r.tx
            {
                tx.handle_timeout(now);
                while let Some(o) = tx.poll_output() {
                    match o {
                        Output::Transmit(b) => self.out.push_back(RegOutput::Transmit(b)),
                        Output::Event(Event::Timeout) => timed_out = true,
                        Output::Event(_) => {}
                    }
                }
            }
            if timed_out {
                self.failed(now, &user, "no answer".into());
                continue;
            }
            let due = self
                .users
                .get(&user)
                .is_some_and(|r| r.tx.is_none() && r.due.is_some_and(|d| d <= now));
            if due {
                self.send(now, &user);
            }
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.users
            .values()
            .filter_map(|r| match &r.tx {
                Some((_, tx)) => tx.poll_timeout(),
                None => r.due,
            })
            .min()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<RegOutput> {
        self.out.pop_front()
    }

    /// A response from the registrar; false when it is not for a
    /// registration.
    pub fn handle_response(&mut self, now: Instant, head: &Head) -> bool {
        let Some(user) = head
            .get("Call-ID")
            .and_then(|c| self.by_call_id.get(c))
            .cloned()
        else {
            return false;
        };
        let key = client_key(head);
        let r = self.users.get_mut(&user).expect("indexed");
        let current = key.is_some_and(|k| r.tx.as_ref().is_some_and(|(p, _)| *p == k));
        if !current {
            // A late or duplicated answer to an attempt already settled.
            return true;
        }
        let code = status_code(&head.start_line);
        if let Some((_, tx)) = &mut r.tx {
            tx.handle_response(now, code);
            while tx.poll_output().is_some() {}
        }
        if code < 200 {
            return true;
        }
        r.tx = None;
        match code {
            200..=299 if r.leaving => self.forget(&user),
            200..=299 => {
                let granted = granted_expires(head, &self.target.contact, &user)
                    .unwrap_or(r.expires)
                    .max(1);
                r.failures = 0;
                r.answered = false;
                let life = Duration::from_secs(granted.into());
                // Refresh at about half the life (never under 5 s before
                // it lapses), a little earlier or later for each user.
                let half = life / 2;
                let jitter = self.jitter(half / 5);
                let refresh = (half + jitter)
                    .min(life.saturating_sub(Duration::from_secs(5)))
                    .max(Duration::from_secs(1));
                let r = self.users.get_mut(&user).expect("indexed");
                r.due = Some(now + refresh);
                self.set_state(&user, RegState::Registered { until: now + life });
            }
            401 | 407 => {
                let (want, answer_with) = if code == 401 {
                    ("WWW-Authenticate", "Authorization")
                } else {
                    ("Proxy-Authenticate", "Proxy-Authorization")
                };
                let challenge = head.get(want).map(str::to_owned);
                let stale = challenge
                    .as_deref()
                    .and_then(|c| digest::parse(c).ok())
                    .and_then(|p| p.get("stale").map(|s| s.eq_ignore_ascii_case("true")))
                    .unwrap_or(false);
                match challenge {
                    Some(c) if !r.answered || stale => {
                        r.challenge = Some((answer_with, c, 0));
                        r.answered = true;
                        self.send(now, &user);
                    }
                    Some(_) => {
                        r.challenge = None;
                        self.failed(now, &user, format!("wrong password ({code})"));
                    }
                    None => self.failed(now, &user, format!("{code} without a challenge")),
                }
            }
            423 => {
                // Interval Too Brief: ask for what the registrar wants.
                let min = head
                    .get("Min-Expires")
                    .and_then(|m| m.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > r.expires && m <= 86_400 => {
                        r.expires = m;
                        self.send(now, &user);
                    }
                    _ => self.failed(now, &user, "423 without a usable Min-Expires".into()),
                }
            }
            _ if r.leaving => self.forget(&user),
            _ => self.failed(now, &user, code.to_string()),
        }
        true
    }

    fn failed(&mut self, now: Instant, user: &str, reason: String) {
        let Some(r) = self.users.get_mut(user) else {
            return;
        };
        r.tx = None;
        r.answered = false;
        if r.leaving {
            self.forget(user);
            return;
        }
        r.failures = r.failures.saturating_add(1);
        let wait = RETRY_FIRST
            .saturating_mul(1 << (r.failures - 1).min(10))
            .min(RETRY_MAX);
        let wait = wait / 2 + self.jitter(wait / 2);
        let r = self.users.get_mut(user).expect("present");
        r.due = Some(now + wait);
        self.set_state(
            user,
            RegState::Failed {
                reason,
                retry_at: now + wait,
            },
        );
    }

    /// Up to `d`, drawn at random (xorshift; spreading, not secrecy).
    fn jitter(&mut self, d: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        d.mul_f64((self.rng >> 11) as f64 / (1u64 << 53) as f64)
    }

    fn send(&mut self, now: Instant, user: &str) {
        let t = &self.target;
        self.counter += 1;
        let branch = format!("z9hG4bK-r{}-{}", self.token, self.counter);
        let r = self.users.get_mut(user).expect("present");
        r.cseq += 1;
        r.due = None;
        let expires = if r.leaving { 0 } else { r.expires };
        let uri = format!("sip:{}", t.domain);
        let auth = match &mut r.challenge {
            Some((header, challenge, nc)) => {
                *nc += 1;
                let cnonce = format!("{:08x}", self.counter);
                digest::answer(challenge, &r.creds, "REGISTER", &uri, *nc, &cnonce)
                    .ok()
                    .map(|a| format!("{header}: {a}\r\n"))
            }
            None => None,
        };
        let request = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: {via};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{domain}>;tag={tag}\r\nTo: <sip:{user}@{domain}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{contact}>;expires={expires}\r\nExpires: {expires}\r\n\
             {auth}User-Agent: pbxlink\r\nContent-Length: 0\r\n\r\n",
            via = t.via,
            domain = t.domain,
            tag = r.tag,
            call_id = r.call_id,
            cseq = r.cseq,
            contact = t.contact,
            auth = auth.unwrap_or_default(),
        )
        .into_bytes();
        let transport = if t.reliable {
            Transport::Reliable
        } else {
            Transport::Unreliable
        };
        let mut tx = NonInviteClient::new(now, transport, Timers::default(), request);
        while let Some(o) = tx.poll_output() {
            if let Output::Transmit(b) = o {
                self.out.push_back(RegOutput::Transmit(b));
            }
        }
        r.tx = Some((
            ClientKey {
                branch,
                method: "REGISTER".into(),
            },
            tx,
        ));
        if !r.leaving && !matches!(r.state, RegState::Registered { .. }) {
            self.set_state(user, RegState::Registering);
        }
    }
}

/// The life the registrar granted our contact: its Contact's `expires`,
/// else the Expires header.
fn granted_expires(head: &Head, contact: &str, user: &str) -> Option<u32> {
    let ours = format!("sip:{user}@{contact}");
    let from_contact = head.all("Contact").find_map(|v| {
        v.split(',').find(|c| c.contains(&ours)).and_then(|c| {
            c.split(';')
                .find_map(|p| p.trim().strip_prefix("expires="))
                .and_then(|e| e.trim().parse().ok())
        })
    });
    from_contact.or_else(|| head.get("Expires").and_then(|e| e.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Challenger, Verdict};
    use crate::parse;
    use zeroize::Zeroizing;

    fn target() -> RegistrarTarget {
        RegistrarTarget {
            registrar: "10.0.0.2:5060".parse().unwrap(),
            domain: "pbx.example".into(),
            via: "SIP/2.0/UDP 10.0.0.5:5070".into(),
            contact: "10.0.0.5:5070".into(),
            expires: 120,
            reliable: false,
        }
    }

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    fn drain(r: &mut Registrations) -> (Vec<Vec<u8>>, Vec<RegOutput>) {
        let (mut sent, mut other) = (Vec::new(), Vec::new());
        while let Some(o) = r.poll_output() {
            match o {
                RegOutput::Transmit(b) => sent.push(b),
                o => other.push(o),
            }
        }
        (sent, other)
    }

    /// The registrar's answer to `request`.
    fn answer(request: &[u8], code: u16, extra: &str) -> Head {
        let h = parse(request).unwrap().head;
        let text = format!(
            "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=reg\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
            h.get("Via").unwrap(),
            h.get("From").unwrap(),
            h.get("To").unwrap(),
            h.get("Call-ID").unwrap(),
            h.get("CSeq").unwrap()
        );
        parse(text.as_bytes()).unwrap().head
    }

    /// A registrar that knows passwords and challenges like Kamailio.
    struct Registrar {
        challenger: Challenger,
    }

    impl Registrar {
        fn new(password: &str) -> Self {
            Self {
                challenger: Challenger::new(
                    "pbx.example",
                    Algorithm::Md5,
                    creds("1000", password),
                    [7; 32],
                ),
            }
        }

        fn handle(&self, request: &[u8]) -> Head {
            let h = parse(request).unwrap().head;
            match h.get("Authorization") {
                None => answer(
                    request,
                    401,
                    &format!(
                        "WWW-Authenticate: {}\r\n",
                        self.challenger.challenge(0, false)
                    ),
                ),
                Some(a) => match self
                    .challenger
                    .verify(0, "REGISTER", "sip:pbx.example", Some(a))
                {
                    Verdict::Accepted => answer(
                        request,
                        200,
                        "Contact: <sip:1000@10.0.0.5:5070>;expires=60\r\n",
                    ),
                    _ => answer(request, 403, ""),
                },
            }
        }
    }

    #[test]
    fn a_user_registers_with_digest_and_refreshes_before_its_life_runs_out() {
        let t0 = Instant::now();
        let reg = Registrar::new("s3cret");
        let mut r = Registrations::new(t0, target(), Duration::from_millis(50), "t", 1);
        r.set_users(t0, vec![("1000".into(), creds("1000", "s3cret"))]);
        r.handle_timeout(t0);
        let (sent, _) = drain(&mut r);
        let first = String::from_utf8(sent[0].clone()).unwrap();
        assert!(
            first.starts_with("REGISTER sip:pbx.example SIP/2.0\r\n"),
            "{first}"
        );
        assert!(first.contains("Contact: <sip:1000@10.0.0.5:5070>;expires=120\r\n"));
        assert!(r.handle_response(t0, &reg.handle(&sent[0])));
        let (sent, _) = drain(&mut r);
        assert!(
            String::from_utf8_lossy(&sent[0]).contains("Authorization: Digest username=\"1000\"")
        );
        assert!(r.handle_response(t0, &reg.handle(&sent[0])));
        assert!(r.is_registered("1000"));
        let (_, changes) = drain(&mut r);
        assert!(
            changes.contains(&RegOutput::Changed {
                user: "1000".into(),
                state: RegState::Registered {
                    until: t0 + Duration::from_secs(60)
                }
            }),
            "granted 60 s, not the 120 asked: {changes:?}"
        );
        // Refresh between 30 and 36 s, with the kept challenge.
        let due = r.poll_timeout().unwrap();
        assert!(
            due >= t0 + Duration::from_secs(30) && due <= t0 + Duration::from_secs(36),
            "{:?}",
            due - t0
        );
        r.handle_timeout(due);
        let (sent, _) = drain(&mut r);
        let refresh = String::from_utf8_lossy(&sent[0]).into_owned();
        assert!(
            refresh.contains("CSeq: 3 REGISTER") && refresh.contains("nc=00000002"),
            "{refresh}"
        );
        r.handle_response(due, &reg.handle(&sent[0]));
        assert!(r.is_registered("1000"));
    }

    #[test]
    fn a_wrong_password_fails_with_a_reason_and_backs_off_while_others_register() {
        let t0 = Instant::now();
        let reg = Registrar::new("right");
        let mut r = Registrations::new(t0, target(), Duration::from_millis(50), "t", 2);
        r.set_users(
            t0,
            vec![
                ("1000".into(), creds("1000", "wrong")),
                ("1001".into(), creds("1001", "x")),
            ],
        );
        r.handle_timeout(t0);
        let (sent, _) = drain(&mut r);
        assert_eq!(sent.len(), 1, "spaced: the second waits its turn");
        r.handle_response(t0, &reg.handle(&sent[0]));
        let (sent, _) = drain(&mut r);
        r.handle_response(t0, &reg.handle(&sent[0]));
        let (_, changes) = drain(&mut r);
        let Some(RegOutput::Changed {
            state: RegState::Failed { reason, retry_at },
            ..
        }) = changes.last()
        else {
            panic!("{changes:?}")
        };
        assert_eq!(reason, "403");
        assert!(*retry_at >= t0 + RETRY_FIRST / 2 && *retry_at <= t0 + RETRY_FIRST);
        // The next user goes at its turn, the failed one at its retry.
        r.handle_timeout(t0 + Duration::from_millis(50));
        let (sent, _) = drain(&mut r);
        assert!(String::from_utf8_lossy(&sent[0]).contains("From: <sip:1001@pbx.example>"));
    }

    #[test]
    fn no_answer_is_retried_and_a_user_taken_away_is_unregistered() {
        let t0 = Instant::now();
        let mut r = Registrations::new(t0, target(), Duration::ZERO, "t", 3);
        r.set_users(t0, vec![("1000".into(), creds("1000", "p"))]);
        r.handle_timeout(t0);
        drain(&mut r);
        // Timer F: 32 s without an answer.
        r.handle_timeout(t0 + Duration::from_secs(32));
        let (_, changes) = drain(&mut r);
        assert!(
            matches!(changes.last(), Some(RegOutput::Changed { state: RegState::Failed { reason, .. }, .. }) if reason == "no answer")
        );
        // Registered, then taken away: Expires 0, forgotten once answered.
        let t1 = t0 + Duration::from_secs(60);
        r.handle_timeout(t1);
        let (sent, _) = drain(&mut r);
        r.handle_response(t1, &answer(&sent[0], 200, ""));
        assert!(r.is_registered("1000"));
        r.set_users(t1, Vec::new());
        r.handle_timeout(t1);
        let (sent, _) = drain(&mut r);
        let bye = String::from_utf8_lossy(&sent[0]).into_owned();
        assert!(
            bye.contains("Expires: 0\r\n") && bye.contains(";expires=0"),
            "{bye}"
        );
        r.handle_response(t1, &answer(&sent[0], 200, ""));
        let (_, changes) = drain(&mut r);
        assert!(changes.contains(&RegOutput::Removed {
            user: "1000".into()
        }));
        assert!(r.credentials("1000").is_none());
    }

    #[test]
    fn hundreds_are_spread_and_all_register_again_when_asked() {
        let t0 = Instant::now();
        let mut r = Registrations::new(t0, target(), Duration::from_millis(25), "t", 4);
        r.set_users(
            t0,
            (0..200)
                .map(|i| (format!("{}", 1000 + i), creds("x", "y")))
                .collect(),
        );
        let mut sent_at = Vec::new();
        let mut now = t0;
        while now <= t0 + Duration::from_secs(6) {
            r.handle_timeout(now);
            for b in drain(&mut r).0 {
                sent_at.push(now);
                r.handle_response(now, &answer(&b, 200, ""));
            }
            now += Duration::from_millis(5);
        }
        assert_eq!(sent_at.len(), 200);
        assert!(
            *sent_at.last().unwrap() - t0 >= Duration::from_millis(4900),
            "spread over 5 s"
        );
        r.register_all_again(now);
        let mut again = 0;
        let end = now + Duration::from_secs(6);
        while now <= end {
            r.handle_timeout(now);
            for b in drain(&mut r).0 {
                again += 1;
                r.handle_response(now, &answer(&b, 200, ""));
            }
            now += Duration::from_millis(5);
        }
        assert_eq!(again, 200);
    }
}

//! pbxsim's SIP trunk toward the gateway (UDP), with its own small SIP
//! reader and writer: it answers the gateway's calls to its users and
//! places calls from them, with G.711 A-law RTP both ways, and keeps the
//! call model (and so the CSTA events) in step — a call the gateway brings
//! in rings the user (`DeliveredEvent`), answering connects it, a BYE
//! clears it.
//!
//! Per call it counts RTP sent, received and lost (sequence gaps), so a
//! test or the demo can see media crossed the gateway both ways; the last
//! 1,000 ended calls are kept, outcomes and media totals count them all.

use crate::csta::Shared;
use crate::media_stats::{MediaTotals, SentTimes};
use serde_json::{Value, json};
use simsip::{Message, TONE, sdp_audio, tag_of, token, user_of};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct SipOptions {
    /// Where it listens (and sends from).
    pub bind: SocketAddr,
    /// The gateway's PBX-side SIP address.
    pub gateway: SocketAddr,
    /// Its RTP ports (each call takes the next).
    pub rtp: simsip::RtpPorts,
    /// How long a user's phone rings before it answers a gateway's call.
    pub answer_delay: Duration,
    /// Whether every call's packets go out on one 20 ms clock (as a TDM
    /// PBX's media board frames all its channels) rather than each call on
    /// its own clock from its answer.
    pub shared_clock: bool,
    /// How long a call it hangs up still counts what comes back after it
    /// stopped sending, before its BYE (zero: the BYE at once).
    pub hangup_drain: Duration,
}

/// One call's media counts.
#[derive(Debug, Default)]
struct Media {
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    first_seq: AtomicU64,
}

#[derive(Debug)]
struct SipCall {
    id: u64,
    direction: &'static str,
    from: String,
    to: String,
    state: String,
    pbx_call: Option<String>,
    media: Arc<Media>,
    stop: Option<watch::Sender<bool>>,
    /// Stops the call's sending only (its receiving goes on).
    stop_sending: Option<watch::Sender<bool>>,
    // Dialog.
    call_id: String,
    local_tag: String,
    remote_tag: String,
    remote_target: String,
    cseq: u32,
    invite_head: String,
    rtp_port: u16,
    acked: bool,
    /// Ended (its outcome counted).
    over: bool,
}

/// Ended calls kept for the control API.
const ENDED_KEPT: usize = 1000;

impl SipCall {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "direction": self.direction,
            "from": self.from,
            "to": self.to,
            "state": self.state,
            "over": self.over,
            "pbx_call": self.pbx_call,
            "rtp_sent": self.media.sent.load(Ordering::Relaxed),
            "rtp_received": self.media.received.load(Ordering::Relaxed),
            "rtp_lost": self.media.lost.load(Ordering::Relaxed),
        })
    }
}

#[derive(Debug, Default)]
struct Agent {
    calls: HashMap<u64, SipCall>,
    by_call_id: HashMap<String, u64>,
    next: u64,
    next_rtp: u16,
    /// Every ended call by how it ended.
    outcomes: BTreeMap<String, u64>,
    /// Ended calls, oldest first (pruned beyond ENDED_KEPT).
    ended: VecDeque<u64>,
}

/// The running agent.
#[derive(Clone)]
pub struct SipAgent {
    inner: Arc<Mutex<Agent>>,
    socket: Arc<UdpSocket>,
    options: SipOptions,
    sim: Shared,
    totals: Arc<MediaTotals>,
    /// The shared media clock's tick (with `shared_clock`).
    clock: Arc<tokio::sync::Notify>,
}

impl SipAgent {
    /// Binds and starts the agent.
    pub async fn start(sim: Shared, options: SipOptions) -> anyhow::Result<SipAgent> {
        let socket = Arc::new(UdpSocket::bind(options.bind).await?);
        println!(
            "pbxsim: SIP trunk on udp:{} toward the gateway at {}",
            options.bind, options.gateway
        );
        let agent = SipAgent {
            inner: Arc::new(Mutex::new(Agent {
                next: 1,
                next_rtp: options.rtp.first(),
                ..Agent::default()
            })),
            socket,
            options,
            sim,
            totals: Arc::default(),
            clock: Arc::default(),
        };
        if agent.options.shared_clock {
            let clock = agent.clock.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    tick.tick().await;
                    clock.notify_waiters();
                }
            });
        }
        let a = agent.clone();
        tokio::spawn(async move { a.receive().await });
        Ok(agent)
    }

    /// The calls, for the control API.
    pub fn status(&self) -> Value {
        let a = self.inner.lock().expect("sip");
        json!({ "calls": a.calls.len() })
    }

    /// Media over every call (with round trips of echoed packets) and
    /// the calls in each state.
    pub fn stats(&self) -> Value {
        let mut v = self.totals.json();
        let a = self.inner.lock().expect("sip");
        let mut states = a.outcomes.clone();
        for c in a.calls.values().filter(|c| !c.over) {
            *states.entry(c.state.clone()).or_default() += 1;
        }
        v["calls"] = json!(states);
        v
    }

    /// Every call kept with its media counts.
    pub fn calls(&self) -> Value {
        let a = self.inner.lock().expect("sip");
        let mut list: Vec<&SipCall> = a.calls.values().collect();
        list.sort_by_key(|c| c.id);
        json!(list.into_iter().map(SipCall::json).collect::<Vec<_>>())
    }

    /// Call `id` with its media counts (none: never placed, or pruned).
    pub fn call(&self, id: u64) -> Option<Value> {
        self.inner
            .lock()
            .expect("sip")
            .calls
            .get(&id)
            .map(SipCall::json)
    }

    fn local(&self) -> SocketAddr {
        self.options.bind
    }

    async fn send(&self, text: String, to: SocketAddr) {
        let _ = self.socket.send_to(text.as_bytes(), to).await;
    }

    fn sdp(&self, port: u16) -> String {
        let ip = self.local().ip();
        let fam = if ip.is_ipv6() { "IP6" } else { "IP4" };
        format!(
            "v=0\r\no=pbxsim 1 1 IN {fam} {ip}\r\ns=pbxsim\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
        )
    }

    fn rtp_port(&self) -> u16 {
        let mut a = self.inner.lock().expect("sip");
        let p = a.next_rtp;
        a.next_rtp = self.options.rtp.next(p);
        p
    }

    /// Keeps a new call under the next id; the id.
    fn add_call(&self, mut call: SipCall) -> u64 {
        let mut a = self.inner.lock().expect("sip");
        let id = a.next;
        a.next += 1;
        call.id = id;
        a.by_call_id.insert(call.call_id.clone(), id);
        a.calls.insert(id, call);
        id
    }

    /// Places a call from user `from` to `to` through the gateway, hung
    /// up after `seconds`.
    pub fn place(&self, from: &str, to: &str, seconds: u64) -> Result<u64, String> {
        let (pbx_call, events, _) = {
            let mut s = self.sim.lock().expect("sim");
            let r = s
                .pbx
                .make_call(from, to)
                .map_err(|(c, v)| format!("{c}/{v}"))?;
            s.deliver(&r.1);
            r
        };
        let _ = events;
        let rtp_port = self.rtp_port();
        let (call_id, tag, branch) = (
            format!("{}@pbxsim", token()),
            token(),
            format!("z9hG4bK{}", token()),
        );
        let gw = self.options.gateway;
        let local = self.local();
        let sdp = self.sdp(rtp_port);
        let head = format!(
            "Via: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@{local}>;tag={tag}\r\nTo: <sip:{to}@{gw}>\r\nCall-ID: {call_id}\r\n"
        );
        let invite = format!(
            "INVITE sip:{to}@{gw} SIP/2.0\r\n{head}CSeq: 1 INVITE\r\nContact: <sip:{from}@{local}>\r\nContent-Type: application/sdp\r\nUser-Agent: pbxsim\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let id = self.add_call(SipCall {
            id: 0,
            direction: "outgoing",
            from: from.into(),
            to: to.into(),
            state: "calling".into(),
            pbx_call: Some(pbx_call),
            media: Arc::default(),
            stop: None,
            stop_sending: None,
            call_id,
            local_tag: tag,
            remote_tag: String::new(),
            remote_target: format!("sip:{to}@{gw}"),
            cseq: 1,
            invite_head: head,
            rtp_port,
            acked: false,
            over: false,
        });
        let me = self.clone();
        tokio::spawn(async move {
            // RFC 3261 timer A: again at 0.5, 1, 2, … s until a response.
            let mut wait = Duration::from_millis(500);
            for _ in 0..7 {
                me.send(invite.clone(), gw).await;
                tokio::time::sleep(wait).await;
                wait *= 2;
                let answered = me
                    .inner
                    .lock()
                    .expect("sip")
                    .calls
                    .get(&id)
                    .is_some_and(|c| c.state != "calling");
                if answered {
                    break;
                }
            }
            // Hang up once the call has run its time.
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            me.hang_up(id).await;
        });
        Ok(id)
    }

    async fn hang_up(&self, id: u64) {
        // Sending stops first; what is still on its way back (through the
        // gateway and the cloud's echo) is counted before the BYE ends the
        // receiving: a call's count ends whole, with nothing in flight.
        if !self.options.hangup_drain.is_zero() {
            {
                let mut a = self.inner.lock().expect("sip");
                let Some(c) = a.calls.get_mut(&id) else {
                    return;
                };
                if c.state != "connected" {
                    return;
                }
                c.stop_sending = None;
            }
            tokio::time::sleep(self.options.hangup_drain).await;
        }
        let bye = {
            let mut a = self.inner.lock().expect("sip");
            let Some(c) = a.calls.get_mut(&id) else {
                return;
            };
            if c.state != "connected" {
                return;
            }
            c.state = "hanging up".into();
            c.cseq += 1;
            let local = self.options.bind;
            let (from_uri, to_uri) = if c.direction == "outgoing" {
                (
                    format!("sip:{}@{local}", c.from),
                    format!("sip:{}@{}", c.to, self.options.gateway),
                )
            } else {
                (
                    format!("sip:{}@{local}", c.to),
                    format!("sip:{}@{}", c.from, self.options.gateway),
                )
            };
            format!(
                "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\nFrom: <{from_uri}>;tag={}\r\nTo: <{to_uri}>;tag={}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
                c.remote_target,
                token(),
                c.local_tag,
                c.remote_tag,
                c.call_id,
                c.cseq
            )
        };
        self.send(bye, self.options.gateway).await;
        self.ended(id, "ended by pbxsim");
    }

    /// Stops the call's media and clears it in the model.
    fn ended(&self, id: u64, how: &str) {
        let (pbx_call, device) = {
            let mut a = self.inner.lock().expect("sip");
            let Some(c) = a.calls.get_mut(&id) else {
                return;
            };
            c.state = how.into();
            c.stop = None;
            c.stop_sending = None;
            let device = if c.direction == "outgoing" {
                c.from.clone()
            } else {
                c.to.clone()
            };
            let first = !c.over;
            c.over = true;
            let out = (c.pbx_call.take(), device);
            if first {
                *a.outcomes.entry(how.to_owned()).or_default() += 1;
                a.ended.push_back(id);
                while a.ended.len() > ENDED_KEPT {
                    let Some(old) = a.ended.pop_front() else {
                        break;
                    };
                    if let Some(c) = a.calls.remove(&old) {
                        a.by_call_id.remove(&c.call_id);
                    }
                }
            }
            out
        };
        if let Some(call) = pbx_call {
            let mut s = self.sim.lock().expect("sim");
            if let Ok(events) = s.pbx.clear(&call, &device) {
                s.deliver(&events);
            }
        }
    }

    async fn receive(&self) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((n, from)) = self.socket.recv_from(&mut buf).await else {
                continue;
            };
            let Some(msg) = Message::parse(&buf[..n]) else {
                continue;
            };
            match msg.method() {
                Some("INVITE") => self.on_invite(msg, from).await,
                Some("ACK") => self.on_ack(&msg),
                Some("BYE") => {
                    let id = msg
                        .get("Call-ID")
                        .and_then(|c| self.inner.lock().expect("sip").by_call_id.get(c).copied());
                    self.respond(&msg, from, 200, "OK", "", None).await;
                    if let Some(id) = id {
                        self.ended(id, "ended by the gateway");
                    }
                }
                Some("CANCEL") => {
                    self.respond(&msg, from, 200, "OK", "", None).await;
                    let id = msg
                        .get("Call-ID")
                        .and_then(|c| self.inner.lock().expect("sip").by_call_id.get(c).copied());
                    if let Some(id) = id {
                        self.ended(id, "cancelled");
                    }
                }
                Some("OPTIONS") => self.respond(&msg, from, 200, "OK", "", None).await,
                Some(_) => {
                    self.respond(&msg, from, 501, "Not Implemented", "", None)
                        .await
                }
                None => self.on_response(msg, from).await,
            }
        }
    }

    async fn respond(
        &self,
        req: &Message,
        to: SocketAddr,
        code: u16,
        reason: &str,
        tag: &str,
        body: Option<&str>,
    ) {
        let contact = (code == 200 && req.method() == Some("INVITE")).then(|| {
            format!(
                "sip:{}@{}",
                user_of(req.first.split(' ').nth(1).unwrap_or_default()),
                self.local()
            )
        });
        let text = simsip::response(req, code, reason, tag, contact.as_deref(), body);
        self.send(text, to).await;
    }

    async fn on_invite(&self, msg: Message, from: SocketAddr) {
        let call_id = msg.get("Call-ID").unwrap_or_default().to_owned();
        if self
            .inner
            .lock()
            .expect("sip")
            .by_call_id
            .contains_key(&call_id)
        {
            // A retransmission (or a re-INVITE): answer with what we have.
            self.respond(&msg, from, 100, "Trying", "", None).await;
            return;
        }
        let user = user_of(msg.first.split(' ').nth(1).unwrap_or_default());
        let caller = user_of(msg.get("From").unwrap_or_default());
        let ringing = {
            let mut s = self.sim.lock().expect("sim");
            match s.pbx.incoming(&caller, &user) {
                Ok((call, events)) => {
                    s.deliver(&events);
                    Some(call)
                }
                Err(_) => None,
            }
        };
        let Some(pbx_call) = ringing else {
            self.respond(&msg, from, 404, "Not Found", &token(), None)
                .await;
            return;
        };
        let Some(remote_media) = sdp_audio(&msg.body) else {
            self.respond(&msg, from, 488, "Not Acceptable Here", &token(), None)
                .await;
            return;
        };
        let tag = token();
        let rtp_port = self.rtp_port();
        let id = self.add_call(SipCall {
            id: 0,
            direction: "incoming",
            from: caller.clone(),
            to: user.clone(),
            state: "ringing".into(),
            pbx_call: Some(pbx_call.clone()),
            media: Arc::default(),
            stop: None,
            stop_sending: None,
            call_id,
            local_tag: tag.clone(),
            remote_tag: tag_of(msg.get("From").unwrap_or_default()),
            remote_target: msg
                .get("Contact")
                .map(|c| {
                    c.trim_start_matches('<')
                        .split('>')
                        .next()
                        .unwrap_or(c)
                        .to_owned()
                })
                .unwrap_or_default(),
            cseq: 0,
            invite_head: String::new(),
            rtp_port,
            acked: false,
            over: false,
        });
        self.respond(&msg, from, 100, "Trying", "", None).await;
        self.respond(&msg, from, 180, "Ringing", &tag, None).await;
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.options.answer_delay).await;
            {
                let mut s = me.sim.lock().expect("sim");
                if let Ok(events) = s.pbx.answer(&pbx_call, &user) {
                    s.deliver(&events);
                }
            }
            let sdp = me.sdp(rtp_port);
            me.start_media(id, remote_media).await;
            if let Some(c) = me.inner.lock().expect("sip").calls.get_mut(&id) {
                c.state = "connected".into();
            }
            // RFC 3261 §13.3.1.4: the 2xx again until the ACK comes.
            let mut wait = Duration::from_millis(500);
            for _ in 0..7 {
                me.respond(&msg, from, 200, "OK", &tag, Some(&sdp)).await;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(4));
                let acked = me
                    .inner
                    .lock()
                    .expect("sip")
                    .calls
                    .get(&id)
                    .is_none_or(|c| c.acked);
                if acked {
                    break;
                }
            }
        });
    }

    fn on_ack(&self, msg: &Message) {
        let mut a = self.inner.lock().expect("sip");
        if let Some(id) = msg
            .get("Call-ID")
            .and_then(|c| a.by_call_id.get(c).copied())
            && let Some(c) = a.calls.get_mut(&id)
        {
            c.acked = true;
        }
    }

    async fn on_response(&self, msg: Message, from: SocketAddr) {
        let Some(code) = msg.status() else { return };
        let is_invite = msg.get("CSeq").is_some_and(|c| c.ends_with("INVITE"));
        let id = msg
            .get("Call-ID")
            .and_then(|c| self.inner.lock().expect("sip").by_call_id.get(c).copied());
        let Some(id) = id else { return };
        if !is_invite || code < 200 {
            return;
        }
        let (ack, start, pbx_call, to) = {
            let mut a = self.inner.lock().expect("sip");
            let Some(c) = a.calls.get_mut(&id) else {
                return;
            };
            c.remote_tag = tag_of(msg.get("To").unwrap_or_default());
            if let Some(contact) = msg.get("Contact") {
                c.remote_target = contact
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or(contact)
                    .to_owned();
            }
            let to_h = msg.get("To").unwrap_or_default();
            let local = self.options.bind;
            let ack = if code < 300 {
                format!(
                    "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{}@{local}>;tag={}\r\nTo: {to_h}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    c.remote_target,
                    token(),
                    c.from,
                    c.local_tag,
                    c.call_id
                )
            } else {
                // A non-2xx is acknowledged in the INVITE's transaction.
                format!(
                    "ACK sip:{}@{} SIP/2.0\r\n{}CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    c.to,
                    self.options.gateway,
                    c.invite_head.replace(
                        &format!("To: <sip:{}@{}>\r\n", c.to, self.options.gateway),
                        &format!("To: {to_h}\r\n")
                    )
                )
            };
            let first = c.state == "calling";
            if first {
                c.state = if code < 300 {
                    "connected".into()
                } else {
                    format!("failed: {code}")
                };
            }
            (ack, first && code < 300, c.pbx_call.clone(), c.to.clone())
        };
        self.send(ack, from).await;
        if code >= 300 {
            self.ended(id, &format!("failed: {code}"));
            return;
        }
        if start {
            if let Some(call) = pbx_call {
                let mut s = self.sim.lock().expect("sim");
                if let Ok(events) = s.pbx.answer(&call, &to) {
                    s.deliver(&events);
                }
            }
            if let Some(remote) = sdp_audio(&msg.body) {
                self.start_media(id, remote).await;
            }
        }
    }

    /// G.711 A-law at 50 packets a second to `remote`, and counting what
    /// comes back, until the call ends.
    async fn start_media(&self, id: u64, remote: SocketAddr) {
        let (port, media) = {
            let a = self.inner.lock().expect("sip");
            let Some(c) = a.calls.get(&id) else { return };
            (c.rtp_port, c.media.clone())
        };
        let Ok(socket) = UdpSocket::bind(SocketAddr::new(self.local().ip(), port)).await else {
            println!("pbxsim: RTP port {port} is taken: call {id} has no media");
            return;
        };
        let socket = Arc::new(socket);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let (stop_sending, mut stop_tx_side) = watch::channel(false);
        if let Some(c) = self.inner.lock().expect("sip").calls.get_mut(&id) {
            c.stop = Some(stop_tx);
            c.stop_sending = Some(stop_sending);
        }
        let (tx_sock, rx_sock) = (socket.clone(), socket);
        let (tx_media, rx_media) = (media.clone(), media);
        let (tx_totals, rx_totals) = (self.totals.clone(), self.totals.clone());
        let ssrc: u32 = 0x5bc5_0000 | (id as u32 & 0xffff);
        let times = Arc::new(SentTimes::new(ssrc));
        let tx_times = times.clone();
        let clock = self.options.shared_clock.then(|| self.clock.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut seq: u16 = 1;
            let mut ts: u32 = 0;
            loop {
                let next = async {
                    match &clock {
                        Some(c) => c.notified().await,
                        None => {
                            tick.tick().await;
                        }
                    }
                };
                tokio::select! {
                    () = next => {}
                    _ = stop_tx_side.changed() => return,
                }
                let mut p = Vec::with_capacity(172);
                p.extend_from_slice(&[0x80, 8]);
                p.extend_from_slice(&seq.to_be_bytes());
                p.extend_from_slice(&ts.to_be_bytes());
                p.extend_from_slice(&ssrc.to_be_bytes());
                p.extend_from_slice(&TONE);
                tx_times.sent(&tx_totals, seq, Instant::now());
                if tx_sock.send_to(&p, remote).await.is_ok() {
                    tx_media.sent.fetch_add(1, Ordering::Relaxed);
                    tx_totals.sent.fetch_add(1, Ordering::Relaxed);
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
            }
        });
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut last: Option<u16> = None;
            loop {
                tokio::select! {
                    r = rx_sock.recv_from(&mut buf) => {
                        let Ok((n, _)) = r else { continue };
                        if n < 12 || buf[0] >> 6 != 2 {
                            continue;
                        }
                        let seq = u16::from_be_bytes([buf[2], buf[3]]);
                        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                        times.arrived(&rx_totals, ssrc, seq, Instant::now());
                        rx_media.received.fetch_add(1, Ordering::Relaxed);
                        rx_totals.received.fetch_add(1, Ordering::Relaxed);
                        match last {
                            Some(l) => {
                                let gap = seq.wrapping_sub(l);
                                if (2..1000).contains(&gap) {
                                    rx_media.lost.fetch_add(u64::from(gap - 1), Ordering::Relaxed);
                                    rx_totals.lost.fetch_add(u64::from(gap - 1), Ordering::Relaxed);
                                }
                                if gap < 1000 {
                                    last = Some(seq);
                                }
                            }
                            None => {
                                rx_media.first_seq.store(u64::from(seq), Ordering::Relaxed);
                                last = Some(seq);
                            }
                        }
                    }
                    _ = stop_rx.changed() => return,
                }
            }
        });
    }
}

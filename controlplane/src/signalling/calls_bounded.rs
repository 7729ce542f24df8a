//! No call lives without a bound: the call table driven by arbitrary
//! inputs — calls from either side, any answer or none, ACKs, CANCELs and
//! BYEs or none, the cloud trunk coming and going, time jumping — and then
//! left alone is found empty, every port pair back in the pool.
//!
//! The peers here are simsip's text (the simulators' SIP, not the
//! gateway's); the data plane is the real one (epoll backend, loopback),
//! so a confirmed call ends by its relay's media timeout as in the field.

use super::calls::bounds::TIMER_C;
use super::calls::{CallsConfig, RecordSinks};
use super::counters::Counters;
use super::paths::{CloudConn, CloudPath};
use super::peer::Peer;
use super::udp::UdpOut;
use crate::signalling::calls::Calls;
use pbxlink_b2bua::call::Local;
use pbxlink_b2bua::leg::Side;
use pbxlink_dataplane::engine::{Backend, DataPlane, DataPlaneConfig};
use pbxlink_dataplane::net::Networks;
use pbxlink_dataplane::ports::PortPool;
use pbxlink_dataplane::profile::Resources;
use pbxlink_dataplane::srtp::Suite;
use proptest::prelude::*;
use simsip::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const PBX: &str = "127.0.0.1:45999";
const CLOUD: &str = "127.0.0.1:45998";
const PBX_SDP: &str = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 46000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
const CLOUD_KEY: &str = "Q0xPVURDTE9VRENMT1VEQ0xPVURDTE9VRENMT1VE";

/// One step of the world around the gateway.
#[derive(Debug, Clone)]
enum Step {
    /// The PBX calls (an emergency number when true).
    PbxCalls(bool),
    /// The cloud calls.
    CloudCalls,
    /// The callee answers the gateway's `n`th open INVITE with a status.
    Answer(usize, u16),
    /// The caller of call `n` ACKs its final answer.
    Ack(usize),
    /// The caller of call `n` cancels.
    Cancel(usize),
    /// The caller of call `n` hangs up.
    CallerBye(usize),
    /// The callee of the gateway's `n`th INVITE hangs up.
    CalleeBye(usize),
    /// The cloud trunk goes down or comes back.
    Cloud(bool),
    /// Time passes (seconds).
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<bool>().prop_map(Step::PbxCalls),
        2 => Just(Step::CloudCalls),
        4 => (any::<usize>(), prop::sample::select(vec![100u16, 180, 183, 200, 200, 486, 503])).prop_map(|(n, c)| Step::Answer(n, c)),
        2 => any::<usize>().prop_map(Step::Ack),
        1 => any::<usize>().prop_map(Step::Cancel),
        1 => any::<usize>().prop_map(Step::CallerBye),
        1 => any::<usize>().prop_map(Step::CalleeBye),
        1 => any::<bool>().prop_map(Step::Cloud),
        2 => prop::sample::select(vec![1u64, 5, 31, 33, 60, 179, 181, 400]).prop_map(Step::Wait),
    ]
}

/// A call a test peer placed: its INVITE, and the gateway's final answer.
struct Placed {
    side: Side,
    invite: Message,
    answer: Option<Message>,
}

/// The gateway, its peers' queues and the simulated clock.
struct World {
    calls: Calls,
    counters: Arc<Counters>,
    now: Instant,
    cloud_tx: mpsc::Sender<Vec<u8>>,
    cloud_rx: mpsc::Receiver<Vec<u8>>,
    cloud: CloudPath,
    pbx_rx: mpsc::UnboundedReceiver<(SocketAddr, Vec<u8>)>,
    /// INVITEs the gateway sent, not yet finally answered.
    open: Vec<(Side, Message)>,
    placed: Vec<Placed>,
    serial: u32,
}

fn local(side: &str, addr: &str, scheme: &'static str) -> Local {
    Local {
        via: format!("SIP/2.0/{side} {addr}"),
        contact: format!("sip:pbxlink@{addr}"),
        domain: "127.0.0.1".into(),
        scheme,
    }
}

impl World {
    fn new(ports: std::ops::RangeInclusive<u16>) -> Self {
        let plane = DataPlane::start(
            &DataPlaneConfig {
                backend: Some(Backend::Epoll),
                max_relays_per_worker: 64,
                buffers_per_worker: 256,
                ..DataPlaneConfig::default()
            },
            &Resources::detect(),
        )
        .expect("the data plane starts");
        let (udp_tx, pbx_rx) = mpsc::unbounded_channel();
        let (cloud_tx, cloud_rx) = mpsc::channel(4096);
        let cloud: CloudPath = Arc::new(Mutex::new(None));
        let counters = Arc::new(Counters::default());
        let cfg = CallsConfig {
            pbx: local("UDP", "127.0.0.1:5060", "sip"),
            cloud: local("TLS", "127.0.0.1:5061", "sip"),
            pbx_addr: PBX.parse().unwrap(),
            pbx_tcp: None,
            lan_ip: "127.0.0.1".parse().unwrap(),
            public_ip: "127.0.0.1".parse().unwrap(),
            networks: Networks::loopback(),
            suites: vec![Suite::AesCm128HmacSha1_80],
            media_timeout: Duration::from_millis(300),
            call_limit: 6,
            refuse_with: 503,
            outbound_digits: Default::default(),
            inbound_digits: Default::default(),
            pbx_keepalive: Duration::ZERO,
            pbx_credentials: None,
            subscriber: None,
            quality: Default::default(),
        };
        let calls = Calls::new(
            plane,
            PortPool::new(&[ports]),
            cfg,
            UdpOut::new(udp_tx, None),
            cloud.clone(),
            counters.clone(),
            RecordSinks::default(),
        );
        let mut w = World {
            calls,
            counters,
            now: Instant::now(),
            cloud_tx,
            cloud_rx,
            cloud,
            pbx_rx,
            open: Vec::new(),
            placed: Vec::new(),
            serial: 0,
        };
        w.cloud_link(true);
        w
    }

    fn cloud_link(&mut self, up: bool) {
        *self.cloud.lock().unwrap() = up.then(|| CloudConn {
            out: self.cloud_tx.clone(),
            local: "127.0.0.1:5061".parse().unwrap(),
            public: None,
        });
    }

    /// What the gateway sent since the last look, each to its peer.
    fn collect(&mut self) {
        let mut got: Vec<(Side, Vec<u8>)> = Vec::new();
        while let Ok((_, b)) = self.pbx_rx.try_recv() {
            got.push((Side::Pbx, b));
        }
        while let Ok(b) = self.cloud_rx.try_recv() {
            got.push((Side::Cloud, b));
        }
        for (side, bytes) in got {
            let m = Message::parse(&bytes).expect("the gateway sends SIP");
            match m.method() {
                Some("INVITE") => {
                    let id = m.get("Call-ID").unwrap_or_default().to_owned();
                    // A retransmission replaces what is kept.
                    self.open
                        .retain(|(_, o)| o.get("Call-ID").unwrap_or_default() != id);
                    self.open.push((side, m));
                }
                Some(_) => {}
                None => {
                    let final_answer = m.status().is_some_and(|c| c >= 200);
                    let cseq = m.get("CSeq").unwrap_or_default();
                    if final_answer && cseq.ends_with("INVITE") {
                        let id = m.get("Call-ID").unwrap_or_default();
                        if let Some(p) = self.placed.iter_mut().find(|p| {
                            p.side == side && p.invite.get("Call-ID").unwrap_or_default() == id
                        }) {
                            p.answer = Some(m);
                        }
                    }
                }
            }
        }
    }

    fn deliver(&mut self, side: Side, text: &str, from: Peer) {
        let bytes = text.as_bytes();
        let p = pbxlink_sip::parse(bytes).expect("the test sends SIP");
        if pbxlink_sip::message::request_method(&p.head.start_line).is_none() {
            self.calls.on_response(self.now, side, &p, bytes);
        } else if p.head.start_line.starts_with("INVITE ") {
            if let Some(r) = self.calls.incoming(self.now, side, &p, bytes, from) {
                // A refusal before the call existed: the caller gets it.
                let m = Message::parse(&r).unwrap();
                let id = m.get("Call-ID").unwrap_or_default();
                if let Some(p) = self
                    .placed
                    .iter_mut()
                    .find(|p| p.invite.get("Call-ID").unwrap_or_default() == id)
                {
                    p.answer = Some(m);
                }
            }
        } else {
            self.calls.on_request(self.now, side, &p, bytes);
        }
        self.collect();
    }

    fn peer(side: Side) -> (&'static str, Peer) {
        match side {
            Side::Pbx => ("UDP", Peer::Udp(PBX.parse().unwrap())),
            Side::Cloud => ("TLS", Peer::Stream(None)),
        }
    }

    fn place(&mut self, side: Side, to: &str) {
        self.serial += 1;
        let n = self.serial;
        let (wire, from) = Self::peer(side);
        let at = if side == Side::Pbx { PBX } else { CLOUD };
        let sdp = match side {
            Side::Pbx => PBX_SDP.to_owned(),
            Side::Cloud => format!(
                "v=0\r\no=cloud 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 46002 RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
                 a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{CLOUD_KEY}\r\n"
            ),
        };
        let invite = format!(
            "INVITE sip:{to}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{wire} {at};branch=z9hG4bKp{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1{n:03}@127.0.0.1>;tag=caller{n}\r\nTo: <sip:{to}@127.0.0.1>\r\n\
             Call-ID: placed-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{at}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.placed.push(Placed {
            side,
            invite: Message::parse(invite.as_bytes()).unwrap(),
            answer: None,
        });
        self.deliver(side, &invite, from);
    }

    /// The callee's answer to the gateway's `n`th open INVITE.
    fn answer(&mut self, n: usize, code: u16) {
        if self.open.is_empty() {
            return;
        }
        let i = n % self.open.len();
        let (side, invite) = (self.open[i].0, self.open[i].1.clone());
        let sdp = match side {
            Side::Pbx => PBX_SDP.to_owned(),
            Side::Cloud => {
                // The suite and tag the gateway offered, the cloud's key.
                let offered = invite
                    .body
                    .lines()
                    .find_map(|l| l.strip_prefix("a=crypto:"))
                    .unwrap_or("1 AES_CM_128_HMAC_SHA1_80");
                let mut parts = offered.split(' ');
                let (tag, suite) = (parts.next().unwrap_or("1"), parts.next().unwrap_or(""));
                format!(
                    "v=0\r\no=cloud 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 46004 RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\n\
                     a=crypto:{tag} {suite} inline:{CLOUD_KEY}\r\n"
                )
            }
        };
        let with_sdp = matches!(code, 183 | 200);
        let reason = match code {
            100 => "Trying",
            180 => "Ringing",
            183 => "Session Progress",
            200 => "OK",
            486 => "Busy Here",
            _ => "Service Unavailable",
        };
        let text = simsip::response(
            &invite,
            code,
            reason,
            if code == 100 { "" } else { "callee" },
            Some("sip:callee@127.0.0.1"),
            with_sdp.then_some(sdp.as_str()),
        );
        if code >= 200 {
            self.open.remove(i);
        }
        let (_, from) = Self::peer(side);
        self.deliver(side, &text, from);
    }

    /// An in-dialog request from the caller of placed call `n`.
    fn caller_sends(&mut self, n: usize, method: &str) {
        if self.placed.is_empty() {
            return;
        }
        let p = &self.placed[n % self.placed.len()];
        let side = p.side;
        let inv = &p.invite;
        let to = match (&p.answer, method) {
            (Some(a), _) => a.get("To").unwrap_or_default().to_owned(),
            (None, "CANCEL") => inv.get("To").unwrap_or_default().to_owned(),
            (None, _) => return,
        };
        let (branch, cseq) = match method {
            "CANCEL" => (
                inv.get("Via").unwrap_or_default().to_owned(),
                "1 CANCEL".into(),
            ),
            "ACK" => (
                inv.get("Via").unwrap_or_default().to_owned(),
                "1 ACK".into(),
            ),
            _ => (
                format!("SIP/2.0/UDP {PBX};branch=z9hG4bKbye{}", self.serial),
                "2 BYE".to_owned(),
            ),
        };
        let text = format!(
            "{method} sip:pbxlink@127.0.0.1 SIP/2.0\r\nVia: {branch}\r\nMax-Forwards: 70\r\n\
             From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
            inv.get("From").unwrap_or_default(),
            inv.get("Call-ID").unwrap_or_default(),
        );
        let (_, from) = Self::peer(side);
        self.deliver(side, &text, from);
    }

    /// A BYE from the callee of the gateway's `n`th INVITE (answered or not).
    fn callee_bye(&mut self, n: usize) {
        let Some((side, invite)) =
            (!self.open.is_empty()).then(|| self.open[n % self.open.len()].clone())
        else {
            return;
        };
        let text = format!(
            "BYE sip:pbxlink@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {PBX};branch=z9hG4bKcb{n}\r\n\
             Max-Forwards: 70\r\nFrom: {};tag=callee\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 9 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            invite.get("To").unwrap_or_default(),
            invite.get("From").unwrap_or_default(),
            invite.get("Call-ID").unwrap_or_default(),
        );
        let (_, from) = Self::peer(side);
        self.deliver(side, &text, from);
    }

    fn wait(&mut self, secs: u64) {
        // Ticks as the node's loop does, every second of simulated time.
        for _ in 0..secs {
            self.now += Duration::from_secs(1);
            self.calls.tick(self.now);
        }
        self.collect();
    }

    fn run(&mut self, s: &Step) {
        match *s {
            Step::PbxCalls(emergency) => {
                self.place(Side::Pbx, if emergency { "112" } else { "0612345678" })
            }
            Step::CloudCalls => self.place(Side::Cloud, "201"),
            Step::Answer(n, code) => self.answer(n, code),
            Step::Ack(n) => self.caller_sends(n, "ACK"),
            Step::Cancel(n) => self.caller_sends(n, "CANCEL"),
            Step::CallerBye(n) => self.caller_sends(n, "BYE"),
            Step::CalleeBye(n) => self.callee_bye(n),
            Step::Cloud(up) => self.cloud_link(up),
            Step::Wait(secs) => self.wait(secs),
        }
    }

    /// Left alone: simulated time runs on while the real data plane's
    /// relays time out (their media timeout is real time).
    fn settle(&mut self) {
        let real = Instant::now();
        while (self.calls.len() > 0 || self.counters.get("port_pairs_in_use") > 0)
            && real.elapsed() < Duration::from_secs(10)
        {
            self.wait(10);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Each case gets its own port window, so cases never wait for a port
/// the last one's relays are still giving back.
static WINDOW: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_call_ends_by_itself_and_gives_its_ports_back(
        steps in prop::collection::vec(step(), 1..60),
        cloud_at_the_end in any::<bool>(),
    ) {
        let w = WINDOW.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 40;
        let first = 47_000 + w * 40;
        let mut world = World::new(first..=first + 39);
        for s in &steps {
            world.run(s);
        }
        world.cloud_link(cloud_at_the_end);
        world.settle();
        prop_assert_eq!(world.calls.len(), 0, "calls still in the table after {:?}", steps);
        prop_assert_eq!(world.counters.get("port_pairs_in_use"), 0, "port pairs still held after {:?}", steps);
    }
}

/// The field fault: a PBX call while the cloud trunk is down gets its
/// final answer at once (503, so the PBX takes its next route), holds no
/// slot, and a later call still gets in.
#[test]
fn a_pbx_call_with_the_cloud_trunk_down_is_refused_503_at_once() {
    let mut world = World::new(47_400..=47_439);
    world.cloud_link(false);
    for (n, to) in ["0612345678", "112", "0612345679"].iter().enumerate() {
        world.place(Side::Pbx, to);
        let answer = world.placed[n]
            .answer
            .as_ref()
            .expect("a final answer at once");
        assert_eq!(answer.status(), Some(503), "{to}");
    }
    assert_eq!(world.calls.len(), 0);
    assert_eq!(world.counters.get("port_pairs_in_use"), 0);
    assert_eq!(world.counters.get("calls_unrouted"), 3);
    // Back up: the next call goes through to the cloud.
    world.cloud_link(true);
    world.place(Side::Pbx, "0612345678");
    assert_eq!(world.open.len(), 1, "the INVITE went to the cloud");
    assert_eq!(world.open[0].0, Side::Cloud);
}

/// A call the cloud never answers is cancelled at Timer C (408 to the PBX),
/// and given up 64 × T1 later if the CANCEL goes unanswered too.
#[test]
fn timer_c_ends_an_unanswered_invite() {
    let mut world = World::new(47_440..=47_479);
    world.place(Side::Pbx, "0612345678");
    world.answer(0, 180);
    world.wait(TIMER_C.as_secs() - 1);
    assert_eq!(world.calls.len(), 1);
    assert!(world.placed[0].answer.is_none());
    world.wait(1);
    let answer = world.placed[0].answer.as_ref().expect("408 at Timer C");
    assert_eq!(answer.status(), Some(408));
    world.wait(32);
    assert_eq!(world.calls.len(), 0);
    assert_eq!(world.counters.get("port_pairs_in_use"), 0);
    assert_eq!(world.counters.get("calls_timed_out"), 2);
}

//! The B2BUA's calls as the node runs them: each [`Call`] (the sans-IO core
//! in `b2bua/`) gets its relay ports from the pool and fresh SRTP keys, its
//! messages are carried to the PBX (UDP, or the PBX's connection) and to
//! the cloud (the trunk's connection), and its relay is set up in and
//! removed from the data plane. A relay's media timeout hangs the call up.

use super::counters::Counters;
use super::paths::CloudPath;
use super::peer::Peer;
use super::reliability::{Due, Received, Reliability};
use super::udp::{UdpDest, UdpOut};
use crate::cdr::{Cdr, CdrLog, Flow, rfc3339};
use crate::random::random;
use pbxlink_b2bua::call::{Call, End, Local, Output, PayloadTypes, Phase, Plan};
use pbxlink_b2bua::digits::{self, DigitRule};
use pbxlink_b2bua::leg::Side;
use pbxlink_dataplane::MasterKey;
use pbxlink_dataplane::control::{Command, Event, WorkerStats};
use pbxlink_dataplane::direction::DirectionConfig;
use pbxlink_dataplane::engine::DataPlane;
use pbxlink_dataplane::net::Networks;
use pbxlink_dataplane::ports::PortPool;
use pbxlink_dataplane::ptmap::PayloadTypeMap;
use pbxlink_dataplane::relay::{MediaDirection, RelayEvent, RelaySpec};
use pbxlink_dataplane::srtp::Suite;
use pbxlink_sip::keepalive::{self, Liveness, PbxWatch, WatchOutput};
use pbxlink_sip::message::Parsed;
use pbxlink_sip::normalize::Head;
use pbxlink_sip::sdp::Crypto;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

/// Where the node's calls live on the network.
#[derive(Debug, Clone)]
pub struct CallsConfig {
    /// The gateway toward the PBX.
    pub pbx: Local,
    /// The gateway toward the cloud.
    pub cloud: Local,
    /// The PBX's SIP address.
    pub pbx_addr: SocketAddr,
    /// The gateway's connection to the PBX when its trunk runs over TCP
    /// (none: UDP).
    pub pbx_tcp: Option<super::paths::PbxPath>,
    /// Address the relays bind, and the LAN address in SDP.
    pub lan_ip: IpAddr,
    /// Address in the cloud leg's SDP (the public one behind NAT).
    pub public_ip: IpAddr,
    /// Networks media may use.
    pub networks: Networks,
    /// SRTP suites offered to the cloud, in order.
    pub suites: Vec<Suite>,
    /// Silence that ends a call (the relays' media timeout).
    pub media_timeout: Duration,
    /// Calls carried at once (emergency calls may go 2 beyond).
    pub call_limit: usize,
    /// The status past the limit (503, 486 or 480; never with Retry-After).
    pub refuse_with: u16,
    /// Numbers dialled toward the cloud go through this…
    pub outbound_digits: DigitRule,
    /// …and those toward the PBX through this.
    pub inbound_digits: DigitRule,
    /// Between OPTIONS to the PBX (zero: none sent).
    pub pbx_keepalive: Duration,
    /// Credentials for a PBX that challenges the gateway's INVITEs.
    pub pbx_credentials: Option<pbxlink_sip::digest::Credentials>,
    /// The subscriber side, for Softphone users' calls (none: off).
    pub subscriber: Option<SubscriberCalls>,
}

/// How Softphone users' calls reach the PBX: from the subscriber side's
/// listener, as the user.
#[derive(Debug, Clone)]
pub struct SubscriberCalls {
    /// The subscriber side's listener (its Via and the users' Contacts).
    pub listen: SocketAddr,
    /// Where the users' calls to the PBX go (the registrar).
    pub registrar: SocketAddr,
    /// The users' domain on the PBX.
    pub domain: String,
    /// The Softphone users.
    pub softphones: super::softphones::Softphones,
}

/// A call-record file is rotated past this size…
const CDR_FILE_BYTES: u64 = 10 << 20;
/// …and this many old ones are kept.
const CDR_FILES_KEPT: u32 = 5;

/// Calls (and their relay ports) kept for emergency numbers past the limit.
const EMERGENCY_RESERVE: usize = 2;

/// Whether a Request-URI calls an emergency number (SPEC §6): always
/// carried, even past the call limit.
fn is_emergency(request_uri: &str) -> bool {
    digits::is_emergency(pbxlink_b2bua::call::user_of(request_uri))
}

#[derive(Debug)]
struct Active {
    call: Call,
    lan_port: u16,
    cloud_port: u16,
    relay: bool,
    /// Whether a relay was ever set up (its final counters will come).
    relayed: bool,
    /// How to reach the PBX for this call (its connection, or UDP).
    pbx_path: Peer,
    /// When the call's glare retry timer fires.
    retry_at: Option<Instant>,
    /// When the session expires unless the caller refreshes (RFC 4028).
    session_at: Option<Instant>,
    /// When the INVITE came, and when it was answered (for the CDR).
    started: SystemTime,
    answered: Option<SystemTime>,
    /// Where the call stood at its last step, and since when: every
    /// phase has its bound ([`bound`]).
    phase: Phase,
    phase_since: Instant,
}

/// RFC 3261 Timer C: an INVITE without a final answer this long is
/// cancelled (the RFC's floor, and SPEC's "3 minutes at most").
pub const TIMER_C: Duration = Duration::from_secs(180);
/// 64 × T1: how long a CANCEL's final response, or an answer's ACK, may
/// take before the gateway gives up on it.
pub const TIMER_64T1: Duration = Duration::from_secs(32);

/// The longest a call may stay in `phase` (none: its relay's media and
/// hold timeouts bound it, and the session timer when negotiated).
fn bound(phase: Phase, relay: bool) -> Option<Duration> {
    match phase {
        Phase::Proceeding => Some(TIMER_C),
        Phase::Cancelling | Phase::Answered => Some(TIMER_64T1),
        Phase::Confirmed if !relay => Some(TIMER_64T1),
        Phase::Confirmed | Phase::Ended => None,
    }
}

/// Every call in progress.
#[derive(Debug)]
pub struct Calls {
    active: HashMap<u64, Active>,
    index: HashMap<(Side, String), u64>,
    next: u64,
    plane: DataPlane,
    ports: PortPool,
    cfg: CallsConfig,
    udp_out: UdpOut,
    cloud: CloudPath,
    counters: Arc<Counters>,
    /// Relays each worker last reported running (its stats, every second).
    workers: Vec<WorkerStats>,
    /// Where call records go (none: not kept).
    cdrs: Option<CdrLog>,
    /// Where call records also go, for the cloud platform (none: no tunnel).
    events: Option<crate::events::EventSink>,
    /// Records of ended calls waiting for their relay's final counters.
    cdrs_pending: HashMap<u64, Cdr>,
    /// Retransmissions toward a PBX over UDP.
    reliable: Reliability,
    /// Whether the PBX answers (none: not asked).
    watch: Option<PbxWatch>,
    /// While the gateway drains (shutting down): until when.
    draining: Option<Instant>,
    /// Call-IDs of calls ended in the last [`LINGER`], by side: the
    /// answers to their last requests (the BYE's 200) still come.
    ended: HashMap<(Side, String), Instant>,
}

/// How long an ended call's Call-IDs still claim late responses (Timer F's
/// 64 × T1).
const LINGER: Duration = Duration::from_secs(32);

/// `N` random bytes in hex: tokens for Call-IDs, tags and branches.
fn hex_token<const N: usize>() -> String {
    random::<N>().iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh SDES key for `suite`.
fn fresh_key(tag: u32, suite: Suite) -> Option<Crypto> {
    let len = match suite {
        Suite::AeadAes128Gcm => 28,
        _ => 30,
    };
    let key = MasterKey::from_bytes(suite, &random::<30>()[..len]).ok()?;
    // to_sdes_inline() is the whole `inline:KEY` key-params.
    Crypto::parse(&format!(
        "{tag} {} {}",
        suite.sdp_name(),
        key.to_sdes_inline()
    ))
}

/// The relay's treatment each way: only the negotiated payload types pass
/// (none listed: any), telephone-events checked at their numbers.
fn directions(t: &PayloadTypes) -> (DirectionConfig, DirectionConfig) {
    let direction = |types: &[u8], te: Option<u8>| DirectionConfig {
        payload_types: if types.is_empty() {
            PayloadTypeMap::identity()
        } else {
            let pairs: Vec<(u8, u8)> = types.iter().map(|&t| (t, t)).collect();
            PayloadTypeMap::only(&pairs)
        },
        telephone_event_pt: te,
        ..DirectionConfig::default()
    };
    (
        direction(&t.to_cloud, t.pbx_telephone_event),
        direction(&t.to_pbx, t.cloud_telephone_event),
    )
}

fn body(msg: &[u8]) -> &[u8] {
    msg.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &msg[i + 4..])
}

/// Where ended calls' records go.
#[derive(Default)]
pub struct RecordSinks {
    /// The rotating CDR file (none: not kept on disk).
    pub cdrs: Option<std::path::PathBuf>,
    /// The cloud platform's event stream (none: no tunnel).
    pub events: Option<crate::events::EventSink>,
}

impl Calls {
    /// Calls over `plane` with relay ports from `ports`.
    pub fn new(
        plane: DataPlane,
        ports: PortPool,
        cfg: CallsConfig,
        udp_out: UdpOut,
        cloud: CloudPath,
        counters: Arc<Counters>,
        records: RecordSinks,
    ) -> Self {
        Self {
            events: records.events,
            workers: vec![WorkerStats::default(); plane.workers()],
            cdrs: records.cdrs.and_then(|path| {
                match CdrLog::open(&path, CDR_FILE_BYTES, CDR_FILES_KEPT) {
                    Ok(log) => {
                        tracing::info!("call records: {}", path.display());
                        Some(log)
                    }
                    Err(e) => {
                        tracing::warn!(
                            "warning: call records cannot be written to {}: {e}",
                            path.display()
                        );
                        None
                    }
                }
            }),
            cdrs_pending: HashMap::new(),
            draining: None,
            ended: HashMap::new(),
            reliable: Reliability::default(),
            watch: (!cfg.pbx_keepalive.is_zero()).then(|| {
                PbxWatch::new(
                    Instant::now(),
                    cfg.pbx_keepalive,
                    cfg.pbx_addr,
                    &cfg.pbx.via,
                    cfg.pbx_tcp.is_some(),
                    &hex_token::<6>(),
                )
            }),
            active: HashMap::new(),
            index: HashMap::new(),
            next: 1,
            plane,
            ports,
            cfg,
            udp_out,
            cloud,
            counters,
        }
    }

    /// Whether a request on `side` with `head` belongs to a call here.
    pub fn owns(&self, side: Side, head: &Head) -> bool {
        head.get("Call-ID")
            .is_some_and(|c| self.index.contains_key(&(side, c.to_owned())))
    }

    /// Sends call `id`'s message to side `to`; over UDP to the PBX it is
    /// also kept for retransmission. False when the cloud trunk is down:
    /// the message had nowhere to go.
    fn send(&mut self, now: Instant, id: u64, to: Side, bytes: Vec<u8>, request: bool) -> bool {
        let Some(a) = self.active.get(&id) else {
            return true;
        };
        let udp = match (to, &a.pbx_path) {
            (Side::Pbx, Peer::Stream(None)) => Some(UdpDest::trunk(self.cfg.pbx_addr)),
            (Side::Pbx, path) => path.udp_dest(),
            _ => None,
        };
        if let Some(dest) = udp {
            if request {
                self.reliable.request_sent(now, id, dest, &bytes);
            } else {
                self.reliable.response_sent(now, id, dest, &bytes);
            }
            self.udp_out.send(dest, bytes);
            return true;
        }
        match (to, &a.pbx_path) {
            (Side::Pbx, Peer::Stream(Some(out))) => {
                let _ = out.try_send(bytes);
                true
            }
            (Side::Pbx, _) => true,
            (Side::Cloud, _) => {
                let path = self.cloud.lock().expect("cloud path").clone();
                match path {
                    Some(conn) => {
                        let _ = conn.out.try_send(bytes);
                        true
                    }
                    None => {
                        self.counters.calls_unrouted.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                }
            }
        }
    }

    /// Whether the trunk to the cloud is connected now.
    fn cloud_up(&self) -> bool {
        self.cloud.lock().expect("cloud path").is_some()
    }

    /// A new INVITE from `side`: a call, or the response refusing it.
    pub fn incoming(
        &mut self,
        now: Instant,
        side: Side,
        p: &Parsed,
        msg: &[u8],
        from: Peer,
    ) -> Option<Vec<u8>> {
        let call_id = p.head.get("Call-ID")?.to_owned();
        if let (Side::Pbx, Peer::Udp(_) | Peer::Subscriber(_)) = (side, &from) {
            // A retransmitted INVITE over UDP (also after its call ended):
            // the latest response again.
            if let Some((to, bytes)) = self.reliable.invite_again(&call_id) {
                self.counters
                    .retransmissions
                    .fetch_add(1, Ordering::Relaxed);
                self.udp_out.send(to, bytes);
                return None;
            }
        }
        if self.index.contains_key(&(side, call_id.clone())) {
            // A retransmitted INVITE: the call answers on its own.
            self.counters
                .retransmissions
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if let Some(tags) = pbxlink_b2bua::call::unsupported(&p.head, body(msg)) {
            // §8.2.2.3: 420 naming what is not supported; the caller may
            // try again without it.
            self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
            return self.refuse(side, &p.head, 420, "Bad Extension").map(|r| {
                pbxlink_b2bua::leg::insert_headers(&r, &format!("Unsupported: {tags}\r\n"))
            });
        }
        // A Softphone user's call: the PBX calling the user on the
        // subscriber side, or the cloud calling out as the user.
        let softphone = match self.softphone_of(side, &p.head, &from) {
            Ok(s) => s,
            Err(()) => {
                self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
                return self.refuse(side, &p.head, 404, "Not Found");
            }
        };
        let pbx_path = match (&softphone, side) {
            (_, Side::Pbx) => from,
            (Some(_), Side::Cloud) => Peer::Subscriber(
                self.cfg
                    .subscriber
                    .as_ref()
                    .expect("a softphone needs it")
                    .registrar,
            ),
            (None, Side::Cloud) => match &self.cfg.pbx_tcp {
                None => Peer::Udp(self.cfg.pbx_addr),
                Some(path) => Peer::Stream(path.lock().expect("pbx path").clone()),
            },
        };
        if matches!(pbx_path, Peer::Stream(None)) {
            // The PBX's trunk runs over TCP and the gateway's connection to
            // it is down: nowhere to send the call.
            self.counters.calls_unrouted.fetch_add(1, Ordering::Relaxed);
            return self.unavailable(side, &p.head, "the PBX trunk is down");
        }
        if side == Side::Pbx && !self.cloud_up() {
            // The cloud trunk is down: 503 at once, so the PBX takes its
            // next route (for an emergency call above all), no slot held.
            self.counters.calls_unrouted.fetch_add(1, Ordering::Relaxed);
            return self.unavailable(side, &p.head, "the cloud trunk is down");
        }
        // Admission: the limit, then 2 more for emergency numbers, whose
        // relay ports are kept free for them too. Refused with the
        // configured status and no Retry-After: that would make the PBX
        // stop sending every call, emergency ones included.
        let emergency = is_emergency(p.head.start_line.split(' ').nth(1).unwrap_or_default());
        let (limit, spare_ports) = if emergency {
            (self.cfg.call_limit + EMERGENCY_RESERVE, 0)
        } else {
            (self.cfg.call_limit, 2 * EMERGENCY_RESERVE)
        };
        if self.active.len() >= limit || self.ports.free() < 2 + spare_ports {
            self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
            self.counters
                .refused_at_limit
                .fetch_add(1, Ordering::Relaxed);
            let code = self.cfg.refuse_with;
            let phrase = match code {
                486 => "Busy Here",
                480 => "Temporarily Unavailable",
                _ => "Service Unavailable",
            };
            return self.refuse(side, &p.head, code, phrase);
        }
        if let Some(until) = self.draining.filter(|_| !emergency) {
            // Shutting down: the one refusal that carries Retry-After — the
            // PBX should hold its calls until the gateway is back, not try
            // the next one in vain. Emergency calls are still carried.
            self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
            self.counters
                .refused_draining
                .fetch_add(1, Ordering::Relaxed);
            let wait = until.saturating_duration_since(now).as_secs().max(1);
            return self
                .refuse(side, &p.head, 503, "Service Unavailable")
                .map(|r| {
                    pbxlink_b2bua::leg::insert_headers(&r, &format!("Retry-After: {wait}\r\n"))
                });
        }
        if emergency {
            self.counters
                .emergency_calls
                .fetch_add(1, Ordering::Relaxed);
        }
        let Some((lan_port, cloud_port)) = self.take_call_ports(now) else {
            self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
            return self.refuse(side, &p.head, 503, "Service Unavailable");
        };
        let id = self.next;
        self.next += 1;
        let keys: Vec<Crypto> = self
            .cfg
            .suites
            .iter()
            .enumerate()
            .filter_map(|(i, s)| fresh_key(i as u32 + 1, *s))
            .collect();
        let token = hex_token::<8>();
        // Toward the cloud the gateway is the trunk connection's end. The
        // Contact says sip:…;transport=tls, not sips: (libre, under baresip
        // and other clouds' SBCs, will not send in-dialog requests to a
        // sips Contact it reached over an inbound connection).
        let mut cloud = self.cfg.cloud.clone();
        if let Some(conn) = self.cloud.lock().expect("cloud path").as_ref() {
            cloud.via = format!("SIP/2.0/TLS {}", conn.seen_as());
            cloud.contact = format!("sip:pbxlink@{};transport=tls", conn.seen_as());
        }
        let asserted_identity = softphone.as_ref().map(|(user, _)| {
            let sub = self.cfg.subscriber.as_ref().expect("a softphone needs it");
            format!("sip:{user}@{}", sub.domain)
        });
        let (pbx, dial, pbx_credentials) = match &softphone {
            // As the user's phone: its own address, its credentials, and
            // the number exactly as the user dialled it (or was called).
            Some((user, creds)) => {
                let sub = self.cfg.subscriber.as_ref().expect("a softphone needs it");
                (
                    Local {
                        via: format!("SIP/2.0/UDP {}", sub.listen),
                        contact: format!("sip:{user}@{}", sub.listen),
                        domain: sub.domain.clone(),
                        scheme: "sip",
                    },
                    DigitRule::default(),
                    creds.clone(),
                )
            }
            None => (
                self.cfg.pbx.clone(),
                match side {
                    Side::Pbx => self.cfg.outbound_digits.clone(),
                    Side::Cloud => self.cfg.inbound_digits.clone(),
                },
                self.cfg.pbx_credentials.clone(),
            ),
        };
        let plan = Plan {
            id: format!("{token}{id}"),
            pbx,
            cloud,
            lan_media: SocketAddr::new(self.cfg.lan_ip, lan_port),
            cloud_media: SocketAddr::new(self.cfg.public_ip, cloud_port),
            keys,
            session_id: u64::from_be_bytes(random::<8>()) >> 1,
            dial,
            pbx_credentials,
            asserted_identity,
        };
        let call = match Call::incoming(side, &p.head, body(msg), plan) {
            Ok(c) => c,
            Err((code, phrase)) => {
                self.ports.give_back(now, lan_port);
                self.ports.give_back(now, cloud_port);
                self.ports_changed();
                self.counters.calls_refused.fetch_add(1, Ordering::Relaxed);
                return self.refuse(side, &p.head, code, phrase);
            }
        };
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        self.index.insert((side, call.call_id(side).to_owned()), id);
        self.index
            .insert((side.other(), call.call_id(side.other()).to_owned()), id);
        self.active.insert(
            id,
            Active {
                call,
                lan_port,
                cloud_port,
                relay: false,
                relayed: false,
                pbx_path,
                retry_at: None,
                session_at: None,
                started: SystemTime::now(),
                answered: None,
                phase: Phase::Proceeding,
                phase_since: now,
            },
        );
        self.flush(now, id);
        None
    }

    /// Whether a new INVITE is a Softphone user's call, and whose: the
    /// PBX calling a user on the subscriber side (`Err` when no such user
    /// is ours), or the cloud calling from a Softphone user's extension.
    #[allow(clippy::result_unit_err)]
    fn softphone_of(
        &self,
        side: Side,
        head: &Head,
        from: &Peer,
    ) -> Result<Option<(String, Option<pbxlink_sip::digest::Credentials>)>, ()> {
        let Some(sub) = &self.cfg.subscriber else {
            return Ok(None);
        };
        match (side, from) {
            (Side::Pbx, Peer::Subscriber(_)) => {
                let uri = head.start_line.split(' ').nth(1).unwrap_or_default();
                let user = pbxlink_b2bua::call::user_of(uri).to_owned();
                if sub.softphones.contains(&user) {
                    Ok(Some((user, None)))
                } else {
                    Err(())
                }
            }
            (Side::Cloud, _) => {
                let caller = head
                    .get("From")
                    .map(|f| pbxlink_b2bua::call::user_of(pbxlink_b2bua::leg::uri_of(f)).to_owned())
                    .unwrap_or_default();
                Ok(sub
                    .softphones
                    .credentials(&caller)
                    .map(|c| (caller, Some(c))))
            }
            _ => Ok(None),
        }
    }

    fn find(&self, side: Side, head: &Head) -> Option<u64> {
        head.get("Call-ID")
            .and_then(|c| self.index.get(&(side, c.to_owned())))
            .copied()
    }

    /// An in-dialog request (ACK, BYE, CANCEL, …) for a call here.
    pub fn on_request(&mut self, now: Instant, side: Side, p: &Parsed, msg: &[u8]) {
        if side == Side::Pbx {
            self.reliable.request_received(&p.head);
        }
        if let Some(id) = self.find(side, &p.head) {
            if let Some(a) = self.active.get_mut(&id) {
                a.call.on_request(side, &p.head, body(msg));
            }
            self.flush(now, id);
        }
    }

    /// A response for a call here; false when it is not one.
    pub fn on_response(&mut self, now: Instant, side: Side, p: &Parsed, msg: &[u8]) -> bool {
        if side == Side::Pbx
            && self
                .watch
                .as_mut()
                .is_some_and(|w| w.handle_response(now, &p.head))
        {
            self.watch_outputs();
            return true;
        }
        if side == Side::Pbx {
            if let Received::Absorb(again) = self.reliable.response_received(now, &p.head) {
                self.counters
                    .retransmissions
                    .fetch_add(1, Ordering::Relaxed);
                if let Some((to, ack)) = again {
                    self.udp_out.send(to, ack);
                }
                return true;
            }
        }
        let Some(id) = self.find(side, &p.head) else {
            let late = p
                .head
                .get("Call-ID")
                .is_some_and(|c| self.ended.contains_key(&(side, c.to_owned())));
            if late {
                // The BYE's answer after the call ended: expected, absorbed.
                self.counters
                    .responses_after_end
                    .fetch_add(1, Ordering::Relaxed);
            }
            return late;
        };
        if let Some(a) = self.active.get_mut(&id) {
            a.call.on_response(side, &p.head, body(msg));
        }
        self.flush(now, id);
        true
    }

    /// Carries out what the PBX watch asked: its OPTIONS to the PBX, and
    /// the status when the PBX is lost or back.
    fn watch_outputs(&mut self) {
        while let Some(o) = self.watch.as_mut().and_then(PbxWatch::poll_output) {
            match o {
                WatchOutput::Transmit(bytes) => {
                    self.counters.pbx_pings_sent.fetch_add(1, Ordering::Relaxed);
                    match &self.cfg.pbx_tcp {
                        None => {
                            self.udp_out.send(UdpDest::trunk(self.cfg.pbx_addr), bytes);
                        }
                        Some(path) => {
                            if let Some(out) = path.lock().expect("pbx path").as_ref() {
                                let _ = out.try_send(bytes);
                            }
                        }
                    }
                }
                WatchOutput::Changed(state) => {
                    let (gauge, line) = match state {
                        Liveness::Unknown => (0, String::new()),
                        Liveness::Up => (1, "status: Connected (the PBX answers)".into()),
                        Liveness::Lost => (
                            2,
                            format!(
                                "status: Lost trunk connection to PBX (no answer to {} OPTIONS in a row from {})",
                                keepalive::MISSES,
                                self.cfg.pbx_addr
                            ),
                        ),
                    };
                    self.counters.pbx_trunk.store(gauge, Ordering::Relaxed);
                    tracing::info!("{line}");
                }
            }
        }
    }

    /// Data-plane events: a media timeout hangs its call up; the workers'
    /// relay counts are printed when they change. The PBX watch's timers.
    pub fn tick(&mut self, now: Instant) {
        self.ended
            .retain(|_, at| now.saturating_duration_since(*at) < LINGER);
        if let Some(w) = &mut self.watch {
            w.handle_timeout(now);
        }
        self.watch_outputs();
        let mut timed_out = Vec::new();
        let before: u64 = self.workers.iter().map(|w| w.relays).sum();
        let workers = &mut self.workers;
        let pending = &mut self.cdrs_pending;
        let mut finished = Vec::new();
        let mut failed = Vec::new();
        self.plane.drain_events(|e| match e {
            Event::AddFailed { id, reason } => failed.push((id, reason)),
            Event::Worker { worker, stats } => {
                if let Some(w) = workers.get_mut(worker) {
                    *w = stats;
                }
            }
            Event::Relay {
                id,
                event: RelayEvent::MediaTimeout,
            } => timed_out.push(id),
            Event::Removed { id, stats } => {
                if let Some(mut cdr) = pending.remove(&id) {
                    let flow = |d: &pbxlink_dataplane::direction::DirectionCounters, lost| Flow {
                        rtp: d.rtp_out,
                        rtcp: d.rtcp_out,
                        lost,
                        dropped: d.drops.total(),
                    };
                    cdr.to_cloud = flow(&stats.lan_to_cloud, stats.lan_lost);
                    cdr.to_pbx = flow(&stats.cloud_to_lan, stats.cloud_lost);
                    finished.push(cdr);
                }
                if let Ok(mut d) = self.counters.media_drops.lock() {
                    d.from_pbx.add(&stats.lan_to_cloud.drops);
                    d.from_cloud.add(&stats.cloud_to_lan.drops);
                    d.relay.add(&stats.relay_drops);
                }
                let drops: Vec<String> = [
                    ("from PBX", &stats.lan_to_cloud.drops),
                    ("from cloud", &stats.cloud_to_lan.drops),
                    ("relay", &stats.relay_drops),
                ]
                .iter()
                .flat_map(|(w, d)| d.nonzero().map(move |(r, n)| format!("{w} {r}={n}")))
                .collect();
                tracing::info!(
                    "call {id}: media to cloud {} RTP {} RTCP, to PBX {} RTP {} RTCP, drops: {}",
                    stats.lan_to_cloud.rtp_out,
                    stats.lan_to_cloud.rtcp_out,
                    stats.cloud_to_lan.rtp_out,
                    stats.cloud_to_lan.rtcp_out,
                    if drops.is_empty() {
                        "none".into()
                    } else {
                        drops.join(" ")
                    }
                );
            }
            _ => {}
        });
        for cdr in finished {
            self.record(&cdr);
        }
        let after: u64 = self.workers.iter().map(|w| w.relays).sum();
        if after != before {
            tracing::info!("data plane: {after} relay(s) running");
            self.counters.relays.store(after, Ordering::Relaxed);
        }
        let sum = |f: fn(&WorkerStats) -> u64| self.workers.iter().map(f).sum::<u64>();
        let c = &self.counters;
        c.media_received
            .store(sum(|w| w.received), Ordering::Relaxed);
        c.media_sent.store(sum(|w| w.sent), Ordering::Relaxed);
        c.media_sent_xdp
            .store(sum(|w| w.xdp_sent), Ordering::Relaxed);
        c.media_received_xdp
            .store(sum(|w| w.xdp_received), Ordering::Relaxed);
        c.media_kernel_drops
            .store(sum(|w| w.kernel_drops), Ordering::Relaxed);
        c.media_xdp_foreign_dropped
            .store(sum(|w| w.xdp_foreign_dropped), Ordering::Relaxed);
        c.dataplane_events_dropped
            .store(sum(|w| w.events_dropped), Ordering::Relaxed);
        let bp = self.plane.backpressure();
        c.dataplane_commands_waiting
            .store(bp.waiting, Ordering::Relaxed);
        c.dataplane_commands_delayed
            .store(bp.delayed, Ordering::Relaxed);
        c.dataplane_relays_refused
            .store(bp.adds_refused, Ordering::Relaxed);
        c.dataplane_commands_refused
            .store(bp.refused, Ordering::Relaxed);
        if let Ok(mut d) = c.media_drops.lock() {
            let mut all = pbxlink_dataplane::drops::DropCounters::default();
            for w in &self.workers {
                all.add(&w.drops);
            }
            d.by_reason = all;
        }
        let due = |at: fn(&Active) -> Option<Instant>| -> Vec<u64> {
            self.active
                .iter()
                .filter(|(_, a)| at(a).is_some_and(|t| t <= now))
                .map(|(id, _)| *id)
                .collect()
        };
        let (retries, expired) = (due(|a| a.retry_at), due(|a| a.session_at));
        for id in retries {
            if let Some(a) = self.active.get_mut(&id) {
                a.retry_at = None;
                a.call.on_retry_timer();
                self.flush(now, id);
            }
        }
        for id in expired {
            if let Some(a) = self.active.get_mut(&id) {
                tracing::info!("call {id}: the session expired without a refresh");
                a.session_at = None;
                a.call.session_expired();
                self.flush(now, id);
            }
        }
        self.bound_phases(now);
        for due in self.reliable.poll(now) {
            let (id, why) = match due {
                Due::Send(to, bytes) => {
                    self.udp_out.send(to, bytes);
                    continue;
                }
                Due::InviteTimeout(id) => (id, "the PBX did not answer the INVITE"),
                Due::AckTimeout(id) => (id, "the PBX did not acknowledge the answer"),
                Due::PrackTimeout(id) => (id, "the PBX did not PRACK a reliable provisional"),
            };
            if let Some(a) = self.active.get_mut(&id) {
                tracing::info!("call {id}: {why}");
                a.call.hang_up(why);
                self.flush(now, id);
            }
        }
        for (id, reason) in failed {
            // The call's SDP already names these ports: it cannot go on
            // without them. Ports another process holds rest and are counted.
            self.counters.relays_failed.fetch_add(1, Ordering::Relaxed);
            let Some(a) = self.active.get_mut(&id) else {
                continue;
            };
            tracing::info!("call {id}: relay could not be set up ({reason:?}); hanging up");
            a.relay = false;
            a.relayed = false;
            a.call.hang_up("relay could not be set up");
            let taken =
                matches!(reason, pbxlink_dataplane::control::AddFailure::Bind { .. }).then(|| {
                    // Set aside now; the call's end gives nothing back twice
                    // (its ports are marked taken away).
                    let pairs = (a.lan_port, a.cloud_port);
                    (a.lan_port, a.cloud_port) = (0, 0);
                    pairs
                });
            if let Some((lan, cloud)) = taken {
                self.set_aside(now, lan);
                self.set_aside(now, cloud);
            }
            self.flush(now, id);
        }
        for id in timed_out {
            if let Some(a) = self.active.get_mut(&id) {
                a.call.hang_up("media timeout");
                self.counters.media_timeouts.fetch_add(1, Ordering::Relaxed);
                self.flush(now, id);
            }
        }
    }

    /// Ends what outstayed its phase's [`bound`]: Timer C cancels an
    /// unanswered INVITE (408 to the caller), a CANCEL or an answer left
    /// without reply gives up, a confirmed call without media hangs up.
    fn bound_phases(&mut self, now: Instant) {
        let overdue: Vec<(u64, Phase)> = self
            .active
            .iter()
            .filter(|(_, a)| {
                bound(a.phase, a.relay)
                    .is_some_and(|b| now.saturating_duration_since(a.phase_since) >= b)
            })
            .map(|(id, a)| (*id, a.phase))
            .collect();
        for (id, phase) in overdue {
            let Some(a) = self.active.get_mut(&id) else {
                continue;
            };
            let why = match phase {
                Phase::Proceeding => {
                    a.call.timer_c();
                    "no final answer in 3 minutes (Timer C): cancelled, 408 to the caller"
                }
                Phase::Cancelling => {
                    a.call.abandon(408, "no final answer to the CANCEL");
                    "no final answer to the CANCEL"
                }
                Phase::Answered => {
                    a.call.hang_up("no ACK for the answer");
                    "no ACK for the answer"
                }
                Phase::Confirmed | Phase::Ended => {
                    a.call.hang_up("no media path");
                    "confirmed without a media path"
                }
            };
            tracing::info!("call {id}: {why}");
            // The next bound counts from here even if the phase stays.
            a.phase_since = now;
            self.counters
                .calls_timed_out
                .fetch_add(1, Ordering::Relaxed);
            self.flush(now, id);
        }
    }

    /// Carries out what call `id` asked for. A message the cloud cannot
    /// be sent (its trunk down) ends the call at once: 503 to the PBX
    /// before an answer, BYE after.
    fn flush(&mut self, now: Instant, id: u64) {
        let mut ended = false;
        let mut unreachable = false;
        loop {
            let Some(a) = self.active.get_mut(&id) else {
                return;
            };
            let Some(o) = a.call.poll_output() else {
                if unreachable && !a.call.is_over() {
                    tracing::warn!("call {id}: the cloud trunk is down; ending the call");
                    a.call.abandon(503, "the cloud trunk is down");
                    continue;
                }
                break;
            };
            match o {
                Output::Request { to, bytes, .. } => {
                    unreachable |= !self.send(now, id, to, bytes, true);
                }
                Output::Response { to, bytes } => {
                    unreachable |= !self.send(now, id, to, bytes, false);
                }
                Output::RelayUp(m) => {
                    let a = self.active.get_mut(&id).expect("present");
                    let spec = Suite::from_sdp_name(&m.suite).and_then(|suite| {
                        // The SDP's bare base64 (RFC 4568 key-params without the prefix).
                        let tx =
                            MasterKey::from_sdes(suite, &format!("inline:{}", *m.tx_key)).ok()?;
                        let rx =
                            MasterKey::from_sdes(suite, &format!("inline:{}", *m.rx_key)).ok()?;
                        let (lan_to_cloud, cloud_to_lan) = directions(&m.types);
                        Some(RelaySpec {
                            lan_remote: Some(m.lan_remote),
                            cloud_remote: Some(m.cloud_remote),
                            lan_to_cloud,
                            cloud_to_lan,
                            networks: self.cfg.networks.clone(),
                            media_timeout: self.cfg.media_timeout,
                            ..RelaySpec::new(
                                id,
                                self.cfg.lan_ip,
                                a.lan_port,
                                a.cloud_port,
                                suite,
                                tx,
                                rx,
                            )
                        })
                    });
                    match spec.map(|s| self.plane.add_relay(s)) {
                        Some(Ok(_)) => {
                            a.relay = true;
                            a.relayed = true;
                        }
                        _ => {
                            self.counters.relays_failed.fetch_add(1, Ordering::Relaxed);
                            a.call.hang_up("relay could not be set up");
                        }
                    }
                }
                Output::RelayDirection {
                    lan_to_cloud,
                    cloud_to_lan,
                } => {
                    let direction = match (lan_to_cloud, cloud_to_lan) {
                        (true, true) => MediaDirection::SendRecv,
                        (true, false) => MediaDirection::SendOnly,
                        (false, true) => MediaDirection::RecvOnly,
                        (false, false) => MediaDirection::Inactive,
                    };
                    if self.active[&id].relay {
                        let ways = match direction {
                            MediaDirection::SendRecv => "both ways",
                            MediaDirection::SendOnly => "PBX to cloud only",
                            MediaDirection::RecvOnly => "cloud to PBX only",
                            MediaDirection::Inactive => "stopped (held both ways)",
                        };
                        tracing::info!("call {id}: media now {ways}");
                        let _ = self
                            .plane
                            .command(id, Command::SetDirection { id, direction });
                    }
                }
                Output::RelayDown => {
                    let a = self.active.get_mut(&id).expect("present");
                    if a.relay {
                        a.relay = false;
                        let _ = self.plane.command(id, Command::Remove { id });
                    }
                }
                Output::RelayUpdate {
                    lan_remote,
                    cloud_remote,
                    rx_key,
                    types,
                } => {
                    let mut moved = Vec::new();
                    if let Some(t) = types {
                        moved.push(format!(
                            "payload types now {:?} to the cloud, {:?} to the PBX",
                            t.to_cloud, t.to_pbx
                        ));
                        let (l, c) = directions(&t);
                        let _ = self.plane.command(
                            id,
                            Command::SetPayloadTypes {
                                id,
                                lan_to_cloud: Box::new(l),
                                cloud_to_lan: Box::new(c),
                            },
                        );
                    }
                    for (lan, remote) in [(true, lan_remote), (false, cloud_remote)] {
                        if let Some(remote) = remote {
                            moved.push(format!(
                                "{} now at {remote}",
                                if lan { "PBX" } else { "cloud" }
                            ));
                            let _ = self
                                .plane
                                .command(id, Command::SetRemote { id, lan, remote });
                        }
                    }
                    let key = rx_key.and_then(|c| {
                        let suite = Suite::from_sdp_name(&c.suite)?;
                        let key =
                            MasterKey::from_sdes(suite, &format!("inline:{}", *c.key)).ok()?;
                        Some((suite, key))
                    });
                    if let Some((suite, key)) = key {
                        moved.push("the cloud's new key".into());
                        let _ = self.plane.command(
                            id,
                            Command::SetCloudKey {
                                id,
                                suite,
                                key: Box::new(key),
                            },
                        );
                    }
                    tracing::info!("call {id}: media changed: {}", moved.join(", "));
                }
                Output::SessionTimer { expires } => {
                    // RFC 4028 §10: give up min(32 s, a third) before expiry.
                    let margin = (expires / 3).min(Duration::from_secs(32));
                    let a = self.active.get_mut(&id).expect("present");
                    a.session_at = Some(now + expires - margin);
                }
                Output::RetryTimer { min, max } => {
                    // RFC 3261 §14.1: a random wait in 10 ms steps.
                    let steps = (max.saturating_sub(min).as_millis() / 10) as u64;
                    let pick = u64::from_be_bytes(random::<8>()) % (steps + 1);
                    let wait = min + Duration::from_millis(pick * 10);
                    tracing::info!(
                        "call {id}: glare (491), the re-INVITE tried again in {} ms",
                        wait.as_millis()
                    );
                    let a = self.active.get_mut(&id).expect("present");
                    a.retry_at = Some(now + wait);
                    self.counters.glare.fetch_add(1, Ordering::Relaxed);
                }
                Output::Ended(why) => {
                    tracing::info!("call {id}: ended ({why:?})");
                    let c = &self.counters;
                    let outcome = match why {
                        End::Hangup(_) => &c.calls_completed,
                        End::Cancelled => &c.calls_cancelled,
                        End::Rejected(_) => &c.calls_rejected,
                        End::Failed(_) => &c.calls_failed,
                    };
                    outcome.fetch_add(1, Ordering::Relaxed);
                    let a = &self.active[&id];
                    let (from, to) = a.call.parties();
                    let cdr = Cdr {
                        call: id,
                        direction: match a.call.caller_side() {
                            Side::Pbx => "pbx-to-cloud",
                            Side::Cloud => "cloud-to-pbx",
                        },
                        pbx_call_id: a.call.call_id(Side::Pbx).to_owned(),
                        cloud_call_id: a.call.call_id(Side::Cloud).to_owned(),
                        from,
                        to,
                        start: rfc3339(a.started),
                        answer: a.answered.map(rfc3339),
                        end: rfc3339(SystemTime::now()),
                        cause: format!("{why:?}"),
                        to_cloud: Flow::default(),
                        to_pbx: Flow::default(),
                    };
                    if a.relayed {
                        // Written when the relay's final counters come.
                        self.cdrs_pending.insert(id, cdr);
                    } else {
                        self.record(&cdr);
                    }
                    ended = true;
                }
            }
        }
        if let Some(a) = self.active.get_mut(&id) {
            if a.answered.is_none() && a.call.answered() {
                a.answered = Some(SystemTime::now());
            }
            let phase = a.call.phase();
            if phase != a.phase {
                a.phase = phase;
                a.phase_since = now;
            }
        }
        if ended {
            if let Some(a) = self.active.remove(&id) {
                if a.relay {
                    let _ = self.plane.command(id, Command::Remove { id });
                }
                for port in [a.lan_port, a.cloud_port] {
                    if port != 0 {
                        self.ports.give_back(now, port);
                    }
                }
                self.ports_changed();
                let ended = &mut self.ended;
                self.index.retain(|k, v| {
                    if *v == id {
                        ended.insert(k.clone(), now);
                    }
                    *v != id
                });
                self.counters.calls_ended.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The response refusing an INVITE before it became a call, and its
    /// record.
    fn refuse(&mut self, side: Side, head: &Head, code: u16, phrase: &str) -> Option<Vec<u8>> {
        self.refuse_with_reason(side, head, code, phrase, None)
    }

    /// A `503` refusing an INVITE for a reason the record and the log
    /// name (`Refused(503): the cloud trunk is down`).
    fn unavailable(&mut self, side: Side, head: &Head, reason: &'static str) -> Option<Vec<u8>> {
        let to = head.start_line.split(' ').nth(1).unwrap_or_default();
        tracing::warn!(
            "call from the {} to {to} refused 503: {reason}",
            match side {
                Side::Pbx => "PBX",
                Side::Cloud => "cloud",
            }
        );
        self.refuse_with_reason(side, head, 503, "Service Unavailable", Some(reason))
    }

    fn refuse_with_reason(
        &mut self,
        side: Side,
        head: &Head,
        code: u16,
        phrase: &str,
        reason: Option<&str>,
    ) -> Option<Vec<u8>> {
        self.refused(side, head, code, reason);
        pbxlink_b2bua::leg::Leg::from_invite(
            side,
            head,
            "refused".into(),
            String::new(),
            String::new(),
        )
        .map(|leg| leg.response(head, code, phrase, None))
    }

    /// The record of an INVITE refused before it became a call (number 0).
    fn refused(&mut self, side: Side, head: &Head, code: u16, reason: Option<&str>) {
        let user = |v: &str| pbxlink_b2bua::call::user_of(pbxlink_b2bua::leg::uri_of(v)).to_owned();
        let now = rfc3339(SystemTime::now());
        let call_id = head.get("Call-ID").unwrap_or_default().to_owned();
        let (pbx_call_id, cloud_call_id) = match side {
            Side::Pbx => (call_id, String::new()),
            Side::Cloud => (String::new(), call_id),
        };
        let cdr = Cdr {
            call: 0,
            direction: match side {
                Side::Pbx => "pbx-to-cloud",
                Side::Cloud => "cloud-to-pbx",
            },
            pbx_call_id,
            cloud_call_id,
            from: user(head.get("From").unwrap_or_default()),
            to: user(head.start_line.split(' ').nth(1).unwrap_or_default()),
            start: now.clone(),
            answer: None,
            end: now,
            cause: match reason {
                Some(why) => format!("Refused({code}): {why}"),
                None => format!("Refused({code})"),
            },
            to_cloud: Flow::default(),
            to_pbx: Flow::default(),
        };
        self.record(&cdr);
    }

    /// Writes a call's record (counted when it cannot be).
    fn record(&mut self, cdr: &Cdr) {
        if let Some(log) = self.cdrs.as_mut() {
            if log.write(cdr).is_err() {
                self.counters.cdrs_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(events) = &self.events {
            events.emit("cdr", serde_json::to_value(cdr).unwrap_or_default());
        }
    }

    /// A call's two port pairs (LAN leg, cloud leg), each bindable now:
    /// the SDP will name them, and the relay binding them later cannot
    /// change them. Pairs another process holds are set aside and counted;
    /// none is kept when the second cannot be found.
    fn take_call_ports(&mut self, now: Instant) -> Option<(u16, u16)> {
        let ip = self.cfg.lan_ip;
        let free = |port: u16| std::net::UdpSocket::bind(SocketAddr::new(ip, port)).is_ok();
        let taken = self.ports.take_call(now, |p| free(p) && free(p + 1));
        self.counters
            .ports_unbindable
            .store(self.ports.unbindable_count(), Ordering::Relaxed);
        self.ports_changed();
        taken
    }

    /// Tells the counters how many port pairs calls hold (a soak shows it
    /// back at zero once the calls are over: none leaked).
    fn ports_changed(&self) {
        self.counters
            .port_pairs_in_use
            .store(self.ports.in_use() as u64, Ordering::Relaxed);
    }

    /// Sets a pair another process holds aside (it rests like a freed
    /// one); the counter shows the pool's count.
    fn set_aside(&mut self, now: Instant, rtp_port: u16) {
        self.ports.unbindable(now, rtp_port);
        self.counters
            .ports_unbindable
            .store(self.ports.unbindable_count(), Ordering::Relaxed);
    }

    /// The node's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Calls in progress.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Starts draining: new calls are refused 503 with Retry-After until
    /// `until` (emergency calls still carried); calls up go on.
    pub fn drain(&mut self, until: Instant) {
        self.draining = Some(until);
    }

    /// Ends every call still up (BYE or CANCEL on both legs, cause
    /// `shutdown`); their records follow their relays' final counters.
    pub fn hang_up_all(&mut self, now: Instant) {
        let ids: Vec<u64> = self.active.keys().copied().collect();
        for id in ids {
            if let Some(a) = self.active.get_mut(&id) {
                a.call.hang_up("shutdown");
                self.flush(now, id);
            }
        }
    }

    /// Whether records still wait for relays' final counters.
    pub fn records_pending(&self) -> bool {
        !self.cdrs_pending.is_empty()
    }
}

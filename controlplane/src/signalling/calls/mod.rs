//! The B2BUA's calls as the node runs them: each [`Call`] (the sans-IO core
//! in `b2bua/`) gets its relay ports from the pool and fresh SRTP keys, its
//! messages are carried to the PBX (UDP, or the PBX's connection) and to
//! the cloud (the trunk's connection), and its relay is set up in and
//! removed from the data plane. A relay's media timeout hangs the call up.

pub(super) mod bounds;
mod flush;
mod incoming;
mod live;
mod refusals;

use super::counters::Counters;
use super::paths::CloudPath;
use super::peer::Peer;
use super::reliability::{Due, Received, Reliability};
use super::udp::{UdpDest, UdpOut};
use crate::cdr::{Cdr, CdrLog, Flow};
use crate::random::random;
use pbxlink_b2bua::call::{Call, Local, PayloadTypes, Phase};
use pbxlink_b2bua::digits::{self, DigitRule};
use pbxlink_b2bua::leg::Side;
use pbxlink_dataplane::MasterKey;
use pbxlink_dataplane::control::{Event, WorkerStats};
use pbxlink_dataplane::direction::DirectionConfig;
use pbxlink_dataplane::engine::DataPlane;
use pbxlink_dataplane::net::Networks;
use pbxlink_dataplane::ports::PortPool;
use pbxlink_dataplane::ptmap::PayloadTypeMap;
use pbxlink_dataplane::relay::RelayEvent;
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
    /// How calls are rated, and when poor ones raise the alarm.
    pub quality: crate::config::QualitySettings,
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
    /// When the call's INVITE came in, until its INVITE to the other side
    /// goes out; when its answer came in, until the answer goes out (the
    /// set-up delay the gateway adds, `pbxlink_call_setup_added_seconds`).
    invite_in: Option<Instant>,
    answer_in: Option<Instant>,
    /// Where the PBX and the cloud take the call's media, and its codec
    /// (the live view and the record).
    pbx_media: Option<SocketAddr>,
    cloud_media: Option<SocketAddr>,
    codec: String,
}

/// Whether `bytes`, a message the gateway wrote, is a 2xx to an INVITE.
fn answers_invite(bytes: &[u8]) -> bool {
    bytes.starts_with(b"SIP/2.0 2")
        && bytes
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"CSeq:"))
            .is_some_and(|l| l.trim_ascii_end().ends_with(b" INVITE"))
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
    /// The alarms the page and `/metrics` show (none: no admin page).
    alarms: Option<Arc<crate::alarms::Alarms>>,
    /// The last 15 minutes of ended calls, for the `poor_calls` alarm.
    poor: crate::poor_calls::PoorCalls,
    /// HEP3 capture (none: off).
    capture: Option<crate::capture::Capture>,
    /// The admin page's live view (none: no admin page).
    live: Option<crate::live_calls::LiveFeed>,
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
    /// The gateway's alarms (none: no admin page keeps them).
    pub alarms: Option<Arc<crate::alarms::Alarms>>,
    /// HEP3 capture (none: off): told which Call-IDs are one call's.
    pub capture: Option<crate::capture::Capture>,
    /// The admin page's live view (none: no admin page).
    pub live: Option<Arc<crate::live_calls::LiveCalls>>,
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
            alarms: records.alarms,
            capture: records.capture,
            live: records
                .live
                .map(|v| crate::live_calls::LiveFeed::new(v, Instant::now(), cfg.quality.poor_mos)),
            poor: crate::poor_calls::PoorCalls::new(
                Instant::now(),
                cfg.quality.poor_alarm_percent,
                cfg.quality.poor_alarm_min_calls,
            ),
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
        let Some(a) = self.active.get_mut(&id) else {
            return true;
        };
        let step = if request && bytes.starts_with(b"INVITE ") {
            a.invite_in.take().map(|t| (t, &self.counters.setup_invite))
        } else if !request && answers_invite(&bytes) {
            a.answer_in.take().map(|t| (t, &self.counters.setup_answer))
        } else {
            None
        };
        if let Some((since, h)) = step {
            h.0.observe(Instant::now().saturating_duration_since(since));
        }
        let a = &*a;
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
            let code = pbxlink_sip::message::status_code(&p.head.start_line);
            let to_invite = p.head.get("CSeq").is_some_and(|c| c.ends_with("INVITE"));
            if (200..300).contains(&code) && to_invite && a.answered.is_none() {
                a.answer_in.get_or_insert(now);
            }
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

    /// Nothing to look after until a message comes: no call, no record
    /// waiting for its relay's counters, no retransmission, no relay
    /// running (its events and counters come every second), no command
    /// waiting for room, not draining.
    pub fn quiet(&self) -> bool {
        self.active.is_empty()
            && self.cdrs_pending.is_empty()
            && self.reliable.is_empty()
            && self.draining.is_none()
            && self.workers.iter().all(|w| w.relays == 0)
            && self.plane.backpressure().waiting == 0
    }

    /// A copy of call `id`'s RTCP report to the capture server, with the
    /// call's correlation id (its PBX leg's Call-ID), from its sender to
    /// the relay's RTCP port.
    fn capture_rtcp(&self, id: u64, copy: &pbxlink_dataplane::relay::RtcpCopy) {
        let (Some(c), Some(a)) = (&self.capture, self.active.get(&id)) else {
            return;
        };
        let Some(json) = crate::capture::rtcp_json(copy.datagram()) else {
            return;
        };
        let port = if copy.from_cloud {
            a.cloud_port
        } else {
            a.lan_port
        };
        let to = SocketAddr::new(self.cfg.lan_ip, port.wrapping_add(1));
        c.rtcp(copy.src, to, a.call.call_id(Side::Pbx), &json);
    }

    /// When the PBX watch, the poor-calls window or the live view next
    /// needs the time (none: none does).
    pub fn next_timeout(&self, now: Instant) -> Option<Instant> {
        [
            self.watch.as_ref().map(PbxWatch::poll_timeout),
            self.poor.poll_timeout(now),
            self.live.as_ref().map(|l| l.poll_timeout(now)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Data-plane events: a media timeout hangs its call up; the workers'
    /// relay counts are printed when they change. The PBX watch's timers.
    pub fn tick(&mut self, now: Instant) {
        let capture = &self.capture;
        self.ended.retain(|(_, call_id), at| {
            let keep = now.saturating_duration_since(*at) < LINGER;
            if let (false, Some(c)) = (keep, capture) {
                c.forget(call_id);
            }
            keep
        });
        if let Some(w) = &mut self.watch {
            w.handle_timeout(now);
        }
        self.watch_outputs();
        if let Some(change) = self.poor.handle_timeout(now) {
            self.poor_calls_changed(change);
        }
        let mut timed_out = Vec::new();
        let before: u64 = self.workers.iter().map(|w| w.relays).sum();
        let workers = &mut self.workers;
        let pending = &mut self.cdrs_pending;
        let mut finished = Vec::new();
        let mut failed = Vec::new();
        let mut rtcp = Vec::new();
        let mut read = Vec::new();
        self.plane.drain_events(|e| match e {
            Event::Rtcp { id, copy } => rtcp.push((id, copy)),
            Event::Stats { id, stats } => read.push((id, stats)),
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
                    cdr.quality = Some(crate::call_quality::CallQuality::of(
                        &stats,
                        &self.cfg.quality,
                        &cdr.codec,
                    ));
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
        for (id, copy) in rtcp {
            self.capture_rtcp(id, &copy);
        }
        for (id, stats) in read {
            self.live_stats(id, &stats);
        }
        self.live_tick(now);
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

#[cfg(test)]
mod tests {
    #[test]
    fn an_answer_to_an_invite_is_known_by_its_status_and_cseq() {
        let ok = b"SIP/2.0 200 OK\r\nVia: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert!(super::answers_invite(ok));
        let bye = b"SIP/2.0 200 OK\r\nVia: x\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        assert!(!super::answers_invite(bye));
        let ringing = b"SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\n\r\n";
        assert!(!super::answers_invite(ringing));
        assert!(!super::answers_invite(
            b"INVITE sip:a@b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n"
        ));
    }
}

//! A call, sans-IO: the leg the INVITE came in on (A) bridged to the leg
//! the gateway opens (B), one facing the PBX and the other the cloud. It
//! forwards the INVITE with the SDP rewritten for the other side (the
//! relay's address and port; RTP/AVP toward the PBX, RTP/SAVP with fresh
//! SDES keys toward the cloud), passes provisional and final responses
//! back (a 183 with SDP sets the relay up before the answer), ACKs, and
//! ends both legs on BYE from either side, on CANCEL, or on a rejection —
//! releasing the relay. Messages in, messages and relay actions out; what
//! carries them (transactions, transports, the data plane) is the
//! caller's.
//!
//! A delayed offer (INVITE without SDP) stays one: B's 2xx offers, A's
//! ACK answers, and B's ACK waits for that answer.
//!
//! A re-INVITE (hold, resume) is passed to the other side the same way,
//! and the relay's direction follows the new offer and answer. Glare
//! (RFC 3261 §14.1): a re-INVITE arriving while one is pending gets 491;
//! a forwarded one that meets 491 is tried once more after the RFC's
//! random wait (the caller draws it from [`Output::RetryTimer`]'s window),
//! unless the other side's own retry comes first — then that one goes
//! through and the 491 goes back to whoever asked for the gateway's.
//!
//! Also: reliable provisionals toward A when its INVITE requires 100rel
//! (RFC 3262); session refreshes answered here; an UPDATE's offer carried
//! as a re-INVITE; INFO passed on; a re-INVITE that moves media updates
//! the relay.
//!
//! A session timer A asks for (RFC 4028) is granted with A refreshing;
//! without a refresh in time the call is hung up.
//!
//! Not yet here (issue 6 continues): 100rel and session timers toward B,
//! carrying REFER.

use crate::leg::{Leg, Side, param, uri_of};
use pbxlink_sip::message::request_method;
use pbxlink_sip::normalize::Head;
use pbxlink_sip::sdp::{self, Crypto, Direction, Origin, Sdp};
use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use zeroize::Zeroizing;

/// The gateway on one side of a call.
#[derive(Debug, Clone)]
pub struct Local {
    /// Via sent-by with protocol, e.g. `SIP/2.0/UDP 10.0.0.5:5060`.
    pub via: String,
    /// Contact URI, e.g. `sip:gw@10.0.0.5:5060`.
    pub contact: String,
    /// Host part for Request-URIs and identities sent to this side.
    pub domain: String,
    /// `sip` or `sips`.
    pub scheme: &'static str,
}

/// What the gateway brings to one call.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Unique token: Call-ID, tags and branches derive from it.
    pub id: String,
    /// The gateway toward the PBX.
    pub pbx: Local,
    /// The gateway toward the cloud.
    pub cloud: Local,
    /// The relay's LAN RTP address, as the PBX leg's SDP gives it.
    pub lan_media: SocketAddr,
    /// The relay's cloud RTP address (public), as the cloud leg's SDP gives it.
    pub cloud_media: SocketAddr,
    /// A fresh key per supported suite, strongest first.
    pub keys: Vec<Crypto>,
    /// `o=` session id.
    pub session_id: u64,
    /// What the dialled number goes through toward the other side.
    pub dial: crate::digits::DigitRule,
    /// Credentials for a PBX that challenges the gateway's INVITE (401 or
    /// 407): answered once (RFC 3261 §22.2), the `cnonce` drawn from `id`.
    pub pbx_credentials: Option<pbxlink_sip::digest::Credentials>,
    /// Who the gateway's INVITE toward the PBX asserts the caller is
    /// (`P-Asserted-Identity`, RFC 3325): a Softphone user's address when
    /// the gateway calls as that user; none on trunk calls.
    pub asserted_identity: Option<String>,
}

/// The relay a call needs, once both ends of its media are known.
#[derive(Clone, PartialEq, Eq)]
pub struct Media {
    /// Where the PBX receives RTP.
    pub lan_remote: SocketAddr,
    /// Where the cloud receives SRTP.
    pub cloud_remote: SocketAddr,
    /// The SDES tag of the crypto in use.
    pub tag: u32,
    /// The SRTP suite (SDP name).
    pub suite: String,
    /// Key the gateway protects toward the cloud with (base64 SDES).
    pub tx_key: Zeroizing<String>,
    /// Key the cloud protects toward the gateway with.
    pub rx_key: Zeroizing<String>,
    /// What may flow each way.
    pub types: PayloadTypes,
}

/// What may flow each way: the payload types the receiving end's
/// description lists (each end sends with the numbers the other declared,
/// which the gateway's SDP passes on unchanged), and where RFC 4733
/// telephone-events are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadTypes {
    /// PBX → cloud: the cloud's payload types; empty: any.
    pub to_cloud: Vec<u8>,
    /// Cloud → PBX: the PBX's payload types; empty: any.
    pub to_pbx: Vec<u8>,
    /// telephone-event's payload type from the PBX (the cloud's number).
    pub pbx_telephone_event: Option<u8>,
    /// …and from the cloud (the PBX's number).
    pub cloud_telephone_event: Option<u8>,
    /// The voice codec's encoding name (`PCMA`, `G729`, `opus`, …; empty:
    /// not known): see [`PayloadTypes::codec_of`].
    pub codec: String,
}

impl PayloadTypes {
    /// From the PBX's and the cloud's current descriptions.
    fn of(pbx_sdp: &Sdp, cloud_sdp: &Sdp) -> Self {
        let types = |s: &Sdp| -> Vec<u8> {
            let Some((_, m)) = s.audio() else {
                return Vec::new();
            };
            let pts: Option<Vec<u8>> = m.formats.iter().map(|f| f.parse().ok()).collect();
            pts.filter(|p| p.iter().all(|&pt| pt < 128))
                .unwrap_or_default()
        };
        let te = |s: &Sdp| {
            s.audio()
                .and_then(|(_, m)| m.payload_type("telephone-event"))
        };
        PayloadTypes {
            to_cloud: types(cloud_sdp),
            to_pbx: types(pbx_sdp),
            pbx_telephone_event: te(cloud_sdp),
            cloud_telephone_event: te(pbx_sdp),
            codec: Self::codec_of(pbx_sdp, cloud_sdp),
        }
    }

    /// The voice codec both descriptions carry: of the one that lists
    /// fewer audio formats (the answer, as a rule; the PBX's on a tie),
    /// the first whose encoding the other lists too, leaving out
    /// telephone-event, comfort noise and redundancy. None in common: that
    /// list's first voice format (or the other's, when it has none).
    pub fn codec_of(pbx_sdp: &Sdp, cloud_sdp: &Sdp) -> String {
        let (Some((_, p)), Some((_, c))) = (pbx_sdp.audio(), cloud_sdp.audio()) else {
            return String::new();
        };
        let (first, other) = if c.formats.len() < p.formats.len() {
            (c, p)
        } else {
            (p, c)
        };
        let voice = |m: &sdp::Media| -> Vec<String> {
            m.formats
                .iter()
                .filter_map(|f| m.encoding(f.parse().ok()?))
                .filter(|n| {
                    !["telephone-event", "CN", "red"]
                        .iter()
                        .any(|x| n.eq_ignore_ascii_case(x))
                })
                .collect()
        };
        let (ours, theirs) = (voice(first), voice(other));
        ours.iter()
            .find(|n| theirs.iter().any(|t| t.eq_ignore_ascii_case(n)))
            .or(ours.first())
            .or(theirs.first())
            .cloned()
            .unwrap_or_default()
    }
}

impl fmt::Debug for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Media")
            .field("lan_remote", &self.lan_remote)
            .field("cloud_remote", &self.cloud_remote)
            .field("suite", &self.suite)
            .field("keys", &"[redacted]")
            .finish()
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// A BYE from this side.
    Hangup(Side),
    /// The caller cancelled before the answer.
    Cancelled,
    /// The callee refused with this status.
    Rejected(u16),
    /// Something the gateway could not carry.
    Failed(&'static str),
}

/// What the call asks of its caller.
#[derive(Debug)]
pub enum Output {
    /// Send a request to a side (its Via names a new client transaction,
    /// except ACK and CANCEL, which reuse the INVITE's branch rules).
    Request {
        /// Destination side.
        to: Side,
        /// Its method.
        method: String,
        /// The message.
        bytes: Vec<u8>,
    },
    /// Send a response to the request just received from a side.
    Response {
        /// Destination side.
        to: Side,
        /// The message.
        bytes: Vec<u8>,
    },
    /// Start relaying media.
    RelayUp(Media),
    /// A re-INVITE moved the media: only what changed is set — where the
    /// PBX or the cloud now receives, or the cloud's new key for what it
    /// sends (its `a=crypto`; `Debug` never shows the key).
    RelayUpdate {
        /// The PBX's new RTP address.
        lan_remote: Option<SocketAddr>,
        /// The cloud's new SRTP address.
        cloud_remote: Option<SocketAddr>,
        /// The cloud's new key toward the gateway.
        rx_key: Option<Crypto>,
        /// What may now flow each way (codecs changed).
        types: Option<PayloadTypes>,
    },
    /// Media may now flow only these ways (hold and resume).
    RelayDirection {
        /// PBX → cloud.
        lan_to_cloud: bool,
        /// Cloud → PBX.
        cloud_to_lan: bool,
    },
    /// Stop relaying and free the ports.
    RelayDown,
    /// The session timer (RFC 4028) was (re)started: unless the caller
    /// refreshes within `expires`, call [`Call::session_expired`] at
    /// `expires` minus min(32 s, `expires`/3) (§10).
    SessionTimer {
        /// The negotiated interval.
        expires: Duration,
    },
    /// Call [`Call::on_retry_timer`] after a delay drawn uniformly from
    /// `min..=max` (in 10 ms steps): a re-INVITE met glare (RFC 3261 §14.1).
    RetryTimer {
        /// Shortest wait.
        min: Duration,
        /// Longest wait.
        max: Duration,
    },
    /// The call is over; drop it.
    Ended(End),
}

/// Where a call stands, as its caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// B's INVITE sent; no final answer yet.
    Proceeding,
    /// A was answered (cancelled, refused or timed out); B's final
    /// response to the CANCEL is awaited.
    Cancelling,
    /// B's 2xx passed to A; A's ACK is awaited.
    Answered,
    /// Both legs confirmed: media flows.
    Confirmed,
    /// Over.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// B's INVITE sent; nothing final.
    Proceeding,
    /// A cancelled; waiting for B's final response.
    Cancelling,
    /// 2xx passed to A; waiting for A's ACK.
    Answered,
    /// Both legs confirmed.
    Confirmed,
    /// Over.
    Ended,
}

/// One bridged call.
#[derive(Debug)]
pub struct Call {
    state: State,
    a: Leg,
    b: Leg,
    a_invite: Head,
    /// A's offer; `None` for a delayed offer (INVITE without SDP: B's 2xx
    /// then carries the offer and A's ACK the answer).
    a_offer: Option<Sdp>,
    /// B's offer in its 2xx (delayed offer), until A's ACK answers it.
    b_offer: Option<Sdp>,
    /// The crypto the cloud offered and the gateway chose (calls from the cloud).
    cloud_offer_crypto: Option<Crypto>,
    /// Tag and suite in use toward the cloud once media runs: later offers
    /// and answers (re-INVITEs) keep them, so the relay's keys stay right.
    settled: Option<(u32, String)>,
    /// A re-INVITE passed on and not yet answered.
    reinvite: Option<Reinvite>,
    /// The relay as last set up or updated.
    current: Option<Media>,
    /// Reliable provisionals toward A, when its INVITE required them.
    rel: Option<Reliable1xx>,
    /// The session interval A asked for (RFC 4028; A refreshes), seconds.
    session_expires: Option<u32>,
    /// Other in-dialog requests (INFO) passed on and not yet answered.
    forwarded: Vec<Forwarded>,
    b_branch: String,
    b_cseq: u32,
    /// The body of the INVITE sent to B (sent again when challenged).
    b_invite_body: Option<String>,
    /// Whether B's challenge was answered already (once only).
    b_authenticated: bool,
    relay: bool,
    versions: [u64; 2],
    /// The description last sent to each side (a session refresh gets it
    /// again, unchanged).
    last_sdp: [Option<String>; 2],
    branches: u32,
    plan: Plan,
    out: VecDeque<Output>,
}

/// A re-INVITE from one side, forwarded to the other.
#[derive(Debug)]
struct Reinvite {
    from: Side,
    request: Head,
    offer: Sdp,
    /// The offer as sent on (sent again unchanged on a retry).
    sdp: String,
    branch: String,
    cseq: u32,
    glare: Glare,
}

/// An in-dialog request from one side passed to the other as is.
#[derive(Debug)]
struct Forwarded {
    from: Side,
    request: Head,
    method: String,
    cseq: u32,
}

/// In-dialog requests passed on at once, at most; past this, 503.
const FORWARDED_MAX: usize = 16;

/// Where a forwarded re-INVITE stands with respect to glare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glare {
    /// Sent; no 491 yet.
    None,
    /// Met 491; waiting for the retry timer.
    Waiting,
    /// Sent once more; another 491 goes back to the asker.
    Retried,
}

/// The user part of a SIP URI (`sip:1234@host;…` → `1234`), or a tel
/// URI's number (`tel:+4420;…` → `+4420`); empty when there is none.
/// The user part of a URI: a `tel:` number, or a `sip:`/`sips:` user
/// without its password (RFC 3261 §19.1.1 userinfo); empty when none.
pub fn user_of(uri: &str) -> &str {
    let (scheme, rest) = uri.split_once(':').unwrap_or(("", uri));
    if scheme.eq_ignore_ascii_case("tel") {
        return rest.split(';').next().unwrap_or_default();
    }
    let userinfo = rest.split_once('@').map_or("", |(u, _)| u);
    userinfo.split(':').next().unwrap_or_default()
}

fn status_code(head: &Head) -> u16 {
    pbxlink_sip::message::status_code(&head.start_line)
}

fn phrase(head: &Head) -> &str {
    head.start_line.get(12..).unwrap_or("")
}

fn cseq(head: &Head) -> (u32, &str) {
    let v = head.get("CSeq").unwrap_or_default();
    let mut it = v.split_whitespace();
    (
        it.next().and_then(|n| n.parse().ok()).unwrap_or(0),
        it.next().unwrap_or(""),
    )
}

/// The strongest crypto in `offer`'s audio the gateway has a key for.
fn choose_crypto(offer: &Sdp, keys: &[Crypto]) -> Option<Crypto> {
    let (_, m) = offer.audio()?;
    let offered = m.crypto();
    let names: Vec<&str> = keys.iter().map(|k| k.suite.as_str()).collect();
    sdp::pick_crypto(&offered, &names).cloned()
}

fn audio_direction(s: &Sdp) -> Direction {
    s.audio()
        .map_or(Direction::SendRecv, |(_, m)| m.direction())
}

/// RFC 4028 §5: the smallest session interval accepted (Min-SE).
pub const MIN_SE: u32 = 90;

/// A request's `Session-Expires` interval in seconds (or `x`, its compact form).
pub fn session_expires(request: &Head) -> Option<u32> {
    request
        .get("Session-Expires")
        .or_else(|| request.get("x"))
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse().ok())
}

/// The option tags a request's `Require` asks for.
fn required(request: &Head) -> impl Iterator<Item = &str> {
    request
        .all("Require")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Option tags an INVITE's `Require` asks for that the gateway does not
/// support, joined for an `Unsupported` header; `None` when there are none
/// (RFC 3261 §8.2.2.3). It supports `100rel` (RFC 3262) for an INVITE with
/// an offer (its `body`), not for a delayed offer; and `timer` (RFC 4028).
pub fn unsupported(request: &Head, body: &[u8]) -> Option<String> {
    let offer = !body.iter().all(u8::is_ascii_whitespace);
    let tags: Vec<&str> = required(request)
        .filter(|t| !(offer && t.eq_ignore_ascii_case("100rel")))
        .filter(|t| !t.eq_ignore_ascii_case("timer"))
        .collect();
    (!tags.is_empty()).then(|| tags.join(", "))
}

/// Reliable provisional responses toward A (RFC 3262), when its INVITE
/// required them.
#[derive(Debug, Default)]
struct Reliable1xx {
    next_rseq: u32,
    /// The one sent and not yet PRACKed: its RSeq, and whether it carried SDP.
    unacked: Option<(u32, bool)>,
    /// A later provisional, sent once the one before is PRACKed.
    queued: Option<(u16, String, Option<String>)>,
    /// A 2xx held until a provisional with SDP is PRACKed (§3).
    held: Option<(u16, String, String)>,
}

fn local(plan: &Plan, side: Side) -> &Local {
    match side {
        Side::Pbx => &plan.pbx,
        Side::Cloud => &plan.cloud,
    }
}

impl Call {
    /// A call from the INVITE that arrived on side `a` (with its SDP
    /// `body`, or none: a delayed offer). Refused with a status (and
    /// reason) when it cannot be carried: an offer without audio, or a
    /// cloud offer without a suite the gateway speaks.
    pub fn incoming(
        a_side: Side,
        invite: &Head,
        body: &[u8],
        plan: Plan,
    ) -> Result<Call, (u16, &'static str)> {
        let offer = if body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            let offer = sdp::parse(body).map_err(|_| (488, "Not Acceptable Here"))?;
            if offer.audio_target().is_none() {
                return Err((488, "Not Acceptable Here"));
            }
            Some(offer)
        };
        let cloud_offer_crypto = match &offer {
            Some(o) if a_side == Side::Cloud => {
                Some(choose_crypto(o, &plan.keys).ok_or((488, "Not Acceptable Here"))?)
            }
            _ => None,
        };
        let la = local(&plan, a_side);
        let a = Leg::from_invite(
            a_side,
            invite,
            format!("{}-a", plan.id),
            la.via.clone(),
            la.contact.clone(),
        )
        .ok_or((400, "Bad Request"))?;
        let b_side = a_side.other();
        let lb = local(&plan, b_side);
        let ruri = uri_of(invite.start_line.split(' ').nth(1).unwrap_or_default()).to_owned();
        let callee = plan.dial.apply(user_of(&ruri));
        if callee.is_empty() {
            return Err((484, "Address Incomplete"));
        }
        let caller = match user_of(uri_of(&a.remote_uri)) {
            "" => "anonymous",
            u => u,
        };
        let b = Leg {
            side: b_side,
            call_id: format!("{}@pbxlink", plan.id),
            local_tag: format!("{}-b", plan.id),
            remote_tag: None,
            local_uri: format!("<{}:{caller}@{}>", lb.scheme, lb.domain),
            remote_uri: format!("<{}:{callee}@{}>", lb.scheme, lb.domain),
            remote_target: format!("{}:{callee}@{}", lb.scheme, lb.domain),
            route: Vec::new(),
            local_cseq: 1,
            via: lb.via.clone(),
            contact: lb.contact.clone(),
        };
        let mut call = Call {
            state: State::Proceeding,
            a,
            b,
            a_invite: invite.clone(),
            a_offer: offer,
            b_offer: None,
            cloud_offer_crypto,
            settled: None,
            reinvite: None,
            forwarded: Vec::new(),
            current: None,
            session_expires: session_expires(invite).map(|s| s.max(MIN_SE)),
            rel: required(invite)
                .any(|t| t.eq_ignore_ascii_case("100rel"))
                .then(|| Reliable1xx {
                    next_rseq: 1,
                    ..Reliable1xx::default()
                }),
            b_branch: String::new(),
            b_cseq: 1,
            b_invite_body: None,
            b_authenticated: false,
            relay: false,
            versions: [0, 0],
            last_sdp: [None, None],
            branches: 0,
            plan,
            out: VecDeque::new(),
        };
        let trying = call.a.response(invite, 100, "Trying", None);
        call.out.push_back(Output::Response {
            to: a_side,
            bytes: trying,
        });
        let b_sdp = call
            .a_offer
            .clone()
            .map(|o| call.describe(b_side, &o, audio_direction(&o)));
        call.b_branch = call.branch();
        let req = call.b_invite(&call.b_branch, 1, b_sdp.as_deref());
        call.b_invite_body = b_sdp;
        call.out.push_back(Output::Request {
            to: b_side,
            method: "INVITE".into(),
            bytes: req,
        });
        Ok(call)
    }

    /// Whether the callee answered (the 2xx went to the caller).
    pub fn answered(&self) -> bool {
        matches!(self.state, State::Answered | State::Confirmed)
    }

    /// The side the call came from.
    pub fn caller_side(&self) -> Side {
        self.a.side
    }

    /// Who called whom: the user parts of the caller's From and of the
    /// callee's URI.
    pub fn parties(&self) -> (String, String) {
        (
            user_of(uri_of(&self.a.remote_uri)).to_owned(),
            user_of(uri_of(&self.b.remote_uri)).to_owned(),
        )
    }

    /// The Call-ID of the leg on `side` (how the node finds this call).
    pub fn call_id(&self, side: Side) -> &str {
        if self.a.side == side {
            &self.a.call_id
        } else {
            &self.b.call_id
        }
    }

    fn branch(&mut self) -> String {
        self.branches += 1;
        format!("z9hG4bK{}-{}", self.plan.id, self.branches)
    }

    fn leg(&self, side: Side) -> &Leg {
        if self.a.side == side {
            &self.a
        } else {
            &self.b
        }
    }

    /// The gateway's SDP toward `side`, built from the other side's `from`.
    fn describe(&mut self, side: Side, from: &Sdp, dir: Direction) -> String {
        let idx = side as usize;
        self.versions[idx] += 1;
        let (media, proto, crypto): (SocketAddr, &str, Vec<Crypto>) = match side {
            Side::Pbx => (self.plan.lan_media, "RTP/AVP", Vec::new()),
            Side::Cloud => {
                // Once media runs, or when answering the cloud: our key in
                // the suite in use, under its tag. Offering: every suite.
                let in_use = self.settled.clone().or_else(|| {
                    self.cloud_offer_crypto
                        .as_ref()
                        .map(|c| (c.tag, c.suite.clone()))
                });
                let crypto = match in_use {
                    Some((tag, suite)) => self
                        .plan
                        .keys
                        .iter()
                        .filter(|k| k.suite == suite)
                        .map(|k| Crypto { tag, ..k.clone() })
                        .take(1)
                        .collect(),
                    None => self.plan.keys.clone(),
                };
                (self.plan.cloud_media, "RTP/SAVP", crypto)
            }
        };
        let origin = Origin {
            username: "pbxlink".into(),
            session_id: self.plan.session_id,
            version: self.versions[idx],
            address: media.ip(),
        };
        let sdp = from
            .for_leg(&origin, media.ip(), media.port(), proto, &crypto, dir)
            .to_string();
        self.last_sdp[idx] = Some(sdp.clone());
        sdp
    }

    /// Works out the relay from the PBX's and the cloud's descriptions
    /// (one the offer, the other the answer), or why it cannot run.
    fn media(&self, pbx_sdp: &Sdp, cloud_sdp: &Sdp) -> Result<Media, &'static str> {
        let lan = pbx_sdp.audio_target().ok_or("no audio from the PBX")?;
        let cloud = cloud_sdp.audio_target().ok_or("no audio from the cloud")?;
        let (tag, suite, tx_key, rx_key) = match &self.cloud_offer_crypto {
            Some(chosen) => {
                let ours = self
                    .plan
                    .keys
                    .iter()
                    .find(|k| k.suite == chosen.suite)
                    .ok_or("no key for the cloud's suite")?;
                (
                    chosen.tag,
                    chosen.suite.clone(),
                    ours.key.clone(),
                    chosen.key.clone(),
                )
            }
            None => {
                let (_, m) = cloud_sdp.audio().ok_or("no audio from the cloud")?;
                let theirs = m
                    .crypto()
                    .into_iter()
                    .next()
                    .ok_or("the cloud answered without SRTP keys")?;
                let ours = self
                    .plan
                    .keys
                    .iter()
                    .find(|k| k.tag == theirs.tag && k.suite == theirs.suite)
                    .ok_or("the cloud answered a suite that was not offered")?;
                (
                    theirs.tag,
                    theirs.suite.clone(),
                    ours.key.clone(),
                    theirs.key.clone(),
                )
            }
        };
        Ok(Media {
            lan_remote: SocketAddr::new(lan.0, lan.1),
            cloud_remote: SocketAddr::new(cloud.0, cloud.1),
            tag,
            suite,
            tx_key,
            rx_key,
            types: PayloadTypes::of(pbx_sdp, cloud_sdp),
        })
    }

    fn end(&mut self, why: End) {
        if let Some(r) = self.reinvite.take() {
            // Its server transaction still waits for a final response.
            self.respond(r.from, &r.request, 487, "Request Terminated", None);
        }
        for f in std::mem::take(&mut self.forwarded) {
            self.respond(f.from, &f.request, 487, "Request Terminated", None);
        }
        if self.relay {
            self.relay = false;
            self.out.push_back(Output::RelayDown);
        }
        self.state = State::Ended;
        self.out.push_back(Output::Ended(why));
    }

    fn respond(&mut self, to: Side, request: &Head, code: u16, phrase: &str, sdp: Option<&str>) {
        let mut bytes = self.leg(to).response(request, code, phrase, sdp);
        let (_, method) = cseq(request);
        let session = self.session_expires.filter(|_| {
            to == self.a.side && (200..300).contains(&code) && matches!(method, "INVITE" | "UPDATE")
        });
        if let Some(old) = session {
            // RFC 4028: the caller refreshes (it asked for the timer); a
            // refresh may change the interval.
            let secs = session_expires(request).map_or(old, |s| s.max(MIN_SE));
            self.session_expires = Some(secs);
            bytes = crate::leg::insert_headers(
                &bytes,
                &format!("Session-Expires: {secs};refresher=uac\r\nRequire: timer\r\n"),
            );
            self.out.push_back(Output::Response { to, bytes });
            self.out.push_back(Output::SessionTimer {
                expires: Duration::from_secs(u64::from(secs)),
            });
            return;
        }
        self.out.push_back(Output::Response { to, bytes });
    }

    fn send(&mut self, to: Side, method: &str, branch: &str, cseq: u32, sdp: Option<&str>) {
        self.send_with(
            to,
            method,
            branch,
            cseq,
            sdp.map(|s| ("application/sdp", s)),
        );
    }

    /// [`Call::send`] with a body of any type (`(Content-Type, body)`).
    fn send_with(
        &mut self,
        to: Side,
        method: &str,
        branch: &str,
        cseq: u32,
        body: Option<(&str, &str)>,
    ) {
        let bytes = if to == self.a.side {
            self.a.request_with(method, branch, cseq, body)
        } else {
            self.b.request_with(method, branch, cseq, body)
        };
        self.out.push_back(Output::Request {
            to,
            method: method.into(),
            bytes,
        });
    }

    /// Sends a new in-dialog request to `to` (next CSeq, new branch) with
    /// `body` (`(Content-Type, body)`); returns its branch and CSeq.
    fn new_request(&mut self, to: Side, method: &str, body: Option<(&str, &str)>) -> (String, u32) {
        let branch = self.branch();
        let leg = if to == self.a.side {
            &mut self.a
        } else {
            &mut self.b
        };
        leg.local_cseq += 1;
        let n = leg.local_cseq;
        self.send_with(to, method, &branch, n, body);
        (branch, n)
    }

    fn bye(&mut self, to: Side) {
        self.new_request(to, "BYE", None);
    }

    /// A request from `side` within this call.
    pub fn on_request(&mut self, side: Side, head: &Head, body: &[u8]) {
        let method = request_method(&head.start_line)
            .unwrap_or_default()
            .to_owned();
        match method.as_str() {
            "ACK" => {
                if side == self.a.side && self.state == State::Answered {
                    self.state = State::Confirmed;
                    if let Some(offer) = self.b_offer.take() {
                        self.delayed_answer(&offer, body);
                    }
                }
            }
            "CANCEL" if side == self.a.side => {
                self.respond(side, head, 200, "OK", None);
                if self.state == State::Proceeding {
                    let invite = self.a_invite.clone();
                    self.respond(side, &invite, 487, "Request Terminated", None);
                    let branch = self.b_branch.clone();
                    self.send(self.b.side, "CANCEL", &branch, self.b_cseq, None);
                    self.state = State::Cancelling;
                }
            }
            "BYE" => {
                self.respond(side, head, 200, "OK", None);
                match self.state {
                    State::Answered | State::Confirmed => {
                        self.bye(side.other());
                        self.end(End::Hangup(side));
                    }
                    State::Ended => {}
                    // A BYE before the answer (from B, once early): end both.
                    State::Proceeding | State::Cancelling => {
                        let invite = self.a_invite.clone();
                        self.respond(self.a.side, &invite, 487, "Request Terminated", None);
                        self.end(End::Hangup(side));
                    }
                }
            }
            "OPTIONS" => self.respond(side, head, 200, "OK", None),
            "PRACK" if side == self.a.side => self.prack(head),
            "INVITE" | "UPDATE"
                if self.state == State::Confirmed && body.iter().all(u8::is_ascii_whitespace) =>
            {
                self.refresh(side, head, &method)
            }
            // An UPDATE's offer goes on as a re-INVITE (the other side need
            // not support UPDATE); its answer comes back in the UPDATE's 200.
            "INVITE" | "UPDATE" if self.state == State::Confirmed => {
                self.reinvite(side, head, body)
            }
            "INFO" if matches!(self.state, State::Answered | State::Confirmed) => {
                self.forward(side, head, &method, body)
            }
            // REFER (transfer), an UPDATE before the answer, …: refused; the
            // PBX falls back (a transfer: it bridges the call itself).
            _ => self.respond(side, head, 501, "Not Implemented", None),
        }
    }

    /// A session refresh (RFC 4028) from `side`: a re-INVITE or UPDATE
    /// without SDP, answered here — the re-INVITE with the description last
    /// sent to that side, unchanged (its ACK's answer is the same session),
    /// the UPDATE with nothing — so the other side is not disturbed.
    fn refresh(&mut self, side: Side, head: &Head, method: &str) {
        if self.reinvite.is_some() {
            self.respond(side, head, 491, "Request Pending", None);
            return;
        }
        let sdp = match method {
            "INVITE" => self.last_sdp[side as usize].clone(),
            _ => None,
        };
        self.respond(side, head, 200, "OK", sdp.as_deref());
    }

    /// An in-dialog request from `side` passed to the other side with its
    /// body as is (INFO: DTMF as `application/dtmf-relay`, …); its final
    /// response comes back the same way.
    fn forward(&mut self, side: Side, head: &Head, method: &str, body: &[u8]) {
        if self.forwarded.len() >= FORWARDED_MAX {
            self.respond(side, head, 503, "Service Unavailable", None);
            return;
        }
        let Ok(text) = std::str::from_utf8(body) else {
            self.respond(side, head, 415, "Unsupported Media Type", None);
            return;
        };
        let kind = head.get("Content-Type").filter(|_| !text.is_empty());
        let (_, n) = self.new_request(side.other(), method, kind.map(|k| (k, text)));
        self.forwarded.push(Forwarded {
            from: side,
            request: head.clone(),
            method: method.into(),
            cseq: n,
        });
    }

    /// A re-INVITE from `side` (hold, resume, a new address): passed on
    /// with the SDP rewritten; its answer comes back the same way.
    fn reinvite(&mut self, side: Side, head: &Head, body: &[u8]) {
        if let Some(r) = self.reinvite.take() {
            if r.glare == Glare::Waiting && side == r.from.other() {
                // The other side's retry came before ours: it goes through,
                // and ours is refused to whoever asked for it (it may retry).
                self.respond(r.from, &r.request, 491, "Request Pending", None);
            } else {
                self.reinvite = Some(r);
                self.respond(side, head, 491, "Request Pending", None);
                return;
            }
        }
        let Some(offer) = sdp::parse(body).ok().filter(|o| o.audio_target().is_some()) else {
            self.respond(side, head, 488, "Not Acceptable Here", None);
            return;
        };
        let to = side.other();
        let sdp = self.describe(to, &offer, audio_direction(&offer));
        let (branch, n) = self.new_request(to, "INVITE", Some(("application/sdp", &sdp)));
        self.reinvite = Some(Reinvite {
            from: side,
            request: head.clone(),
            offer,
            sdp,
            branch,
            cseq: n,
            glare: Glare::None,
        });
    }

    /// The session timer asked for with [`Output::SessionTimer`] ran out
    /// without a refresh: the call is hung up on both legs (RFC 4028 §10).
    pub fn session_expired(&mut self) {
        if self.session_expires.is_some() {
            self.hang_up("the session expired without a refresh (RFC 4028)");
        }
    }

    /// The retry timer asked for with [`Output::RetryTimer`] fired: the
    /// re-INVITE that met glare is sent once more (unchanged offer, new
    /// transaction). Nothing happens if it was settled meanwhile.
    pub fn on_retry_timer(&mut self) {
        let Some(mut r) = self.reinvite.take() else {
            return;
        };
        if r.glare == Glare::Waiting && self.state == State::Confirmed {
            let sdp = r.sdp.clone();
            let (branch, n) =
                self.new_request(r.from.other(), "INVITE", Some(("application/sdp", &sdp)));
            r.branch = branch;
            r.cseq = n;
            r.glare = Glare::Retried;
        }
        self.reinvite = Some(r);
    }

    /// The answer to a forwarded re-INVITE.
    fn reinvite_answered(&mut self, mut r: Reinvite, head: &Head, body: &[u8]) {
        let code = status_code(head);
        let to = r.from.other();
        if code == 491 && r.glare == Glare::None {
            // Glare: try once more after RFC 3261 §14.1's wait — longer
            // when the gateway owns the leg's Call-ID (it made leg B), so
            // the other end's retry goes first.
            self.send(to, "ACK", &r.branch, r.cseq, None);
            let (min, max) = if to == self.b.side {
                (Duration::from_millis(2100), Duration::from_secs(4))
            } else {
                (Duration::ZERO, Duration::from_secs(2))
            };
            r.glare = Glare::Waiting;
            self.reinvite = Some(r);
            self.out.push_back(Output::RetryTimer { min, max });
            return;
        }
        if !(200..300).contains(&code) {
            self.send(to, "ACK", &r.branch, r.cseq, None);
            let phrase = phrase(head).to_owned();
            self.respond(r.from, &r.request, code, &phrase, None);
            return;
        }
        let branch = self.branch();
        self.send(to, "ACK", &branch, r.cseq, None);
        let Some(answer) = sdp::parse(body).ok().filter(|a| a.audio_target().is_some()) else {
            self.respond(r.from, &r.request, 488, "Not Acceptable Here", None);
            return;
        };
        let (pbx_sdp, cloud_sdp) = match r.from {
            Side::Pbx => (&r.offer, &answer),
            Side::Cloud => (&answer, &r.offer),
        };
        if let Some(update) = self.moved(pbx_sdp, cloud_sdp) {
            self.out.push_back(update);
        }
        let (pbx, cloud) = match r.from {
            Side::Pbx => (audio_direction(&r.offer), audio_direction(&answer)),
            Side::Cloud => (audio_direction(&answer), audio_direction(&r.offer)),
        };
        self.out.push_back(Output::RelayDirection {
            lan_to_cloud: pbx.sends() && cloud.receives(),
            cloud_to_lan: cloud.sends() && pbx.receives(),
        });
        let sdp = self.describe(r.from, &answer, audio_direction(&answer));
        let phrase = phrase(head).to_owned();
        self.respond(r.from, &r.request, code, &phrase, Some(&sdp));
    }

    /// What a completed re-INVITE changed in the relay (the PBX's or the
    /// cloud's address, the cloud's key in the suite in use), as an update;
    /// `None` when nothing did. A held stream's `0.0.0.0` or port 0 moves
    /// nothing.
    fn moved(&mut self, pbx_sdp: &Sdp, cloud_sdp: &Sdp) -> Option<Output> {
        let cur = self.current.as_mut()?;
        let target = |s: &Sdp| {
            s.audio_target()
                .map(|(ip, port)| SocketAddr::new(ip, port))
                .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
        };
        let lan_remote = target(pbx_sdp).filter(|a| *a != cur.lan_remote);
        let cloud_remote = target(cloud_sdp).filter(|a| *a != cur.cloud_remote);
        let rx_key = cloud_sdp
            .audio()
            .and_then(|(_, m)| m.crypto().into_iter().find(|c| c.suite == cur.suite))
            .filter(|c| *c.key != *cur.rx_key);
        let types = Some(PayloadTypes::of(pbx_sdp, cloud_sdp)).filter(|t| *t != cur.types);
        if lan_remote.is_none() && cloud_remote.is_none() && rx_key.is_none() && types.is_none() {
            return None;
        }
        if let Some(t) = &types {
            cur.types = t.clone();
        }
        if let Some(a) = lan_remote {
            cur.lan_remote = a;
        }
        if let Some(a) = cloud_remote {
            cur.cloud_remote = a;
        }
        if let Some(c) = &rx_key {
            cur.rx_key = c.key.clone();
        }
        Some(Output::RelayUpdate {
            lan_remote,
            cloud_remote,
            rx_key,
            types,
        })
    }

    /// A response from `side` to a request the gateway sent there.
    pub fn on_response(&mut self, side: Side, head: &Head, body: &[u8]) {
        let (n, method) = cseq(head);
        let code = status_code(head);
        if let Some(i) = self
            .forwarded
            .iter()
            .position(|f| side == f.from.other() && f.method == method && f.cseq == n)
        {
            if code >= 200 {
                let f = self.forwarded.remove(i);
                let phrase = phrase(head).to_owned();
                self.respond(f.from, &f.request, code, &phrase, None);
            }
            return;
        }
        let pending = self.reinvite.as_ref().is_some_and(|r| {
            side == r.from.other() && method == "INVITE" && n == r.cseq && r.glare != Glare::Waiting
        });
        if pending {
            if code >= 200 {
                let r = self.reinvite.take().expect("pending");
                self.reinvite_answered(r, head, body);
            }
            return;
        }
        if side != self.b.side || method != "INVITE" || n != self.b_cseq {
            // BYE answered: the leg is done. Others need nothing.
            return;
        }
        match code {
            100 => {}
            101..=199 => {
                if self.state != State::Proceeding {
                    return;
                }
                self.b.learn(head);
                let sdp = self.answer_media(body);
                let phrase = phrase(head).to_owned();
                self.provisional_to_a(code, phrase, sdp);
            }
            200..=299 if self.a_offer.is_none() && self.state == State::Proceeding => {
                // Delayed offer: B offers in its 2xx; A answers in its ACK,
                // and only then is B's 2xx ACKed, carrying that answer.
                self.b.learn(head);
                let offer = sdp::parse(body).ok().filter(|o| o.audio_target().is_some());
                let chosen = match (&offer, self.b.side) {
                    (Some(o), Side::Cloud) => choose_crypto(o, &self.plan.keys).map(Some),
                    (Some(_), Side::Pbx) => Some(None),
                    (None, _) => None,
                };
                let (Some(offer), Some(chosen)) = (offer, chosen) else {
                    let branch = self.branch();
                    self.send(self.b.side, "ACK", &branch, self.b_cseq, None);
                    self.bye(self.b.side);
                    let invite = self.a_invite.clone();
                    self.respond(self.a.side, &invite, 488, "Not Acceptable Here", None);
                    self.end(End::Failed("the callee's offer cannot be relayed"));
                    return;
                };
                if chosen.is_some() {
                    self.cloud_offer_crypto = chosen;
                }
                let sdp = self.describe(self.a.side, &offer, audio_direction(&offer));
                self.b_offer = Some(offer);
                let invite = self.a_invite.clone();
                let phrase = phrase(head).to_owned();
                self.respond(self.a.side, &invite, code, &phrase, Some(&sdp));
                self.state = State::Answered;
            }
            200..=299 => {
                self.b.learn(head);
                if self.b_offer.is_some() && self.state == State::Answered {
                    // A retransmitted 2xx while A's answer is awaited.
                    return;
                }
                // The 2xx's ACK: a new transaction, the INVITE's CSeq.
                let branch = self.branch();
                self.send(self.b.side, "ACK", &branch, self.b_cseq, None);
                match self.state {
                    State::Proceeding => {}
                    State::Cancelling => {
                        // The answer crossed the CANCEL: hang B up.
                        self.bye(self.b.side);
                        self.end(End::Cancelled);
                        return;
                    }
                    // A retransmitted 2xx: the ACK above is all it needs.
                    _ => return,
                }
                let Some(sdp) = self.answer_media(body) else {
                    self.bye(self.b.side);
                    let invite = self.a_invite.clone();
                    self.respond(self.a.side, &invite, 488, "Not Acceptable Here", None);
                    self.end(End::Failed("the answer's media cannot be relayed"));
                    return;
                };
                let phrase = phrase(head).to_owned();
                self.answer_a(code, phrase, sdp);
                self.state = State::Answered;
            }
            401 | 407 if self.state == State::Proceeding && self.answer_challenge(code, head) => {}
            _ => {
                // Non-2xx final: its ACK belongs to the INVITE transaction.
                let branch = self.b_branch.clone();
                self.b.learn(head);
                self.send(self.b.side, "ACK", &branch, self.b_cseq, None);
                if self.state == State::Cancelling {
                    self.end(End::Cancelled);
                    return;
                }
                if self.state == State::Proceeding {
                    let invite = self.a_invite.clone();
                    // A challenge the gateway could not answer is not the
                    // caller's to answer (its credentials are for another
                    // domain): it hears 403.
                    let (to_a, phrase) = match code {
                        401 | 407 => (403, "Forbidden".to_owned()),
                        _ => (code, phrase(head).to_owned()),
                    };
                    self.respond(self.a.side, &invite, to_a, &phrase, None);
                    self.end(End::Rejected(code));
                }
            }
        }
    }

    /// The PBX challenged the gateway's INVITE: ACK the challenge, send the
    /// INVITE again with credentials (next CSeq, new branch, no To tag).
    /// False when there is nothing to answer with (no credentials, another
    /// side, a second challenge, a challenge that cannot be read): the
    /// challenge is then a rejection like any other.
    fn answer_challenge(&mut self, code: u16, head: &Head) -> bool {
        let (ask, give) = if code == 401 {
            ("WWW-Authenticate", "Authorization")
        } else {
            ("Proxy-Authenticate", "Proxy-Authorization")
        };
        let Some(creds) = self.plan.pbx_credentials.clone() else {
            return false;
        };
        if self.b.side != Side::Pbx || self.b_authenticated {
            return false;
        }
        let uri = self.b.remote_target.clone();
        let Some(value) = head.get(ask).and_then(|c| {
            pbxlink_sip::digest::answer(c, &creds, "INVITE", &uri, 1, &self.plan.id).ok()
        }) else {
            return false;
        };
        // The challenge's ACK (same branch; its To tag), then a fresh INVITE.
        let branch = self.b_branch.clone();
        let remote_tag = self.b.remote_tag.clone();
        if let Some(tag) = head
            .get("To")
            .and_then(|t| param(t, "tag"))
            .filter(|t| !t.is_empty())
        {
            self.b.remote_tag = Some(tag.to_owned());
        }
        self.send(self.b.side, "ACK", &branch, self.b_cseq, None);
        self.b.remote_tag = remote_tag;
        self.b_authenticated = true;
        self.b_cseq += 1;
        self.b.local_cseq = self.b_cseq;
        self.b_branch = self.branch();
        let invite = self.b_invite(&self.b_branch, self.b_cseq, self.b_invite_body.as_deref());
        self.out.push_back(Output::Request {
            to: self.b.side,
            method: "INVITE".into(),
            bytes: crate::leg::insert_headers(&invite, &format!("{give}: {value}\r\n")),
        });
        true
    }

    /// The gateway's INVITE on leg B, asserting the caller's identity
    /// toward the PBX when the plan has one.
    fn b_invite(&self, branch: &str, cseq: u32, body: Option<&str>) -> Vec<u8> {
        let invite = self.b.request("INVITE", branch, cseq, body);
        match (&self.plan.asserted_identity, self.b.side) {
            (Some(id), Side::Pbx) => {
                crate::leg::insert_headers(&invite, &format!("P-Asserted-Identity: <{id}>\r\n"))
            }
            _ => invite,
        }
    }

    /// A provisional response to A's INVITE: reliable (RSeq, `Require:
    /// 100rel`) when A asked for that, one unacknowledged at a time — a
    /// later one waits for the PRACK (only the latest is kept).
    fn provisional_to_a(&mut self, code: u16, phrase: String, sdp: Option<String>) {
        let invite = self.a_invite.clone();
        let Some(rel) = self.rel.as_mut() else {
            self.respond(self.a.side, &invite, code, &phrase, sdp.as_deref());
            return;
        };
        if rel.unacked.is_some() {
            rel.queued = Some((code, phrase, sdp));
            return;
        }
        let rseq = rel.next_rseq;
        rel.next_rseq += 1;
        rel.unacked = Some((rseq, sdp.is_some()));
        let bytes = self.a.response(&invite, code, &phrase, sdp.as_deref());
        let bytes =
            crate::leg::insert_headers(&bytes, &format!("Require: 100rel\r\nRSeq: {rseq}\r\n"));
        self.out.push_back(Output::Response {
            to: self.a.side,
            bytes,
        });
    }

    /// The 2xx to A's INVITE — held while a reliable provisional with SDP
    /// waits for its PRACK (RFC 3262 §3).
    fn answer_a(&mut self, code: u16, phrase: String, sdp: String) {
        if let Some(rel) = self.rel.as_mut() {
            if matches!(rel.unacked, Some((_, true))) {
                rel.held = Some((code, phrase, sdp));
                return;
            }
        }
        let invite = self.a_invite.clone();
        self.respond(self.a.side, &invite, code, &phrase, Some(&sdp));
    }

    /// A's PRACK for a reliable provisional (RAck: RSeq, CSeq, method).
    fn prack(&mut self, head: &Head) {
        let rseq = head
            .get("RAck")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u32>().ok());
        let Some(rel) = self
            .rel
            .as_mut()
            .filter(|r| rseq.is_some() && r.unacked.map(|(n, _)| n) == rseq)
        else {
            self.respond(
                self.a.side,
                head,
                481,
                "Call/Transaction Does Not Exist",
                None,
            );
            return;
        };
        rel.unacked = None;
        let (held, queued) = (rel.held.take(), rel.queued.take());
        self.respond(self.a.side, head, 200, "OK", None);
        if let Some((code, phrase, sdp)) = held {
            let invite = self.a_invite.clone();
            self.respond(self.a.side, &invite, code, &phrase, Some(&sdp));
        } else if let Some((code, phrase, sdp)) = queued {
            if self.state == State::Proceeding {
                self.provisional_to_a(code, phrase, sdp);
            }
        }
    }

    /// A's ACK answered B's delayed offer `offer` with `body`: the relay
    /// goes up and B's 2xx is ACKed with the answer; without a usable
    /// answer both legs are hung up.
    fn delayed_answer(&mut self, offer: &Sdp, body: &[u8]) {
        let answer = sdp::parse(body).ok();
        let media = answer.as_ref().and_then(|a| {
            let (pbx, cloud) = match self.a.side {
                Side::Pbx => (a, offer),
                Side::Cloud => (offer, a),
            };
            self.media(pbx, cloud).ok()
        });
        let branch = self.branch();
        let (Some(answer), Some(media)) = (answer, media) else {
            self.send(self.b.side, "ACK", &branch, self.b_cseq, None);
            self.bye(self.a.side);
            self.bye(self.b.side);
            self.end(End::Failed("the caller's answer cannot be relayed"));
            return;
        };
        self.relay = true;
        self.settled = Some((media.tag, media.suite.clone()));
        self.current = Some(media.clone());
        self.out.push_back(Output::RelayUp(media));
        let sdp = self.describe(self.b.side, &answer, audio_direction(&answer));
        self.send(self.b.side, "ACK", &branch, self.b_cseq, Some(&sdp));
    }

    /// Sets the relay up from B's answer in `body` (once), and returns the
    /// SDP for A; `None` when there is no usable answer.
    fn answer_media(&mut self, body: &[u8]) -> Option<String> {
        let answer = sdp::parse(body).ok()?;
        let offer = self.a_offer.clone()?;
        let (pbx, cloud) = match self.a.side {
            Side::Pbx => (&offer, &answer),
            Side::Cloud => (&answer, &offer),
        };
        let media = self.media(pbx, cloud).ok()?;
        if !self.relay {
            self.relay = true;
            self.settled = Some((media.tag, media.suite.clone()));
            self.current = Some(media.clone());
            self.out.push_back(Output::RelayUp(media));
        }
        let dir = audio_direction(&answer);
        Some(self.describe(self.a.side, &answer, dir))
    }

    /// Ends the call from the gateway's side (a media timeout, shutdown):
    /// BYE on both legs once answered; before that, CANCEL toward B and
    /// `480` to A.
    pub fn hang_up(&mut self, why: &'static str) {
        self.cancel_or_bye(480, "Temporarily Unavailable", why);
    }

    /// RFC 3261 Timer C ran out: B gave no final answer in time. B gets a
    /// CANCEL and A `408 Request Timeout`; the call then waits (in
    /// [`Phase::Cancelling`]) for B's final response, as after any CANCEL.
    pub fn timer_c(&mut self) {
        self.cancel_or_bye(408, "Request Timeout", "no final answer (Timer C)");
    }

    fn cancel_or_bye(&mut self, code: u16, phrase: &str, why: &'static str) {
        match self.state {
            State::Answered | State::Confirmed => {
                self.bye(self.a.side);
                self.bye(self.b.side);
                self.end(End::Failed(why));
            }
            State::Proceeding => {
                let branch = self.b_branch.clone();
                self.send(self.b.side, "CANCEL", &branch, self.b_cseq, None);
                let invite = self.a_invite.clone();
                self.respond(self.a.side, &invite, code, phrase, None);
                self.state = State::Cancelling;
            }
            State::Cancelling | State::Ended => {}
        }
    }

    /// Ends the call now, waiting for nothing more from either side: B's
    /// side cannot be reached (its INVITE never left: A gets `code`, B
    /// nothing), or B never answered a CANCEL. Once answered, BYE both
    /// ways as [`Call::hang_up`]. After this the call is over.
    pub fn abandon(&mut self, code: u16, why: &'static str) {
        match self.state {
            State::Proceeding => {
                let invite = self.a_invite.clone();
                let phrase = match code {
                    408 => "Request Timeout",
                    480 => "Temporarily Unavailable",
                    _ => "Service Unavailable",
                };
                self.respond(self.a.side, &invite, code, phrase, None);
                self.end(End::Failed(why));
            }
            State::Cancelling => self.end(End::Failed(why)),
            State::Answered | State::Confirmed => self.hang_up(why),
            State::Ended => {}
        }
    }

    /// Where the call stands (each phase has its bound, kept by the
    /// caller: Timer C before the answer, 64 × T1 for a CANCEL's and an
    /// answer's completion, the relay's timers once confirmed).
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Proceeding => Phase::Proceeding,
            State::Cancelling => Phase::Cancelling,
            State::Answered => Phase::Answered,
            State::Confirmed => Phase::Confirmed,
            State::Ended => Phase::Ended,
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Whether the call is over.
    pub fn is_over(&self) -> bool {
        self.state == State::Ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbxlink_sip::parse;

    const PBX_INVITE: &str = "INVITE sip:4420@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKpbx1\r\n\
        From: \"Alice\" <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>\r\nCall-ID: pbx-call-1@10.0.0.2\r\n\
        CSeq: 1 INVITE\r\nContact: <sip:201@10.0.0.2:5060>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n";
    const PBX_SDP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

    fn key(tag: u32, suite: &str, b: u8) -> Crypto {
        let raw = vec![b; if suite.starts_with("AEAD") { 28 } else { 30 }];
        use base64::Engine;
        let inline = base64::engine::general_purpose::STANDARD.encode(raw);
        Crypto::parse(&format!("{tag} {suite} inline:{inline}")).unwrap()
    }

    fn plan() -> Plan {
        Plan {
            id: "c0ffee".into(),
            pbx: Local {
                via: "SIP/2.0/UDP 10.0.0.5:5060".into(),
                contact: "sip:gw@10.0.0.5:5060".into(),
                domain: "10.0.0.2".into(),
                scheme: "sip",
            },
            cloud: Local {
                via: "SIP/2.0/TLS 203.0.113.5:5061".into(),
                contact: "sips:gw@203.0.113.5:5061;transport=tls".into(),
                domain: "cloud.example".into(),
                scheme: "sips",
            },
            lan_media: "10.0.0.5:28000".parse().unwrap(),
            cloud_media: "203.0.113.5:30000".parse().unwrap(),
            keys: vec![
                key(1, "AEAD_AES_128_GCM", 1),
                key(2, "AES_CM_128_HMAC_SHA1_80", 2),
                key(3, "AES_CM_128_HMAC_SHA1_32", 3),
            ],
            session_id: 77,
            dial: Default::default(),
            pbx_credentials: None,
            asserted_identity: None,
        }
    }

    fn msg(head: &str, body: &str) -> (Head, Vec<u8>) {
        let text = format!("{head}Content-Length: {}\r\n\r\n{body}", body.len());
        let p = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"));
        (p.head, body.as_bytes().to_vec())
    }

    /// The PBX's ACK for the gateway's 200 (with an answer, for a delayed offer).
    fn pbx_ack(sdp: Option<&str>) -> (Head, Vec<u8>) {
        let head = "ACK sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKpbx2\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 1 ACK\r\n";
        match sdp {
            Some(s) => msg(&format!("{head}Content-Type: application/sdp\r\n"), s),
            None => msg(head, ""),
        }
    }

    /// Drains the outputs; every message the call writes must parse.
    fn drain(call: &mut Call) -> Vec<Output> {
        let mut v = Vec::new();
        while let Some(o) = call.poll_output() {
            if let Output::Request { bytes, .. } | Output::Response { bytes, .. } = &o {
                assert!(parse(bytes).is_ok(), "{}", String::from_utf8_lossy(bytes));
            }
            v.push(o);
        }
        v
    }

    fn text(o: &Output) -> String {
        match o {
            Output::Request { bytes, .. } | Output::Response { bytes, .. } => {
                String::from_utf8_lossy(bytes).into_owned()
            }
            other => format!("{other:?}"),
        }
    }

    fn sent(o: &[Output]) -> Vec<String> {
        o.iter()
            .map(|o| match o {
                Output::Request { to, method, .. } => format!("{to:?} <- {method}"),
                Output::Response { to, bytes } => {
                    format!("{to:?} <- {}", String::from_utf8_lossy(&bytes[8..11]))
                }
                Output::RelayUp(_) => "relay up".into(),
                Output::RelayDirection {
                    lan_to_cloud,
                    cloud_to_lan,
                } => format!("relay pbx->cloud {lan_to_cloud} cloud->pbx {cloud_to_lan}"),
                Output::RelayDown => "relay down".into(),
                Output::RelayUpdate {
                    lan_remote,
                    cloud_remote,
                    rx_key,
                    types,
                } => format!(
                    "relay moved pbx {lan_remote:?} cloud {cloud_remote:?} key {}{}",
                    rx_key.as_ref().map_or("same", |c| c.suite.as_str()),
                    types.as_ref().map_or(String::new(), |t| format!(
                        " types {:?}/{:?}",
                        t.to_cloud, t.to_pbx
                    ))
                ),
                Output::RetryTimer { min, max } => {
                    format!("retry in {}..{} ms", min.as_millis(), max.as_millis())
                }
                Output::SessionTimer { expires } => format!("session {} s", expires.as_secs()),
                Output::Ended(e) => format!("ended {e:?}"),
            })
            .collect()
    }

    /// A PBX → cloud call, answered and confirmed.
    fn confirmed_call() -> Call {
        let (invite, body) = msg(PBX_INVITE, PBX_SDP);
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        let (ok, b) = cloud_answer(&cloud_invite, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        drain(&mut call);
        let (ack, b) = pbx_ack(None);
        call.on_request(Side::Pbx, &ack, &b);
        drain(&mut call);
        call
    }

    /// The cloud's re-INVITE number `cseq` with `dir` in its offer.
    fn cloud_reinvite(cseq: u32, dir: &str) -> (Head, Vec<u8>) {
        let offer = CLOUD_ANSWER.replace("a=crypto", &format!("a={dir}\r\na=crypto"));
        msg(
            &format!(
                "INVITE sips:gw@203.0.113.5:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.9:5061;branch=z9hG4bKre{cseq}\r\nFrom: <sips:4420@cloud.example>;tag=cloud-tag\r\nTo: <sips:201@cloud.example>;tag=c0ffee-b\r\nCall-ID: c0ffee@pbxlink\r\nCSeq: {cseq} INVITE\r\nContact: <sips:ua@198.51.100.9:5061>\r\nContent-Type: application/sdp\r\n"
            ),
            &offer,
        )
    }

    /// The PBX's re-INVITE number `cseq` (on the leg it made).
    fn pbx_reinvite(cseq: u32) -> (Head, Vec<u8>) {
        msg(
            &format!(
                "INVITE sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKpre{cseq}\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: {cseq} INVITE\r\nContact: <sip:201@10.0.0.2:5060>\r\nContent-Type: application/sdp\r\n"
            ),
            &(PBX_SDP.to_owned() + "a=sendonly\r\n"),
        )
    }

    /// The PBX's response `code` to `request` (a message the gateway sent it).
    fn pbx_response(request: &str, code: &str, sdp: Option<&str>) -> (Head, Vec<u8>) {
        let h = parse(request.as_bytes()).unwrap().head;
        let head = format!(
            "SIP/2.0 {code}\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:201@10.0.0.2:5060>\r\n{}",
            h.get("Via").unwrap(),
            h.get("From").unwrap(),
            h.get("To").unwrap(),
            h.get("Call-ID").unwrap(),
            h.get("CSeq").unwrap(),
            if sdp.is_some() {
                "Content-Type: application/sdp\r\n"
            } else {
                ""
            }
        );
        msg(&head, sdp.unwrap_or(""))
    }

    #[test]
    fn the_codec_is_the_answers_first_voice_format_both_ends_list() {
        let sdp_with = |m: &str, maps: &str| {
            sdp::parse(format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP {m}\r\n{maps}").as_bytes()).unwrap()
        };
        let te = "a=rtpmap:101 telephone-event/8000\r\n";
        let offer = sdp_with("0 8 18 101", te);
        let answer = sdp_with("8 101", te);
        assert_eq!(PayloadTypes::codec_of(&offer, &answer), "PCMA");
        assert_eq!(PayloadTypes::codec_of(&answer, &offer), "PCMA");
        let g729 = sdp_with("18 13 101", te);
        assert_eq!(
            PayloadTypes::codec_of(&offer, &g729),
            "G729",
            "CN is no codec"
        );
        let opus = sdp_with("96 101", &format!("a=rtpmap:96 opus/48000/2\r\n{te}"));
        assert_eq!(
            PayloadTypes::codec_of(&opus, &offer),
            "opus",
            "nothing in common: the shorter list's first"
        );
        assert_eq!(PayloadTypes::codec_of(&sdp_with("101", te), &offer), "PCMU");
    }

    #[test]
    fn the_user_part_leaves_out_a_password_and_parameters() {
        assert_eq!(user_of("sip:2001@pbx.example;user=phone"), "2001");
        assert_eq!(user_of("sip:sips:201@127.0.0.1"), "sips", "user:password");
        assert_eq!(user_of("tel:+33123;phone-context=x"), "+33123");
        assert_eq!(user_of("sip:pbx.example"), "");
    }

    #[test]
    fn the_cloud_leg_dials_the_number_the_digit_rule_makes() {
        let (invite, body) = msg(&PBX_INVITE.replace("4420@", "94420@"), PBX_SDP);
        let p = Plan {
            dial: crate::digits::DigitRule {
                strip: "9".into(),
                prepend: "+33".into(),
            },
            ..plan()
        };
        let mut call = Call::incoming(Side::Pbx, &invite, &body, p).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        assert!(
            cloud_invite.starts_with("INVITE sips:+334420@cloud.example SIP/2.0\r\n"),
            "{cloud_invite}"
        );
        assert!(cloud_invite.contains("To: <sips:+334420@cloud.example>"));
        assert_eq!(call.parties(), ("201".into(), "+334420".into()));
    }

    #[test]
    fn a_reinvite_that_moves_media_or_changes_the_cloud_key_updates_the_relay() {
        let mut call = confirmed_call();
        // The PBX moves its media to port 6100.
        let (y, b) = msg(
            "INVITE sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKmv\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 2 INVITE\r\nContact: <sip:201@10.0.0.2:5060>\r\nContent-Type: application/sdp\r\n",
            &PBX_SDP.replace("m=audio 6000", "m=audio 6100"),
        );
        call.on_request(Side::Pbx, &y, &b);
        let to_cloud = text(&drain(&mut call)[0]);
        assert!(to_cloud.contains("m=audio 30000 RTP/SAVP"), "{to_cloud}");
        let (ok, b) = cloud_answer(&to_cloud, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        assert_eq!(
            sent(&drain(&mut call)),
            [
                "Cloud <- ACK",
                "relay moved pbx Some(10.0.0.2:6100) cloud None key same",
                "relay pbx->cloud true cloud->pbx true",
                "Pbx <- 200"
            ]
        );
        // The cloud re-INVITEs with a new key (same tag and suite).
        let (x, b) = cloud_reinvite(6, "sendrecv");
        let new_key =
            "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:TkVXS0VZTkVXS0VZTkVXS0VZTkVXS0VZTkVXS0VZ";
        let body = String::from_utf8(b)
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("a=crypto") {
                    new_key
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n";
        let head = x.to_wire();
        let (x, b) = msg(&head[..head.find("Content-Length").unwrap()], &body);
        call.on_request(Side::Cloud, &x, &b);
        let to_pbx = text(&drain(&mut call)[0]);
        let (ok, b) = pbx_response(&to_pbx, "200 OK", Some(PBX_SDP));
        call.on_response(Side::Pbx, &ok, &b);
        let out = drain(&mut call);
        assert_eq!(
            sent(&out)[..2],
            [
                "Pbx <- ACK",
                "relay moved pbx Some(10.0.0.2:6000) cloud None key AES_CM_128_HMAC_SHA1_80"
            ]
        );
        assert!(!format!("{out:?}").contains("TkVX"), "keys never in Debug");
        // The same again changes nothing.
        let (x, b) = msg(
            &head[..head.find("Content-Length").unwrap()].replace("CSeq: 6", "CSeq: 7"),
            &body,
        );
        call.on_request(Side::Cloud, &x, &b);
        let to_pbx = text(&drain(&mut call)[0]);
        let (ok, b) = pbx_response(&to_pbx, "200 OK", Some(PBX_SDP));
        call.on_response(Side::Pbx, &ok, &b);
        assert!(
            !sent(&drain(&mut call))
                .iter()
                .any(|s| s.starts_with("relay moved"))
        );
    }

    #[test]
    fn session_refreshes_are_answered_here_and_an_update_offer_goes_on_as_a_reinvite() {
        let (invite, body) = msg(PBX_INVITE, PBX_SDP);
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        let (ok, b) = cloud_answer(&cloud_invite, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        let answer_to_pbx = text(&drain(&mut call)[2]);
        let (ack, b) = pbx_ack(None);
        call.on_request(Side::Pbx, &ack, &b);
        drain(&mut call);
        let refresh = |method: &str, cseq: u32| {
            msg(
                &format!(
                    "{method} sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKr{cseq}\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: {cseq} {method}\r\nSession-Expires: 1800;refresher=uac\r\n"
                ),
                "",
            )
        };
        // A refresh re-INVITE without SDP: 200 with the same description.
        let (r, b) = refresh("INVITE", 2);
        call.on_request(Side::Pbx, &r, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 200"]);
        let sdp = |m: &str| m.split("\r\n\r\n").nth(1).unwrap().to_owned();
        assert_eq!(
            sdp(&text(&out[0])),
            sdp(&answer_to_pbx),
            "unchanged, same o= version"
        );
        let (ack, b) = msg(
            "ACK sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKra\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 2 ACK\r\nContent-Type: application/sdp\r\n",
            PBX_SDP,
        );
        call.on_request(Side::Pbx, &ack, &b);
        assert!(drain(&mut call).is_empty(), "the cloud is not disturbed");
        // A refresh UPDATE: 200, no body.
        let (r, b) = refresh("UPDATE", 3);
        call.on_request(Side::Pbx, &r, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 200"]);
        assert!(text(&out[0]).contains("CSeq: 3 UPDATE") && text(&out[0]).ends_with("\r\n\r\n"));
        // An UPDATE with an offer (hold) goes to the cloud as a re-INVITE.
        let (u, b) = msg(
            &refresh("UPDATE", 4).0.to_wire().replace(
                "Content-Length: 0\r\n\r\n",
                "Content-Type: application/sdp\r\n",
            ),
            &(PBX_SDP.to_owned() + "a=sendonly\r\n"),
        );
        call.on_request(Side::Pbx, &u, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Cloud <- INVITE"]);
        let to_cloud = text(&out[0]);
        let (ok, b) = cloud_answer(
            &to_cloud,
            "200 OK",
            Some(&CLOUD_ANSWER.replace("a=crypto", "a=recvonly\r\na=crypto")),
        );
        call.on_response(Side::Cloud, &ok, &b);
        let out = drain(&mut call);
        assert_eq!(
            sent(&out),
            [
                "Cloud <- ACK",
                "relay pbx->cloud true cloud->pbx false",
                "Pbx <- 200"
            ]
        );
        assert!(text(&out[2]).contains("CSeq: 4 UPDATE") && text(&out[2]).contains("a=recvonly"));
    }

    #[test]
    fn provisionals_are_reliable_when_the_invite_requires_100rel() {
        let (invite, body) = msg(
            &PBX_INVITE.replace("Max-Forwards", "Require: 100rel\r\nMax-Forwards"),
            PBX_SDP,
        );
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        // 183 with SDP: reliable, RSeq 1; a 180 after it waits for the PRACK.
        let (early, b) = cloud_answer(&cloud_invite, "183 Session Progress", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &early, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["relay up", "Pbx <- 183"]);
        let p183 = text(&out[1]);
        assert!(p183.contains("Require: 100rel\r\nRSeq: 1\r\n"), "{p183}");
        let (ringing, b) = cloud_answer(&cloud_invite, "180 Ringing", None);
        call.on_response(Side::Cloud, &ringing, &b);
        assert!(drain(&mut call).is_empty(), "one unacknowledged at a time");
        // The 200 comes while the 183 (with SDP) is unacknowledged: held.
        let (ok, b) = cloud_answer(&cloud_invite, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        assert_eq!(sent(&drain(&mut call)), ["Cloud <- ACK"]);
        let prack = |rseq: u32, cseq: u32| {
            msg(
                &format!(
                    "PRACK sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKpr{cseq}\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: {cseq} PRACK\r\nRAck: {rseq} 1 INVITE\r\n"
                ),
                "",
            )
        };
        let (wrong, b) = prack(7, 2);
        call.on_request(Side::Pbx, &wrong, &b);
        assert_eq!(sent(&drain(&mut call)), ["Pbx <- 481"]);
        let (right, b) = prack(1, 3);
        call.on_request(Side::Pbx, &right, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 200", "Pbx <- 200"]);
        assert!(text(&out[0]).contains("CSeq: 3 PRACK"));
        assert!(
            text(&out[1]).contains("CSeq: 1 INVITE") && text(&out[1]).contains("m=audio 28000")
        );
    }

    #[test]
    fn a_session_timer_the_caller_asks_for_is_granted_refreshed_and_expires() {
        let (invite, body) = msg(
            &PBX_INVITE.replace(
                "Max-Forwards",
                "Supported: timer\r\nSession-Expires: 120\r\nMax-Forwards",
            ),
            PBX_SDP,
        );
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        assert!(
            !cloud_invite.contains("Session-Expires"),
            "not asked of the cloud"
        );
        let (ok, b) = cloud_answer(&cloud_invite, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        let out = drain(&mut call);
        assert_eq!(
            sent(&out),
            ["Cloud <- ACK", "relay up", "Pbx <- 200", "session 120 s"]
        );
        let ok = text(&out[2]);
        assert!(
            ok.contains("Session-Expires: 120;refresher=uac\r\nRequire: timer\r\n"),
            "{ok}"
        );
        let (ack, b) = pbx_ack(None);
        call.on_request(Side::Pbx, &ack, &b);
        // A refresh (UPDATE) restarts it, with the interval it names (at
        // least Min-SE).
        let (update, b) = msg(
            "UPDATE sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKse\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 2 UPDATE\r\nSession-Expires: 60;refresher=uac\r\n",
            "",
        );
        call.on_request(Side::Pbx, &update, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 200", "session 90 s"]);
        assert!(text(&out[0]).contains("Session-Expires: 90;refresher=uac"));
        // No refresh in time: both legs hung up.
        call.session_expired();
        let out = sent(&drain(&mut call));
        assert!(
            out.contains(&"Pbx <- BYE".to_owned()) && out.contains(&"Cloud <- BYE".to_owned()),
            "{out:?}"
        );
        // A call without a timer never expires.
        let mut plain = confirmed_call();
        plain.session_expired();
        assert!(drain(&mut plain).is_empty());
    }

    #[test]
    fn info_is_passed_on_with_its_body_and_refer_refused() {
        let mut call = confirmed_call();
        let dtmf = "Signal=5\r\nDuration=160\r\n";
        let (info, b) = msg(
            "INFO sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKinfo\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\n",
            dtmf,
        );
        call.on_request(Side::Pbx, &info, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Cloud <- INFO"]);
        let to_cloud = text(&out[0]);
        assert!(
            to_cloud.contains("Content-Type: application/dtmf-relay\r\n")
                && to_cloud.ends_with(dtmf)
                && to_cloud.contains("Call-ID: c0ffee@pbxlink"),
            "{to_cloud}"
        );
        let (ok, b) = cloud_answer(&to_cloud, "200 OK", None);
        call.on_response(Side::Cloud, &ok, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 200"]);
        assert!(text(&out[0]).contains("CSeq: 2 INFO"), "{}", text(&out[0]));
        // A transfer is refused: the PBX bridges it itself.
        let refer = "REFER sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKref\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 3 REFER\r\nRefer-To: <sip:202@10.0.0.2>\r\n";
        let (refer, b) = msg(refer, "");
        call.on_request(Side::Pbx, &refer, &b);
        assert_eq!(sent(&drain(&mut call)), ["Pbx <- 501"]);
        // An INFO unanswered when the call ends is answered 487.
        let (info, b) = msg(
            "INFO sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKinfo2\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 4 INFO\r\n",
            "",
        );
        call.on_request(Side::Pbx, &info, &b);
        assert_eq!(sent(&drain(&mut call)), ["Cloud <- INFO"]);
        call.hang_up("test");
        let out = sent(&drain(&mut call));
        assert!(out.contains(&"Pbx <- 487".to_owned()), "{out:?}");
    }

    #[test]
    fn required_extensions_are_named_unsupported() {
        let (plain, body) = msg(PBX_INVITE, PBX_SDP);
        assert_eq!(unsupported(&plain, &body), None);
        let (prack, body) = msg(
            &PBX_INVITE.replace(
                "Max-Forwards",
                "Require: 100rel\r\nRequire: timer,  precondition\r\nMax-Forwards",
            ),
            PBX_SDP,
        );
        assert_eq!(
            unsupported(&prack, &body).as_deref(),
            Some("precondition"),
            "100rel with an offer and timer are supported"
        );
        assert_eq!(
            unsupported(&prack, b"").as_deref(),
            Some("100rel, precondition"),
            "not 100rel with a delayed offer"
        );
        let (supported, body) = msg(
            &PBX_INVITE.replace("Max-Forwards", "Supported: 100rel, timer\r\nMax-Forwards"),
            PBX_SDP,
        );
        assert_eq!(
            unsupported(&supported, &body),
            None,
            "Supported asks nothing"
        );
    }

    #[test]
    fn glare_is_answered_491_and_the_forwarded_reinvite_retried_once() {
        let mut call = confirmed_call();
        // The cloud holds; the gateway passes it to the PBX...
        let (x, b) = cloud_reinvite(6, "sendonly");
        call.on_request(Side::Cloud, &x, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- INVITE"]);
        let first = text(&out[0]);
        // ...which re-INVITEs at the same moment: 491 from the gateway,
        let (y, b) = pbx_reinvite(2);
        call.on_request(Side::Pbx, &y, &b);
        assert_eq!(sent(&drain(&mut call)), ["Pbx <- 491"]);
        // and 491 from the PBX. The PBX made its leg's Call-ID: the
        // gateway waits 0–2 s (RFC 3261 §14.1), the cloud hears nothing yet.
        let (busy, b) = pbx_response(&first, "491 Request Pending", None);
        call.on_response(Side::Pbx, &busy, &b);
        assert_eq!(
            sent(&drain(&mut call)),
            ["Pbx <- ACK", "retry in 0..2000 ms"]
        );
        // A retransmitted 491 changes nothing.
        call.on_response(Side::Pbx, &busy, &b);
        assert!(drain(&mut call).is_empty());
        // The timer fires: the same offer in a new transaction.
        call.on_retry_timer();
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- INVITE"]);
        let retry = text(&out[0]);
        let body = |m: &str| m.split("\r\n\r\n").nth(1).unwrap().to_owned();
        assert_eq!(body(&retry), body(&first), "the offer unchanged");
        let cseq = |m: &str| {
            m.lines()
                .find(|l| l.starts_with("CSeq:"))
                .unwrap()
                .to_owned()
        };
        assert_ne!(cseq(&retry), cseq(&first), "{retry}");
        let answer = PBX_SDP.to_owned() + "a=recvonly\r\n";
        let (ok, b) = pbx_response(&retry, "200 OK", Some(&answer));
        call.on_response(Side::Pbx, &ok, &b);
        assert_eq!(
            sent(&drain(&mut call)),
            [
                "Pbx <- ACK",
                "relay pbx->cloud false cloud->pbx true",
                "Cloud <- 200"
            ]
        );
        // A second timer (none was asked for) does nothing.
        call.on_retry_timer();
        assert!(drain(&mut call).is_empty());

        // Glare again, and this time the PBX's own retry comes first: it
        // goes to the cloud, and the cloud's re-INVITE gets the 491.
        let (x, b) = cloud_reinvite(7, "sendrecv");
        call.on_request(Side::Cloud, &x, &b);
        let first = text(&drain(&mut call)[0]);
        let (busy, b) = pbx_response(&first, "491 Request Pending", None);
        call.on_response(Side::Pbx, &busy, &b);
        assert_eq!(
            sent(&drain(&mut call)),
            ["Pbx <- ACK", "retry in 0..2000 ms"]
        );
        let (y, b) = pbx_reinvite(3);
        call.on_request(Side::Pbx, &y, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Cloud <- 491", "Cloud <- INVITE"]);
        assert!(
            text(&out[0]).contains("CSeq: 7 INVITE"),
            "{}",
            text(&out[0])
        );
        call.on_retry_timer();
        assert!(drain(&mut call).is_empty(), "the yielded retry is gone");
        // A BYE with a re-INVITE pending answers it 487.
        let (bye, b) = msg(
            "BYE sip:gw@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKpbye\r\nFrom: <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 4 BYE\r\n",
            "",
        );
        call.on_request(Side::Pbx, &bye, &b);
        let out = drain(&mut call);
        assert_eq!(
            sent(&out),
            [
                "Pbx <- 200",
                "Cloud <- BYE",
                "Pbx <- 487",
                "relay down",
                "ended Hangup(Pbx)"
            ]
        );
    }

    /// The cloud's answer to the gateway's INVITE `invite` (tag 2 chosen).
    fn cloud_answer(invite: &str, code: &str, sdp: Option<&str>) -> (Head, Vec<u8>) {
        let h = parse(invite.as_bytes()).unwrap().head;
        let mut head = format!("SIP/2.0 {code}\r\n");
        for via in h.all("Via") {
            head.push_str(&format!("Via: {via}\r\n"));
        }
        head.push_str(&format!(
            "From: {}\r\nTo: {};tag=cloud-tag\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sips:ua@198.51.100.9:5061>\r\n",
            h.get("From").unwrap(),
            h.get("To").unwrap(),
            h.get("Call-ID").unwrap(),
            h.get("CSeq").unwrap()
        ));
        match sdp {
            Some(s) => {
                head.push_str("Content-Type: application/sdp\r\n");
                msg(&head, s)
            }
            None => msg(&head, ""),
        }
    }

    const CLOUD_ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:Q0xPVURDTE9VRENMT1VEQ0xPVURDTE9VRENMT1VE\r\n";

    #[test]
    fn pbx_to_cloud_call_answered_then_hung_up_by_the_cloud() {
        let (invite, body) = msg(PBX_INVITE, PBX_SDP);
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 100", "Cloud <- INVITE"]);
        let cloud_invite = text(&out[1]);
        assert!(
            cloud_invite.starts_with("INVITE sips:4420@cloud.example SIP/2.0\r\n"),
            "{cloud_invite}"
        );
        assert!(cloud_invite.contains("From: <sips:201@cloud.example>;tag=c0ffee-b\r\n"));
        assert!(
            cloud_invite.contains("c=IN IP4 203.0.113.5\r\n")
                && cloud_invite.contains("m=audio 30000 RTP/SAVP 8 101\r\n")
        );
        assert_eq!(
            cloud_invite.matches("a=crypto:").count(),
            3,
            "every suite offered"
        );
        let (ringing, b) = cloud_answer(&cloud_invite, "180 Ringing", None);
        call.on_response(Side::Cloud, &ringing, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 180"]);
        assert!(text(&out[0]).contains("To: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\n"));
        let (ok, b) = cloud_answer(&cloud_invite, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Cloud <- ACK", "relay up", "Pbx <- 200"]);
        let Output::RelayUp(media) = &out[1] else {
            unreachable!()
        };
        assert_eq!(media.lan_remote, "10.0.0.2:6000".parse().unwrap());
        assert_eq!(media.cloud_remote, "198.51.100.9:40000".parse().unwrap());
        assert_eq!(media.suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(
            media.types,
            PayloadTypes {
                to_cloud: vec![8, 101],
                to_pbx: vec![8, 101],
                pbx_telephone_event: Some(101),
                cloud_telephone_event: Some(101),
                codec: "PCMA".into(),
            },
            "only what each end receives passes"
        );
        assert_eq!(
            *media.tx_key,
            *plan().keys[1].key,
            "the key offered with tag 2"
        );
        assert_eq!(*media.rx_key, "Q0xPVURDTE9VRENMT1VEQ0xPVURDTE9VRENMT1VE");
        assert!(
            !format!("{media:?}").contains("Q0xP"),
            "keys never in Debug"
        );
        let ack = text(&out[0]);
        assert!(
            ack.starts_with("ACK sips:ua@198.51.100.9:5061 SIP/2.0") && ack.contains("CSeq: 1 ACK"),
            "{ack}"
        );
        let answer = text(&out[2]);
        assert!(
            answer.contains("m=audio 28000 RTP/AVP 8 101\r\n") && !answer.contains("crypto"),
            "{answer}"
        );
        assert!(
            answer.contains("c=IN IP4 10.0.0.5\r\n")
                && answer.contains("Contact: <sip:gw@10.0.0.5:5060>")
        );
        // The PBX ACKs; the cloud hangs up.
        let (ack, b) = pbx_ack(None);
        call.on_request(Side::Pbx, &ack, &b);
        assert!(drain(&mut call).is_empty());
        let (bye, b) = msg(
            "BYE sips:gw@203.0.113.5:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.9:5061;branch=z9hG4bKcloudbye\r\nFrom: <sips:4420@cloud.example>;tag=cloud-tag\r\nTo: <sips:201@cloud.example>;tag=c0ffee-b\r\nCall-ID: c0ffee@pbxlink\r\nCSeq: 5 BYE\r\n",
            "",
        );
        call.on_request(Side::Cloud, &bye, &b);
        let out = drain(&mut call);
        assert_eq!(
            sent(&out),
            [
                "Cloud <- 200",
                "Pbx <- BYE",
                "relay down",
                "ended Hangup(Cloud)"
            ]
        );
        let pbx_bye = text(&out[1]);
        assert!(
            pbx_bye.starts_with("BYE sip:201@10.0.0.2:5060 SIP/2.0\r\n"),
            "{pbx_bye}"
        );
        assert!(pbx_bye.contains("From: <sip:4420@10.0.0.5>;tag=c0ffee-a\r\nTo: \"Alice\" <sip:201@10.0.0.2>;tag=pbx-tag\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 1 BYE"), "{pbx_bye}");
        assert!(call.is_over());
    }

    #[test]
    fn hold_and_resume_from_the_cloud_pass_through_and_set_the_relay() {
        let (invite, body) = msg(PBX_INVITE, PBX_SDP);
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        let (ok, b) = cloud_answer(&cloud_invite, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        drain(&mut call);
        let (ack, b) = pbx_ack(None);
        call.on_request(Side::Pbx, &ack, &b);
        for (cseq, cloud_dir, pbx_dir, expect) in [
            (
                6,
                "sendonly",
                "recvonly",
                "relay pbx->cloud false cloud->pbx true",
            ),
            (
                7,
                "sendrecv",
                "sendrecv",
                "relay pbx->cloud true cloud->pbx true",
            ),
        ] {
            // The cloud re-INVITEs (hold, then resume), keeping its key.
            let offer = CLOUD_ANSWER.replace("a=crypto", &format!("a={cloud_dir}\r\na=crypto"));
            let (reinvite, b) = msg(
                &format!(
                    "INVITE sips:gw@203.0.113.5:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.9:5061;branch=z9hG4bKre{cseq}\r\nFrom: <sips:4420@cloud.example>;tag=cloud-tag\r\nTo: <sips:201@cloud.example>;tag=c0ffee-b\r\nCall-ID: c0ffee@pbxlink\r\nCSeq: {cseq} INVITE\r\nContact: <sips:ua@198.51.100.9:5061>\r\nContent-Type: application/sdp\r\n"
                ),
                &offer,
            );
            call.on_request(Side::Cloud, &reinvite, &b);
            let out = drain(&mut call);
            assert_eq!(sent(&out), ["Pbx <- INVITE"]);
            let to_pbx = text(&out[0]);
            assert!(
                to_pbx.starts_with("INVITE sip:201@10.0.0.2:5060 SIP/2.0")
                    && to_pbx.contains(&format!("a={cloud_dir}")),
                "{to_pbx}"
            );
            assert!(
                to_pbx.contains(";tag=c0ffee-a") && !to_pbx.contains("crypto"),
                "{to_pbx}"
            );
            // The PBX answers.
            let h = parse(to_pbx.as_bytes()).unwrap().head;
            let answer = PBX_SDP.to_owned() + &format!("a={pbx_dir}\r\n");
            let (ok, b) = msg(
                &format!(
                    "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:201@10.0.0.2:5060>\r\nContent-Type: application/sdp\r\n",
                    h.get("Via").unwrap(),
                    h.get("From").unwrap(),
                    h.get("To").unwrap(),
                    h.get("Call-ID").unwrap(),
                    h.get("CSeq").unwrap()
                ),
                &answer,
            );
            call.on_response(Side::Pbx, &ok, &b);
            let out = drain(&mut call);
            assert_eq!(sent(&out), ["Pbx <- ACK", expect, "Cloud <- 200"]);
            let to_cloud = text(&out[2]);
            assert!(to_cloud.contains(&format!("a={pbx_dir}")), "{to_cloud}");
            assert_eq!(
                to_cloud
                    .matches("a=crypto:2 AES_CM_128_HMAC_SHA1_80")
                    .count(),
                1,
                "the key in use, its tag: {to_cloud}"
            );
        }
    }

    #[test]
    fn a_media_timeout_hangs_up_both_legs() {
        let (invite, body) = msg(PBX_INVITE, PBX_SDP);
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        let (ok, b) = cloud_answer(&cloud_invite, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        drain(&mut call);
        call.hang_up("media timeout");
        assert_eq!(
            sent(&drain(&mut call)),
            [
                "Pbx <- BYE",
                "Cloud <- BYE",
                "relay down",
                "ended Failed(\"media timeout\")"
            ]
        );
    }

    #[test]
    fn timer_c_cancels_b_answers_a_408_and_a_silent_b_is_abandoned() {
        let (invite, body) = msg(PBX_INVITE, PBX_SDP);
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        drain(&mut call);
        assert_eq!(call.phase(), Phase::Proceeding);
        call.timer_c();
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Cloud <- CANCEL", "Pbx <- 408"]);
        assert_eq!(call.phase(), Phase::Cancelling);
        // B never answers the CANCEL: the caller's bound ends the call.
        call.abandon(408, "no answer to CANCEL");
        assert_eq!(
            sent(&drain(&mut call)),
            ["ended Failed(\"no answer to CANCEL\")"]
        );
        assert!(call.is_over());
    }

    #[test]
    fn abandoned_before_the_answer_a_gets_the_code_and_b_nothing() {
        let (invite, body) = msg(PBX_INVITE, PBX_SDP);
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        drain(&mut call);
        call.abandon(503, "the cloud trunk is down");
        assert_eq!(
            sent(&drain(&mut call)),
            ["Pbx <- 503", "ended Failed(\"the cloud trunk is down\")"]
        );
        assert_eq!(call.phase(), Phase::Ended);
    }

    #[test]
    fn delayed_offer_is_answered_in_the_ack() {
        let (invite, _) = msg(
            PBX_INVITE
                .replace("Content-Type: application/sdp\r\n", "")
                .as_str(),
            "",
        );
        let mut call = Call::incoming(Side::Pbx, &invite, b"", plan()).unwrap();
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 100", "Cloud <- INVITE"]);
        let cloud_invite = text(&out[1]);
        assert!(
            cloud_invite.ends_with("Content-Length: 0\r\n\r\n"),
            "no offer: {cloud_invite}"
        );
        // The cloud offers in its 200.
        let (ok, b) = cloud_answer(&cloud_invite, "200 OK", Some(CLOUD_ANSWER));
        call.on_response(Side::Cloud, &ok, &b);
        let out = drain(&mut call);
        assert_eq!(
            sent(&out),
            ["Pbx <- 200"],
            "no ACK to the cloud before the PBX answers"
        );
        let offer_to_pbx = text(&out[0]);
        assert!(
            offer_to_pbx.contains("m=audio 28000 RTP/AVP 8 101")
                && !offer_to_pbx.contains("crypto"),
            "{offer_to_pbx}"
        );
        // The PBX answers in its ACK.
        let (ack, b) = pbx_ack(Some(PBX_SDP));
        call.on_request(Side::Pbx, &ack, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["relay up", "Cloud <- ACK"]);
        let Output::RelayUp(media) = &out[0] else {
            unreachable!()
        };
        assert_eq!(media.lan_remote, "10.0.0.2:6000".parse().unwrap());
        assert_eq!(media.cloud_remote, "198.51.100.9:40000".parse().unwrap());
        assert_eq!(media.suite, "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(*media.rx_key, "Q0xPVURDTE9VRENMT1VEQ0xPVURDTE9VRENMT1VE");
        assert_eq!(*media.tx_key, *plan().keys[1].key);
        let ack_to_cloud = text(&out[1]);
        assert!(
            ack_to_cloud.contains("CSeq: 1 ACK")
                && ack_to_cloud.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{ack_to_cloud}"
        );
        assert!(
            ack_to_cloud.contains("m=audio 30000 RTP/SAVP 8 101"),
            "{ack_to_cloud}"
        );
    }

    #[test]
    fn cloud_to_pbx_call_answers_with_the_suite_the_cloud_offered() {
        let offer = "v=0\r\no=- 9 9 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:Q0xPVURDTE9VRENMT1VEQ0xPVURDTE9VRENMT1VE\r\na=crypto:6 AES_256_CM_HMAC_SHA1_80 inline:Q0xPVURDTE9VRENMT1VEQ0xPVURDTE9VRENMT1VEQ0xPVURDTE9VRENMT1VE\r\n";
        let (invite, body) = msg(
            "INVITE sips:201@203.0.113.5:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.9:5061;branch=z9hG4bKc1\r\nFrom: <sips:4420@cloud.example>;tag=ct\r\nTo: <sips:201@203.0.113.5>\r\nCall-ID: cloud-1\r\nCSeq: 10 INVITE\r\nContact: <sips:ua@198.51.100.9:5061;transport=tls>\r\nContent-Type: application/sdp\r\n",
            offer,
        );
        let mut call = Call::incoming(Side::Cloud, &invite, &body, plan()).unwrap();
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Cloud <- 100", "Pbx <- INVITE"]);
        let pbx_invite = text(&out[1]);
        assert!(
            pbx_invite.starts_with("INVITE sip:201@10.0.0.2 SIP/2.0")
                && pbx_invite.contains("m=audio 28000 RTP/AVP 0 101")
                && !pbx_invite.contains("crypto"),
            "{pbx_invite}"
        );
        let h = parse(pbx_invite.as_bytes()).unwrap().head;
        let answer = "v=0\r\no=pbx 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (ok, b) = msg(
            &format!(
                "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=pt\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\nContact: <sip:201@10.0.0.2:5060>\r\nContent-Type: application/sdp\r\n",
                h.get("Via").unwrap(),
                h.get("From").unwrap(),
                h.get("To").unwrap(),
                h.get("Call-ID").unwrap()
            ),
            answer,
        );
        call.on_response(Side::Pbx, &ok, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- ACK", "relay up", "Cloud <- 200"]);
        let Output::RelayUp(media) = &out[1] else {
            unreachable!()
        };
        assert_eq!(
            media.suite, "AES_CM_128_HMAC_SHA1_32",
            "the only offered suite it speaks"
        );
        assert_eq!(media.lan_remote, "10.0.0.2:6002".parse().unwrap());
        let to_cloud = text(&out[2]);
        assert!(
            to_cloud.contains("m=audio 30000 RTP/SAVP 0 101")
                && to_cloud.contains("a=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:"),
            "{to_cloud}"
        );
        assert_eq!(to_cloud.matches("a=crypto").count(), 1);
    }

    #[test]
    fn a_pbx_challenge_is_answered_once_with_credentials() {
        use pbxlink_sip::digest::{Algorithm, Challenger, Credentials, Verdict};
        let creds = Credentials {
            username: "officelinkmv5000".into(),
            password: "trunk-secret".to_owned().into(),
        };
        let offer = "v=0\r\no=- 9 9 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:Q0xPVURDTE9VRENMT1VEQ0xPVURDTE9VRENMT1VE\r\n";
        let (invite, body) = msg(
            "INVITE sips:201@203.0.113.5:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 198.51.100.9:5061;branch=z9hG4bKc1\r\nFrom: <sips:4420@cloud.example>;tag=ct\r\nTo: <sips:201@203.0.113.5>\r\nCall-ID: cloud-1\r\nCSeq: 10 INVITE\r\nContact: <sips:ua@198.51.100.9:5061;transport=tls>\r\nContent-Type: application/sdp\r\n",
            offer,
        );
        let p = Plan {
            pbx_credentials: Some(creds.clone()),
            asserted_identity: Some("sip:4420@pbx.example".into()),
            ..plan()
        };
        let mut call = Call::incoming(Side::Cloud, &invite, &body, p).unwrap();
        let first = text(&drain(&mut call)[1]);
        // The PBX challenges (as the gateway's own challenger would).
        let pbx = Challenger::new("pbx", Algorithm::Md5, creds, [9; 32]);
        let challenge = |to: &str| {
            let h = parse(to.as_bytes()).unwrap().head;
            msg(
                &format!(
                    "SIP/2.0 401 Unauthorized\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=pbx-401\r\nCall-ID: {}\r\nCSeq: {}\r\nWWW-Authenticate: {}\r\n",
                    h.get("Via").unwrap(),
                    h.get("From").unwrap(),
                    h.get("To").unwrap(),
                    h.get("Call-ID").unwrap(),
                    h.get("CSeq").unwrap(),
                    pbx.challenge(100, false)
                ),
                "",
            )
        };
        let (c, b) = challenge(&first);
        call.on_response(Side::Pbx, &c, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- ACK", "Pbx <- INVITE"]);
        let (ack, again) = (text(&out[0]), text(&out[1]));
        assert!(
            ack.contains("CSeq: 1 ACK") && ack.contains(";tag=pbx-401"),
            "{ack}"
        );
        let h = parse(again.as_bytes()).unwrap().head;
        assert_eq!(h.get("CSeq"), Some("2 INVITE"));
        assert!(
            !h.get("To").unwrap().contains("tag="),
            "a new INVITE: no To tag"
        );
        assert_ne!(
            h.get("Via"),
            parse(first.as_bytes()).unwrap().head.get("Via")
        );
        assert!(
            again.contains("m=audio 28000 RTP/AVP 0"),
            "the same offer: {again}"
        );
        let uri = h.start_line.split(' ').nth(1).unwrap();
        assert_eq!(
            pbx.verify(101, "INVITE", uri, h.get("Authorization")),
            Verdict::Accepted
        );
        // Both INVITEs assert who calls (a Softphone user's address).
        for invite in [&first, &again] {
            let h = parse(invite.as_bytes()).unwrap().head;
            assert_eq!(h.get("P-Asserted-Identity"), Some("<sip:4420@pbx.example>"));
        }
        // A second challenge is a rejection: the cloud hears it.
        let (c, b) = challenge(&again);
        call.on_response(Side::Pbx, &c, &b);
        assert_eq!(
            sent(&drain(&mut call)),
            ["Pbx <- ACK", "Cloud <- 403", "ended Rejected(401)"]
        );
    }

    #[test]
    fn cancel_before_the_answer_and_rejections() {
        let (invite, body) = msg(PBX_INVITE, PBX_SDP);
        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        let (cancel, b) = msg(
            "CANCEL sip:4420@10.0.0.5:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKpbx1\r\nFrom: \"Alice\" <sip:201@10.0.0.2>;tag=pbx-tag\r\nTo: <sip:4420@10.0.0.5>\r\nCall-ID: pbx-call-1@10.0.0.2\r\nCSeq: 1 CANCEL\r\n",
            "",
        );
        call.on_request(Side::Pbx, &cancel, &b);
        let out = drain(&mut call);
        assert_eq!(sent(&out), ["Pbx <- 200", "Pbx <- 487", "Cloud <- CANCEL"]);
        let c = text(&out[2]);
        assert!(
            c.contains(";branch=z9hG4bKc0ffee-1;") && c.contains("CSeq: 1 CANCEL"),
            "same branch as the INVITE: {c}"
        );
        let (terminated, b) = cloud_answer(&cloud_invite, "487 Request Terminated", None);
        call.on_response(Side::Cloud, &terminated, &b);
        assert_eq!(sent(&drain(&mut call)), ["Cloud <- ACK", "ended Cancelled"]);
        assert!(call.is_over());

        let mut call = Call::incoming(Side::Pbx, &invite, &body, plan()).unwrap();
        let cloud_invite = text(&drain(&mut call)[1]);
        let (busy, b) = cloud_answer(&cloud_invite, "486 Busy Here", None);
        call.on_response(Side::Cloud, &busy, &b);
        let out = drain(&mut call);
        assert_eq!(
            sent(&out),
            ["Cloud <- ACK", "Pbx <- 486", "ended Rejected(486)"]
        );
        assert!(
            text(&out[0]).contains(";branch=z9hG4bKc0ffee-1;"),
            "non-2xx ACK: the INVITE's branch"
        );

        // What cannot be carried is refused up front.
        let no_audio =
            "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n";
        assert_eq!(
            Call::incoming(Side::Pbx, &invite, no_audio.as_bytes(), plan())
                .unwrap_err()
                .0,
            488
        );
        let only_256 = "v=0\r\no=- 9 9 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 0\r\na=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:QUJD\r\n";
        assert_eq!(
            Call::incoming(Side::Cloud, &invite, only_256.as_bytes(), plan())
                .unwrap_err()
                .0,
            488
        );
    }
}

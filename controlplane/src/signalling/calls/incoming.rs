//! A new request from either side: refused at once (the call limit, the
//! cloud trunk down, untrusted or unknown users), or a new call set up
//! with its ports, keys and plan.

use super::*;
use crate::random::random;
use pbxlink_b2bua::call::{Call, Local, Phase, Plan};
use pbxlink_b2bua::digits::DigitRule;
use pbxlink_b2bua::leg::Side;
use pbxlink_sip::message::Parsed;
use pbxlink_sip::normalize::Head;
use pbxlink_sip::sdp::Crypto;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

impl Calls {
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
        if let Some(c) = &self.capture {
            // One correlation id for both legs' copies: the PBX leg's.
            c.correlate(call.call_id(Side::Cloud), call.call_id(Side::Pbx));
        }
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
                invite_in: Some(now),
                answer_in: None,
                pbx_media: None,
                cloud_media: None,
                codec: String::new(),
            },
        );
        self.flush(now, id);
        None
    }

    /// Whether a new INVITE is a Softphone user's call, and whose: the
    /// PBX calling a user on the subscriber side (`Err` when no such user
    /// is ours), or the cloud calling from a Softphone user's extension.
    #[allow(clippy::result_unit_err)]
    pub(super) fn softphone_of(
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
}

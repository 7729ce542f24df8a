//! What makes the calls' SIP reliable toward a PBX over UDP, sans-IO (time
//! passed in): the B2BUA's own requests retransmitted until answered
//! (RFC 3261 §17.1: Timer A/E from T1 doubling — non-INVITE capped at T2 —
//! and given up after 64·T1, Timer B/F); an ACK resent when a non-2xx
//! final it acknowledged comes again (§17.1.1.2); its 2xx to an INVITE
//! retransmitted until the ACK arrives (§13.3.1.4), given up after 64·T1;
//! its reliable provisionals (RFC 3262, `RSeq`) retransmitted until their
//! PRACK, given up likewise; and its latest response to an INVITE resent when the INVITE comes again
//! — also for 32 s after the call ended, so a retransmitted INVITE never
//! starts a second call (§17.2.1).
//!
//! Messages over TCP or TLS need none of this: only UDP sends come here.

use super::udp::UdpDest;
use pbxlink_sip::message::{request_method, status_code};
use pbxlink_sip::normalize::Head;
use pbxlink_sip::parse;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// RFC 3261 T1: the round-trip estimate.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: the longest retransmission interval (non-INVITE, 2xx).
const T2: Duration = Duration::from_secs(4);
/// How long answers and ACKs are kept for retransmissions (Timer D, 64·T1).
const LINGER: Duration = Duration::from_secs(32);
/// An INVITE answered only provisionally is forgotten this long after its
/// Timer B would have fired (a proxy's Timer C is 3 minutes).
const FORGET: Duration = Duration::from_secs(300);

/// Something due now.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Send these bytes again.
    Send(UdpDest, Vec<u8>),
    /// Call `call`'s INVITE got no response at all in 64·T1 (Timer B).
    InviteTimeout(u64),
    /// Call `call`'s 2xx was never acknowledged (§13.3.1.4).
    AckTimeout(u64),
    /// Call `call`'s reliable provisional was never PRACKed (RFC 3262 §3).
    PrackTimeout(u64),
}

/// What to do with a response that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// New: the call handles it.
    Pass,
    /// A retransmission already handled; send this (the ACK again), if anything.
    Absorb(Option<(UdpDest, Vec<u8>)>),
}

#[derive(Debug)]
struct Request {
    call: u64,
    to: UdpDest,
    bytes: Vec<u8>,
    invite: bool,
    /// Next retransmission; none once a response stopped them.
    next: Option<Instant>,
    interval: Duration,
    /// Timer B/F.
    deadline: Instant,
    /// The ACK sent for a non-2xx final, and until when it is kept.
    ack: Option<(Vec<u8>, Instant)>,
}

#[derive(Debug)]
struct Answer {
    call: u64,
    to: UdpDest,
    bytes: Vec<u8>,
    next: Instant,
    interval: Duration,
    deadline: Instant,
}

/// The reliability state of every call toward a UDP PBX.
#[derive(Debug, Default)]
pub struct Reliability {
    /// By (top Via branch, CSeq method).
    requests: HashMap<(String, String), Request>,
    /// 2xx to INVITEs awaiting their ACK, by (Call-ID, CSeq number).
    answers: HashMap<(String, u32), Answer>,
    /// Reliable provisionals awaiting their PRACK, by (Call-ID, RSeq).
    provisionals: HashMap<(String, u32), Answer>,
    /// The latest response to each INVITE received, by Call-ID, and until
    /// when it is kept once final.
    latest: HashMap<String, (UdpDest, Vec<u8>, Option<Instant>)>,
}

fn branch(head: &Head) -> Option<String> {
    let via = head.get("Via")?;
    via.split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("branch="))
        .map(str::to_owned)
}

fn cseq(head: &Head) -> Option<(u32, String)> {
    let mut it = head.get("CSeq")?.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.to_owned()))
}

impl Reliability {
    /// The call sent `bytes` (a request) to `to` over UDP.
    pub fn request_sent(&mut self, now: Instant, call: u64, to: UdpDest, bytes: &[u8]) {
        let Ok(p) = parse(bytes) else { return };
        let (Some(branch), Some((_, method))) = (branch(&p.head), cseq(&p.head)) else {
            return;
        };
        if method == "ACK" {
            // A non-2xx ACK reuses its INVITE's branch: kept to resend.
            // (A 2xx's ACK is the call's: it re-ACKs retransmitted 2xx.)
            if let Some(r) = self.requests.get_mut(&(branch, "INVITE".into())) {
                r.ack = Some((bytes.to_vec(), now + LINGER));
            }
            return;
        }
        self.requests.insert(
            (branch, method.clone()),
            Request {
                call,
                to,
                bytes: bytes.to_vec(),
                invite: method == "INVITE",
                next: Some(now + T1),
                interval: T1,
                deadline: now + 64 * T1,
                ack: None,
            },
        );
    }

    /// A response arrived from the PBX.
    pub fn response_received(&mut self, now: Instant, head: &Head) -> Received {
        let code = status_code(&head.start_line);
        let (Some(branch), Some((_, method))) = (branch(head), cseq(head)) else {
            return Received::Pass;
        };
        let key = (branch, method);
        let Some(r) = self.requests.get_mut(&key) else {
            return Received::Pass;
        };
        if let Some((ack, _)) = &r.ack {
            // The final came again: its ACK was lost.
            return Received::Absorb((!ack.is_empty()).then(|| (r.to, ack.clone())));
        }
        match code {
            100..=199 if r.invite => r.next = None, // Timer A stops; B too
            100..=199 => {
                // Non-INVITE: on at T2 until the final.
                r.interval = T2;
                r.next = Some(now + T2);
            }
            300..=699 if r.invite => {
                r.next = None;
                r.ack = Some((Vec::new(), now + LINGER)); // the ACK is filled in as sent
            }
            _ => {
                self.requests.remove(&key);
            }
        }
        Received::Pass
    }

    /// The call sent `bytes` (a response) to `to` over UDP.
    pub fn response_sent(&mut self, now: Instant, call: u64, to: UdpDest, bytes: &[u8]) {
        let Ok(p) = parse(bytes) else { return };
        let code = status_code(&p.head.start_line);
        let (Some((n, method)), Some(call_id)) = (cseq(&p.head), p.head.get("Call-ID")) else {
            return;
        };
        if method != "INVITE" {
            return;
        }
        let kept = (code >= 200).then_some(now + LINGER);
        self.latest
            .insert(call_id.to_owned(), (to, bytes.to_vec(), kept));
        let again = |bytes: &[u8]| Answer {
            call,
            to,
            bytes: bytes.to_vec(),
            next: now + T1,
            interval: T1,
            deadline: now + 64 * T1,
        };
        let rseq = p.head.get("RSeq").and_then(|v| v.trim().parse().ok());
        match (code, rseq) {
            (101..=199, Some(rseq)) => {
                self.provisionals
                    .insert((call_id.to_owned(), rseq), again(bytes));
            }
            // A final ends the provisionals' retransmissions (§3).
            (200.., _) => self.provisionals.retain(|(id, _), _| id != call_id),
            _ => {}
        }
        if (200..300).contains(&code) {
            self.answers.insert((call_id.to_owned(), n), again(bytes));
        }
    }

    /// A request arrived from the PBX: an ACK ends its 2xx's
    /// retransmissions, a PRACK its provisional's (RAck names its RSeq).
    pub fn request_received(&mut self, head: &Head) {
        let Some(call_id) = head.get("Call-ID") else {
            return;
        };
        match request_method(&head.start_line) {
            Some("ACK") => {
                if let Some((n, _)) = cseq(head) {
                    self.answers.remove(&(call_id.to_owned(), n));
                }
            }
            Some("PRACK") => {
                let rseq = head
                    .get("RAck")
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|n| n.parse().ok());
                if let Some(rseq) = rseq {
                    self.provisionals.remove(&(call_id.to_owned(), rseq));
                }
            }
            _ => {}
        }
    }

    /// An INVITE with this Call-ID came again: the response to resend.
    pub fn invite_again(&self, call_id: &str) -> Option<(UdpDest, Vec<u8>)> {
        self.latest
            .get(call_id)
            .map(|(to, bytes, _)| (*to, bytes.clone()))
    }

    /// Everything due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<Due> {
        let mut due = Vec::new();
        self.requests.retain(|_, r| {
            if now >= r.deadline + FORGET {
                return false; // ringing forever: forgotten (the call hangs up on its own)
            }
            if let Some((_, until)) = &r.ack {
                return now < *until;
            }
            if now >= r.deadline && (r.next.is_some() || !r.invite) {
                if r.invite {
                    due.push(Due::InviteTimeout(r.call));
                }
                return false;
            }
            if let Some(next) = r.next.filter(|&t| now >= t) {
                due.push(Due::Send(r.to, r.bytes.clone()));
                r.interval = if r.invite {
                    r.interval * 2
                } else {
                    (r.interval * 2).min(T2)
                };
                r.next = Some(next.max(now) + r.interval);
            }
            true
        });
        for (map, timeout, cap) in [
            (&mut self.answers, Due::AckTimeout as fn(u64) -> Due, T2),
            (&mut self.provisionals, Due::PrackTimeout, 64 * T1),
        ] {
            map.retain(|_, a| {
                if now >= a.deadline {
                    due.push(timeout(a.call));
                    return false;
                }
                if now >= a.next {
                    due.push(Due::Send(a.to, a.bytes.clone()));
                    a.interval = (a.interval * 2).min(cap);
                    a.next = now + a.interval;
                }
                true
            });
        }
        self.latest
            .retain(|_, (_, _, kept)| kept.is_none_or(|k| now < k));
        due
    }

    /// Nothing waiting: no request to retransmit, no answer or provisional
    /// waiting for its acknowledgement, no response kept for repeats.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.answers.is_empty()
            && self.provisionals.is_empty()
            && self.latest.is_empty()
    }

    /// Requests, unacknowledged answers and kept responses held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.requests.len() + self.answers.len() + self.provisionals.len() + self.latest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PBX: &str = "10.0.0.2:5060";

    fn invite(branch: &str) -> Vec<u8> {
        format!(
            "INVITE sip:201@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={branch};rport\r\n\
             From: <sip:4420@10.0.0.5>;tag=gw\r\nTo: <sip:201@10.0.0.2>\r\nCall-ID: c1@pbxlink\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn response(code: &str, branch: &str, cseq: &str) -> Head {
        parse(
            format!(
                "SIP/2.0 {code}\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch={branch};rport\r\n\
                 From: <sip:4420@10.0.0.5>;tag=gw\r\nTo: <sip:201@10.0.0.2>;tag=p\r\nCall-ID: c1@pbxlink\r\n\
                 CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
        .head
    }

    fn sends(d: &[Due]) -> usize {
        d.iter().filter(|d| matches!(d, Due::Send(..))).count()
    }

    #[test]
    fn an_invite_is_retransmitted_until_a_provisional_then_acked_again_on_a_repeated_final() {
        let t0 = Instant::now();
        let mut r = Reliability::default();
        let to = UdpDest::trunk(PBX.parse().unwrap());
        r.request_sent(t0, 7, to, &invite("z9hG4bKi"));
        assert!(r.poll(t0 + Duration::from_millis(400)).is_empty());
        // Timer A: 0.5 s, then 1 s later, then 2 s later.
        assert_eq!(sends(&r.poll(t0 + Duration::from_millis(500))), 1);
        assert_eq!(sends(&r.poll(t0 + Duration::from_millis(1400))), 0);
        assert_eq!(sends(&r.poll(t0 + Duration::from_millis(1500))), 1);
        assert_eq!(sends(&r.poll(t0 + Duration::from_millis(3500))), 1);
        let ringing = response("180 Ringing", "z9hG4bKi", "1 INVITE");
        assert_eq!(r.response_received(t0, &ringing), Received::Pass);
        assert!(
            r.poll(t0 + Duration::from_secs(60)).is_empty(),
            "no Timer B once ringing"
        );
        // 486, its ACK (the call's), then the 486 again: ACKed again, absorbed.
        let busy = response("486 Busy Here", "z9hG4bKi", "1 INVITE");
        assert_eq!(r.response_received(t0, &busy), Received::Pass);
        let ack = invite("z9hG4bKi")
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK");
        r.request_sent(t0, 7, to, ack.as_bytes());
        assert_eq!(
            r.response_received(t0, &busy),
            Received::Absorb(Some((to, ack.into_bytes())))
        );
        r.poll(t0 + LINGER + Duration::from_secs(61));
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn an_unanswered_invite_times_out_and_a_bye_stops_at_its_final() {
        let t0 = Instant::now();
        let mut r = Reliability::default();
        let to = UdpDest::trunk(PBX.parse().unwrap());
        r.request_sent(t0, 3, to, &invite("z9hG4bKx"));
        let all: Vec<Due> = (1..=64)
            .flat_map(|i| r.poll(t0 + Duration::from_millis(500 * i)))
            .collect();
        assert_eq!(sends(&all), 6, "0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s");
        assert_eq!(all.last(), Some(&Due::InviteTimeout(3)));
        let bye = String::from_utf8(invite("z9hG4bKb"))
            .unwrap()
            .replace("INVITE sip", "BYE sip")
            .replace("1 INVITE", "2 BYE");
        r.request_sent(t0, 3, to, bye.as_bytes());
        let early: Vec<Due> = (1..=16)
            .flat_map(|i| r.poll(t0 + Duration::from_millis(500 * i)))
            .collect();
        assert_eq!(
            sends(&early),
            4,
            "Timer E: 0.5, 1.5, 3.5, 7.5 s (then every T2)"
        );
        let ok = response("200 OK", "z9hG4bKb", "2 BYE");
        assert_eq!(r.response_received(t0, &ok), Received::Pass);
        assert!(r.poll(t0 + Duration::from_secs(20)).is_empty());
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_reliable_provisional_is_retransmitted_until_its_prack_or_the_final() {
        let t0 = Instant::now();
        let mut r = Reliability::default();
        let to = UdpDest::trunk(PBX.parse().unwrap());
        let p183 = "SIP/2.0 183 Session Progress\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKp\r\nFrom: <sip:201@10.0.0.2>;tag=p\r\n\
                    To: <sip:4420@10.0.0.5>;tag=gw\r\nCall-ID: pbx-2\r\nCSeq: 1 INVITE\r\nRequire: 100rel\r\nRSeq: 1\r\nContent-Length: 0\r\n\r\n";
        r.response_sent(t0, 4, to, p183.as_bytes());
        assert_eq!(r.poll(t0 + T1), [Due::Send(to, p183.as_bytes().to_vec())]);
        assert_eq!(sends(&r.poll(t0 + 3 * T1)), 1, "then 1 s later");
        let prack = parse(
            b"PRACK sip:gw@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKq\r\nFrom: <sip:201@10.0.0.2>;tag=p\r\n\
              To: <sip:4420@10.0.0.5>;tag=gw\r\nCall-ID: pbx-2\r\nCSeq: 2 PRACK\r\nRAck: 1 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
        .head;
        r.request_received(&prack);
        assert_eq!(sends(&r.poll(t0 + Duration::from_secs(10))), 0);
        // Unacknowledged: given up after 64·T1 (the call hangs up).
        let p180 = p183
            .replace("183 Session Progress", "180 Ringing")
            .replace("RSeq: 1", "RSeq: 2");
        r.response_sent(t0, 4, to, p180.as_bytes());
        let all: Vec<Due> = (1..=70)
            .flat_map(|i| r.poll(t0 + Duration::from_millis(500 * i)))
            .collect();
        assert_eq!(all.last(), Some(&Due::PrackTimeout(4)));
        assert_eq!(
            sends(&all),
            6,
            "T1 doubling: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s"
        );
    }

    #[test]
    fn a_2xx_is_retransmitted_until_its_ack_and_the_latest_answer_outlives_the_call() {
        let t0 = Instant::now();
        let mut r = Reliability::default();
        let to = UdpDest::trunk(PBX.parse().unwrap());
        let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKp\r\nFrom: <sip:201@10.0.0.2>;tag=p\r\n\
                  To: <sip:4420@10.0.0.5>;tag=gw\r\nCall-ID: pbx-1\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n";
        r.response_sent(t0, 9, to, ok.as_bytes());
        assert_eq!(r.poll(t0 + T1), [Due::Send(to, ok.as_bytes().to_vec())]);
        assert_eq!(r.invite_again("pbx-1"), Some((to, ok.as_bytes().to_vec())));
        let ack = parse(
            b"ACK sip:gw@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa\r\nFrom: <sip:201@10.0.0.2>;tag=p\r\n\
              To: <sip:4420@10.0.0.5>;tag=gw\r\nCall-ID: pbx-1\r\nCSeq: 5 ACK\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
        .head;
        r.request_received(&ack);
        assert!(r.poll(t0 + Duration::from_secs(10)).is_empty());
        assert!(r.invite_again("pbx-1").is_some(), "kept 32 s");
        r.poll(t0 + LINGER + Duration::from_secs(1));
        assert_eq!(r.len(), 0);
        // Without an ACK: retransmitted, then given up (the call hangs up).
        r.response_sent(t0, 9, to, ok.as_bytes());
        let all: Vec<Due> = (1..=70)
            .flat_map(|i| r.poll(t0 + Duration::from_millis(500 * i)))
            .collect();
        assert_eq!(all.last(), Some(&Due::AckTimeout(9)));
        assert_eq!(
            sends(&all),
            10,
            "0.5, 1.5, 3.5, 7.5 s, then every 4 s to 32 s"
        );
    }
}

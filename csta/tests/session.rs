//! The session and the link driven through a fake clock against a scripted
//! PBX. The PBX here reads requests with plain string scanning and frames
//! its answers by hand: nothing of the client's codec is reused on this
//! side, so a mistake in it cannot be mirrored.

use pbxlink_csta::link::{CstaLink, LinkConfig, LinkOutput, ServerState};
use pbxlink_csta::message::{ConnectionId, EventKind, Service, SessionRefusal};
use pbxlink_csta::session::{
    CloseReason, CstaSession, RequestError, ServiceResult, SessionConfig, SessionOutput,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const ED3: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed3";
const ACS: &str = "http://www.ecma-international.org/standards/ecma-354/appl_session";

/// Frames `xml` the way the PBX does: 00 00, length, four digits.
fn frame(invoke: u16, xml: &str) -> Vec<u8> {
    let total = 8 + xml.len();
    let mut f = vec![0, 0, (total >> 8) as u8, total as u8];
    f.extend(format!("{invoke:04}").bytes());
    f.extend(xml.bytes());
    f
}

/// A request as the PBX sees it: invoke id, root element, whole text.
#[derive(Debug, Clone)]
struct Seen {
    invoke: u16,
    root: String,
    text: String,
}

fn seen(bytes: &[u8]) -> Seen {
    assert_eq!(&bytes[..2], &[0, 0]);
    assert_eq!(
        usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        bytes.len()
    );
    let invoke = std::str::from_utf8(&bytes[4..8]).unwrap().parse().unwrap();
    let text = String::from_utf8(bytes[8..].to_vec()).unwrap();
    let after_decl = text.split_once("?>").map_or(text.as_str(), |(_, r)| r);
    let root = after_decl
        .trim_start()
        .trim_start_matches('<')
        .split([' ', '>', '/'])
        .next()
        .unwrap()
        .to_owned();
    Seen { invoke, root, text }
}

/// Between two tags in `text`.
fn between<'a>(text: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = text.find(&open).unwrap() + open.len();
    let end = text[start..].find(&format!("</{tag}>")).unwrap();
    &text[start..start + end]
}

fn started(sid: &str, secs: u32) -> String {
    format!(
        "<StartApplicationSessionPosResponse xmlns=\"{ACS}\"><sessionID>{sid}</sessionID><actualSessionDuration>{secs}</actualSessionDuration></StartApplicationSessionPosResponse>"
    )
}

fn monitor_started(xref: &str) -> String {
    format!(
        "<MonitorStartResponse xmlns=\"{ED3}\"><monitorCrossRefID>{xref}</monitorCrossRefID></MonitorStartResponse>"
    )
}

fn delivered(xref: &str, call: &str, at: &str, from: &str) -> String {
    format!(
        "<DeliveredEvent xmlns=\"{ED3}\"><monitorCrossRefID>{xref}</monitorCrossRefID><connection><callID>{call}</callID><deviceID>{at}</deviceID></connection><alertingDevice><deviceIdentifier>{at}</deviceIdentifier></alertingDevice><callingDevice><deviceIdentifier>{from}</deviceIdentifier></callingDevice><calledDevice><deviceIdentifier>{at}</deviceIdentifier></calledDevice><localConnectionInfo>alerting</localConnectionInfo><cause>newCall</cause></DeliveredEvent>"
    )
}

fn config() -> SessionConfig {
    SessionConfig {
        login: Some(("cloudlink".into(), "S3cret&pw".into())),
        duration: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
        monitor_window: 2,
        ..SessionConfig::default()
    }
}

fn drain(s: &mut CstaSession) -> Vec<SessionOutput> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn sent(out: &[SessionOutput]) -> Vec<Seen> {
    out.iter()
        .filter_map(|o| match o {
            SessionOutput::Transmit(b) => Some(seen(b)),
            _ => None,
        })
        .collect()
}

/// A session up with session id `S1`.
fn up(t0: Instant) -> CstaSession {
    let mut s = CstaSession::new(config());
    s.handle_connected(t0);
    let out = drain(&mut s);
    let start = &sent(&out)[0];
    assert_eq!(start.root, "StartApplicationSession");
    assert_eq!(between(&start.text, "userName"), "cloudlink");
    assert_eq!(between(&start.text, "password"), "S3cret&amp;pw", "escaped");
    assert_eq!(between(&start.text, "requestedSessionDuration"), "60");
    s.handle_input(t0, &frame(start.invoke, &started("S1", 60)));
    assert!(s.is_up());
    s
}

#[test]
fn monitors_start_a_window_at_a_time_and_events_find_their_device() {
    let t0 = Instant::now();
    let mut s = up(t0);
    assert!(matches!(drain(&mut s)[0], SessionOutput::Up { .. }));
    for d in ["1000", "1001", "1002"] {
        s.monitor(t0, d);
    }
    let first = sent(&drain(&mut s));
    assert_eq!(first.len(), 2, "a window of two: {first:?}");
    assert!(first.iter().all(|r| r.root == "MonitorStart"));
    assert_eq!(between(&first[0].text, "deviceObject"), "1000");
    s.handle_input(t0, &frame(first[0].invoke, &monitor_started("x1000")));
    let next = drain(&mut s);
    assert!(next.contains(&SessionOutput::Monitoring {
        device: "1000".into(),
        result: Ok(())
    }));
    let third = sent(&next);
    assert_eq!(between(&third[0].text, "deviceObject"), "1002");
    // The PBX refuses one monitor: reported, retried a minute later.
    s.handle_input(
        t0,
        &frame(
            first[1].invoke,
            &format!("<CSTAErrorCode xmlns=\"{ED3}\"><operation>invalidMonitorObject</operation></CSTAErrorCode>"),
        ),
    );
    let refused = drain(&mut s);
    assert!(
        matches!(&refused[0], SessionOutput::Monitoring { device, result: Err(RequestError::Refused(_)) } if device == "1001")
    );
    s.handle_timeout(t0 + Duration::from_secs(61));
    let retry = sent(&drain(&mut s));
    assert_eq!(between(&retry[0].text, "deviceObject"), "1001");

    // Events reach the device whose monitor they came from; an unknown
    // monitor's are counted and dropped.
    s.handle_input(
        t0,
        &frame(9999, &delivered("x1000", "c1", "1000", "0612345678")),
    );
    s.handle_input(
        t0,
        &frame(9999, &delivered("nobody", "c2", "1009", "0612345678")),
    );
    let events = drain(&mut s);
    assert_eq!(events.len(), 1);
    let SessionOutput::Event { device, event } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (device.as_str(), &event.kind),
        ("1000", &EventKind::Delivered)
    );
    assert_eq!(s.counters().events_unmatched, 1);
    assert_eq!(s.monitored(), 1);
}

#[test]
fn every_request_ends_in_exactly_one_answer() {
    let t0 = Instant::now();
    let mut s = up(t0);
    drain(&mut s);
    let call = ConnectionId {
        call: "c1".into(),
        device: "1000".into(),
    };
    s.request(
        t0,
        1,
        Service::MakeCall {
            calling: "1000".into(),
            called: "1001".into(),
        },
    );
    s.request(t0, 2, Service::HoldCall(call.clone()));
    s.request(t0, 3, Service::RetrieveCall(call.clone()));
    s.request(t0, 4, Service::ClearConnection(call.clone()));
    s.request(t0, 5, Service::AnswerCall(call.clone()));
    let reqs = sent(&drain(&mut s));
    assert_eq!(
        reqs.iter().map(|r| r.root.as_str()).collect::<Vec<_>>(),
        [
            "MakeCall",
            "HoldCall",
            "RetrieveCall",
            "ClearConnection",
            "AnswerCall"
        ]
    );
    let ids: Vec<u16> = reqs.iter().map(|r| r.invoke).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 5, "distinct invoke ids: {ids:?}");
    assert!(ids.iter().all(|&i| (1..=9998).contains(&i)));
    // 1: a response. 2: an error code. 3: XML that does not parse.
    // 4: nothing, ever. 5: the wrong response.
    s.handle_input(t0, &frame(ids[0], &format!("<MakeCallResponse xmlns=\"{ED3}\"><callingDevice><callID>c9</callID><deviceID>1000</deviceID></callingDevice></MakeCallResponse>")));
    s.handle_input(t0, &frame(ids[1], &format!("<CSTAErrorCode xmlns=\"{ED3}\"><stateIncompatibility>invalidObjectState</stateIncompatibility></CSTAErrorCode>")));
    s.handle_input(
        t0,
        &frame(
            ids[2],
            "<RetrieveCallResponse><oops></RetrieveCallResponse>",
        ),
    );
    s.handle_input(
        t0,
        &frame(ids[4], &format!("<HoldCallResponse xmlns=\"{ED3}\"/>")),
    );
    let mut answers: HashMap<u64, Result<ServiceResult, RequestError>> = HashMap::new();
    let mut collect = |out: Vec<SessionOutput>| {
        for o in out {
            if let SessionOutput::Answer { id, result } = o {
                assert!(
                    answers.insert(id, result).is_none(),
                    "request {id} answered twice"
                );
            }
        }
    };
    collect(drain(&mut s));
    s.handle_timeout(t0 + Duration::from_secs(5));
    collect(drain(&mut s));
    // A late answer to 4 is counted, not delivered a second time.
    s.handle_input(
        t0,
        &frame(
            ids[3],
            &format!("<ClearConnectionResponse xmlns=\"{ED3}\"/>"),
        ),
    );
    collect(drain(&mut s));
    assert_eq!(s.counters().late_answers, 1);
    // 6: in flight when the connection drops. 7: asked while down.
    s.request(
        t0,
        6,
        Service::SetMessageWaiting {
            device: "1000".into(),
            on: true,
        },
    );
    drain(&mut s);
    s.handle_disconnected(t0, "connection reset by peer");
    s.request(t0, 7, Service::HoldCall(call));
    collect(drain(&mut s));

    assert_eq!(answers.len(), 7);
    assert_eq!(
        answers[&1],
        Ok(ServiceResult::Call(ConnectionId {
            call: "c9".into(),
            device: "1000".into()
        }))
    );
    assert!(
        matches!(&answers[&2], Err(RequestError::Refused(e)) if e.value == "invalidObjectState")
    );
    assert!(
        matches!(&answers[&3], Err(RequestError::BadAnswer(why)) if why.contains("not well-formed"))
    );
    assert_eq!(
        answers[&4],
        Err(RequestError::Timeout(Duration::from_secs(5)))
    );
    assert!(
        matches!(&answers[&5], Err(RequestError::BadAnswer(why)) if why.contains("HoldCallResponse"))
    );
    assert_eq!(
        answers[&6],
        Err(RequestError::ConnectionLost(
            "connection reset by peer".into()
        ))
    );
    assert!(matches!(answers[&7], Err(RequestError::NotConnected(_))));
    assert_eq!(s.counters().invalid_xml, 1);
}

#[test]
fn the_pbx_asking_after_us_gets_an_answer_under_its_own_invoke_id() {
    let t0 = Instant::now();
    let mut s = up(t0);
    drain(&mut s);
    s.handle_input(
        t0,
        &frame(
            4242,
            &format!(
                "<SystemStatus xmlns=\"{ED3}\"><systemStatus>normal</systemStatus></SystemStatus>"
            ),
        ),
    );
    s.handle_input(
        t0,
        &frame(
            4243,
            &format!("<GetDoNotDisturb xmlns=\"{ED3}\"><device>1000</device></GetDoNotDisturb>"),
        ),
    );
    let answers = sent(&drain(&mut s));
    assert_eq!(
        (answers[0].invoke, answers[0].root.as_str()),
        (4242, "SystemStatusResponse")
    );
    assert_eq!(
        (answers[1].invoke, answers[1].root.as_str()),
        (4243, "CSTAErrorCode")
    );
    assert_eq!(s.counters().requests_refused, 1);
}

#[test]
fn the_pbx_ending_the_session_is_acknowledged_and_closes_it() {
    let t0 = Instant::now();
    let mut s = up(t0);
    drain(&mut s);
    s.handle_input(
        t0,
        &frame(77, &format!("<StopApplicationSession xmlns=\"{ACS}\"><sessionID>S1</sessionID><sessionEndReason><definedEndReason>normal</definedEndReason></sessionEndReason></StopApplicationSession>")),
    );
    let out = drain(&mut s);
    let ack = sent(&out);
    assert_eq!(
        (ack[0].invoke, ack[0].root.as_str()),
        (77, "StopApplicationSessionPosResponse")
    );
    assert_eq!(
        out.last(),
        Some(&SessionOutput::Close(CloseReason::StoppedByPbx))
    );
    assert!(!s.is_up());
}

#[test]
fn the_session_is_kept_alive_and_closed_when_the_pbx_stops_answering() {
    let t0 = Instant::now();
    let mut s = up(t0);
    drain(&mut s);
    // Granted 60 s: reset at half.
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    s.handle_timeout(t0 + Duration::from_secs(30));
    let reset = &sent(&drain(&mut s))[0];
    assert_eq!(reset.root, "ResetApplicationSessionTimer");
    assert_eq!(between(&reset.text, "sessionID"), "S1");
    s.handle_input(
        t0,
        &frame(reset.invoke, &format!("<ResetApplicationSessionTimerPosResponse xmlns=\"{ACS}\"><actualSessionDuration>60</actualSessionDuration></ResetApplicationSessionTimerPosResponse>")),
    );
    assert!(drain(&mut s).is_empty());
    let t1 = t0 + Duration::from_secs(30);
    s.handle_timeout(t1 + Duration::from_secs(30));
    assert_eq!(sent(&drain(&mut s))[0].root, "ResetApplicationSessionTimer");
    s.handle_timeout(t1 + Duration::from_secs(35));
    assert_eq!(
        drain(&mut s),
        [SessionOutput::Close(CloseReason::Unanswered(
            "ResetApplicationSessionTimer"
        ))]
    );
    assert!(!s.is_up());
}

#[test]
fn broken_framing_closes_the_connection_with_the_reason() {
    let t0 = Instant::now();
    let mut s = up(t0);
    drain(&mut s);
    s.request(
        t0,
        1,
        Service::MakeCall {
            calling: "1000".into(),
            called: "1001".into(),
        },
    );
    drain(&mut s);
    s.handle_input(t0, &[0, 0, 0, 4]);
    let out = drain(&mut s);
    assert!(
        matches!(&out[0], SessionOutput::Answer { id: 1, result: Err(RequestError::ConnectionLost(why)) } if why.contains("length 4")),
        "{out:?}"
    );
    assert!(matches!(
        &out[1],
        SessionOutput::Close(CloseReason::Framing(_))
    ));
}

#[test]
fn invoke_ids_are_never_shared_by_two_requests_in_flight() {
    let t0 = Instant::now();
    let mut s = up(t0);
    drain(&mut s);
    for id in 0..9998 {
        s.request(
            t0,
            id,
            Service::MakeCall {
                calling: "1000".into(),
                called: "1".into(),
            },
        );
    }
    let reqs = sent(&drain(&mut s));
    let mut ids: Vec<u16> = reqs.iter().map(|r| r.invoke).collect();
    ids.sort_unstable();
    ids.dedup();
    // The start's id is free again: every id is in use, none twice.
    assert_eq!(ids.len(), 9998);
    s.request(
        t0,
        99_999,
        Service::MakeCall {
            calling: "1000".into(),
            called: "1".into(),
        },
    );
    assert!(drain(&mut s).contains(&SessionOutput::Answer {
        id: 99_999,
        result: Err(RequestError::Busy)
    }));
}

// ---- the link ----------------------------------------------------------

/// The scripted PBX behind every server of a link: answers starts and
/// monitors at once; services only when told.
struct Pbx {
    /// Per server: cross reference → device.
    monitors: Vec<HashMap<String, String>>,
    /// Requests not answered yet: (server, seen).
    held: Vec<(usize, Seen)>,
    refuse_login: bool,
    next_xref: u32,
    /// MonitorStop requests seen.
    stops: usize,
}

impl Pbx {
    fn new(servers: usize) -> Self {
        Self {
            monitors: vec![HashMap::new(); servers],
            held: Vec::new(),
            refuse_login: false,
            next_xref: 1,
            stops: 0,
        }
    }

    /// Runs the link's outputs against the PBX until quiet; returns what
    /// was not bytes (answers, events, state changes, connects, closes).
    fn run(&mut self, link: &mut CstaLink, now: Instant) -> Vec<LinkOutput> {
        let mut rest = Vec::new();
        while let Some(o) = link.poll_output() {
            match o {
                LinkOutput::Transmit(i, bytes) => {
                    let r = seen(&bytes);
                    let reply = match r.root.as_str() {
                        "StartApplicationSession" if self.refuse_login => Some(format!(
                            "<StartApplicationSessionNegResponse xmlns=\"{ACS}\"><errorCode><definedError>invalidApplicationInfo</definedError></errorCode></StartApplicationSessionNegResponse>"
                        )),
                        "StartApplicationSession" => Some(started(&format!("S{i}"), 120)),
                        "MonitorStart" => {
                            let xref = format!("m{}", self.next_xref);
                            self.next_xref += 1;
                            self.monitors[i]
                                .insert(xref.clone(), between(&r.text, "deviceObject").to_owned());
                            Some(monitor_started(&xref))
                        }
                        "MonitorStop" => {
                            self.stops += 1;
                            self.monitors[i].remove(between(&r.text, "monitorCrossRefID"));
                            Some(format!("<MonitorStopResponse xmlns=\"{ED3}\"/>"))
                        }
                        _ => {
                            self.held.push((i, r.clone()));
                            None
                        }
                    };
                    if let Some(x) = reply {
                        link.handle_input(now, i, &frame(r.invoke, &x));
                    }
                }
                LinkOutput::Connect(i) => {
                    self.monitors[i].clear();
                    link.handle_connected(now, i);
                }
                LinkOutput::Close(i) => {
                    self.monitors[i].clear();
                    rest.push(LinkOutput::Close(i));
                }
                other => rest.push(other),
            }
        }
        rest
    }

    fn devices_on(&self, i: usize) -> usize {
        self.monitors[i].len()
    }
}

fn link(servers: usize) -> CstaLink {
    CstaLink::new(LinkConfig {
        servers: (0..servers)
            .map(|i| format!("10.0.0.1:{}", 3211 + i))
            .collect(),
        session: SessionConfig {
            monitor_window: 16,
            ..config()
        },
        seed: 7,
        ..LinkConfig::default()
    })
}

#[test]
fn users_spread_across_servers_move_when_one_drops_and_come_home_after() {
    let t0 = Instant::now();
    let mut pbx = Pbx::new(2);
    let mut l = link(2);
    let devices: Vec<String> = (1000..1200).map(|n| n.to_string()).collect();
    l.set_devices(t0, devices.clone());
    pbx.run(&mut l, t0);
    assert_eq!(l.monitored(), 200);
    let (a, b) = (pbx.devices_on(0), pbx.devices_on(1));
    assert_eq!(a + b, 200);
    assert!(a > 60 && b > 60, "spread: {a} and {b}");
    assert_eq!(pbx.stops, 0, "at start each user waits for its own server");

    // A request in flight on server 1 when it drops.
    let on_1 = devices
        .iter()
        .find(|d| l.server_of(d) == Some(1))
        .unwrap()
        .clone();
    let id = l.request(
        t0,
        Service::MakeCall {
            calling: on_1.clone(),
            called: "0612345678".into(),
        },
    );
    pbx.run(&mut l, t0);
    assert_eq!(pbx.held.len(), 1);
    l.handle_closed(t0, 1, "connection reset by peer");
    let out = pbx.run(&mut l, t0);
    assert!(
        out.contains(&LinkOutput::Answer {
            id,
            result: Err(RequestError::ConnectionLost(
                "connection reset by peer".into()
            ))
        }),
        "{out:?}"
    );
    // Every user is monitored again, all on server 0.
    assert_eq!(pbx.devices_on(0), 200);
    assert_eq!(l.monitored(), 200);
    assert_eq!(l.server_of(&on_1), Some(0));
    let ServerState::Down { retry_at, .. } = l.status()[1].state.clone() else {
        panic!("server 1 is down")
    };
    let wait = retry_at - t0;
    assert!(
        wait >= Duration::from_millis(500) && wait <= Duration::from_secs(1),
        "jittered first back-off: {wait:?}"
    );
    // Its users' requests now go to server 0.
    let id2 = l.request(
        t0,
        Service::HoldCall(ConnectionId {
            call: "c".into(),
            device: on_1.clone(),
        }),
    );
    pbx.run(&mut l, t0);
    assert_eq!(pbx.held.last().unwrap().0, 0);
    let _ = id2;

    // Back after the back-off: users return home.
    l.handle_timeout(retry_at);
    let out = pbx.run(&mut l, retry_at);
    assert!(out.contains(&LinkOutput::ServerChanged(1, ServerState::Connecting)));
    assert_eq!((pbx.devices_on(0), pbx.devices_on(1)), (a, b));
    assert_eq!(l.monitored(), 200);
    assert_eq!(l.status()[1].sessions, 2);
}

#[test]
fn back_off_doubles_to_its_bound_and_a_wrong_login_waits_the_longest() {
    let t0 = Instant::now();
    let mut pbx = Pbx::new(1);
    let mut l = link(1);
    pbx.run(&mut l, t0);
    let mut now = t0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        l.handle_closed(now, 0, "connection refused");
        pbx.run(&mut l, now);
        let ServerState::Down { retry_at, reason } = l.status()[0].state.clone() else {
            panic!()
        };
        assert_eq!(reason, "connection refused");
        waits.push(retry_at - now);
        now = retry_at;
        l.handle_timeout(now);
        let out: Vec<LinkOutput> = std::iter::from_fn(|| l.poll_output()).collect();
        assert!(out.contains(&LinkOutput::Connect(0)));
    }
    for (k, w) in waits.iter().enumerate() {
        let nominal = Duration::from_secs(1 << k.min(5)).min(Duration::from_secs(30));
        assert!(
            *w >= nominal / 2 && *w <= nominal,
            "wait {k}: {w:?} against {nominal:?}"
        );
    }
    // Connected, but the login is refused: the reason is kept and the
    // next try is far off.
    pbx.refuse_login = true;
    l.handle_connected(now, 0);
    let out = pbx.run(&mut l, now);
    assert!(out.contains(&LinkOutput::Close(0)));
    let ServerState::Down { retry_at, reason } = l.status()[0].state.clone() else {
        panic!()
    };
    assert_eq!(reason, SessionRefusal::WrongCredential.to_string());
    assert!(retry_at - now >= Duration::from_secs(15));
}

#[test]
fn a_device_no_server_holds_is_answered_at_once() {
    let t0 = Instant::now();
    let mut pbx = Pbx::new(1);
    let mut l = link(1);
    l.set_devices(t0, ["1000".to_string()]);
    pbx.run(&mut l, t0);
    let id = l.request(
        t0,
        Service::MakeCall {
            calling: "2000".into(),
            called: "1".into(),
        },
    );
    let out = pbx.run(&mut l, t0);
    assert!(out.contains(&LinkOutput::Answer {
        id,
        result: Err(RequestError::UnknownDevice("2000".into()))
    }));
    // Taken off the list: its monitor stops.
    l.set_devices(t0, Vec::<String>::new());
    pbx.run(&mut l, t0);
    assert_eq!(pbx.devices_on(0), 0);
}

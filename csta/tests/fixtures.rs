//! Messages as PBXs send them (fixtures/*.xml, written from ECMA-323's
//! and ECMA-354's published forms and field captures: several namespace
//! editions, prefixed and unprefixed, escaped content, vendor private
//! data, unknown elements) and the framing as bytes (fixtures/*.hex, the
//! headers computed by hand, not by our encoder).

use pbxlink_csta::framing::{Decoder, FramingError};
use pbxlink_csta::message::{
    ConnectionId, Edition, ErrorCategory, EventKind, Incoming, SessionRefusal, decode, number,
};
use pbxlink_csta::xml;
use std::path::PathBuf;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap()
}

fn incoming(name: &str) -> Incoming {
    let root = xml::parse(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    decode(&root).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn hex(name: &str) -> Vec<u8> {
    String::from_utf8(read(name))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|b| u8::from_str_radix(&b, 16).unwrap())
        .collect()
}

fn conn(call: &str, device: &str) -> ConnectionId {
    ConnectionId {
        call: call.into(),
        device: device.into(),
    }
}

#[test]
fn session_answers_are_typed() {
    assert_eq!(
        incoming("start_session_pos_response.xml"),
        Incoming::SessionStarted {
            session_id: "469421A9".into(),
            duration_s: Some(60),
            edition: Some(Edition::Ed4),
        }
    );
    assert_eq!(
        incoming("start_session_neg_response.xml"),
        Incoming::SessionRefused(SessionRefusal::WrongCredential)
    );
    assert_eq!(
        incoming("start_session_neg_other.xml"),
        Incoming::SessionRefused(SessionRefusal::Other(
            "requestedProtocolVersionNotSupported".into()
        ))
    );
    assert_eq!(
        incoming("system_status_ed3.xml"),
        Incoming::SystemStatus {
            status: "normal".into()
        }
    );
}

#[test]
fn service_answers_are_typed_in_any_edition() {
    assert_eq!(
        incoming("monitor_start_response_ed3.xml"),
        Incoming::MonitorStarted {
            cross_ref: "99fda87c".into()
        }
    );
    assert_eq!(
        incoming("make_call_response_ed3.xml"),
        Incoming::Done {
            name: "MakeCallResponse".into(),
            call: Some(conn("0_99f261b4", "22343")),
        }
    );
    assert_eq!(
        incoming("consultation_call_response_ed5.xml"),
        Incoming::Done {
            name: "ConsultationCallResponse".into(),
            call: Some(conn("12", "1000")),
        }
    );
    assert_eq!(
        incoming("clear_connection_response_ed2_prefixed.xml"),
        Incoming::Done {
            name: "ClearConnectionResponse".into(),
            call: None,
        }
    );
    let Incoming::Error(e) = incoming("csta_error_code_ed3.xml") else {
        panic!("an error code")
    };
    assert_eq!(e.category, ErrorCategory::StateIncompatibility);
    assert_eq!(e.value, "invalidObjectState");
    assert!(e.to_string().contains("not in a state that allows this"));
}

#[test]
fn call_events_carry_their_connections_and_devices() {
    let ev = |name| match incoming(name) {
        Incoming::Event(e) => e,
        other => panic!("{name}: {other:?}"),
    };
    let e = ev("service_initiated_event_ed3.xml");
    assert_eq!(e.kind, EventKind::ServiceInitiated);
    assert_eq!(e.connection, Some(conn("0_99f261b4", "22343")));
    assert_eq!(e.subject.as_deref(), Some("22343"));
    assert_eq!(e.cause.as_deref(), Some("makeCall"));

    let e = ev("originated_event_ed3.xml");
    assert_eq!(e.kind, EventKind::Originated);
    assert_eq!(e.called.as_deref(), Some("18005551212"));

    // Rich device ids with escapes, vendor private data, a notRequired.
    let e = ev("delivered_event_ed4_rich.xml");
    assert_eq!(e.kind, EventKind::Delivered);
    assert_eq!(e.cross_ref, "1173673890");
    assert_eq!(
        e.connection,
        Some(conn("FF00010000000000EC6114647E570000", "3021061290002"))
    );
    assert_eq!(e.subject.as_deref(), Some("N<3021061290002>;noa=nk"));
    assert_eq!(number(e.subject.as_deref().unwrap()), "3021061290002");
    assert_eq!(number(e.calling.as_deref().unwrap()), "7868772298");
    assert_eq!(e.cause.as_deref(), Some("newCall"));

    let e = ev("established_event_ed2_prefixed.xml");
    assert_eq!(e.kind, EventKind::Established);
    assert_eq!(e.connection, Some(conn("4711", "1001")));
    assert_eq!(
        (e.subject.as_deref(), e.calling.as_deref()),
        (Some("1001"), Some("1000"))
    );

    let e = ev("held_event_ed3.xml");
    assert_eq!(
        (e.kind, e.subject.as_deref()),
        (EventKind::Held, Some("1000"))
    );
    let e = ev("retrieved_event_ed3.xml");
    assert_eq!(e.kind, EventKind::Retrieved);

    let e = ev("transfered_event_ed3.xml");
    assert_eq!(e.kind, EventKind::Transferred, "ECMA's one-r spelling");
    assert_eq!(e.connection, Some(conn("4711", "1000")));
    assert_eq!(e.secondary, Some(conn("4712", "1000")));
    assert_eq!(e.transferred_to.as_deref(), Some("1002"));
    assert_eq!(
        e.new_connections,
        [conn("4713", "1001"), conn("4713", "1002")]
    );

    let e = ev("connection_cleared_event_ed5.xml");
    assert_eq!(e.kind, EventKind::ConnectionCleared);
    assert_eq!(e.connection, Some(conn("4713", "1001")));
    assert_eq!(e.cause.as_deref(), Some("normalClearing"));

    let e = ev("failed_event_busy_ed3.xml");
    assert_eq!(
        (e.kind, e.cause.as_deref()),
        (EventKind::Failed, Some("busy"))
    );

    let e = ev("message_waiting_event_ed3.xml");
    assert_eq!(e.kind, EventKind::MessageWaiting);
    assert_eq!(
        (e.subject.as_deref(), e.message_waiting),
        (Some("22343"), Some(true))
    );

    let e = ev("vendor_event_unknown_ed3.xml");
    assert_eq!(e.kind, EventKind::Other("DoNotDisturbEvent".into()));
}

#[test]
fn invalid_xml_is_refused_with_a_reason() {
    let e = xml::parse(&read("invalid_unclosed.xml")).unwrap_err();
    assert!(e.to_string().contains("not well-formed"), "{e}");
    let e = xml::parse(&read("invalid_entity_expansion.xml")).unwrap_err();
    assert!(e.to_string().contains("DOCTYPE"), "{e}");
}

#[test]
fn a_captured_stream_splits_into_its_messages_however_it_is_read() {
    let stream = hex("stream_three_frames.hex");
    let want = [
        (2, "monitor_start_response_ed3.xml"),
        (9999, "delivered_event_ed4_rich.xml"),
        (3, "make_call_response_ed3.xml"),
    ];
    for chunk in [1, 2, 7, 8, 9, 100, 295, 296, stream.len()] {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            d.push(piece);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 3, "read {chunk} bytes at a time");
        for (f, (invoke, file)) in got.iter().zip(want) {
            assert_eq!(f.invoke.get(), invoke);
            assert_eq!(f.xml, read(file), "{file}");
        }
        assert_eq!(d.pending(), 0);
    }
}

#[test]
fn bad_headers_from_the_wire_are_named() {
    let mut d = Decoder::new();
    d.push(&hex("bad_length.hex"));
    assert_eq!(d.next_frame(), Err(FramingError::BadLength(6)));
    let mut d = Decoder::new();
    d.push(&hex("bad_invoke_id.hex"));
    assert_eq!(
        d.next_frame(),
        Err(FramingError::BadInvokeId("00a1".into()))
    );
    let mut d = Decoder::new();
    d.push(&hex("bad_marker_tls.hex"));
    let e = d.next_frame().unwrap_err();
    assert_eq!(e, FramingError::BadMarker(0x16, 0x03));
    assert!(e.to_string().contains("not speaking CSTA"), "{e}");
}

//! RFC 4475 (SIP torture test messages) against the UDP receive path:
//! datagram framing, parse and checks, and the rejection a request gets.
//!
//! The fixtures in `tests/rfc4475/` are the RFC's §3 messages, one file
//! each, named as in the RFC's archive. They follow the RFC's own text
//! conventions (§2): each line ends in CRLF on the wire (LF in the file),
//! and `<hex>…</hex>` stands for the octets it spells (the RFC's notation
//! for NUL, control characters, and binary bodies; whitespace inside is
//! ignored). They were transcribed from the RFC text; the RFC's
//! bit-exact archive (its Appendix A) was not reachable from the machine
//! that wrote them. Every valid message's Content-Length matches its body
//! byte for byte, which the test checks, so a transcription slip shows.

use pbxlink_sip::framing::{self, Frame};
use pbxlink_sip::{parse, reject};
use std::path::Path;

/// What the receive path must do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Parsed and handed on (the application may still refuse it).
    Accept,
    /// A request refused with this status.
    Reject(u16),
    /// Dropped without a response (a response cannot be answered).
    Drop,
}

use Expect::{Accept, Drop, Reject};

/// RFC section, file, and what the RFC asks of a receiver.
const CASES: &[(&str, &str, Expect)] = &[
    // 3.1.1 Valid messages: parsers must accept them.
    ("3.1.1.1", "wsinv", Accept),
    ("3.1.1.2", "intmeth", Accept),
    ("3.1.1.3", "esc01", Accept),
    ("3.1.1.4", "escnull", Accept),
    ("3.1.1.5", "esc02", Accept),
    ("3.1.1.6", "lwsdisp", Accept),
    ("3.1.1.7", "longreq", Accept),
    ("3.1.1.8", "dblreq", Accept),
    ("3.1.1.9", "semiuri", Accept),
    ("3.1.1.10", "transports", Accept),
    ("3.1.1.11", "mpart01", Accept),
    ("3.1.1.12", "unreason", Accept),
    ("3.1.1.13", "noreason", Accept),
    // 3.1.2 Invalid messages: requests get 400 (505 for the version),
    // responses are dropped.
    ("3.1.2.1", "badinv01", Reject(400)),
    ("3.1.2.2", "clerr", Reject(400)),
    ("3.1.2.3", "ncl", Reject(400)),
    ("3.1.2.4", "scalar02", Reject(400)),
    ("3.1.2.5", "scalarlg", Drop),
    ("3.1.2.6", "quotbal", Reject(400)),
    ("3.1.2.7", "ltgtruri", Reject(400)),
    ("3.1.2.8", "lwsruri", Reject(400)),
    ("3.1.2.9", "lwsstart", Reject(400)),
    ("3.1.2.10", "trws", Reject(400)),
    ("3.1.2.11", "escruri", Reject(400)),
    ("3.1.2.12", "baddate", Reject(400)),
    ("3.1.2.13", "regbadct", Reject(400)),
    ("3.1.2.14", "badaspec", Reject(400)),
    ("3.1.2.15", "baddn", Reject(400)),
    ("3.1.2.16", "badvers", Reject(505)),
    ("3.1.2.17", "mismatch01", Reject(400)),
    // The RFC prefers 501 but accepts 400.
    ("3.1.2.18", "mismatch02", Reject(400)),
    ("3.1.2.19", "bigcode", Drop),
    // 3.2 Transaction layer: parses; the branch has no identifier.
    ("3.2.1", "badbranch", Accept),
    // 3.3 Application layer: these parse; where the RFC names the
    // response a receiver gives, the stack gives it.
    // The RFC would like a 400, but a response must echo the request's
    // From, To and Call-ID (RFC 3261 §8.2.6.2), which this one lacks: no
    // valid response exists, so it is dropped and counted.
    ("3.3.1", "insuf", Drop),
    ("3.3.2", "unkscm", Reject(416)),
    ("3.3.3", "novelsc", Reject(416)),
    ("3.3.4", "unksm2", Accept),
    ("3.3.5", "bext01", Accept),
    ("3.3.6", "invut", Accept),
    ("3.3.7", "regaut01", Accept),
    ("3.3.8", "multi01", Reject(400)),
    ("3.3.9", "mcl01", Reject(400)),
    ("3.3.10", "bcast", Accept),
    ("3.3.11", "zeromf", Accept),
    ("3.3.12", "cparam01", Accept),
    ("3.3.13", "cparam02", Accept),
    ("3.3.14", "regescrt", Accept),
    ("3.3.15", "sdp01", Accept),
    // 3.4 Backward compatibility: RFC 2543 syntax is accepted.
    ("3.4.1", "inv2543", Accept),
];

/// The wire bytes of a fixture.
fn load(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/rfc4475/{name}.sip"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace('\n', "\r\n");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("<hex>") {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let after = &rest[start + 5..];
        let end = after.find("</hex>").expect("unterminated <hex>");
        let digits: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        for pair in digits.as_bytes().chunks(2) {
            let s = std::str::from_utf8(pair).unwrap();
            out.push(u8::from_str_radix(s, 16).expect("hex digits"));
        }
        rest = &after[end + 6..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// What the UDP receive path does with a datagram: the outcome and, when
/// accepted, how many bytes the message spans.
fn receive(datagram: &[u8]) -> (Expect, Option<usize>, String) {
    let frame = framing::datagram(datagram);
    let result = match frame {
        Ok(Frame::Message(m)) => parse(&m).map(|_| m.len()),
        Ok(other) => panic!("not a message: {other:?}"),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(len) => (Accept, Some(len), String::new()),
        Err(err) => match reject::response(datagram, &err) {
            Some(resp) => {
                let text = String::from_utf8_lossy(&resp).into_owned();
                let code = text[8..11].parse().expect("status code");
                let mut detail = text.lines().next().unwrap_or_default().to_owned();
                // Our response parses, unless it fails only on a field it
                // must echo from the request (Via, From, To, CSeq).
                if let Err(e) = parse(&resp) {
                    if e != err {
                        detail = format!("{detail}; the response itself fails: {e}");
                        return (Drop, None, detail);
                    }
                }
                (Reject(code), None, detail)
            }
            None => (Drop, None, err.to_string()),
        },
    }
}

#[test]
fn every_rfc4475_message_gets_what_the_rfc_asks() {
    let mut wrong = Vec::new();
    for &(section, name, want) in CASES {
        let bytes = load(name);
        let (got, len, detail) = receive(&bytes);
        if got != want {
            wrong.push(format!(
                "§{section} {name}: want {want:?}, got {got:?} {detail}"
            ));
        } else if want == Accept && name != "dblreq" && name != "inv2543" {
            // Content-Length covers the body exactly: the transcription is whole.
            assert_eq!(len, Some(bytes.len()), "§{section} {name}: body length");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn fixtures_keep_the_octets_the_rfc_tests() {
    // Octets an editor or a transcription would lose.
    assert!(load("noreason").starts_with(b"SIP/2.0 100 \r\n"));
    assert!(load("trws").starts_with(b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n"));
    let intmeth = load("intmeth");
    assert!(
        intmeth
            .windows(20)
            .any(|w| w == b"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f".as_slice())
    );
    let mpart = load("mpart01");
    assert!(mpart.contains(&0) && mpart.windows(2).any(|w| w == [0x30, 0x82]));
    // dblreq: the INVITE after the REGISTER's empty body is noise.
    let dbl = load("dblreq");
    let Ok(Frame::Message(m)) = framing::datagram(&dbl) else {
        panic!("dblreq frames")
    };
    assert!(m.len() < dbl.len() && m.ends_with(b"Content-Length: 0\r\n\r\n"));
    assert_eq!(CASES.len(), 49, "every message of RFC 4475 §3");
}

#[test]
fn valid_messages_frame_the_same_on_a_stream() {
    // Over TCP/TLS the same messages arrive in arbitrary pieces.
    for &(section, name, want) in CASES {
        if want != Accept || name == "dblreq" || name == "inv2543" {
            continue; // no Content-Length (inv2543) or a UDP-only case (dblreq)
        }
        let bytes = load(name);
        let mut framer = framing::StreamFramer::new();
        for chunk in bytes.chunks(7) {
            framer.push(chunk).unwrap();
        }
        match framer.next_frame() {
            Some(Ok(Frame::Message(m))) => {
                assert_eq!(m, bytes, "§{section} {name}");
                assert!(parse(&m).is_ok(), "§{section} {name}");
            }
            other => panic!("§{section} {name}: {other:?}"),
        }
        assert_eq!(framer.pending(), 0, "§{section} {name}");
    }
}

//! The B2BUA call core on arbitrary message sequences after a valid INVITE
//! from either side, with or without an offer: no panic; every message it writes parses; the relay
//! goes up at most once and down only after it went up; the call ends at
//! most once; retry timers (glare) fire when the input says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_b2bua::call::{Call, Local, Output, Plan};
use pbxlink_b2bua::digits::DigitRule;
use pbxlink_b2bua::leg::Side;
use pbxlink_sip::digest::Credentials;
use pbxlink_sip::parse;
use pbxlink_sip::sdp::Crypto;

const INVITE: &str = "INVITE sip:4420@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKf1\r\n\
From: <sip:201@10.0.0.2>;tag=ft\r\nTo: <sip:4420@10.0.0.5>\r\nCall-ID: fuzz-1\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:201@10.0.0.2:5060>\r\nContent-Type: application/sdp\r\nContent-Length: ";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/SAVP 8\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk\r\n";

fn plan(first: u8) -> Plan {
    let local = |via: &str, scheme| Local {
        via: via.into(),
        contact: "sip:gw@10.0.0.5".into(),
        domain: "example.com".into(),
        scheme,
    };
    Plan {
        id: "fz".into(),
        pbx: local("SIP/2.0/UDP 10.0.0.5:5060", "sip"),
        cloud: local("SIP/2.0/TLS 203.0.113.5:5061", "sips"),
        lan_media: "10.0.0.5:28000".parse().unwrap(),
        cloud_media: "203.0.113.5:30000".parse().unwrap(),
        keys: vec![
            Crypto::parse("1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk")
                .unwrap(),
        ],
        session_id: 1,
        // Bit 2 of the first byte: a digit rule; bit 3: credentials for a
        // PBX that challenges.
        dial: if first & 4 != 0 {
            DigitRule {
                strip: "9".into(),
                prepend: "+33".into(),
            }
        } else {
            DigitRule::default()
        },
        pbx_credentials: (first & 8 != 0).then(|| Credentials {
            username: "officelinkmv5000".into(),
            password: "fuzz-password".to_owned().into(),
        }),
        asserted_identity: (first & 16 != 0).then(|| "sip:1000@pbx.example".into()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let a = if first & 1 == 0 { Side::Pbx } else { Side::Cloud };
    let invite = format!("{INVITE}{}\r\n\r\n{SDP}", SDP.len());
    let head = parse(invite.as_bytes()).unwrap().head;
    // Bit 1: a delayed offer (no SDP in the INVITE).
    let body: &[u8] = if first & 2 == 0 { SDP.as_bytes() } else { b"" };
    let Ok(mut call) = Call::incoming(a, &head, body, plan(first)) else {
        return;
    };
    let (mut up, mut ended, mut timer) = (false, false, false);
    // Messages separated by a NUL; the byte before each says its side
    // (bit 0: the cloud; seeds use 0x04 for the PBX, as 0 would separate).
    for chunk in rest.split(|&b| b == 0) {
        let Some((&side, msg)) = chunk.split_first() else {
            continue;
        };
        // Bit 1 of the side byte: the retry timer fires first (if one was asked for).
        if side & 2 != 0 && timer {
            timer = false;
            call.on_retry_timer();
        }
        let side = if side & 1 == 0 { Side::Pbx } else { Side::Cloud };
        if let Ok(p) = parse(msg) {
            let body_at = msg.windows(4).position(|w| w == b"\r\n\r\n").map_or(msg.len(), |i| i + 4);
            if p.head.start_line.starts_with("SIP/") {
                call.on_response(side, &p.head, &msg[body_at..]);
            } else {
                call.on_request(side, &p.head, &msg[body_at..]);
            }
        }
        while let Some(o) = call.poll_output() {
            match o {
                Output::Request { bytes, .. } | Output::Response { bytes, .. } => {
                    assert!(parse(&bytes).is_ok(), "{}", String::from_utf8_lossy(&bytes));
                }
                Output::RelayUp(_) => {
                    assert!(!up, "relay up twice");
                    up = true;
                }
                Output::RelayDirection { .. } | Output::RelayUpdate { .. } => {
                    assert!(up, "a change to a relay that is not up");
                }
                Output::RelayDown => {
                    assert!(up, "relay down before up");
                    up = false;
                }
                Output::Ended(_) => {
                    assert!(!ended, "ended twice");
                    ended = true;
                }
                Output::SessionTimer { expires } => {
                    assert!(expires.as_secs() >= 90, "under Min-SE");
                }
                Output::RetryTimer { min, max } => {
                    assert!(min <= max, "an empty retry window");
                    timer = true;
                }
            }
        }
    }
});

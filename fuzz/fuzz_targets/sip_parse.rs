//! SIP datagram framing, parsing, transaction matching and the rejection
//! response on arbitrary bytes: no panic; whatever is rejected and answered
//! gets a response that parses, unless it fails only on a field it must
//! echo from the request (RFC 3261 §8.2.6.2: Via, From, To, CSeq).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::framing::{self, Frame};
use pbxlink_sip::transaction::{cancel_target, client_key, server_key};
use pbxlink_sip::{ParseError, parse, reject};

fuzz_target!(|data: &[u8]| {
    let Ok(Frame::Message(msg)) = framing::datagram(data) else {
        return;
    };
    match parse(&msg) {
        Ok(p) => {
            let _ = p.head.to_wire();
            let _ = (server_key(&p.head), client_key(&p.head), cancel_target(&p.head));
        }
        Err(e) => {
            if let Some(resp) = reject::response(&msg, &e) {
                match parse(&resp) {
                    Ok(_)
                    | Err(ParseError::BadField("Via" | "From" | "To"))
                    | Err(ParseError::BadCSeq | ParseError::HeaderTooLong) => {}
                    Err(other) => panic!(
                        "our own response fails on {other}: {:?}",
                        String::from_utf8_lossy(&resp)
                    ),
                }
            }
        }
    }
});

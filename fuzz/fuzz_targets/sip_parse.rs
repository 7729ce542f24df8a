//! SIP datagram framing, parsing and the rejection response on arbitrary
//! bytes: no panic; whatever is rejected and answered gets a response that
//! itself parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::framing::{self, Frame};
use pbxlink_sip::{parse, reject};

fuzz_target!(|data: &[u8]| {
    let Ok(Frame::Message(msg)) = framing::datagram(data) else {
        return;
    };
    match parse(&msg) {
        Ok(p) => {
            let _ = p.head.to_wire();
        }
        Err(e) => {
            if let Some(resp) = reject::response(&msg, &e) {
                assert!(
                    parse(&resp).is_ok(),
                    "our own 400 does not parse: {:?}",
                    String::from_utf8_lossy(&resp)
                );
            }
        }
    }
});

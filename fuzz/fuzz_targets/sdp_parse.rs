//! SDP parsing, writing, per-leg rewriting and redaction on arbitrary
//! bytes: no panic; what parses writes back to something that parses to the
//! same description; a rewritten description parses; redacted text keeps
//! no key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::sdp::{self, Crypto, Direction, Origin};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let red = sdp::redact(text);
        assert!(!red.contains("inline:") || red.matches("inline:").count() == red.matches("inline:[redacted]").count());
    }
    let Ok(parsed) = sdp::parse(data) else {
        return;
    };
    let wire = parsed.to_string();
    assert_eq!(sdp::parse(wire.as_bytes()).as_ref(), Ok(&parsed), "{wire:?}");
    let origin = Origin {
        username: "pbxlink".into(),
        session_id: 1,
        version: 2,
        address: "192.0.2.1".parse().unwrap(),
    };
    let key = Crypto::parse("1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk");
    let leg = parsed.for_leg(
        &origin,
        "192.0.2.1".parse().unwrap(),
        30000,
        "RTP/SAVP",
        key.as_slice(),
        Direction::SendRecv,
    );
    assert!(sdp::parse(leg.to_string().as_bytes()).is_ok());
});

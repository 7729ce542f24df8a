//! RTP header parsing and telephone-event recognition on arbitrary bytes:
//! no panic, and every accepted header's ranges lie inside the packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_dataplane::{rtp, telephone_event};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = rtp::parse_header(data) {
        assert!(h.payload_offset + h.payload_len <= data.len());
    }
    if let Ok(h) = rtp::parse(data) {
        let payload = h.payload(data);
        assert!(h.payload_offset + h.payload_len + h.padding_len == data.len());
        let _ = h.csrcs(data).count();
        let _ = telephone_event::parse(payload);
    }
    let _ = rtp::looks_like_rtcp(data);
});

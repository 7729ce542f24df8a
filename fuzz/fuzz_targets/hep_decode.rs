//! The HEP3 decoder on arbitrary bytes: no panic; a packet it reads
//! encodes again and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_hep::{Packet, Transport, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(d) = decode(data) else {
        return;
    };
    if d.src.is_ipv4() != d.dst.is_ipv4() {
        return;
    }
    let p = Packet {
        src: d.src,
        dst: d.dst,
        transport: if d.ip_proto == 6 {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        secs: d.secs,
        usecs: d.usecs,
        proto_type: d.proto_type,
        capture_id: d.capture_id,
        auth_key: d.auth_key.as_deref(),
        correlation: d.correlation.as_deref(),
        payload: &d.payload,
    };
    let mut out = Vec::new();
    if encode(&p, &mut out).is_ok() {
        let again = decode(&out).expect("what was encoded reads back");
        assert_eq!((again.src, again.dst, &again.payload), (d.src, d.dst, &d.payload));
        assert_eq!((again.correlation, again.auth_key), (d.correlation, d.auth_key));
    }
});

//! The AF_XDP fast path's frame parser on arbitrary frames: no panic; what
//! it returns lies inside the frame; writing the reply's headers in front
//! of that payload gives a frame that parses back to the same payload with
//! the addresses swapped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_dataplane::xdp::frame::{self, HEADERS, Route};

fuzz_target!(|data: &[u8]| {
    let Some(got) = frame::parse(data) else {
        return;
    };
    assert_eq!(got.payload, HEADERS);
    assert!(got.payload + got.len <= data.len());
    let mut buf = data.to_vec();
    let route = Route {
        src_mac: got.dst_mac,
        dst_mac: got.src_mac,
        src: got.dst,
        dst: got.src,
        tos: data[15],
    };
    let n = frame::write(&mut buf, &route, got.len).expect("the payload fits where it was");
    let back = frame::parse(&buf[..n]).expect("a written frame parses");
    assert_eq!((back.src, back.dst), (got.dst, got.src));
    assert_eq!(back.len, got.len);
    assert_eq!(
        &buf[HEADERS..HEADERS + got.len],
        &data[HEADERS..HEADERS + got.len]
    );
});

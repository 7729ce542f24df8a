//! The PBX keep-alive watch driven by arbitrary time steps and responses:
//! no panic; it never sends anything but OPTIONS; its state changes only
//! between Up and Lost, never twice to the same; a response to one of its
//! OPTIONS is always taken as its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::keepalive::{Liveness, PbxWatch, WatchOutput};
use pbxlink_sip::parse;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut w = PbxWatch::new(
        t0,
        Duration::from_secs(5),
        "10.0.0.2:5060".parse().unwrap(),
        "SIP/2.0/UDP 10.0.0.5:5060",
        data.first().is_some_and(|b| b & 1 == 1),
        "fz",
    );
    let mut last_sent: Option<Vec<u8>> = None;
    let mut state = Liveness::Unknown;
    let mut chunks = data.split(|&b| b == 0xff);
    while let Some(chunk) = chunks.next() {
        match chunk.first() {
            Some(&step) if chunk.len() == 1 => {
                now += Duration::from_millis(u64::from(step) * 97);
                w.handle_timeout(now);
            }
            Some(&b'!') => {
                // Answer the newest OPTIONS (any status the byte picks).
                if let Some(sent) = &last_sent {
                    let h = parse(sent).expect("its own OPTIONS parse").head;
                    let code = 100 + u16::from(chunk.get(1).copied().unwrap_or(0)) % 600;
                    let text = format!(
                        "SIP/2.0 {code} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=p\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                        h.get("Via").unwrap(),
                        h.get("From").unwrap(),
                        h.get("To").unwrap(),
                        h.get("Call-ID").unwrap(),
                        h.get("CSeq").unwrap()
                    );
                    let r = parse(text.as_bytes()).unwrap().head;
                    assert!(w.handle_response(now, &r));
                }
            }
            _ => {
                if let Ok(p) = parse(chunk) {
                    let _ = w.handle_response(now, &p.head);
                }
            }
        }
        while let Some(o) = w.poll_output() {
            match o {
                WatchOutput::Transmit(b) => {
                    assert!(b.starts_with(b"OPTIONS sip:10.0.0.2:5060 SIP/2.0\r\n"));
                    last_sent = Some(b);
                }
                WatchOutput::Changed(s) => {
                    assert_ne!(s, state, "a change changes something");
                    assert_ne!(s, Liveness::Unknown);
                    state = s;
                }
            }
        }
    }
});

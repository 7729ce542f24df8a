//! The LAN-to-cloud direction as a state machine: a sequence of arbitrary
//! packets with arbitrary arrival gaps (time is an input) through
//! validation, payload-type mapping, continuity renumbering and protect.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_dataplane::ptmap::PayloadTypeMap;
use pbxlink_dataplane::srtp::{Suite, TRAILER_ROOM};
use pbxlink_dataplane::{DirectionConfig, LanToCloud, MasterKey};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let suite = Suite::AesCm128HmacSha1_80;
    let key: Vec<u8> = (0..suite.master_len() as u8).collect();
    let key = MasterKey::from_bytes(suite, &key).unwrap();
    let cfg = DirectionConfig {
        payload_types: PayloadTypeMap::only(&[(0, 0), (8, 8), (101, 96)]),
        telephone_event_pt: Some(101),
        clock_rate_hz: 8000,
    };
    let mut up = LanToCloud::new(suite, &key, cfg).unwrap();
    let mut now = Instant::now();
    let mut buf = vec![0u8; 2048];
    // Records: gap in ms (1 byte), length (1 byte), bytes; RTCP when the
    // gap's top bit is set.
    let mut rest = data;
    while let [gap, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        now += Duration::from_millis((*gap & 0x7f) as u64 * 7);
        buf[..n].copy_from_slice(&tail[..n]);
        let out = if gap & 0x80 == 0 {
            up.rtp(now, &mut buf, n)
        } else {
            up.rtcp(&mut buf, n)
        };
        if let Ok(m) = out {
            assert!(m <= n + TRAILER_ROOM);
        }
        rest = &tail[n..];
    }
});

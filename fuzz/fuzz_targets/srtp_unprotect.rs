//! The cloud-to-LAN direction (header checks, libsrtp unprotect, RTP/RTCP
//! validation) on arbitrary bytes, plus the same bytes after a genuine
//! protect so the fuzzer also reaches the post-authentication parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_dataplane::srtp::{Role, SrtpContext, Suite, TRAILER_ROOM};
use pbxlink_dataplane::{CloudToLan, DirectionConfig, MasterKey};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let suite = Suite::ALL[selector as usize % 3];
    let key: Vec<u8> = (0..suite.master_len() as u8).collect();
    let key = MasterKey::from_bytes(suite, &key).unwrap();
    let cfg = DirectionConfig {
        telephone_event_pt: Some(101),
        ..DirectionConfig::default()
    };
    let mut down = CloudToLan::new(suite, &key, cfg).unwrap();
    let now = Instant::now();
    let mut buf = vec![0u8; packet.len() + TRAILER_ROOM];

    buf[..packet.len()].copy_from_slice(packet);
    let _ = if selector & 0x80 == 0 {
        down.rtp(now, &mut buf, packet.len())
    } else {
        down.rtcp(&mut buf, packet.len())
    };

    // Authenticated garbage: protect the raw bytes (libsrtp only needs a
    // fixed header it can read), then feed them through the direction.
    if packet.len() >= 12 && packet[0] >> 6 == 2 {
        let mut tx = SrtpContext::new(suite, &key, Role::Protect).unwrap();
        buf[..packet.len()].copy_from_slice(packet);
        let protected = if selector & 0x80 == 0 {
            pbxlink_dataplane::rtp::parse_header(packet)
                .ok()
                .and_then(|_| tx.protect_rtp(&mut buf, packet.len()).ok())
        } else if packet.len() >= 8 {
            tx.protect_rtcp(&mut buf, packet.len()).ok()
        } else {
            None
        };
        if let Some(n) = protected {
            let _ = if selector & 0x80 == 0 {
                down.rtp(now, &mut buf, n)
            } else {
                down.rtcp(&mut buf, n)
            };
        }
    }
});

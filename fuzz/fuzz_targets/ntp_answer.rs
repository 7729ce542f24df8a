//! The SNTP answer parser on arbitrary datagrams (the first 8 bytes are
//! the request's stamp): no panic; an answer it takes came from a server
//! and echoes the stamp, and its offset and delay are numbers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::ntp::answer;

fuzz_target!(|data: &[u8]| {
    let Some((stamp, msg)) = data.split_first_chunk::<8>() else {
        return;
    };
    let sent = 3_900_000_000.0;
    if let Ok(a) = answer(msg, *stamp, sent, sent + 0.01) {
        assert_eq!(msg[0] & 0x07, 4);
        assert_eq!(&msg[24..32], stamp);
        assert!(a.offset.is_finite() && a.delay.is_finite());
        assert!((1..=15).contains(&a.stratum));
    }
});

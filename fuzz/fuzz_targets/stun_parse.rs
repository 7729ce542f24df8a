//! The STUN Binding response parser on arbitrary datagrams (the first 12
//! bytes name the transaction awaited): no panic; an address it returns
//! came from a success response to that transaction.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_sip::stun::mapped_address;

fuzz_target!(|data: &[u8]| {
    let Some((id, msg)) = data.split_first_chunk::<12>() else {
        return;
    };
    if mapped_address(msg, *id).is_ok() {
        assert_eq!(&msg[..2], &[0x01, 0x01]);
        assert_eq!(&msg[8..20], id);
    }
});

//! Compound RTCP validation, iteration, report blocks and in-place source
//! rewriting on arbitrary bytes: no panic, packets tile the compound
//! exactly, every counted report block is read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pbxlink_dataplane::rtcp;

fuzz_target!(|data: &[u8]| {
    if rtcp::validate(data).is_ok() {
        let total: usize = rtcp::Packets::new(data).map(|p| p.unwrap().len).sum();
        assert_eq!(total, data.len());
        for p in rtcp::Packets::new(data).flatten() {
            let _ = p.sender_ssrc(data);
            let _ = p.sr_ntp_middle(data);
            let _ = p.voip_metrics(data);
            let blocks = p.report_blocks(data).count();
            if matches!(p.packet_type, rtcp::SR | rtcp::RR) {
                // Validation guarantees room for every block counted.
                assert_eq!(blocks, p.count as usize);
            }
        }
        let mut copy = data.to_vec();
        rtcp::rewrite_source(&mut copy, 1, 2, 3);
        assert_eq!(copy.len(), data.len());
    }
    // Rewriting is only called on validated compounds, but must not panic
    // on anything.
    let mut copy = data.to_vec();
    rtcp::rewrite_source(&mut copy, 0, 1, 1);
});

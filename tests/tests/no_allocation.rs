//! The media core allocates nothing per packet: after set-up and warm-up,
//! 60,000 packets per suite through both directions (RTP and RTCP, with a
//! transfer jump, DTMF and drops) leave the global allocator untouched,
//! and so does reading that RTCP for each leg's quality (`RtcpWatch`:
//! reception reports and XR VoIP metrics).
//!
//! One test in this binary, so no other test thread allocates meanwhile.

use pbxlink_dataplane::quality::RtcpWatch;
use pbxlink_dataplane::srtp::Suite;
use pbxlink_dataplane::{CloudToLan, DirectionConfig, LanToCloud};
use pbxlink_tests::counting_alloc::{Counting, allocations};
use pbxlink_tests::{corpus, test_key};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_packets_allocate_nothing() {
    let rtp = corpus::rtp_stream(1_000);
    let rtcp = corpus::rtcp_stream(50);
    let t0 = Instant::now();
    for suite in Suite::ALL {
        let cfg = DirectionConfig {
            telephone_event_pt: Some(corpus::TELEPHONE_EVENT_PT),
            ..DirectionConfig::default()
        };
        let gw = test_key(suite, 1);
        let cloud = test_key(suite, 2);
        let mut up = LanToCloud::new(suite, &gw, cfg.clone()).unwrap();
        let mut cloud_rx = CloudToLan::new(suite, &gw, cfg.clone()).unwrap();
        let mut cloud_tx = LanToCloud::new(suite, &cloud, cfg.clone()).unwrap();
        let mut down = CloudToLan::new(suite, &cloud, cfg).unwrap();
        let mut buf = vec![0u8; 2048];
        let mut dup = vec![0u8; 2048];
        let mut watch = RtcpWatch::default();
        let mut relay = |round: u32, count: bool| {
            let before = allocations();
            for (i, p) in rtp.iter().enumerate() {
                let now = t0 + Duration::from_millis(20 * (round as u64 * 1_000 + i as u64));
                // Each round replays the corpus 30,000 sequence numbers
                // back: a transfer-style jump the continuity renumbers.
                buf[..p.len()].copy_from_slice(p);
                let n = up.rtp(now, &mut buf, p.len()).unwrap();
                cloud_rx.rtp(now, &mut buf, n).unwrap();
                buf[..p.len()].copy_from_slice(p);
                let n = cloud_tx.rtp(now, &mut buf, p.len()).unwrap();
                // Every tenth packet arrives twice: a counted replay drop.
                dup[..n].copy_from_slice(&buf[..n]);
                down.rtp(now, &mut buf, n).unwrap();
                if i % 10 == 0 {
                    assert!(down.rtp(now, &mut dup, n).is_err());
                }
            }
            for p in &rtcp {
                let now = t0 + Duration::from_secs(round as u64);
                watch.from_pbx(now, p);
                buf[..p.len()].copy_from_slice(p);
                let n = up.rtcp(&mut buf, p.len()).unwrap();
                let n = cloud_rx.rtcp(&mut buf, n).unwrap();
                watch.from_cloud(now, &buf[..n]);
            }
            let after = allocations();
            if count {
                assert_eq!(
                    after - before,
                    0,
                    "{suite}: allocations during round {round}"
                );
            }
        };
        relay(0, false);
        for round in 1..=20 {
            relay(round, true);
        }
        assert_eq!(up.counters().rtp_out, 21_000);
        let seen = |q: pbxlink_dataplane::quality::LegQuality| q.reports.min(q.xr_reports);
        assert!(seen(watch.pbx.quality()) > 0 && seen(watch.cloud.quality()) > 0);
        assert!(down.counters().telephone_events > 0);
        assert_eq!(
            down.counters().drops.total(),
            21 * 100,
            "the duplicates were counted"
        );
    }
}

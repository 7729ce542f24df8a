//! Interop with libsrtp as python3-pylibsrtp drives it: pbxlink's contexts and
//! directions against a separate libsrtp session in another process, both
//! ways, for every suite.

use pbxlink_dataplane::srtp::{Role, SrtpContext, Suite};
use pbxlink_dataplane::{CloudToLan, DirectionConfig, DropReason, LanToCloud};
use pbxlink_tests::pylibsrtp::{Op, run};
use pbxlink_tests::{corpus, key_b64, test_key, transform};
use std::time::{Duration, Instant};

const PACKETS: usize = 1200;

#[test]
fn rtp_protected_by_pbxlink_unprotects_at_libsrtp_identically() {
    let stream = corpus::rtp_stream(PACKETS);
    for suite in Suite::ALL {
        let key = test_key(suite, 1);
        let mut tx = SrtpContext::new(suite, &key, Role::Protect).unwrap();
        let srtp: Vec<_> = stream
            .iter()
            .map(|p| transform(p, |b, n| tx.protect_rtp(b, n)).unwrap())
            .collect();
        let back = run(Op::Unprotect, suite.sdp_name(), &key_b64(&key), &srtp);
        for (i, (got, want)) in back.iter().zip(&stream).enumerate() {
            assert_eq!(
                got, want,
                "{suite}: packet {i} differs after libsrtp unprotect"
            );
        }
        // Same key, same packets: libsrtp must have produced the same bytes.
        let theirs = run(Op::Protect, suite.sdp_name(), &key_b64(&key), &stream);
        assert_eq!(
            theirs, srtp,
            "{suite}: protect output differs from libsrtp's"
        );
    }
}

#[test]
fn rtp_protected_by_libsrtp_unprotects_at_pbxlink_identically() {
    let stream = corpus::rtp_stream(PACKETS);
    let t0 = Instant::now();
    for suite in Suite::ALL {
        let key = test_key(suite, 2);
        let srtp = run(Op::Protect, suite.sdp_name(), &key_b64(&key), &stream);
        let cfg = DirectionConfig {
            telephone_event_pt: Some(corpus::TELEPHONE_EVENT_PT),
            ..DirectionConfig::default()
        };
        let mut down = CloudToLan::new(suite, &key, cfg).unwrap();
        for (i, (s, want)) in srtp.iter().zip(&stream).enumerate() {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let got = transform(s, |b, n| down.rtp(now, b, n)).unwrap();
            assert_eq!(&got, want, "{suite}: packet {i}");
        }
        let c = down.counters();
        assert_eq!((c.rtp_out, c.drops.total()), (PACKETS as u64, 0));
        assert!(c.telephone_events > 0 && c.telephone_event_ends > 0);
        assert_eq!(down.stats().ssrc_changes(), 1);
    }
}

#[test]
fn rtcp_and_srtcp_interoperate_both_ways() {
    let stream = corpus::rtcp_stream(60);
    for suite in Suite::ALL {
        let key = test_key(suite, 3);
        let mut up = LanToCloud::new(suite, &key, DirectionConfig::default()).unwrap();
        let ours: Vec<_> = stream
            .iter()
            .map(|p| transform(p, |b, n| up.rtcp(b, n)).unwrap())
            .collect();
        let back = run(Op::UnprotectRtcp, suite.sdp_name(), &key_b64(&key), &ours);
        assert_eq!(back, stream, "{suite}: libsrtp unprotects our SRTCP");

        let theirs = run(Op::ProtectRtcp, suite.sdp_name(), &key_b64(&key), &stream);
        // SRTCP is deterministic for a key and index: same bytes as libsrtp.
        assert_eq!(theirs, ours, "{suite}: same SRTCP bytes as libsrtp");
        let mut down = CloudToLan::new(suite, &key, DirectionConfig::default()).unwrap();
        for (s, want) in theirs.iter().zip(&stream) {
            assert_eq!(
                &transform(s, |b, n| down.rtcp(b, n)).unwrap(),
                want,
                "{suite}"
            );
        }
        // SRTCP tag: 80-bit even for the 32-bit suite (RFC 4568 §6.2.1).
        let expect_tag = if suite == Suite::AeadAes128Gcm {
            16
        } else {
            10
        };
        assert_eq!(theirs[0].len(), stream[0].len() + 4 + expect_tag);
    }
}

#[test]
fn tampered_replayed_and_truncated_packets_are_rejected_and_counted() {
    let stream = corpus::rtp_stream(100);
    let now = Instant::now();
    for suite in Suite::ALL {
        let key = test_key(suite, 4);
        let srtp = run(Op::Protect, suite.sdp_name(), &key_b64(&key), &stream);
        let mut down = CloudToLan::new(suite, &key, DirectionConfig::default()).unwrap();
        let mut expect = [0u64; 3];
        for (i, s) in srtp.iter().enumerate() {
            match i % 4 {
                1 => {
                    let mut t = s.clone();
                    let at = t.len() - 1 - (i % 7);
                    t[at] ^= 0x20;
                    assert_eq!(
                        transform(&t, |b, n| down.rtp(now, b, n)),
                        Err(DropReason::AuthFailed)
                    );
                    expect[0] += 1;
                }
                2 => {
                    let cut = &s[..s.len() - suite.srtp_tag_len() + 1 - 1 - (i % 3)];
                    let r = transform(cut, |b, n| down.rtp(now, b, n));
                    assert!(
                        matches!(r, Err(DropReason::AuthFailed | DropReason::Truncated)),
                        "{suite} {i}: {r:?}"
                    );
                    expect[1] += 1;
                }
                _ => {}
            }
            transform(s, |b, n| down.rtp(now, b, n)).unwrap();
            if i % 4 == 3 {
                assert_eq!(
                    transform(s, |b, n| down.rtp(now, b, n)),
                    Err(DropReason::Replay)
                );
                expect[2] += 1;
            }
        }
        let d = down.counters().drops;
        assert_eq!(
            d.get(DropReason::AuthFailed) + d.get(DropReason::Truncated),
            expect[0] + expect[1]
        );
        assert_eq!(d.get(DropReason::Replay), expect[2]);
        assert_eq!(
            down.counters().rtp_out,
            100,
            "every genuine packet still passed"
        );
    }
}

#[test]
fn transfer_jump_decrypts_at_libsrtp_receiver_after_renumbering() {
    let t0 = Instant::now();
    for suite in Suite::ALL {
        let key = test_key(suite, 5);
        let mut up = LanToCloud::new(suite, &key, DirectionConfig::default()).unwrap();
        let mut lan = Vec::new();
        let mut srtp = Vec::new();
        for i in 0..400u32 {
            // Packet 200: the PBX transfers; same SSRC, sequence back by 30,000.
            let seq = if i < 200 { 50_000 + i } else { 20_000 + i } as u16;
            let ts = if i < 200 {
                160 * i
            } else {
                7_000_000 + 160 * i
            };
            let p = corpus::Rtp {
                marker: false,
                pt: 0,
                seq,
                ts,
                ssrc: 0xfeed,
                csrcs: vec![],
                extension: None,
                payload: vec![i as u8; 160],
                padding: 0,
            }
            .encode();
            let now = t0 + Duration::from_millis(20 * i as u64);
            srtp.push(transform(&p, |b, n| up.rtp(now, b, n)).unwrap());
            lan.push(p);
        }
        let back = run(Op::Unprotect, suite.sdp_name(), &key_b64(&key), &srtp);
        assert!(
            back.iter().all(|p| !p.is_empty()),
            "{suite}: libsrtp rejected a packet"
        );
        for (i, (got, sent)) in back.iter().zip(&lan).enumerate() {
            assert_eq!(&got[12..], &sent[12..], "payload {i}");
            let seq = u16::from_be_bytes([got[2], got[3]]);
            assert_eq!(seq, 50_000u16.wrapping_add(i as u16), "continuous sequence");
        }
        assert_eq!(up.jumps(), 1);
        // Without renumbering libsrtp would have refused the jump as too old.
        let raw_back = {
            let mut tx = SrtpContext::new(suite, &key, Role::Protect).unwrap();
            let raw: Vec<_> = lan
                .iter()
                .map(|p| transform(p, |b, n| tx.protect_rtp(b, n)).unwrap_or_default())
                .collect();
            run(Op::Unprotect, suite.sdp_name(), &key_b64(&key), &raw)
        };
        assert!(
            raw_back[200..].iter().all(|p| p.is_empty()),
            "control: the jump alone breaks SRTP"
        );
    }
}

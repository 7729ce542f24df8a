//! Interop with an independent SRTP implementation: rtpengine 10.5 in user
//! space on loopback, driven by its ng protocol. rtpengine bridges a plain
//! RTP/AVP side (what the PBX speaks) and an RTP/SAVP side; pbxlink's SRTP
//! contexts stand on the SAVP side, protecting what rtpengine decrypts and
//! unprotecting what rtpengine encrypts, byte for byte, for every suite.

use pbxlink_dataplane::MasterKey;
use pbxlink_dataplane::srtp::{Role, SrtpContext, Suite};
use pbxlink_tests::rtpengine::Rtpengine;
use pbxlink_tests::{corpus, test_key, transform};
use std::collections::HashMap;
use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

const PACKETS: usize = 1100;
const RTCP_PACKETS: usize = 40;
const NG_PORT: u16 = 22_230;
const MEDIA_PORTS: (u16, u16) = (31_000, 31_200);

/// Binds an RTP/RTCP port pair on 127.0.0.1 (even port, port + 1).
fn bind_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        if let (Ok(a), Ok(b)) = (
            UdpSocket::bind(("127.0.0.1", port)),
            UdpSocket::bind(("127.0.0.1", port + 1)),
        ) {
            for s in [&a, &b] {
                s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            }
            return (a, b);
        }
    }
    panic!("no free port pair on 127.0.0.1");
}

/// Sends `packets` from `from` to `to` at a steady pace while a second
/// thread collects what arrives at `at`; stops after `expected` packets or
/// when the line stays quiet for two seconds.
fn exchange(from: &UdpSocket, to: u16, at: &UdpSocket, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let at = at.try_clone().unwrap();
    let expected = packets.len();
    let receiver = thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let mut quiet_since = Instant::now();
        while got.len() < expected && quiet_since.elapsed() < Duration::from_secs(2) {
            if let Ok(n) = at.recv(&mut buf) {
                got.push(buf[..n].to_vec());
                quiet_since = Instant::now();
            }
        }
        got
    });
    for p in packets {
        from.send_to(p, ("127.0.0.1", to)).unwrap();
        thread::sleep(Duration::from_micros(250));
    }
    receiver.join().unwrap()
}

/// rtpengine paces telephone-events by their timestamps (its DTMF handler
/// schedules them), so they may arrive after later audio: match by SSRC and
/// sequence number, then compare bytes.
fn assert_same_packets(got: &[Vec<u8>], sent: &[Vec<u8>], what: &str) {
    let key = |p: &[u8]| {
        (
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    };
    let by_key: HashMap<_, _> = got.iter().map(|p| (key(p), p)).collect();
    for (i, w) in sent.iter().enumerate() {
        let g = by_key
            .get(&key(w))
            .unwrap_or_else(|| panic!("{what}: packet {i} missing"));
        assert_eq!(*g, w, "{what}: packet {i} differs");
    }
}

#[test]
fn srtp_interoperates_with_rtpengine_both_ways_for_every_suite() {
    let mut engine = Rtpengine::start(NG_PORT, MEDIA_PORTS);
    let stream = corpus::rtp_stream(PACKETS);
    let rtcp = corpus::rtcp_stream(RTCP_PACKETS);
    for suite in Suite::ALL {
        let (a_rtp, a_rtcp) = bind_pair();
        let (b_rtp, b_rtcp) = bind_pair();
        let ours = test_key(suite, 9);
        let call_id = format!("pbxlink-interop-{suite}");
        let (a_side, b_side) = engine.plain_to_srtp_call(
            &call_id,
            a_rtp.local_addr().unwrap().port(),
            b_rtp.local_addr().unwrap().port(),
            |offered| {
                let (tag, name, _) = offered
                    .crypto
                    .iter()
                    .find(|(_, s, _)| s == suite.sdp_name())
                    .unwrap_or_else(|| panic!("rtpengine did not offer {suite}: {offered:?}"));
                (*tag, name.clone(), ours.to_sdes_inline())
            },
        );
        let (_, _, theirs_inline) = b_side
            .crypto
            .iter()
            .find(|(_, s, _)| s == suite.sdp_name())
            .unwrap();
        let theirs = MasterKey::from_sdes(suite, theirs_inline).unwrap();

        // Plain → rtpengine encrypts → pbxlink unprotects.
        let got = exchange(&a_rtp, a_side.rtpengine_port, &b_rtp, &stream);
        let mut rx = SrtpContext::new(suite, &theirs, Role::Unprotect).unwrap();
        let got: Vec<_> = got
            .iter()
            .map(|p| {
                transform(p, |b, n| rx.unprotect_rtp(b, n)).expect("rtpengine's SRTP verifies")
            })
            .collect();
        assert_eq!(
            got.len(),
            stream.len(),
            "{suite}: all RTP reached the SAVP side\n{}",
            engine.log_text()
        );
        assert_same_packets(
            &got,
            &stream,
            &format!("{suite}: rtpengine encrypt / pbxlink decrypt"),
        );

        // pbxlink protects → rtpengine decrypts → plain.
        let mut tx = SrtpContext::new(suite, &ours, Role::Protect).unwrap();
        let srtp: Vec<_> = stream
            .iter()
            .map(|p| transform(p, |b, n| tx.protect_rtp(b, n)).unwrap())
            .collect();
        let got = exchange(&b_rtp, b_side.rtpengine_port, &a_rtp, &srtp);
        assert_eq!(
            got.len(),
            stream.len(),
            "{suite}: all SRTP decrypted by rtpengine\n{}",
            engine.log_text()
        );
        assert_same_packets(
            &got,
            &stream,
            &format!("{suite}: pbxlink encrypt / rtpengine decrypt"),
        );

        // RTCP ↔ SRTCP, both ways.
        let got = exchange(&a_rtcp, a_side.rtpengine_port + 1, &b_rtcp, &rtcp);
        let got: Vec<_> = got
            .iter()
            .map(|p| {
                transform(p, |b, n| rx.unprotect_rtcp(b, n)).expect("rtpengine's SRTCP verifies")
            })
            .collect();
        assert_eq!(
            got, rtcp,
            "{suite}: RTCP after rtpengine encrypt / pbxlink decrypt"
        );
        let srtcp: Vec<_> = rtcp
            .iter()
            .map(|p| transform(p, |b, n| tx.protect_rtcp(b, n)).unwrap())
            .collect();
        let got = exchange(&b_rtcp, b_side.rtpengine_port + 1, &a_rtcp, &srtcp);
        assert_eq!(
            got, rtcp,
            "{suite}: RTCP after pbxlink encrypt / rtpengine decrypt"
        );

        engine.delete(&call_id);
    }
}

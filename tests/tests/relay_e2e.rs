//! End to end through `pbxlink relay` as a real process, on both I/O
//! backends: plain RTP/RTCP at a LAN port leaves as SRTP/SRTCP that
//! python3-pylibsrtp decrypts to the identical packets, and the reverse, for
//! every suite; bad input on one relay is dropped and counted while another
//! keeps flowing; spoofed sources are neither relayed nor latched.

use pbxlink_dataplane::srtp::Suite;
use pbxlink_tests::gateway::{Gateway, field, final_line};
use pbxlink_tests::pylibsrtp::{Op, run};
use pbxlink_tests::{corpus, key_b64, test_key};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const PACKETS: usize = 300;

fn socket(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// A PBX or cloud endpoint: an RTP socket and its RTCP socket (port + 1).
struct Peer {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Peer {
    fn new(ip: &str) -> Peer {
        for _ in 0..100 {
            let probe = UdpSocket::bind(format!("{ip}:0")).unwrap();
            let port = probe.local_addr().unwrap().port() & !1;
            drop(probe);
            if let (Ok(rtp), Ok(rtcp)) = (
                UdpSocket::bind(format!("{ip}:{port}")),
                UdpSocket::bind(format!("{ip}:{}", port + 1)),
            ) {
                for s in [&rtp, &rtcp] {
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                }
                return Peer { rtp, rtcp };
            }
        }
        panic!("no port pair on {ip}");
    }

    fn port(&self) -> u16 {
        self.rtp.local_addr().unwrap().port()
    }
}

/// Sends `packets` from `from` to `to`, paced, and collects what `at`
/// receives until `expect` arrived or 2 s of quiet.
fn exchange(
    from: &UdpSocket,
    to: u16,
    at: &UdpSocket,
    packets: &[Vec<u8>],
    expect: usize,
) -> Vec<Vec<u8>> {
    let at = at.try_clone().unwrap();
    let rx = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let mut quiet = Instant::now();
        while got.len() < expect && quiet.elapsed() < Duration::from_secs(2) {
            // Empty datagrams are the relay's NAT pinholes (RFC 6263).
            if let Ok(n @ 1..) = at.recv(&mut buf) {
                got.push(buf[..n].to_vec());
                quiet = Instant::now();
            }
        }
        got
    });
    for p in packets {
        from.send_to(p, ("127.0.0.1", to)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    rx.join().unwrap()
}

fn relay_args(
    backend: &str,
    suite: Suite,
    lan: u16,
    cloud: u16,
    calls: u32,
    cloud_remotes: &[u16],
) -> Vec<String> {
    let remotes: Vec<String> = cloud_remotes
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let mut a: Vec<String> = [
        "relay",
        "--lan-port",
        &lan.to_string(),
        "--cloud-port",
        &cloud.to_string(),
        "--calls",
        &calls.to_string(),
        "--suite",
        suite.sdp_name(),
        "--tx-key",
        &key_b64(&test_key(suite, 1)),
        "--rx-key",
        &key_b64(&test_key(suite, 2)),
        "--bind",
        "127.0.0.1",
        "--profile",
        // One worker for the xdp backend (one receive queue on loopback).
        if backend == "xdp" { "small" } else { "max" },
        "--seconds",
        "60",
        "--backend",
        backend,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !remotes.is_empty() {
        a.push("--cloud-remote".into());
        a.push(remotes.join(","));
    }
    a
}

fn single_source_stream() -> Vec<Vec<u8>> {
    // The first half of the corpus: one SSRC, wrap, CSRCs, extensions,
    // padding, DTMF. (An SSRC change would be renumbered, by design.)
    corpus::rtp_stream(2 * PACKETS)[..PACKETS].to_vec()
}

fn media_both_ways_for_every_suite(backend: &str, base: u16) {
    for (i, suite) in Suite::ALL.into_iter().enumerate() {
        let (lan, cloud) = (base + 100 * i as u16, base + 100 * i as u16 + 50);
        let pbx = Peer::new("127.0.0.1");
        let cl = Peer::new("127.0.0.1");
        let gw = Gateway::start(&relay_args(backend, suite, lan, cloud, 1, &[cl.port()]));
        gw.wait_for("relay: 1 relays up, 0 failed", Duration::from_secs(20));
        let rtp = single_source_stream();
        let rtcp = corpus::rtcp_stream(40)[..20].to_vec();
        let tx = key_b64(&test_key(suite, 1));
        let rx = key_b64(&test_key(suite, 2));

        // PBX → gateway → cloud: libsrtp decrypts to the identical packets.
        let got = exchange(&pbx.rtp, lan, &cl.rtp, &rtp, rtp.len());
        assert_eq!(
            got.len(),
            rtp.len(),
            "{backend} {suite}: SRTP packets reaching the cloud"
        );
        assert!(
            run(Op::Unprotect, suite.sdp_name(), &tx, &got) == rtp,
            "{backend} {suite}: RTP → SRTP differs"
        );
        let got = exchange(&pbx.rtcp, lan + 1, &cl.rtcp, &rtcp, rtcp.len());
        assert!(
            run(Op::UnprotectRtcp, suite.sdp_name(), &tx, &got) == rtcp,
            "{backend} {suite}: RTCP → SRTCP differs"
        );

        // Cloud → gateway → PBX (latched from the packets above).
        let srtp = run(Op::Protect, suite.sdp_name(), &rx, &rtp);
        let got = exchange(&cl.rtp, cloud, &pbx.rtp, &srtp, rtp.len());
        assert!(
            got == rtp,
            "{backend} {suite}: SRTP → RTP differs ({} received)",
            got.len()
        );
        let srtcp = run(Op::ProtectRtcp, suite.sdp_name(), &rx, &rtcp);
        let got = exchange(&cl.rtcp, cloud + 1, &pbx.rtcp, &srtcp, rtcp.len());
        assert!(
            got == rtcp,
            "{backend} {suite}: SRTCP → RTCP differs ({} received)",
            got.len()
        );

        let out = gw.stop();
        let fin = out
            .iter()
            .find(|l| l.starts_with("final:"))
            .expect("final line");
        assert_eq!(field(fin, "to_cloud_rtp"), PACKETS as u64, "{fin}");
        assert_eq!(field(fin, "to_lan_rtp"), PACKETS as u64, "{fin}");
        assert!(fin.ends_with("drops: none"), "{fin}");
        assert!(
            out.iter().any(|l| l.starts_with("performance profile:")),
            "start-up line"
        );
    }
}

fn bad_input_and_spoofing(backend: &str, base: u16) {
    let suite = Suite::AesCm128HmacSha1_80;
    let (lan, cloud) = (base, base + 50);
    let pbx = Peer::new("127.0.0.1");
    let cl0 = Peer::new("127.0.0.1");
    let cl1 = Peer::new("127.0.0.1");
    let gw = Gateway::start(&relay_args(
        backend,
        suite,
        lan,
        cloud,
        2,
        &[cl0.port(), cl1.port()],
    ));
    gw.wait_for("relay: 2 relays up, 0 failed", Duration::from_secs(20));
    let rx = key_b64(&test_key(suite, 2));
    let tx = key_b64(&test_key(suite, 1));
    let rtp = single_source_stream();

    // Relay 0 latches to the PBX.
    let first = exchange(&pbx.rtp, lan, &cl0.rtp, &rtp[..100], 100);
    assert_eq!(first.len(), 100);

    // A second LAN source is neither relayed nor latched.
    let intruder = socket("127.0.0.2:0");
    let got = exchange(&intruder, lan, &cl0.rtp, &rtp[100..120], 20);
    assert!(got.is_empty(), "{backend}: intruder relayed");

    // Relay 1 gets tampered, replayed, truncated and garbage SRTP from its
    // cloud side (and an unauthenticated spoof) while relay 0 keeps flowing.
    let pbx1 = Peer::new("127.0.0.1");
    let _ = exchange(&pbx1.rtp, lan + 2, &cl1.rtp, &rtp[..5], 5); // latch relay 1's LAN leg
    let good = run(Op::Protect, suite.sdp_name(), &rx, &rtp[..60]);
    let mut bad = Vec::new();
    for (i, p) in good.iter().enumerate() {
        match i % 5 {
            0 => {
                let mut t = p.clone();
                t[20] ^= 0x01;
                bad.push(t); // tampered
            }
            1 => bad.push(p[..p.len() - 12].to_vec()), // truncated
            2 => bad.push(vec![0xde; 3]),              // garbage
            _ => {}
        }
    }
    let spoofer = socket("127.0.0.3:0");
    let got = exchange(&spoofer, cloud + 2, &pbx1.rtp, &bad, 1);
    assert!(got.is_empty(), "{backend}: bad SRTP relayed");
    // Genuine packets pass once; their replays are dropped.
    let got = exchange(&cl1.rtp, cloud + 2, &pbx1.rtp, &good[..10], 10);
    assert!(got == rtp[..10], "{backend}: genuine packets on relay 1");
    let got = exchange(&cl1.rtp, cloud + 2, &pbx1.rtp, &good[..10], 1);
    assert!(got.is_empty(), "{backend}: replay relayed");
    // Relay 0 was never disturbed, and still sends to its cloud: one
    // libsrtp session decrypts all it received (the rollover counter spans
    // both). The pause above outlasted what the PBX's timestamps account
    // for, so the gateway rebased them to the wall clock (a timestamp
    // discontinuity, by design); everything else is untouched.
    let mut got = first;
    got.extend(exchange(&pbx.rtp, lan, &cl0.rtp, &rtp[120..220], 100));
    let want: Vec<Vec<u8>> = rtp[..100].iter().chain(&rtp[120..220]).cloned().collect();
    let back = run(Op::Unprotect, suite.sdp_name(), &tx, &got);
    assert_eq!(back.len(), want.len());
    let without_ts = |p: &[u8]| [&p[..4], &p[8..]].concat();
    for (i, (b, w)) in back.iter().zip(&want).enumerate() {
        assert!(
            !b.is_empty() && without_ts(b) == without_ts(w),
            "{backend}: relay 0 packet {i} disturbed"
        );
    }
    assert_eq!(
        back[..100],
        want[..100],
        "{backend}: before the pause, byte-identical"
    );

    let out = gw.stop();
    let fin = out
        .iter()
        .find(|l| l.starts_with("final:"))
        .expect("final line")
        .clone();
    // The intruder's 20: the relay drops them, or on the xdp backend the
    // XDP program does before they cost a frame (the LAN leg has latched).
    let (by_relay, by_program) = (
        field(&fin, "unexpected_source"),
        field(&fin, "xdp_foreign_dropped"),
    );
    if backend == "xdp" {
        assert_eq!((by_relay, by_program), (0, 20), "{fin}");
    } else {
        assert_eq!((by_relay, by_program), (20, 0), "{fin}");
    }
    // 12 tampered, 12 cut short, 12 garbage: each dropped as a failed tag,
    // or as truncated where too little was left to hold one.
    assert_eq!(
        field(&fin, "auth_failed") + field(&fin, "truncated"),
        36,
        "{fin}"
    );
    assert!(
        field(&fin, "auth_failed") >= 12 && field(&fin, "truncated") >= 12,
        "{fin}"
    );
    assert_eq!(field(&fin, "replay"), 10, "{fin}");
    assert!(
        out.iter()
            .any(|l| l.contains("Latched") && l.contains("127.0.0.1")),
        "latch events"
    );
    assert!(
        !out.iter()
            .any(|l| l.contains("Latched") && (l.contains("127.0.0.2") || l.contains("127.0.0.3"))),
        "spoofer latched"
    );
}

#[test]
fn epoll_backend_relays_media_both_ways_for_every_suite() {
    media_both_ways_for_every_suite("epoll", 26_000);
}

#[test]
fn epoll_backend_drops_bad_input_and_refuses_spoofed_sources() {
    bad_input_and_spoofing("epoll", 26_400);
}

#[test]
fn uring_backend_relays_media_both_ways_for_every_suite() {
    media_both_ways_for_every_suite("uring", 26_800);
}

#[test]
fn uring_backend_drops_bad_input_and_refuses_spoofed_sources() {
    bad_input_and_spoofing("uring", 27_200);
}

#[test]
fn uring_backend_uses_multishot_recvmsg_provided_buffers_and_defer_taskrun() {
    let suite = Suite::AeadAes128Gcm;
    let pbx = Peer::new("127.0.0.1");
    let cl = Peer::new("127.0.0.1");
    let gw = Gateway::start(&relay_args("uring", suite, 27_600, 27_650, 1, &[cl.port()]));
    let line = gw.wait_for("data plane:", Duration::from_secs(20));
    for feature in [
        "backend io_uring",
        "single-issuer",
        "defer-taskrun",
        "registered files",
        "provided-buffer ring",
        "multishot recvmsg",
    ] {
        assert!(line.contains(feature), "{feature} missing from {line:?}");
    }
    gw.wait_for("relay: 1 relays up", Duration::from_secs(20));
    let rtp = single_source_stream();
    let got = exchange(&pbx.rtp, 27_600, &cl.rtp, &rtp, rtp.len());
    assert_eq!(got.len(), rtp.len());
    let out = gw.stop();
    let fin = out
        .iter()
        .find(|l| l.starts_with("final:"))
        .expect("final line");
    // Completions that kept their receive armed prove multishot is in use;
    // completions carrying a buffer id prove the provided-buffer ring is.
    assert!(field(fin, "multishot") >= rtp.len() as u64, "{fin}");
    assert!(field(fin, "provided_buffers") >= rtp.len() as u64, "{fin}");
}

/// One XDP program per interface: the xdp tests take loopback in turn.
static LOOPBACK_XDP: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes loopback for one xdp test and lets it accept the frames the
/// backend writes (it refuses to start otherwise): they reach its receive
/// path without the route a socket's packets carry.
fn loopback_accepts_frames() -> std::sync::MutexGuard<'static, ()> {
    let turn = LOOPBACK_XDP.lock().unwrap_or_else(|e| e.into_inner());
    pbxlink_tests::loopback_accepts_xdp_frames().expect("root sets loopback sysctls");
    turn
}

#[test]
fn xdp_backend_relays_media_both_ways_for_every_suite() {
    let _turn = loopback_accepts_frames();
    media_both_ways_for_every_suite("xdp", 28_000);
}

#[test]
fn xdp_backend_drops_bad_input_and_refuses_spoofed_sources() {
    let _turn = loopback_accepts_frames();
    bad_input_and_spoofing("xdp", 28_400);
}

/// Once both peers have been heard, the relay's sends leave as frames on
/// the AF_XDP TX ring, not through its sockets — byte-identical either way.
#[test]
fn xdp_backend_sends_past_the_socket_path_once_both_peers_are_heard() {
    let _turn = loopback_accepts_frames();
    let suite = Suite::AesCm128HmacSha1_80;
    let (lan, cloud) = (28_800, 28_850);
    let pbx = Peer::new("127.0.0.1");
    let cl = Peer::new("127.0.0.1");
    let gw = Gateway::start(&relay_args("xdp", suite, lan, cloud, 1, &[cl.port()]));
    let line = gw.wait_for("data plane:", Duration::from_secs(20));
    assert!(line.contains("backend xdp"), "{line}");
    gw.wait_for("relay: 1 relays up, 0 failed", Duration::from_secs(20));
    let rtp = single_source_stream();
    let (tx, rx) = (key_b64(&test_key(suite, 1)), key_b64(&test_key(suite, 2)));
    let srtp = run(Op::Protect, suite.sdp_name(), &rx, &rtp);
    let half = PACKETS / 2;
    // The PBX speaks first (its socket carries it: the cloud is not heard
    // yet), then the cloud (the PBX was heard: frames), then the PBX again
    // (the cloud was heard: frames).
    let first = exchange(&pbx.rtp, lan, &cl.rtp, &rtp[..half], half);
    let back = exchange(&cl.rtp, cloud, &pbx.rtp, &srtp, PACKETS);
    let second = exchange(&pbx.rtp, lan, &cl.rtp, &rtp[half..], PACKETS - half);
    assert!(back == rtp, "SRTP → RTP differs ({} received)", back.len());
    let sent: Vec<Vec<u8>> = first.into_iter().chain(second).collect();
    assert!(
        run(Op::Unprotect, suite.sdp_name(), &tx, &sent) == rtp,
        "RTP → SRTP differs ({} sent)",
        sent.len()
    );
    let out = gw.stop();
    let fin = final_line(&out);
    // Everything after the first half went as frames.
    assert_eq!(field(fin, "xdp_sent"), (2 * PACKETS - half) as u64, "{fin}");
    assert!(fin.ends_with("drops: none"), "{fin}");
}

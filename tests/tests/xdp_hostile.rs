//! The xdp worker fed hostile frames with its rings full: nothing leaves
//! it toward either leg but the relayed packets of that leg's calls.
//!
//! Twenty relays on loopback (the xdp backend, in process) carry calls
//! both ways — plain RTP from their PBX peer, SRTP from their cloud peer,
//! each packet marked with its relay — while a flooder sends, unpaced and
//! as fast as one thread can, garbage and RTP/RTCP carrying the calls' own
//! SSRCs (payload 0x55, never a call's) to all four ports of every relay,
//! from a source no relay latched, and half of it to the cloud ports from
//! the cloud peer's own address (a spoofed source the XDP program cannot
//! tell from the peer: those become frames, fail authentication in the
//! relay, and must leave nothing). The XDP program drops what comes from
//! elsewhere to a LAN leg and hands what comes from elsewhere to a cloud
//! leg to its socket, both counted. In a debug build the worker is far
//! slower than the spoofed flood, so its AF_XDP rings overflow (the
//! kernel's drops are counted and shown); frames are reused under that
//! pressure, which is where a flood's bytes could slip out. The peers check every
//! datagram that reaches them: from a relay's own port, the call's marker
//! and SSRC, and toward the cloud an SRTP packet that authenticates with
//! that relay's key. The flooder must get nothing back.

use pbxlink_dataplane::control::Event;
use pbxlink_dataplane::engine::{Backend, DataPlane, DataPlaneConfig};
use pbxlink_dataplane::profile::{Profile, Resources};
use pbxlink_dataplane::relay::RelaySpec;
use pbxlink_dataplane::srtp::{Role, SrtpContext, Suite};
use pbxlink_dataplane::udp_batch::SendBatch;
use pbxlink_tests::test_key;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RELAYS: u16 = 20;
const LAN_BASE: u16 = 29_200;
const CLOUD_BASE: u16 = 29_300;
const SECONDS: u64 = 4;
const SUITE: Suite = Suite::AesCm128HmacSha1_80;

/// A call packet of relay `r`: its SSRC, sequence `n`, the call's payload
/// (0xd5) with the relay's number in its first four bytes.
fn call_packet(r: u16, n: u16, p: &mut [u8; 256]) -> usize {
    p[0] = 0x80;
    p[1] = 8;
    p[2..4].copy_from_slice(&n.to_be_bytes());
    p[4..8].copy_from_slice(&(160 * u32::from(n)).to_be_bytes());
    p[8..12].copy_from_slice(&(u32::from(r) + 1).to_be_bytes());
    p[12..172].fill(0xd5);
    p[12..16].copy_from_slice(&u32::from(r).to_be_bytes());
    172
}

/// Whether a plain RTP packet is relay `r`'s call packet.
fn is_call_packet(r: usize, b: &[u8]) -> bool {
    b.len() == 172
        && b[0] == 0x80
        && b[8..12] == (r as u32 + 1).to_be_bytes()
        && b[12..16] == (r as u32).to_be_bytes()
        && b[16..172].iter().all(|&x| x == 0xd5)
}

/// What a peer saw: packets of its calls, anything else.
#[derive(Default)]
struct Seen {
    good: AtomicU64,
    bad: AtomicU64,
}

/// Reads everything arriving at a peer until `stop`, checking each
/// datagram; `srtp` holds per relay the context that unprotects what the
/// relay sends (the cloud peer), none for the PBX peer.
fn peer(
    socket: UdpSocket,
    base: u16,
    mut srtp: Option<Vec<SrtpContext>>,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if n == 0 {
                continue; // a relay's NAT pinhole (RFC 6263)
            }
            let r = usize::from(from.port().wrapping_sub(base)) / 2;
            let from_a_relay =
                from.port() >= base && r < usize::from(RELAYS) && from.port() % 2 == base % 2;
            let ok = from_a_relay
                && match srtp.as_mut() {
                    Some(ctx) => ctx[r]
                        .unprotect_rtp(&mut buf, n)
                        .is_ok_and(|len| is_call_packet(r, &buf[..len])),
                    None => is_call_packet(r, &buf[..n]),
                };
            let counter = if ok { &seen.good } else { &seen.bad };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    })
}

#[test]
fn hostile_frames_with_full_rings_never_leave_the_xdp_worker() {
    pbxlink_tests::loopback_accepts_xdp_frames().expect("root sets loopback sysctls");
    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cloud = UdpSocket::bind("127.0.0.1:0").unwrap();
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&pbx, &cloud, &flooder] {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let (pbx_at, cloud_at) = (pbx.local_addr().unwrap(), cloud.local_addr().unwrap());
    let mut plane = DataPlane::start(
        &DataPlaneConfig {
            profile: Profile::Small,
            backend: Some(Backend::Xdp),
            max_relays_per_worker: 64,
            ..DataPlaneConfig::default()
        },
        &Resources::detect(),
    )
    .expect("the xdp data plane starts on loopback");
    for i in 0..RELAYS {
        let spec = RelaySpec {
            lan_remote: Some(pbx_at),
            cloud_remote: Some(cloud_at),
            ..RelaySpec::new(
                u64::from(i),
                "127.0.0.1".parse().unwrap(),
                LAN_BASE + 2 * i,
                CLOUD_BASE + 2 * i,
                SUITE,
                test_key(SUITE, 1),
                test_key(SUITE, 2),
            )
        };
        plane.add_relay(spec).expect("room for the relay");
    }
    pbxlink_tests::wait_relays_up(&mut plane, RELAYS, Duration::from_secs(20));

    let stop = Arc::new(AtomicBool::new(false));
    let (at_pbx, at_cloud) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let unprotect = (0..RELAYS)
        .map(|_| SrtpContext::new(SUITE, &test_key(SUITE, 1), Role::Unprotect).unwrap())
        .collect();
    let readers = [
        peer(
            pbx.try_clone().unwrap(),
            LAN_BASE,
            None,
            at_pbx.clone(),
            stop.clone(),
        ),
        peer(
            cloud.try_clone().unwrap(),
            CLOUD_BASE,
            Some(unprotect),
            at_cloud.clone(),
            stop.clone(),
        ),
    ];

    // The flood: as fast as one thread sends, to every port of every relay.
    let flood_sent = Arc::new(AtomicU64::new(0));
    let flood = {
        let (foreign, spoofed, stop, sent) = (
            flooder.try_clone().unwrap(),
            cloud.try_clone().unwrap(),
            stop.clone(),
            flood_sent.clone(),
        );
        std::thread::spawn(move || {
            let mut batch = SendBatch::new(64);
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut p = [0u8; 256];
            let mut k = 0u32;
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Every other batch from the cloud peer's own address, to
                // the cloud ports.
                round += 1;
                let from_peer = round % 2 == 0;
                for _ in 0..64 {
                    rng ^= rng >> 12;
                    rng ^= rng << 25;
                    rng ^= rng >> 27;
                    let r = (k / 4) as u16 % RELAYS;
                    let port = match (k % 4, from_peer) {
                        (0, false) => LAN_BASE + 2 * r,
                        (1, false) => LAN_BASE + 2 * r + 1,
                        (0 | 2, _) => CLOUD_BASE + 2 * r,
                        _ => CLOUD_BASE + 2 * r + 1,
                    };
                    k = k.wrapping_add(1);
                    let len = if rng % 3 == 0 {
                        // Garbage of any length.
                        let len = 1 + (rng >> 8) as usize % 250;
                        for (i, b) in p[..len].iter_mut().enumerate() {
                            *b = (rng >> (i % 8 * 8)) as u8;
                        }
                        len
                    } else {
                        // The call's own SSRC, a payload no call carries,
                        // with or without a made-up tag.
                        call_packet(r, (rng >> 16) as u16, &mut p);
                        p[12..172].fill(0x55);
                        if rng % 2 == 0 { 172 } else { 182 }
                    };
                    batch.push(&p[..len], SocketAddr::from(([127, 0, 0, 1], port)));
                }
                let socket = if from_peer { &spoofed } else { &foreign };
                sent.fetch_add(batch.send(socket) as u64, Ordering::Relaxed);
            }
        })
    };

    // The calls: a packet each way per relay every 20 ms.
    let mut protect: Vec<SrtpContext> = (0..RELAYS)
        .map(|_| SrtpContext::new(SUITE, &test_key(SUITE, 2), Role::Protect).unwrap())
        .collect();
    let started = Instant::now();
    let mut n = 0u16;
    let mut kernel_drops = 0;
    let (mut foreign_dropped, mut foreign_passed) = (0, 0);
    while started.elapsed() < Duration::from_secs(SECONDS) {
        let mut p = [0u8; 256];
        for r in 0..RELAYS {
            let len = call_packet(r, n, &mut p);
            let _ = pbx.send_to(&p[..len], ("127.0.0.1", LAN_BASE + 2 * r));
            let len = call_packet(r, n, &mut p);
            let len = protect[usize::from(r)].protect_rtp(&mut p, len).unwrap();
            let _ = cloud.send_to(&p[..len], ("127.0.0.1", CLOUD_BASE + 2 * r));
        }
        n = n.wrapping_add(1);
        plane.drain_events(|e| {
            if let Event::Worker { stats, .. } = e {
                kernel_drops = stats.kernel_drops;
                foreign_dropped = stats.xdp_foreign_dropped;
                foreign_passed = stats.xdp_foreign_passed;
            }
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for r in readers {
        r.join().unwrap();
    }
    let mut buf = [0u8; 2048];
    let answered = flooder.recv(&mut buf).is_ok();
    let (good_pbx, bad_pbx) = (
        at_pbx.good.load(Ordering::Relaxed),
        at_pbx.bad.load(Ordering::Relaxed),
    );
    let (good_cloud, bad_cloud) = (
        at_cloud.good.load(Ordering::Relaxed),
        at_cloud.bad.load(Ordering::Relaxed),
    );
    let flooded = flood_sent.load(Ordering::Relaxed);
    println!(
        "{SECONDS} s, {RELAYS} relays: flood {flooded} datagrams ({:.0}/s); the worker's kernel drops (rings full) {kernel_drops}; \
         from other sources: {foreign_dropped} dropped by the XDP program (LAN legs), {foreign_passed} passed to the sockets (cloud legs); \
         at the PBX {good_pbx} call packets, {bad_pbx} others; at the cloud {good_cloud} call packets, {bad_cloud} others",
        flooded as f64 / SECONDS as f64
    );
    assert_eq!(bad_pbx, 0, "datagrams toward the PBX leg that no call sent");
    assert_eq!(
        bad_cloud, 0,
        "datagrams toward the cloud leg that no call sent"
    );
    assert!(!answered, "the flooder got something back");
    assert!(
        good_pbx > 0 && good_cloud > 0,
        "calls relayed both ways meanwhile"
    );
    assert!(
        foreign_dropped > 0 && foreign_passed > 0,
        "the XDP program kept other sources off the frames"
    );
    if cfg!(debug_assertions) {
        assert!(
            kernel_drops > 0,
            "the flood filled the worker's rings (debug build)"
        );
    }
}

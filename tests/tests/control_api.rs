//! The control API against a running data plane (both backends): relays are
//! added, put on hold, resumed, asked for stats and removed with final stats.

use pbxlink_dataplane::DropReason;
use pbxlink_dataplane::control::{Command, Event};
use pbxlink_dataplane::engine::{Backend, DataPlane, DataPlaneConfig};
use pbxlink_dataplane::profile::{Profile, Resources};
use pbxlink_dataplane::relay::{MediaDirection, RelaySpec, RelayStats};
use pbxlink_dataplane::srtp::Suite;
use pbxlink_tests::test_key;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn wait_for(plane: &mut DataPlane, mut want: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut found = None;
        plane.drain_events(|e| {
            if found.is_none() && want(&e) {
                found = Some(e);
            }
        });
        if let Some(e) = found {
            return e;
        }
        assert!(Instant::now() < deadline, "event never came");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn stats(plane: &mut DataPlane, id: u64) -> RelayStats {
    plane.command(id, Command::ReadStats { id }).unwrap();
    match wait_for(
        plane,
        |e| matches!(e, Event::Stats { id: i, .. } if *i == id),
    ) {
        Event::Stats { stats, .. } => stats,
        _ => unreachable!(),
    }
}

/// A one-worker data plane with relay `id` between a PBX socket and a cloud
/// socket (which reads with a 300 ms timeout), once the relay is up.
struct Rig {
    plane: DataPlane,
    pbx: UdpSocket,
    cloud: UdpSocket,
}

fn rig(backend: Backend, buffers: u16, suite: Suite, id: u64, port: u16) -> Rig {
    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cloud = UdpSocket::bind("127.0.0.1:0").unwrap();
    cloud
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let config = DataPlaneConfig {
        profile: Profile::Small,
        backend: Some(backend),
        max_relays_per_worker: 8,
        buffers_per_worker: buffers,
        dscp: 46,
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::start(&config, &Resources::detect()).unwrap();
    let spec = RelaySpec {
        lan_remote: Some(pbx.local_addr().unwrap()),
        cloud_remote: Some(cloud.local_addr().unwrap()),
        ..RelaySpec::new(
            id,
            "127.0.0.1".parse().unwrap(),
            port,
            port + 2,
            suite,
            test_key(suite, 1),
            test_key(suite, 2),
        )
    };
    plane.add_relay(spec).unwrap();
    wait_for(
        &mut plane,
        |e| matches!(e, Event::Added { id: i, .. } if *i == id),
    );
    // The relay opens the NAT pinhole toward the cloud first: one empty
    // datagram from its cloud RTP port (RFC 6263 §4.1).
    let mut buf = [0u8; 64];
    let (n, from) = cloud.recv_from(&mut buf).expect("the pinhole datagram");
    assert_eq!((n, from.port()), (0, port + 2), "{backend}");
    Rig { plane, pbx, cloud }
}

fn hold_and_resume(backend: Backend, port: u16) {
    let Rig {
        mut plane,
        pbx,
        cloud,
    } = rig(backend, 256, Suite::AeadAes128Gcm, 9, port);
    let mut packet = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5];
    packet.extend_from_slice(&[0xd5; 160]);
    let mut buf = [0u8; 2048];
    let mut send = |seq: u16| {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        pbx.send_to(&packet, ("127.0.0.1", port)).unwrap();
        cloud.recv(&mut buf).is_ok()
    };
    assert!(send(1), "{backend}: relayed while sendrecv");
    plane
        .command(
            9,
            Command::SetDirection {
                id: 9,
                direction: MediaDirection::RecvOnly,
            },
        )
        .unwrap();
    let _ = stats(&mut plane, 9); // the worker has applied the command
    assert!(!send(2), "{backend}: relayed while held");
    assert_eq!(
        stats(&mut plane, 9)
            .relay_drops
            .get(DropReason::DirectionInactive),
        1
    );
    plane
        .command(
            9,
            Command::SetDirection {
                id: 9,
                direction: MediaDirection::SendRecv,
            },
        )
        .unwrap();
    let _ = stats(&mut plane, 9);
    assert!(send(3), "{backend}: relayed after resume");
    plane.command(9, Command::Remove { id: 9 }).unwrap();
    match wait_for(&mut plane, |e| matches!(e, Event::Removed { id: 9, .. })) {
        Event::Removed { stats, .. } => assert_eq!(stats.lan_to_cloud.rtp_out, 2),
        _ => unreachable!(),
    }
    assert!(!send(4), "{backend}: relayed after removal");
    plane.command(9, Command::ReadStats { id: 9 }).unwrap();
    plane.shutdown().unwrap();
}

#[test]
fn hold_resume_stats_and_removal_on_io_uring() {
    hold_and_resume(Backend::Uring, 27_800);
}

#[test]
fn hold_resume_stats_and_removal_on_epoll() {
    hold_and_resume(Backend::Epoll, 27_900);
}

/// RTCP carried through a relay tells its figures each leg's quality: the
/// PBX's SR goes to the cloud, the cloud's RR naming it comes back (SRTCP,
/// rtcp-mux), and the relay's stats hold the cloud's report and the cloud
/// leg's round trip (arrival less the SR's passing less the cloud's DLSR).
#[test]
fn the_cloud_legs_report_and_round_trip_come_from_the_rtcp_carried() {
    use pbxlink_dataplane::srtp::{Role, SrtpContext};
    let port = 27_980;
    let suite = Suite::AesCm128HmacSha1_80;
    let Rig {
        mut plane,
        pbx,
        cloud,
    } = rig(Backend::Uring, 256, suite, 11, port);
    // The PBX's SR: NTP 0x0000_0001_2345_6789_0000_0000 (middle 0x2345_6789).
    let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 0x42];
    sr.extend_from_slice(&0x0001_2345_6789_0000u64.to_be_bytes());
    sr.extend_from_slice(&[0; 12]);
    pbx.send_to(&sr, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = cloud.recv_from(&mut buf).expect("the SR, as SRTCP");
    assert!(n > sr.len(), "protected: {n} bytes");
    std::thread::sleep(Duration::from_millis(50));
    // The cloud's RR on the gateway's stream: 8/256 lost since its last,
    // 12 in all, jitter 400, naming that SR, held 20 ms (1310/65536 s).
    let mut rr = rr_clear();
    let mut tx = SrtpContext::new(suite, &test_key(suite, 2), Role::Protect).unwrap();
    let len = rr.len();
    rr.resize(len + 64, 0);
    let len = tx.protect_rtcp(&mut rr, len).unwrap();
    cloud.send_to(&rr[..len], from).unwrap();
    let mut to_pbx = [0u8; 256];
    pbx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (n, _) = pbx.recv_from(&mut to_pbx).expect("the RR, in the clear");
    assert_eq!(&to_pbx[..n], &rr_clear(), "relayed unchanged");
    let q = stats(&mut plane, 11).cloud_leg;
    assert_eq!(
        (q.reports, q.fraction_lost, q.cumulative_lost, q.jitter),
        (1, 8, 12, 400)
    );
    assert_eq!(q.rtt_samples, 1);
    // At least the 50 ms waited less the 20 ms held; far under a second.
    assert!(
        (30_000..1_000_000).contains(&q.rtt_last_us),
        "round trip {} µs",
        q.rtt_last_us
    );
    plane.shutdown().unwrap();
}

/// The cloud's RR of the test above, unprotected.
fn rr_clear() -> Vec<u8> {
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 0x77, 0, 0, 0, 0x42];
    rr.extend_from_slice(&((8u32 << 24) | 12).to_be_bytes());
    rr.extend_from_slice(&1000u32.to_be_bytes());
    rr.extend_from_slice(&400u32.to_be_bytes());
    rr.extend_from_slice(&0x2345_6789u32.to_be_bytes());
    rr.extend_from_slice(&1310u32.to_be_bytes());
    rr
}

/// With a provided-buffer ring of 16 buffers, a burst runs the ring dry: the
/// kernel ends the multishot receive with ENOBUFS; the worker counts it,
/// re-arms, and the relay keeps relaying.
#[test]
fn io_uring_recovers_from_an_empty_buffer_ring() {
    let port = 27_950;
    let Rig {
        mut plane,
        pbx,
        cloud,
    } = rig(Backend::Uring, 16, Suite::AesCm128HmacSha1_80, 1, port);
    let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
    packet.extend_from_slice(&[0xd5; 160]);
    // A burst far larger than the ring, while nobody reads the cloud side
    // (sends complete regardless; the receive side is what runs dry).
    for seq in 0..5_000u16 {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        pbx.send_to(&packet, ("127.0.0.1", port)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = [0u8; 2048];
    while cloud.recv(&mut buf).is_ok() {}
    // Then ordinary traffic must still get through.
    for seq in 10_000..10_010u16 {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        pbx.send_to(&packet, ("127.0.0.1", port)).unwrap();
        assert!(
            cloud.recv(&mut buf).is_ok(),
            "relay dead after the burst (packet {seq})"
        );
    }
    plane.shutdown().unwrap();
    let mut enobufs = 0;
    plane.drain_events(|e| {
        if let Event::Worker { stats, .. } = e {
            enobufs = enobufs.max(stats.enobufs);
        }
    });
    assert!(
        enobufs > 0,
        "the burst never ran the ring dry; the test proves nothing"
    );
}

/// Runs the calling thread on `cpu` under SCHED_FIFO (`true`) or back
/// under the normal scheduler: while it runs there, nothing else pinned to
/// that CPU does.
#[allow(unsafe_code)]
fn hog_cpu(cpu: usize, on: bool) {
    pbxlink_dataplane::cpu::pin_to_cpu(cpu).unwrap();
    let (policy, priority) = if on {
        (libc::SCHED_FIFO, 1)
    } else {
        (libc::SCHED_OTHER, 0)
    };
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: sets the calling thread's scheduling policy (0: itself).
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    assert_eq!(
        rc,
        0,
        "sched_setscheduler: {}",
        std::io::Error::last_os_error()
    );
}

/// A worker's command queue flooded (issue 20): the worker is kept off its
/// CPU (this thread holds it under SCHED_FIFO) while 200,000 commands are
/// sent, so its queue fills for certain. Commands about a running relay
/// then wait in order (up to the backlog's bound, the rest refused and
/// counted), a new relay is refused while they wait, and once the worker
/// runs again it works through them all and the relay's removal, sent
/// last, arrives: no deadlock, nothing lost uncounted.
#[test]
fn a_flooded_command_queue_delays_commands_in_order_and_refuses_new_relays() {
    use pbxlink_dataplane::backlog::BACKLOG_MAX;
    use pbxlink_dataplane::control::COMMAND_QUEUE;
    let Rig { mut plane, .. } = rig(Backend::Epoll, 256, Suite::AesCm128HmacSha1_80, 3, 45_300);
    // The one worker runs on the last CPU (engine.rs).
    let worker_cpu = *Resources::detect().cpus.last().unwrap();
    const COMMANDS: u64 = 200_000;
    let (mut sent, mut refused) = (0u64, 0u64);
    hog_cpu(worker_cpu, true);
    for n in 0..COMMANDS {
        let direction = if n % 2 == 0 {
            MediaDirection::SendOnly
        } else {
            MediaDirection::SendRecv
        };
        match plane.command(3, Command::SetDirection { id: 3, direction }) {
            Ok(()) => sent += 1,
            Err(_) => refused += 1,
        }
    }
    let spec = RelaySpec::new(
        4,
        "127.0.0.1".parse().unwrap(),
        45_310,
        45_312,
        Suite::AesCm128HmacSha1_80,
        test_key(Suite::AesCm128HmacSha1_80, 1),
        test_key(Suite::AesCm128HmacSha1_80, 2),
    );
    let refused_add = plane.add_relay(spec).is_err();
    let bp = plane.backpressure();
    hog_cpu(worker_cpu, false);
    println!(
        "{COMMANDS} commands with the worker held off its CPU: {sent} taken, {refused} refused; {bp:?}"
    );
    assert_eq!(
        sent,
        (COMMAND_QUEUE + BACKLOG_MAX) as u64,
        "the queue, then the backlog"
    );
    assert_eq!(bp.waiting, BACKLOG_MAX as u64);
    assert_eq!(bp.delayed, BACKLOG_MAX as u64);
    assert_eq!(bp.refused, refused, "every refusal counted");
    assert!(refused_add, "a new relay is refused while commands wait");
    assert_eq!(bp.adds_refused, 1);
    // The removal goes after everything taken; the worker works through
    // the backlog (each drain sends more) and the relay's end arrives.
    while plane.command(3, Command::Remove { id: 3 }).is_err() {
        plane.drain_events(|_| {});
        std::thread::sleep(Duration::from_millis(1));
    }
    match wait_for(&mut plane, |e| matches!(e, Event::Removed { id: 3, .. })) {
        Event::Removed { .. } => {}
        _ => unreachable!(),
    }
    assert_eq!(plane.backpressure().waiting, 0, "the backlog drained");
    plane.shutdown().unwrap();
}

//! Steady state at 1,000 relays, in process: after 10,000 relayed packets,
//! the next packets up to 1,000,000 cause no heap allocation anywhere in
//! the process (a counting global allocator; the traffic generator and
//! sinks are allocation-free too), and RSS stays flat. On the io_uring
//! backend, or the one `PBXLINK_STEADY_BACKEND` names (`xdp`: tests/run
//! runs both).
//!
//! One test in this binary, so no other test thread allocates meanwhile.

use pbxlink_dataplane::control::Event;
use pbxlink_dataplane::engine::{Backend, DataPlane, DataPlaneConfig};
use pbxlink_dataplane::profile::{Profile, Resources};
use pbxlink_dataplane::relay::RelaySpec;
use pbxlink_dataplane::srtp::{Role, SrtpContext, Suite};
use pbxlink_tests::counting_alloc::{Counting, allocations};
use pbxlink_tests::test_key;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: Counting = Counting;

const RELAYS: u16 = 1_000;
const LAN_BASE: u16 = 20_000;
const CLOUD_BASE: u16 = 24_000;
const WARM_UP: u64 = 10_000;
const WINDOW_END: u64 = 1_000_000;
const ROUND: Duration = Duration::from_millis(20);
/// Rounds (3 s) the worker thread is traced for its system calls.
const STRACE_ROUNDS: usize = 150;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn sink(
    socket: UdpSocket,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            // Empty datagrams are the relays' NAT pinholes (RFC 6263).
            if socket.recv(&mut buf).is_ok_and(|n| n > 0) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "a load test: run it optimised, as tests/run does (cargo test --release)"
)]
fn thousand_relays_relay_a_million_packets_without_allocating() {
    let suite = Suite::AesCm128HmacSha1_80;
    let lan = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cloud = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&lan, &cloud] {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let (lan_addr, cloud_addr) = (lan.local_addr().unwrap(), cloud.local_addr().unwrap());

    let backend = match std::env::var("PBXLINK_STEADY_BACKEND").as_deref() {
        Ok("xdp") => {
            pbxlink_tests::loopback_accepts_xdp_frames().expect("root sets loopback sysctls");
            Backend::Xdp
        }
        _ => Backend::Uring,
    };
    let config = DataPlaneConfig {
        profile: Profile::Small,
        backend: Some(backend),
        max_relays_per_worker: RELAYS as usize + 24,
        buffers_per_worker: 8192,
        dscp: 46,
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::start(&config, &Resources::detect()).expect("the data plane starts");
    for i in 0..RELAYS {
        let spec = RelaySpec {
            lan_remote: Some(lan_addr),
            cloud_remote: Some(cloud_addr),
            ..RelaySpec::new(
                i as u64,
                "127.0.0.1".parse().unwrap(),
                LAN_BASE + 2 * i,
                CLOUD_BASE + 2 * i,
                suite,
                test_key(suite, 1),
                test_key(suite, 2),
            )
        };
        while plane.add_relay(spec.clone()).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    pbxlink_tests::wait_relays_up(&mut plane, RELAYS, Duration::from_secs(30));

    // Every round: one G.711 packet into each relay from each side. The
    // cloud's SRTP is made up front so the generator never allocates.
    // Rounds enough for the window, and half as many again in reserve: on
    // a busy 2-core machine the test's own receiving threads may fall
    // behind and lose some (the subject here is allocation and system
    // calls; loss is measured and printed, not judged).
    let needed = (WINDOW_END / (2 * RELAYS as u64) + 40) as usize;
    let rounds = needed + needed / 2 + STRACE_ROUNDS;
    let mut cloud_tx = SrtpContext::new(suite, &test_key(suite, 2), Role::Protect).unwrap();
    let mut srtp = Vec::with_capacity(rounds);
    let mut rtp = Vec::with_capacity(rounds);
    for k in 0..rounds {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, 0x77];
        p[2..4].copy_from_slice(&(k as u16).to_be_bytes());
        p[4..8].copy_from_slice(&(160 * k as u32).to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        rtp.push(p.clone());
        p.resize(p.len() + 64, 0);
        let n = cloud_tx.protect_rtp(&mut p, 172).unwrap();
        p.truncate(n);
        srtp.push(p);
    }
    let lan_targets: Vec<SocketAddr> = (0..RELAYS)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], LAN_BASE + 2 * i)))
        .collect();
    let cloud_targets: Vec<SocketAddr> = (0..RELAYS)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], CLOUD_BASE + 2 * i)))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let at_cloud = Arc::new(AtomicU64::new(0));
    let at_lan = Arc::new(AtomicU64::new(0));
    let sinks = [
        sink(cloud.try_clone().unwrap(), at_cloud.clone(), stop.clone()),
        sink(lan.try_clone().unwrap(), at_lan.clone(), stop.clone()),
    ];
    let relayed = || at_cloud.load(Ordering::Relaxed) + at_lan.load(Ordering::Relaxed);

    let mut window: Option<(u64, u64, u64)> = None; // (allocations, rss, relayed) at its start
    let mut result = None;
    let start = Instant::now();
    // Spread each round's packets over its 20 ms in slices of 100, as 1,000
    // independent calls would be (and the sinks' socket buffers need: a
    // 2,000-packet burst would overflow them).
    let send_round = |k: usize| {
        let round_start = start + ROUND * k as u32;
        for slice in 0..(RELAYS / 100) as usize {
            for i in slice * 100..(slice + 1) * 100 {
                let _ = lan.send_to(&rtp[k], lan_targets[i]);
                let _ = cloud.send_to(&srtp[k], cloud_targets[i]);
            }
            let next = round_start + ROUND * (slice as u32 + 1) / (RELAYS / 100) as u32;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    };
    let mut k = 0;
    while k < rounds - STRACE_ROUNDS {
        send_round(k);
        k += 1;
        let n = relayed();
        if window.is_none() && n >= WARM_UP {
            // RSS first: reading it allocates, and must not count.
            let rss = rss_kib();
            window = Some((allocations(), rss, n));
        }
        if let Some((a0, r0, n0)) = window {
            if n >= WINDOW_END {
                result = Some((allocations() - a0, r0, rss_kib(), n0, n));
                break;
            }
        }
    }

    // System calls of the worker thread, counted from outside by strace
    // while traffic keeps flowing.
    let worker_tid = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "pbxlink-dp0")
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("worker thread pbxlink-dp0");
    let strace = std::process::Command::new("strace")
        .args(["-c", "-q", "-p", &worker_tid])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strace runs (tests/run installs it)");
    std::thread::sleep(Duration::from_millis(300));
    let traced_from = relayed();
    for _ in 0..STRACE_ROUNDS {
        send_round(k);
        k += 1;
    }
    let traced = relayed() - traced_from;
    let _ = std::process::Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let summary = strace.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&summary.stderr).into_owned();
    let calls: u64 = summary
        .lines()
        .find(|l| l.trim_end().ends_with("total"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no strace summary:\n{summary}"));
    let per_packet = calls as f64 / traced.max(1) as f64;
    println!(
        "worker system calls: {calls} for {traced} relayed packets = {per_packet:.4} per packet\n{summary}"
    );
    stop.store(true, Ordering::Relaxed);
    for s in sinks {
        s.join().unwrap();
    }
    let mut kernel_drops = 0;
    let mut enobufs = 0;
    plane.shutdown().unwrap();
    plane.drain_events(|e| {
        if let Event::Worker { stats, .. } = e {
            kernel_drops = stats.kernel_drops;
            enobufs = stats.enobufs;
        }
    });
    let sent = 2 * RELAYS as u64 * k as u64;
    let got = (
        at_cloud.load(Ordering::Relaxed),
        at_lan.load(Ordering::Relaxed),
    );
    let Some((allocations, rss0, rss1, n0, n1)) = result else {
        panic!(
            "the window never reached {WINDOW_END} relayed packets: sent {sent}, relayed {got:?}, kernel drops {kernel_drops}, ENOBUFS {enobufs}, window {window:?}"
        );
    };
    println!(
        "steady state ({backend}): {} relays, packets {n0}..{n1}: {allocations} allocations, RSS {rss0} KiB -> {rss1} KiB, kernel drops {kernel_drops}, ENOBUFS {enobufs}; {sent} sent, {} received ({:.3} % short)",
        RELAYS,
        got.0 + got.1,
        100.0 * sent.saturating_sub(got.0 + got.1) as f64 / sent as f64
    );
    assert_eq!(allocations, 0, "heap allocations while relaying");
    assert!(
        rss1 <= rss0 + 2048,
        "RSS grew from {rss0} KiB to {rss1} KiB"
    );
}

//! Soak (issue 20), bounded: pbxsim (the PBX) places calls through
//! `pbxlink run` to cloudsim (SIP-TLS, SRTP) without pause for
//! `PBXLINK_SOAK_SECONDS` (60 in CI; the documented long run is 1,800),
//! a new 2 s call every 150 ms (about 13 up at once). After a warm-up
//! the gateway's resident memory, its open file descriptors and the media
//! port pairs its calls hold are read; once the churn is over and the
//! calls have ended they must be back where they were: no descriptor and
//! no port pair leaked, memory within 8 MiB of the warm baseline (the
//! allocator keeps some), and every call placed completed.

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::pbxsim::PbxSim;
use pbxlink_tests::rig::{GatewayConfig, Workdir};
use pbxlink_tests::site::Site;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The site's first port (see `pbxlink_tests::site`).
const SITE: u16 = 23_950;
const USERS: u64 = 20;
/// The simulators' media ports: windows of 400 (200 calls each), so that
/// even the CI run's ~400 calls take them round and back to the start;
/// outside the gateway's own range (16,384–32,767 and 61,000–65,534 in
/// the `max` profile), which a host must leave to it.
const CLOUD_RTP: [&str; 4] = ["--rtp-base", "33000", "--rtp-ports", "400"];
const PBX_RTP_BASE: u16 = 44_000;

/// What the soak watches in the gateway's process and counters.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    rss_kib: u64,
    fds: usize,
    port_pairs: u64,
    calls_in_progress: u64,
}

fn footprint(site: &Site, pid: u32) -> Footprint {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let c = site.counters();
    let n = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("no counter {k}: {c}"))
    };
    Footprint {
        rss_kib,
        fds,
        port_pairs: n("port_pairs_in_use"),
        calls_in_progress: n("calls").saturating_sub(n("calls_ended")),
    }
}

/// Waits until every call pbxsim placed has ended and the gateway holds
/// none; pbxsim's outcomes then.
fn settled(site: &Site, sim: &PbxSim, pid: u32, placed: u64) -> (Value, Footprint) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = sim.sip_calls();
        let ended: u64 = o
            .as_object()
            .unwrap()
            .values()
            .filter_map(Value::as_u64)
            .sum();
        let f = footprint(site, pid);
        if ended >= placed && f.calls_in_progress == 0 && f.port_pairs == 0 {
            return (o, f);
        }
        assert!(
            Instant::now() < deadline,
            "the calls never all ended: {o} {f:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn steady_call_churn_leaves_memory_descriptors_and_ports_where_they_were() {
    let seconds: u64 = std::env::var("PBXLINK_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let t0 = Instant::now();
    let work = Workdir::new("soak");
    let site = Site::at(SITE);
    let cloud = site.cloudsim_with(&work, &CLOUD_RTP);
    let sim = site.pbxsim(
        USERS as u32,
        PBX_RTP_BASE,
        &["--rtp-ports", "400", "--answer-delay-ms", "100"],
    );
    let config = GatewayConfig {
        gateway: "state_dir = \"state\"",
        ..site.gateway_config(&cloud.ca)
    }
    .write(&work.dir);
    let gw = Gateway::run(&config, seconds + 120);
    gw.wait_for("trunk: connected to", Duration::from_secs(20));
    let pid = gw.pid();
    println!(
        "soak: peers and gateway up in {:.1} s",
        t0.elapsed().as_secs_f32()
    );

    let mut placed = 0u64;
    let place = |n: u64| {
        sim.place_call(&(1000 + n % USERS).to_string(), &format!("06{n:08}"), 2);
    };
    // Warm-up: the first calls fill the allocator's and the kernel's
    // caches; the baseline is taken once they are over.
    for _ in 0..20 {
        place(placed);
        placed += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    let (_, baseline) = settled(&site, &sim, pid, placed);
    println!(
        "soak: baseline after {placed} calls ({:.1} s): {baseline:?}",
        t0.elapsed().as_secs_f32()
    );

    let until = Instant::now() + Duration::from_secs(seconds);
    let mut peak = baseline;
    while Instant::now() < until {
        place(placed);
        placed += 1;
        std::thread::sleep(Duration::from_millis(150));
        if placed % 50 == 0 {
            let f = footprint(&site, pid);
            peak.rss_kib = peak.rss_kib.max(f.rss_kib);
            peak.fds = peak.fds.max(f.fds);
            peak.port_pairs = peak.port_pairs.max(f.port_pairs);
            peak.calls_in_progress = peak.calls_in_progress.max(f.calls_in_progress);
        }
    }
    let (outcome, after) = settled(&site, &sim, pid, placed);
    println!(
        "soak: {placed} calls in {seconds} s; peak {peak:?}; after {after:?}; outcomes {outcome}; pairs passed over as held elsewhere: {}; relays that could not be set up: {}",
        site.counters()["ports_unbindable"],
        site.counters()["relays_failed"]
    );
    assert_eq!(
        outcome["ended by pbxsim"].as_u64(),
        Some(placed),
        "every call completed: {outcome}"
    );
    assert!(peak.calls_in_progress >= 5, "calls overlapped: {peak:?}");
    assert_eq!(after.port_pairs, 0, "port pairs leaked");
    assert_eq!(
        after.fds, baseline.fds,
        "descriptors leaked: {baseline:?} → {after:?}"
    );
    assert!(
        after.rss_kib <= baseline.rss_kib + 8 * 1024,
        "memory grew: {baseline:?} → {after:?}"
    );
    drop(sim);
    drop(cloud);
    gw.stop();
    println!("soak: done in {:.1} s", t0.elapsed().as_secs_f32());
}

//! Faults (issue 20) through `pbxlink run` with real peers on loopback:
//! pbxsim as the PBX, cloudsim as the cloud platform (SIP-TLS, SRTP).
//!
//! The cloud vanishes mid-call (cloudsim killed: its SIP connection and its
//! media stop at once, as a crashed or cut-off platform). The gateway must
//! notice by the media timeout, hang the call up toward the PBX (the
//! cloud's BYE has nowhere to go), free the relay and its ports, record
//! the call, and once the cloud is back carry the next call.
//!
//! The gateway crashes with calls up (SIGKILL) and is started again at
//! once: it keeps no call or relay state across a restart, so the calls
//! in progress are lost — the PBX ends them by its own timer, its BYEs
//! are answered and change nothing — while the new process binds its
//! ports again, reconnects the trunk, holds no port pair and carries the
//! next call. The events it owed the platform when it died (its tunnel
//! cut beforehand) are in the outbox on disk and arrive, each once.
//!
//! The disk fills (the state directory on a 2 MiB tmpfs in a mount
//! namespace of the gateway's own, filled up from outside): calls go on,
//! every call record still reaches the platform from memory, the refused
//! writes are counted and told, and once there is room the outbox's log
//! is whole again (no torn line, nothing owed missing).

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::http;
use pbxlink_tests::proxy::Proxy;
use pbxlink_tests::rig::{GatewayConfig, Workdir};
use pbxlink_tests::site::{ADMIN_TOKEN, Site};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Each test's site (see `pbxlink_tests::site`).
const VANISHING: u16 = 24_250;
const DISK_FULL: u16 = 24_260;
const CRASH: u16 = 24_270;
const OVERFLOW: u16 = 24_280;

fn counter(site: &Site, name: &str) -> u64 {
    let c = site.counters();
    c[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {c}"))
}

fn tunnel_count(site: &Site, name: &str) -> u64 {
    let t = site.tunnel_status();
    t[name].as_u64().unwrap_or_else(|| panic!("no {name}: {t}"))
}

/// An INVITE to the gateway's trunk from the PBX's address, as the PBX
/// sends it over UDP: its final status and how long it took to come.
fn invite_answer(gateway: SocketAddr, to: &str, n: usize) -> (u16, Duration) {
    let pbx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = pbx.local_addr().unwrap();
    pbx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    let invite = format!(
        "INVITE sip:{to}@{gateway} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdown{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=down{n}\r\nTo: <sip:{to}@127.0.0.1>\r\n\
         Call-ID: cloud-down-{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let t = Instant::now();
    pbx.send_to(invite.as_bytes(), gateway).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let len = pbx.recv(&mut buf).expect("a final answer");
        let text = String::from_utf8_lossy(&buf[..len]);
        let status: u16 = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
        if status >= 200 {
            return (status, t.elapsed());
        }
    }
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_cloud_vanishing_mid_call_ends_it_frees_its_media_and_the_next_call_works() {
    let work = Workdir::new("faults");
    let site = Site::at(VANISHING);
    let cloud = site.cloudsim(&work);
    let sim = site.pbxsim(4, 44_600, &[]);
    let config = GatewayConfig {
        gateway: "media_timeout_seconds = 3\ncdr_file = \"cdr.jsonl\"",
        ..site.gateway_config(&cloud.ca)
    }
    .write(&work.dir);
    let gw = Gateway::run(&config, 120);
    gw.wait_for("trunk: connected to", Duration::from_secs(20));

    let place = |to: &str| sim.place_call("1000", to, 60);
    place("0611111111");
    wait("the call connected", Duration::from_secs(15), || {
        sim.sip_calls()["connected"].as_u64() == Some(1)
    });
    // Media flows both ways through the relay before the fault.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        counter(&site, "port_pairs_in_use"),
        2,
        "a call holds a pair each side"
    );

    // The cloud is gone: process, connection and media at once.
    let t = Instant::now();
    drop(cloud);
    wait(
        "the gateway ended the call toward the PBX",
        Duration::from_secs(15),
        || sim.sip_calls()["ended by the gateway"].as_u64() == Some(1),
    );
    let noticed = t.elapsed();
    wait(
        "the relay and its ports freed",
        Duration::from_secs(10),
        || counter(&site, "port_pairs_in_use") == 0 && counter(&site, "relays") == 0,
    );
    println!(
        "cloud vanished: call ended toward the PBX after {:.1} s, relay and ports freed",
        noticed.as_secs_f32()
    );
    assert!(
        noticed >= Duration::from_secs(2) && noticed < Duration::from_secs(12),
        "ended by the media timeout (3 s): {noticed:?}"
    );
    assert_eq!(counter(&site, "media_timeouts"), 1);
    assert_eq!(counter(&site, "calls_failed"), 1);
    gw.wait_for("media timeout", Duration::from_secs(5));
    // The call is recorded with why it ended.
    wait("the call record", Duration::from_secs(10), || {
        std::fs::read_to_string(work.dir.join("cdr.jsonl")).is_ok_and(|t| t.lines().count() == 1)
    });
    let cdr: Value = serde_json::from_str(
        std::fs::read_to_string(work.dir.join("cdr.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        cdr["cause"]
            .as_str()
            .unwrap_or("")
            .contains("media timeout"),
        "{cdr}"
    );
    assert!(cdr["to_cloud"]["rtp"].as_u64() > Some(0), "{cdr}");

    // With the cloud trunk down, a PBX call gets its final answer at
    // once — 503, so the PBX takes its next route — an emergency call
    // above all, and holds nothing.
    gw.wait_for("trunk: connection to", Duration::from_secs(10));
    let unrouted = counter(&site, "calls_unrouted");
    for (n, to) in ["0633333333", "112", "911"].iter().enumerate() {
        let (status, took) = invite_answer(site.gateway_sip(), to, n);
        println!("cloud trunk down: INVITE to {to} answered {status} in {took:?}");
        assert_eq!(status, 503, "INVITE to {to} with the cloud trunk down");
        assert!(took < Duration::from_secs(1), "answered in {took:?}");
    }
    assert_eq!(counter(&site, "calls_unrouted"), unrouted + 3);
    assert_eq!(counter(&site, "port_pairs_in_use"), 0);
    gw.wait_for(
        "refused 503: the cloud trunk is down",
        Duration::from_secs(5),
    );
    wait("the refusals recorded", Duration::from_secs(10), || {
        std::fs::read_to_string(work.dir.join("cdr.jsonl"))
            .is_ok_and(|t| t.matches("Refused(503): the cloud trunk is down").count() == 3)
    });

    // The cloud comes back: the trunk reconnects and the next call works.
    let cloud = site.cloudsim(&work);
    gw.wait_count("trunk: connected to", 2, Duration::from_secs(40));
    place("0622222222");
    wait("the next call connected", Duration::from_secs(15), || {
        sim.sip_calls()["connected"].as_u64() == Some(1)
    });
    assert_eq!(
        counter(&site, "port_pairs_in_use"),
        2,
        "a call holds a pair each side"
    );
    drop(sim);
    drop(cloud);
    gw.stop();
}

#[test]
fn a_full_disk_stops_no_call_and_loses_no_event() {
    let work = Workdir::new("disk-full");
    let state = work.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let site = Site::at(DISK_FULL);
    let cloud = site.cloudsim(&work);
    let sim = site.pbxsim(4, 44_700, &[]);
    let sections = site.tunnel_sections(site.tunnel(), &cloud.ca);
    let gateway = format!("state_dir = \"{}\"", state.display());
    let config = GatewayConfig {
        gateway: &gateway,
        sections: &sections,
        ..site.gateway_config(&cloud.ca)
    }
    .write(&work.dir);
    // Its own mount namespace, the state directory a small tmpfs there:
    // the machine's disks are never filled.
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg("mount -t tmpfs -o size=2m,mode=0700 pbxlink-test \"$0\" && exec \"$@\"")
        .arg(&state)
        .arg(pbxlink_tests::gateway::binary())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--seconds", "120"]);
    let gw = Gateway::spawn(command);
    gw.wait_for("tunnel: connected to", Duration::from_secs(30));
    let inside = std::path::PathBuf::from(format!("/proc/{}/root", gw.pid()))
        .join(state.strip_prefix("/").unwrap());
    assert!(inside.join("outbox").is_dir(), "the gateway's state dir");

    // Fill it.
    let filler = inside.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0;
        while f.write_all(&chunk).is_ok() && written < 8 << 20 {
            written += chunk.len();
        }
        let _ = f.sync_all();
        assert!(written < 8 << 20, "the tmpfs never filled");
    }
    let tunnel = |name: &str| tunnel_count(&site, name);
    let place = |to: &str| sim.place_call("1000", to, 2);
    // A call while the disk is full: it goes through, and its record
    // reaches the platform from memory.
    place("0633333333");
    wait("the call ended normally", Duration::from_secs(20), || {
        sim.sip_calls()["ended by pbxsim"].as_u64() == Some(1)
    });
    cloud.wait_gateway("the first call's record", Duration::from_secs(20), |g| {
        g["by_kind"]["cdr"].as_u64() == Some(1)
    });
    let failures = tunnel("outbox_write_failures");
    assert!(failures >= 1, "the refused writes counted");
    // The log's last page may still hold a few lines: the start-up
    // diagnostics, run again, log until it is full.
    wait("the log file refused", Duration::from_secs(60), || {
        let told = gw
            .output()
            .iter()
            .any(|l| l.contains("the log file cannot be written"));
        if !told {
            let bearer = format!("Bearer {ADMIN_TOKEN}");
            http::request(
                site.admin(),
                "POST",
                "/api/diagnostics",
                &[("Authorization", bearer.as_str())],
                "",
            );
            std::thread::sleep(Duration::from_millis(400));
        }
        told
    });

    // Room again: the next record is written, and the log is whole. The
    // refusals are counted again here: the diagnostics run above, and the
    // tunnel's status events meanwhile, were refused too while full.
    let failures = tunnel("outbox_write_failures");
    std::fs::remove_file(&filler).unwrap();
    place("0644444444");
    wait(
        "the second call ended normally",
        Duration::from_secs(20),
        || sim.sip_calls()["ended by pbxsim"].as_u64() == Some(2),
    );
    cloud.wait_gateway("the second call's record", Duration::from_secs(20), |g| {
        g["by_kind"]["cdr"].as_u64() == Some(2) && g["gaps"] == 0
    });
    let log = std::fs::read_to_string(inside.join("outbox/events.log")).unwrap();
    for line in log.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("a torn line in the outbox's log ({e}): {line:?}"));
    }
    assert_eq!(
        tunnel("outbox_write_failures"),
        failures,
        "no refused write once there is room"
    );
    println!(
        "disk full: both calls carried, both records delivered; {failures} refused outbox write(s) counted; the log whole again ({} line(s))",
        log.lines().count()
    );
    drop(sim);
    drop(cloud);
    gw.stop();
}

#[test]
fn a_crash_with_calls_up_loses_those_calls_keeps_its_outbox_and_starts_clean() {
    let work = Workdir::new("crash");
    let site = Site::at(CRASH);
    let cloud = site.cloudsim(&work);
    let sim = site.pbxsim(4, 44_800, &[]);
    // The tunnel through a proxy the test cuts, so that events are owed
    // (kept in the outbox, not yet delivered) when the gateway dies.
    let in_front = SocketAddr::from(([127, 0, 0, 1], CRASH + 8));
    let proxy = Proxy::start(in_front, site.tunnel());
    let sections = site.tunnel_sections(in_front, &cloud.ca);
    let gateway = format!("state_dir = \"{}\"", work.dir.join("state").display());
    let config = GatewayConfig {
        gateway: &gateway,
        sections: &sections,
        ..site.gateway_config(&cloud.ca)
    }
    .write(&work.dir);
    let gw = Gateway::run(&config, 120);
    gw.wait_for("trunk: connected to", Duration::from_secs(20));
    gw.wait_for("tunnel: connected to", Duration::from_secs(20));
    proxy.cut();
    gw.wait_for("tunnel: lost", Duration::from_secs(10));

    // Owed: a short call's record (and its CTI events), then two calls
    // that pbxsim hangs up after 10 s, up when the gateway dies.
    sim.place_call("1003", "0600000000", 1);
    wait("the short call over", Duration::from_secs(15), || {
        sim.sip_calls()["ended by pbxsim"].as_u64() == Some(1)
    });
    sim.place_call("1000", "0611111111", 10);
    sim.place_call("1001", "0622222222", 10);
    wait("both calls connected", Duration::from_secs(15), || {
        sim.sip_calls()["connected"].as_u64() == Some(2)
    });
    assert_eq!(counter(&site, "port_pairs_in_use"), 4);
    let owed = tunnel_count(&site, "last_id");
    assert!(
        tunnel_count(&site, "backlog") > 0 && cloud.gateway()["highest"].as_u64() < Some(owed),
        "events owed when the gateway dies"
    );

    // SIGKILL (the test's handle kills on drop), then straight back up.
    let t = Instant::now();
    drop(gw);
    proxy.restore();
    let gw = Gateway::run(&config, 120);
    gw.wait_for("trunk: connected to", Duration::from_secs(30));
    let back = t.elapsed();
    assert_eq!(counter(&site, "calls"), 0, "no call state survives");
    assert_eq!(counter(&site, "port_pairs_in_use"), 0);

    // What the outbox held reaches the platform, each event once.
    let g = cloud.wait_gateway(
        "the outbox delivered after the crash",
        Duration::from_secs(30),
        |g| g["highest"].as_u64() >= Some(owed),
    );
    assert_eq!(g["gaps"], 0, "nothing lost: {g}");
    assert_eq!(g["events"], g["highest"], "each stored once: {g}");
    assert_eq!(
        g["by_kind"]["cdr"].as_u64(),
        Some(1),
        "the short call's record: {g}"
    );

    // The PBX ends the lost calls itself: its BYEs reach a gateway that
    // does not know them, and nothing is set up or held for them.
    let requests = counter(&site, "requests");
    wait(
        "pbxsim ended the lost calls",
        Duration::from_secs(20),
        || sim.sip_calls()["ended by pbxsim"].as_u64() == Some(3),
    );
    wait(
        "the gateway received both BYEs",
        Duration::from_secs(5),
        || counter(&site, "requests") >= requests + 2,
    );
    assert_eq!(counter(&site, "calls"), 0);
    assert_eq!(counter(&site, "port_pairs_in_use"), 0);
    assert_eq!(counter(&site, "relays"), 0);

    // The next call goes through the restarted gateway.
    sim.place_call("1002", "0633333333", 30);
    wait("the next call connected", Duration::from_secs(15), || {
        sim.sip_calls()["connected"].as_u64() == Some(1)
    });
    assert_eq!(counter(&site, "port_pairs_in_use"), 2);
    println!(
        "crash with 2 calls up: the gateway back with its trunk connected {:.1} s after SIGKILL; the {owed} events owed delivered once each; the lost calls ended by the PBX; the next call connected",
        back.as_secs_f32()
    );
    drop(sim);
    drop(cloud);
    gw.stop();
}

/// The outbox overflows while the tunnel is cut: `outbox_overflow` is
/// raised once for the episode (not once per overflowing batch), its
/// event takes no place among the `outbox_events` kept, and once the
/// platform has what was left its clearing arrives as `raised: false`.
#[test]
fn an_overflowing_outbox_raises_its_alarm_once_outside_the_bound_and_clears_it() {
    let work = Workdir::new("overflow");
    let site = Site::at(OVERFLOW);
    let cloud = site.cloudsim(&work);
    let sim = site.pbxsim(4, 45_000, &[]);
    let in_front = SocketAddr::from(([127, 0, 0, 1], OVERFLOW + 8));
    let proxy = Proxy::start(in_front, site.tunnel());
    let sections = format!(
        "{}outbox_events = 20\n",
        site.tunnel_sections(in_front, &cloud.ca)
    );
    let config = GatewayConfig {
        sections: &sections,
        ..site.gateway_config(&cloud.ca)
    }
    .write(&work.dir);
    let gw = Gateway::run(&config, 120);
    gw.wait_for("tunnel: connected to", Duration::from_secs(20));
    let id = site.tunnel_status()["gateway"].as_str().unwrap().to_owned();
    proxy.cut();
    gw.wait_for("tunnel: lost", Duration::from_secs(10));

    // Fifteen syncs while cut: two events each, well past twenty.
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for _ in 0..15 {
        let a = http::request(
            site.admin(),
            "POST",
            "/api/sync",
            &[("Authorization", bearer.as_str())],
            "",
        );
        assert_eq!(a.status, 200, "{}", a.text);
    }
    let log = std::fs::read_to_string(work.dir.join("state/outbox/events.log")).unwrap();
    let owed: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect();
    let alarms = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["kind"] == "alarm" && e["body"]["alarm"] == "outbox_overflow")
            .map(|e| e["body"]["raised"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(alarms(&owed), [json!(true)], "raised once in the episode");
    let status = site.tunnel_status();
    assert_eq!(
        status["backlog"], 21,
        "twenty kept, the alarm besides: {status}"
    );
    assert!(status["outbox_dropped"].as_u64() >= Some(10), "{status}");
    let overflow_on_page = || {
        site.admin_get("/api/alarms")["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["code"] == "outbox_overflow")
    };
    assert!(overflow_on_page(), "the page shows the alarm");

    // Back: the platform takes what is left, and hears the alarm cleared.
    proxy.restore();
    let heard = || {
        let got = cloud.get(&format!("/gateways/{id}/events?kind=alarm"));
        got.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|e| e["body"]["alarm"] == "outbox_overflow")
            .map(|e| e["body"]["raised"].clone())
            .collect::<Vec<_>>()
    };
    wait(
        "the alarm cleared at the platform",
        Duration::from_secs(30),
        || heard() == [json!(true), json!(false)],
    );
    wait("the alarm off the page", Duration::from_secs(5), || {
        !overflow_on_page()
    });
    gw.wait_for("outbox overflow is over", Duration::from_secs(5));
    drop(sim);
    drop(cloud);
    gw.stop();
}

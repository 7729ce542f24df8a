//! A PBX whose SIP trunk runs over TCP (`[pbx] transport = "tcp"`), on
//! 127.0.0.1: the gateway dials its own connection to the PBX (sipp over
//! TCP, `peers/sipp/uas_pcap.xml`) and a call from the cloud (baresip over
//! the TLS trunk) goes to the PBX over it, audio both ways. Before the PBX
//! listens, the gateway keeps trying; once sipp is gone (the connection
//! closed), a call from the cloud is refused with 503 instead of being
//! sent where nothing listens.

use pbxlink_tests::baresip::Baresip;
use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::rig::{GatewayConfig, Workdir, media_count, run_gateway};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

const GW_SIP: u16 = 26_150;
const PBX_SIP: u16 = 26_160;
const CLOUD_SIP: u16 = 26_101; // baresip's TLS: 26_102

#[test]
fn calls_reach_a_pbx_over_the_gateways_tcp_connection() {
    let work = Workdir::new("pbxtcp");
    let dir = &work.dir;
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (ca_file, cloud_pem) = work.cloud_pki(localhost);
    let tone = work.tone("tone.wav", 1000.0);
    let mut cloud = Baresip::start(
        &dir.join("cloud"),
        CLOUD_SIP,
        &cloud_pem,
        &ca_file,
        "cloud",
        &tone,
    );
    let config = GatewayConfig {
        pbx_extra: "transport = \"tcp\"",
        ..GatewayConfig::loopback(&ca_file, GW_SIP, PBX_SIP, CLOUD_SIP + 1)
    }
    .write(dir);
    // The gateway first: the PBX is not there yet.
    let (gw, trunk_end) = run_gateway(&Default::default(), &config);
    gw.wait_for("pbx: connecting to", Duration::from_secs(10));

    let pbx = Command::new("sipp")
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &PBX_SIP.to_string(),
            "-t",
            "t1",
            "-aa",
        ])
        .args([
            "-mp",
            "26600",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
        ])
        .arg("-sf")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/sipp/uas_pcap.xml"))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sipp runs (tests/run installs sip-tester)");
    let link = gw.wait_for("pbx: connected to", Duration::from_secs(10));
    cloud.command(&format!("/dial 201@{trunk_end}"));
    cloud.wait_for("Call established", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    cloud.command("/hangup");
    let out = pbx.wait_with_output().expect("sipp ends");
    assert!(
        out.status.success(),
        "sipp over TCP: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ended = gw.wait_for("call 1: ended", Duration::from_secs(5));
    let media = gw.wait_for("call 1: media to cloud", Duration::from_secs(5));

    // sipp is gone: the next call from the cloud is refused.
    gw.wait_for("pbx: connection to", Duration::from_secs(10));
    let before = cloud.output().len();
    cloud.command(&format!("/dial 202@{trunk_end}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cloud.output()[before..].iter().any(|l| l.contains("503")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no 503 while the PBX is down:\n{}",
            cloud.output()[before..].join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = gw.stop();
    println!("{link}\n{ended}\n{media}");
    assert!(ended.contains("Hangup(Cloud)"), "{ended}");
    assert!(
        media_count(&media, "to cloud ") >= 50 && media_count(&media, "to PBX ") >= 50,
        "audio both ways: {media}"
    );
    let fin = final_line(&lines);
    assert_eq!(field(fin, "calls"), 1, "{fin}");
    assert_eq!(field(fin, "calls_unrouted"), 1, "{fin}");
    drop(cloud);
}

//! SIP over UDP toward the PBX survives loss: the gateway's messages to
//! sipp (the PBX) cross a lossy wire (`pbxlink_tests::lossy`) that loses
//! the gateway's first INVITE and its first 200 OK, on 127.0.0.1; the
//! cloud is baresip over the TLS trunk.
//!
//! - A call from the cloud: the INVITE toward the PBX is lost; the
//!   gateway sends it again (RFC 3261 Timer A, 0.5 s) and the call
//!   connects (`peers/sipp/uas_pcap.xml`, audio both ways).
//! - A call from the PBX (sipp `uac_pcap`): the gateway's 200 is lost;
//!   sipp stopped retransmitting its INVITE at the gateway's 100 Trying,
//!   so only the gateway's own retransmission of the 200 (§13.3.1.4) can
//!   get the call up.

use pbxlink_tests::baresip::Baresip;
use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::lossy::LossyWire;
use pbxlink_tests::rig::{GatewayConfig, Workdir, media_count, run_gateway, sipp_passes};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

const GW_SIP: u16 = 26_050;
const PBX_SIP: u16 = 26_060;
const CLOUD_SIP: u16 = 26_001; // baresip's TLS: 26_002

#[test]
fn a_lost_invite_and_a_lost_200_are_sent_again() {
    let work = Workdir::new("loss");
    let dir = &work.dir;
    let (mut lost_invite, mut lost_ok) = (false, false);
    let wire = LossyWire::new(
        SocketAddr::from((Ipv4Addr::LOCALHOST, GW_SIP)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, PBX_SIP)),
        move |d| {
            if !lost_invite && d.starts_with(b"INVITE ") {
                lost_invite = true;
                return true;
            }
            if !lost_ok && d.starts_with(b"SIP/2.0 200") {
                lost_ok = true;
                return true;
            }
            false
        },
    );
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
    // The PBX is reached through the lossy wire.
    let config = GatewayConfig {
        pbx: wire.pbx_for_gateway,
        ..GatewayConfig::loopback(&ca_file, GW_SIP, 0, CLOUD_SIP + 1)
    }
    .write(dir);
    let (gw, trunk_end) = run_gateway(&Default::default(), &config);
    let sipp = || {
        let mut c = Command::new("sipp");
        c.args(["-i", "127.0.0.1", "-p", &PBX_SIP.to_string(), "-aa"])
            .args([
                "-mp",
                "26500",
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "30s",
                "-timeout_error",
            ])
            .current_dir(dir)
            .stdout(Stdio::piped());
        c
    };
    // From the cloud; the INVITE toward the PBX is lost once.
    let pbx = sipp()
        .arg("-sf")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/sipp/uas_pcap.xml"))
        .spawn()
        .expect("sipp runs (tests/run installs sip-tester)");
    std::thread::sleep(Duration::from_millis(500));
    cloud.command(&format!("/dial 201@{trunk_end}"));
    cloud.wait_for("Call established", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4)); // sipp's audio starts after 1 s
    cloud.command("/hangup");
    sipp_passes(pbx, "the call whose INVITE was lost");
    let first = gw.wait_for("call 1: ended", Duration::from_secs(5));
    let first_media = gw.wait_for("call 1: media to cloud", Duration::from_secs(5));

    // From the PBX; the gateway's 200 is lost once.
    let pbx = sipp()
        .args(["-sn", "uac_pcap", "-s", "cloud"])
        .arg(wire.gateway_for_pbx.to_string())
        .spawn()
        .expect("sipp runs");
    sipp_passes(pbx, "the call whose 200 was lost");
    let second = gw.wait_for("call 2: ended", Duration::from_secs(5));
    let second_media = gw.wait_for("call 2: media to cloud", Duration::from_secs(5));
    let lines = gw.stop();
    println!("{first}\n{first_media}\n{second}\n{second_media}");
    assert_eq!(wire.lost(), 2, "the INVITE and the 200 were lost");
    assert!(first.contains("Hangup(Cloud)"), "{first}");
    assert!(second.contains("Hangup(Pbx)"), "{second}");
    for media in [&first_media, &second_media] {
        assert!(
            media_count(media, "to cloud ") >= 50 && media_count(media, "to PBX ") >= 50,
            "audio both ways: {media}"
        );
    }
    let fin = final_line(&lines);
    assert_eq!(field(fin, "calls_ended"), 2, "{fin}");
    drop(cloud);
}

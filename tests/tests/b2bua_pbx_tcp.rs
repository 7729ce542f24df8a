//! A PBX whose SIP trunk runs over TCP (`[pbx] transport = "tcp"`), on
//! 127.0.0.1: the gateway dials its own connection to the PBX (sipp over
//! TCP, `peers/sipp/uas_pcap.xml`) and a call from the cloud (baresip over
//! the TLS trunk) goes to the PBX over it, audio both ways. Before the PBX
//! listens, the gateway keeps trying; once sipp is gone (the connection
//! closed), a call from the cloud is refused with 503 instead of being
//! sent where nothing listens.

use pbxlink_tests::baresip::{self, Baresip};
use pbxlink_tests::gateway::{Gateway, field};
use pbxlink_tests::pki::TestCa;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

const GW_SIP: u16 = 26_150;
const PBX_SIP: u16 = 26_160;
const CLOUD_SIP: u16 = 26_101; // baresip's TLS: 26_102

fn count(line: &str, label: &str) -> u64 {
    line.split(label)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn calls_reach_a_pbx_over_the_gateways_tcp_connection() {
    let dir = std::env::temp_dir().join(format!("pbxlink-pbxtcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pcap")).unwrap();
    std::os::unix::fs::symlink(
        "/usr/share/sip-tester/g711a.pcap",
        dir.join("pcap/g711a.pcap"),
    )
    .unwrap();
    let ca = TestCa::new("pbxlink test CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let (cert, key) = ca.leaf(&["cloud.test"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let cloud_pem = dir.join("cloud.pem");
    std::fs::write(&cloud_pem, format!("{cert}{key}")).unwrap();
    let tone = dir.join("tone.wav");
    baresip::tone_wav(&tone, 1000.0, 30);
    let mut cloud = Baresip::start(
        &dir.join("cloud"),
        CLOUD_SIP,
        &cloud_pem,
        &ca_file,
        "cloud",
        &tone,
    );
    let config = dir.join("pbxlink.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlan_address = \"127.0.0.1\"\nprofile = \"max\"\nnetworks = [\"127.0.0.0/8\"]\n\n\
             [pbx]\ntype = \"mx-one\"\naddress = \"127.0.0.1\"\nport = {PBX_SIP}\ntransport = \"tcp\"\n\n\
             [cloud]\ntargets = [\"tls:127.0.0.1:{}\"]\nca = \"{}\"\n\
             srtp_suites = [\"AES_CM_128_HMAC_SHA1_80\"]\n\n\
             [sip]\nport = {GW_SIP}\n",
            CLOUD_SIP + 1,
            ca_file.display()
        ),
    )
    .unwrap();
    // The gateway first: the PBX is not there yet.
    let gw = Gateway::start(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--seconds",
            "60",
        ]
        .map(String::from),
    );
    let connected = gw.wait_for("trunk: connected to", Duration::from_secs(20));
    let trunk_end = connected.rsplit(' ').next().unwrap().to_owned();
    gw.wait_for("pbx: connecting to", Duration::from_secs(10));

    let pbx = Command::new("sipp")
        .args(["-i", "127.0.0.1", "-p", &PBX_SIP.to_string(), "-t", "t1"])
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
        .current_dir(&dir)
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
        count(&media, "to cloud ") >= 50 && count(&media, "to PBX ") >= 50,
        "audio both ways: {media}"
    );
    let fin = lines
        .iter()
        .find(|l| l.starts_with("final:"))
        .expect("final line");
    assert_eq!(field(fin, "calls"), 1, "{fin}");
    assert_eq!(field(fin, "calls_unrouted"), 1, "{fin}");
    drop(cloud);
    let _ = std::fs::remove_dir_all(&dir);
}

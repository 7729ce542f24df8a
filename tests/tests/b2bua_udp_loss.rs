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

use pbxlink_tests::baresip::{self, Baresip};
use pbxlink_tests::gateway::{Gateway, field};
use pbxlink_tests::lossy::LossyWire;
use pbxlink_tests::pki::TestCa;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

const GW_SIP: u16 = 26_050;
const PBX_SIP: u16 = 26_060;
const CLOUD_SIP: u16 = 26_001; // baresip's TLS: 26_002

fn count(line: &str, label: &str) -> u64 {
    line.split(label)
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_lost_invite_and_a_lost_200_are_sent_again() {
    let dir = std::env::temp_dir().join(format!("pbxlink-loss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pcap")).unwrap();
    for f in ["g711a.pcap", "dtmf_2833_1.pcap"] {
        std::os::unix::fs::symlink(
            format!("/usr/share/sip-tester/{f}"),
            dir.join("pcap").join(f),
        )
        .unwrap();
    }
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
             [pbx]\ntype = \"mivoice-5000\"\naddress = \"127.0.0.1\"\nport = {}\n\n\
             [cloud]\ntargets = [\"tls:127.0.0.1:{}\"]\nca = \"{}\"\n\
             srtp_suites = [\"AES_CM_128_HMAC_SHA1_80\"]\n\n\
             [sip]\nport = {GW_SIP}\n",
            wire.pbx_for_gateway.port(),
            CLOUD_SIP + 1,
            ca_file.display()
        ),
    )
    .unwrap();
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
    let sipp = || {
        let mut c = Command::new("sipp");
        c.args(["-i", "127.0.0.1", "-p", &PBX_SIP.to_string()])
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
            .current_dir(&dir)
            .stdout(Stdio::piped());
        c
    };
    let passes = |child: std::process::Child, what: &str| {
        let out = child.wait_with_output().expect("sipp ends");
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .join("\n")
        );
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
    passes(pbx, "the call whose INVITE was lost");
    let first = gw.wait_for("call 1: ended", Duration::from_secs(5));
    let first_media = gw.wait_for("call 1: media to cloud", Duration::from_secs(5));

    // From the PBX; the gateway's 200 is lost once.
    let pbx = sipp()
        .args(["-sn", "uac_pcap", "-s", "cloud"])
        .arg(wire.gateway_for_pbx.to_string())
        .spawn()
        .expect("sipp runs");
    passes(pbx, "the call whose 200 was lost");
    let second = gw.wait_for("call 2: ended", Duration::from_secs(5));
    let second_media = gw.wait_for("call 2: media to cloud", Duration::from_secs(5));
    let lines = gw.stop();
    println!("{first}\n{first_media}\n{second}\n{second_media}");
    assert_eq!(wire.lost(), 2, "the INVITE and the 200 were lost");
    assert!(first.contains("Hangup(Cloud)"), "{first}");
    assert!(second.contains("Hangup(Pbx)"), "{second}");
    for media in [&first_media, &second_media] {
        assert!(
            count(media, "to cloud ") >= 50 && count(media, "to PBX ") >= 50,
            "audio both ways: {media}"
        );
    }
    let fin = lines
        .iter()
        .find(|l| l.starts_with("final:"))
        .expect("final line");
    assert_eq!(field(fin, "calls_ended"), 2, "{fin}");
    drop(cloud);
    let _ = std::fs::remove_dir_all(&dir);
}

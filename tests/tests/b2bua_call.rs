//! A call through `pbxlink run` between real peers, all on 127.0.0.1:
//! sipp (Debian `sip-tester`) is the PBX over UDP, then TCP, running its `uac_pcap`
//! scenario (INVITE, then G.711 A-law audio from `g711a.pcap`, then BYE);
//! baresip (Debian `baresip-core`) is the cloud, reached over the
//! gateway's TLS trunk (certificate from a CA made here), answering with
//! `mediaenc=srtp-mand` and playing a 1 kHz tone.
//!
//! It shows: the call set up across both trunks; the PBX's audio reaching
//! the cloud as SRTP that baresip decrypts (its recording of what it
//! decoded carries the audio; no decryption failures); the cloud's tone
//! relayed toward the PBX; the PBX's BYE ending both legs and freeing the
//! relay, whose final counters show no authentication failures. Then a
//! call from the cloud: baresip dials over the gateway's own trunk
//! connection (RFC 5923-style reuse; the cloud cannot dial in), sipp
//! answers as the PBX (its `uas` scenario), the tone reaches the PBX side,
//! and the cloud's hang-up ends both legs. Last, a delayed offer from the
//! PBX (`peers/sipp/uac_delayed_offer.xml`: no SDP in the INVITE, the
//! answer in the ACK) carries audio both ways; and baresip holds and
//! resumes a call to sipp (`peers/sipp/uas_hold.xml`) through the gateway.

use pbxlink_tests::baresip::{self, Baresip};
use pbxlink_tests::gateway::{Gateway, field, final_line};
use pbxlink_tests::pki::TestCa;
use pbxlink_tests::rig::media_count;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Duration;

const GW_SIP: u16 = 25_750;
const PBX_SIP: u16 = 25_760;
const CLOUD_SIP: u16 = 25_701; // baresip's TLS: 25_702
const PBX_MEDIA: u16 = 26_200;

/// sipp as the PBX for one call: on 127.0.0.1:`port`, media on
/// `media`, run in `dir` (where `pcap/` is), bounded in time.
fn sipp_pbx(dir: &std::path::Path, port: u16, media: u16) -> Command {
    let mut c = Command::new("sipp");
    c.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-aa"])
        .args(["-mp", &media.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "30s", "-timeout_error"])
        .current_dir(dir);
    c
}

#[test]
fn calls_both_ways_between_sipp_and_baresip() {
    let dir = std::env::temp_dir().join(format!("pbxlink-b2bua-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("pcap")).unwrap();
    let ca = TestCa::new("pbxlink test CA");
    let ca_file = ca.write(&dir, "ca.pem");
    let (cert, key) = ca.leaf(&["cloud.test"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let cloud_pem = dir.join("cloud.pem");
    std::fs::write(&cloud_pem, format!("{cert}{key}")).unwrap();
    let tone = dir.join("tone.wav");
    baresip::tone_wav(&tone, 1000.0, 20);

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
             [pbx]\ntype = \"mivoice-5000\"\naddress = \"127.0.0.1\"\nport = {PBX_SIP}\nkeepalive_seconds = 0\n\n\
             [cloud]\ntargets = [\"tls:127.0.0.1:{}\"]\nca = \"{}\"\n\
             # baresip 1.0 mis-reads AEAD_AES_128_GCM keys: offer AES-CM only.\n\
             srtp_suites = [\"AES_CM_128_HMAC_SHA1_80\", \"AES_CM_128_HMAC_SHA1_32\"]\n\n\
             [sip]\nport = {GW_SIP}\n\n[admin]\nlisten = \"off\"\n",
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
    gw.wait_for("trunk: connected to", Duration::from_secs(20));

    // The PBX: sipp's uac_pcap plays pcap/g711a.pcap from its directory.
    for f in ["g711a.pcap", "dtmf_2833_1.pcap"] {
        std::os::unix::fs::symlink(
            format!("/usr/share/sip-tester/{f}"),
            dir.join("pcap").join(f),
        )
        .unwrap();
    }
    let sipp = |transport: &str, port: u16| {
        let out = sipp_pbx(&dir, port, PBX_MEDIA)
            .args(["-sn", "uac_pcap", "-s", "cloud", "-t", transport])
            .arg(format!("127.0.0.1:{GW_SIP}"))
            .output()
            .expect("sipp runs (tests/run installs sip-tester)");
        assert!(
            out.status.success(),
            "sipp's call over {transport} failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    sipp("u1", PBX_SIP);
    let media = gw.wait_for("call 1: media to cloud", Duration::from_secs(10));
    let ended = gw.wait_for("call 1: ended", Duration::from_secs(1));
    cloud.wait_for("terminated", Duration::from_secs(10));
    // The same over TCP: responses and the BYE on the PBX's connection.
    sipp("t1", PBX_SIP + 1);
    let media_tcp = gw.wait_for("call 2: media to cloud", Duration::from_secs(10));
    let ended_tcp = gw.wait_for("call 2: ended", Duration::from_secs(1));

    // A call from the cloud: baresip dials over the gateway's own trunk
    // connection (the cloud cannot dial in); sipp answers as the PBX.
    let uas = sipp_pbx(&dir, PBX_SIP, PBX_MEDIA + 10)
        .args(["-sn", "uas"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sipp runs");
    let connected = gw.wait_for("trunk: connected to", Duration::from_secs(1));
    let trunk_end = connected.rsplit(' ').next().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(500)); // sipp listening
    cloud.command(&format!("/dial sips:201@{trunk_end}"));
    cloud.wait_for("Call established", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3)); // the tone flows to the PBX
    cloud.command("/hangup");
    let uas = uas.wait_with_output().expect("sipp ends");
    assert!(
        uas.status.success(),
        "sipp as the PBX's UAS: {:?}",
        uas.status
    );
    let media_in = gw.wait_for("call 3: media to cloud", Duration::from_secs(10));
    let ended_in = gw.wait_for("call 3: ended", Duration::from_secs(1));

    // A delayed offer from the PBX: the INVITE without SDP, baresip offers
    // in its 200, sipp answers in its ACK, then audio and BYE.
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/sipp/uac_delayed_offer.xml");
    let out = sipp_pbx(&dir, PBX_SIP, PBX_MEDIA)
        .arg("-sf")
        .arg(&scenario)
        .args(["-s", "cloud"])
        .arg(format!("127.0.0.1:{GW_SIP}"))
        .output()
        .expect("sipp runs");
    assert!(
        out.status.success(),
        "the delayed-offer call failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let media_delayed = gw.wait_for("call 4: media to cloud", Duration::from_secs(10));
    let ended_delayed = gw.wait_for("call 4: ended", Duration::from_secs(1));

    // Hold and resume: baresip calls, holds, resumes and hangs up; its
    // re-INVITEs cross the gateway and sipp (peers/sipp/uas_hold.xml)
    // answers them recvonly, then sendrecv — the scenario passes only if
    // both arrive and then the BYE.
    let hold_scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/sipp/uas_hold.xml");
    let uas = sipp_pbx(&dir, PBX_SIP, PBX_MEDIA + 10)
        .arg("-sf")
        .arg(&hold_scenario)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sipp runs");
    std::thread::sleep(Duration::from_millis(500));
    let before = cloud.output().len();
    cloud.command(&format!("/dial sips:201@{trunk_end}"));
    let established = |b: &Baresip, n: usize| {
        b.output()[before..]
            .iter()
            .filter(|l| l.contains("Call established"))
            .count()
            >= n
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !established(&cloud, 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the held call was not established"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    cloud.command("/hold");
    std::thread::sleep(Duration::from_secs(2));
    cloud.command("/resume");
    std::thread::sleep(Duration::from_secs(2));
    cloud.command("/hangup");
    let uas = uas.wait_with_output().expect("sipp ends");
    assert!(
        uas.status.success(),
        "sipp did not see hold, resume and BYE: {:?}",
        uas.status
    );
    let ended_hold = gw.wait_for("call 5: ended", Duration::from_secs(10));
    gw.wait_relays_gone("call 5: ended");
    let lines = gw.stop();
    assert!(ended_hold.contains("Hangup(Cloud)"), "{ended_hold}");
    println!("{ended}\n{media}\n{ended_tcp}\n{media_tcp}");
    assert!(ended.contains("Hangup(Pbx)"), "{ended}");
    assert!(ended_tcp.contains("Hangup(Pbx)"), "{ended_tcp}");
    assert!(
        media_tcp.contains("to cloud ") && !media_tcp.contains("auth_failed"),
        "{media_tcp}"
    );
    println!("{ended_in}\n{media_in}");
    assert!(ended_in.contains("Hangup(Cloud)"), "{ended_in}");
    assert!(
        media_count(&media_in, "to PBX ") >= 100,
        "the cloud's tone reached the PBX: {media_in}"
    );
    // baresip's RTCP in the clear (its NAT-pinhole probe, its BYE when it
    // hangs up) is counted as `unprotected`, not as a failure.
    assert!(
        !media_in.contains("auth_failed") && !media_in.contains("truncated"),
        "{media_in}"
    );
    println!("{ended_delayed}\n{media_delayed}");
    assert!(ended_delayed.contains("Hangup(Pbx)"), "{ended_delayed}");
    for label in ["to cloud ", "to PBX "] {
        assert!(
            media_count(&media_delayed, label) >= 150,
            "delayed offer, media {label}: {media_delayed}"
        );
    }
    // "call 1: media to cloud N RTP M RTCP, to PBX N RTP M RTCP, drops: …"
    let n = |label: &str| media_count(&media, label);
    assert!(
        n("to cloud ") >= 150,
        "the PBX's audio went to the cloud: {media}"
    );
    assert!(
        n("to PBX ") >= 150,
        "the cloud's tone went to the PBX: {media}"
    );
    assert!(
        !media.contains("auth_failed") && !media.contains("srtp_error"),
        "{media}"
    );

    // baresip decrypted the PBX's audio: its decoder's recording has it,
    // and it never failed to decrypt.
    let bs = cloud.output().join("\n");
    assert!(bs.contains("SRTP is Enabled"), "{bs}");
    assert!(!bs.contains("failed to decrypt"), "{bs}");
    // One recording per call, in call order; the PBX sent audio in calls
    // 1, 2 and 4 (in calls 3 and 5 sipp answers and stays silent).
    let decoded = cloud.decoded();
    assert_eq!(decoded.len(), 5, "{decoded:?}");
    for (i, path) in decoded
        .iter()
        .enumerate()
        .filter(|(i, _)| [0, 1, 3].contains(i))
    {
        let (samples, rate) = baresip::read_wav(path);
        let seconds = samples.len() as f64 / f64::from(rate);
        let level = baresip::rms(&samples);
        println!(
            "call {}: baresip decoded {seconds:.1} s of the PBX's audio, RMS {level:.0}",
            i + 1
        );
        assert!(seconds >= 3.0, "call {}: {seconds} s decoded", i + 1);
        assert!(
            level > 300.0,
            "call {}: audio, not silence: RMS {level}",
            i + 1
        );
    }

    // Keys never reach the log: no SDES key material in anything printed.
    assert!(
        !lines.iter().any(|l| l.contains("inline:")),
        "a key in the gateway's output"
    );
    let fin = final_line(&lines);
    assert_eq!(field(fin, "relays"), 0, "{fin}");
    assert_eq!(field(fin, "calls"), 5, "{fin}");
    assert_eq!(field(fin, "calls_ended"), 5, "{fin}");
    assert_eq!(field(fin, "relays_failed"), 0, "{fin}");
    drop(cloud);
    let _ = std::fs::remove_dir_all(&dir);
}

//! Trunk policy (issue 7, first slice) through `pbxlink run`, real peers on
//! loopback: sipp as the PBX, baresip as the cloud over the TLS trunk.
//!
//! - Only the PBX may use the trunk: sipp from 127.0.0.2 (another loopback
//!   address; the PBX is 127.0.0.1) gets 403 (`untrusted = "reject"`) and
//!   never reaches the B2BUA.
//! - Admission: with `call_limit = 2` and two calls up, a third gets 503
//!   without Retry-After (`peers/sipp/uac_refused.xml`), while a call to an
//!   emergency number (112, SPEC §6) is admitted past the limit and its
//!   audio reaches the cloud.

use pbxlink_tests::baresip::Baresip;
use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::rig::{GatewayConfig, Workdir, media_count, run_gateway, sipp_passes};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const GW_SIP: u16 = 26_250;
const PBX_SIP: u16 = 26_260;
const CLOUD_SIP: u16 = 26_201; // baresip's TLS: 26_202

/// sipp from `ip`:`port` toward the gateway, one run of `args`.
fn sipp(dir: &Path, ip: &str, port: u16, media: u16, args: &[&str]) -> Command {
    let mut c = Command::new("sipp");
    c.args(["-i", ip, "-p", &port.to_string(), "-mp", &media.to_string()])
        .args(["-nostdin", "-aa", "-timeout", "30s", "-timeout_error"])
        .args(args)
        .arg(format!("127.0.0.1:{GW_SIP}"))
        .current_dir(dir)
        .stdout(Stdio::piped());
    c
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers/sipp")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn only_the_pbx_is_served_and_past_the_limit_only_emergency_calls_are() {
    let work = Workdir::new("policy");
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
        lan: localhost,
        pbx: SocketAddr::new(localhost, PBX_SIP),
        cloud: SocketAddr::new(localhost, CLOUD_SIP + 1),
        ca: &ca_file,
        sip_port: GW_SIP,
        gateway: "call_limit = 2\ncdr_file = \"cdr.jsonl\"",
        pbx_extra: "untrusted = \"reject\"",
        cloud_extra: "",
        sections: "",
    }
    .write(dir);
    let (gw, _) = run_gateway(&Default::default(), &config);
    // The cloud also answers for 112 (its emergency service).
    cloud.command(
        "/uanew <sip:112@127.0.0.1;transport=tls>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=PCMA/8000/1,PCMU/8000/1",
    );

    // A stranger on 127.0.0.2.
    let stranger = sipp(
        dir,
        "127.0.0.2",
        PBX_SIP,
        26_700,
        &["-sf", &scenario("options_forbidden.xml"), "-m", "1"],
    )
    .spawn()
    .expect("sipp runs (tests/run installs sip-tester)");
    sipp_passes(stranger, "an untrusted source gets 403");

    // Two calls up (about 9 s each)...
    let two = sipp(
        dir,
        "127.0.0.1",
        PBX_SIP,
        26_710,
        &[
            "-sn", "uac_pcap", "-s", "cloud", "-m", "2", "-l", "2", "-r", "4",
        ],
    )
    .spawn()
    .expect("sipp runs");
    std::thread::sleep(Duration::from_millis(2000));
    // ...a third is refused, 503 without Retry-After...
    let third = sipp(
        dir,
        "127.0.0.1",
        PBX_SIP + 1,
        26_730,
        &["-sf", &scenario("uac_refused.xml"), "-s", "2003", "-m", "1"],
    )
    .spawn()
    .expect("sipp runs");
    sipp_passes(third, "a call past the limit");
    // ...and an emergency call goes through, with its audio.
    let emergency = sipp(
        dir,
        "127.0.0.1",
        PBX_SIP + 2,
        26_740,
        &["-sn", "uac_pcap", "-s", "112", "-m", "1"],
    )
    .spawn()
    .expect("sipp runs");
    sipp_passes(emergency, "an emergency call at the limit");
    sipp_passes(two, "the two calls at the limit");
    gw.wait_for("call 3: ended", Duration::from_secs(10));
    gw.wait_relays_gone("call 3: ended");
    let lines = gw.stop();
    let fin = final_line(&lines);
    println!("{fin}");
    assert_eq!(
        field(fin, "calls"),
        3,
        "two ordinary and the emergency call: {fin}"
    );
    assert_eq!(field(fin, "refused_at_limit"), 1, "{fin}");
    assert_eq!(field(fin, "emergency_calls"), 1, "{fin}");
    assert!(field(fin, "untrusted") >= 1, "{fin}");
    // The emergency call is the one numbered 3; its audio reached the cloud.
    let media = lines
        .iter()
        .find(|l| l.starts_with("call 3: media to cloud"))
        .expect("the emergency call's media line");
    println!("{media}");
    assert!(media_count(media, "to cloud ") >= 150, "{media}");

    // One record per INVITE, the refused one too, consistent with the
    // relays' counters.
    let records: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("cdr.jsonl"))
        .expect("the CDR file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    println!("{records:#?}");
    assert_eq!(records.len(), 4, "{records:?}");
    let by_to = |to: &str| {
        records
            .iter()
            .find(|r| r["to"] == to)
            .unwrap_or_else(|| panic!("no record to {to}: {records:?}"))
    };
    let refused = by_to("2003");
    assert_eq!(
        (refused["call"].as_u64(), refused["cause"].as_str()),
        (Some(0), Some("Refused(503)"))
    );
    let sos = by_to("112");
    assert_eq!(sos["call"], 3);
    assert_eq!(sos["direction"], "pbx-to-cloud");
    assert_eq!(sos["cause"], "Hangup(Pbx)");
    assert!(sos["answer"].is_string() && sos["pbx_call_id"].is_string());
    assert_eq!(
        sos["to_cloud"]["rtp"].as_u64(),
        Some(media_count(media, "to cloud ")),
        "the record agrees with the relay"
    );
    assert_eq!(records.iter().filter(|r| r["to"] == "cloud").count(), 2);
    drop(cloud);
}

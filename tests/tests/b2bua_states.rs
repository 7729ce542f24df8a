//! Calls that do not simply connect and hang up, through `pbxlink run`
//! between real peers on 127.0.0.1 — baresip as the cloud (TLS trunk,
//! `mediaenc=srtp-mand`), sipp as the PBX with scenarios in
//! `peers/sipp/` — each ending in the right state on both legs with its
//! relay gone from the data plane (the gateway prints the workers' relay
//! count as they report it):
//! - early media: the PBX answers the cloud's call with 183 and an
//!   announcement, then 486 (`uas_early_reject.xml`): the audio reaches the
//!   cloud before any answer, the refusal reaches it too;
//! - CANCEL before the answer: the cloud gives up while the PBX rings
//!   (`uas_ringing_cancel.xml`, which passes only if the CANCEL arrives);
//! - media timeout: the PBX answers and then sends no RTP
//!   (`uac_silent.xml`, which passes only if the gateway's BYE arrives):
//!   after `media_timeout_seconds` the gateway hangs up both legs;
//! - glare: the cloud holds a call while the PBX re-INVITEs too
//!   (`uas_glare.xml`): each side gets 491, and the gateway tries the
//!   cloud's hold once more after RFC 3261 §14.1's wait (2.1–4 s: it made
//!   the PBX leg); the scenario passes only if that retry arrives;
//! - DTMF as SIP INFO from the PBX reaches baresip, whose 200 comes back,
//!   and session refreshes (a re-INVITE and an UPDATE without SDP) are
//!   answered (`uac_midcall.xml` passes only then);
//! - the PBX moves its media mid-call (`uas_move_media.xml`: a re-INVITE
//!   with a new port, where the test listens): the cloud's audio follows;
//! - a PBX requiring 100rel (`uac_100rel.xml`) gets its 183 reliably
//!   (RSeq), PRACKs it, and gets the 200 once baresip (answering early)
//!   accepts; with a delayed offer it gets 420 naming 100rel in
//!   `Unsupported` (`uac_require_100rel.xml`).

use pbxlink_tests::baresip::{self, Baresip};
use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::rig::{GatewayConfig, Workdir, media_count, run_gateway, sipp_passes};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GW_SIP: u16 = 25_950;
const PBX_SIP: u16 = 25_960;
const PBX_MEDIA: u16 = 26_300;
const CLOUD_SIP: u16 = 25_901; // baresip's TLS: 25_902

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers/sipp")
        .join(name)
}

/// sipp as the PBX running `scenario` once, from `dir` (where `pcap/` is).
fn sipp(dir: &Path, name: &str, extra: &[&str]) -> Child {
    Command::new("sipp")
        .args(["-i", "127.0.0.1", "-p", &PBX_SIP.to_string(), "-aa"])
        .args(["-mp", &PBX_MEDIA.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "40s", "-timeout_error"])
        .arg("-sf")
        .arg(scenario(name))
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sipp runs (tests/run installs sip-tester)")
}

#[test]
fn early_media_cancel_timeout_glare_info_and_moves_end_right_on_both_legs() {
    let work = Workdir::new("states");
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
        gateway: "media_timeout_seconds = 8",
        ..GatewayConfig::loopback(&ca_file, GW_SIP, PBX_SIP, CLOUD_SIP + 1)
    }
    .write(dir);
    let (gw, trunk_end) = run_gateway(&Default::default(), &config);

    // Early media, then busy.
    let pbx = sipp(dir, "uas_early_reject.xml", &[]);
    std::thread::sleep(Duration::from_millis(500));
    cloud.command(&format!("/dial 201@{trunk_end}"));
    sipp_passes(pbx, "early media");
    let early = gw.wait_for("call 1: ended", Duration::from_secs(5));
    let early_media = gw.wait_for("call 1: media to cloud", Duration::from_secs(5));
    cloud.wait_for("486 Busy Here", Duration::from_secs(5));
    gw.wait_relays_gone("call 1: ended");

    // CANCEL while the PBX rings.
    let pbx = sipp(dir, "uas_ringing_cancel.xml", &[]);
    std::thread::sleep(Duration::from_millis(500));
    cloud.command(&format!("/dial 202@{trunk_end}"));
    cloud.wait_for("180 Ringing", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    cloud.command("/hangup");
    sipp_passes(pbx, "CANCEL");
    let cancelled = gw.wait_for("call 2: ended", Duration::from_secs(5));
    gw.wait_relays_gone("call 2: ended");

    // The PBX goes silent: the media timeout ends both legs.
    let started = Instant::now();
    let pbx = sipp(
        dir,
        "uac_silent.xml",
        &["-s", "cloud", &format!("127.0.0.1:{GW_SIP}")],
    );
    sipp_passes(pbx, "media timeout");
    let silent_for = started.elapsed();
    let timed_out = gw.wait_for("call 3: ended", Duration::from_secs(5));
    let timed_out_media = gw.wait_for("call 3: media to cloud", Duration::from_secs(5));
    gw.wait_relays_gone("call 3: ended");

    // Glare: baresip holds while sipp re-INVITEs. (baresip falls silent as
    // it holds: the media timeout, 8 s here, must outlast the retry wait.)
    let pbx = sipp(dir, "uas_glare.xml", &[]);
    std::thread::sleep(Duration::from_millis(500));
    cloud.command(&format!("/dial 204@{trunk_end}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while cloud
        .output()
        .iter()
        .filter(|l| l.contains("Call established"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the glare call was not established"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    cloud.command("/hold");
    // Back to baresip only once the retry was answered (2.1–4 s later).
    let deadline = Instant::now() + Duration::from_secs(8);
    while !gw.output().iter().any(|l| l.contains("call 4: glare")) {
        assert!(Instant::now() < deadline, "no glare");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The retry comes 2.1–4 s after the 491; once it is answered the
    // relay's direction changes (baresip then falls silent, on hold).
    let held = gw.wait_for("call 4: media now", Duration::from_secs(6));
    assert!(held.ends_with("cloud to PBX only"), "{held}");
    std::thread::sleep(Duration::from_millis(300));
    cloud.command("/hangup");
    sipp_passes(pbx, "glare");
    let retried = gw.wait_for("call 4: glare", Duration::from_secs(1));
    let glare = gw.wait_for("call 4: ended", Duration::from_secs(5));
    let glare_media = gw.wait_for("call 4: media to cloud", Duration::from_secs(5));
    gw.wait_relays_gone("call 4: ended");

    // DTMF as SIP INFO from the PBX: passed to baresip, its 200 back;
    // then session refreshes (re-INVITE and UPDATE without SDP).
    let pbx = sipp(
        dir,
        "uac_midcall.xml",
        &["-s", "cloud", &format!("127.0.0.1:{GW_SIP}")],
    );
    sipp_passes(pbx, "INFO and session refreshes");
    let info = gw.wait_for("call 5: ended", Duration::from_secs(5));
    gw.wait_relays_gone("call 5: ended");

    // The PBX moves its media mid-call (re-INVITE with a new port, where
    // the test listens): baresip's tone must follow it there.
    let moved_to = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    moved_to
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let new_port = moved_to.local_addr().unwrap().port().to_string();
    let pbx = sipp(dir, "uas_move_media.xml", &["-set", "newport", &new_port]);
    std::thread::sleep(Duration::from_millis(500));
    cloud.command(&format!("/dial 206@{trunk_end}"));
    let moved = gw.wait_for("call 6: media changed", Duration::from_secs(10));
    let mut buf = [0u8; 2048];
    let mut arrived = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if moved_to.recv(&mut buf).is_ok_and(|n| n > 12) {
            arrived += 1;
        }
    }
    cloud.command("/hangup");
    sipp_passes(pbx, "media moved");
    let moved_end = gw.wait_for("call 6: ended", Duration::from_secs(5));
    gw.wait_relays_gone("call 6: ended");

    // A PBX requiring 100rel: baresip answers early (183 with SDP), the
    // gateway's 183 to the PBX is reliable (RSeq) and PRACKed, and only
    // then does the 200 (after baresip accepts) go to the PBX.
    cloud.command("/answermode early");
    let pbx = sipp(
        dir,
        "uac_100rel.xml",
        &["-s", "cloud", &format!("127.0.0.1:{GW_SIP}")],
    );
    // sipp calls at once and baresip answers early within milliseconds;
    // it accepts 2 s later.
    std::thread::sleep(Duration::from_secs(2));
    cloud.command("/accept");
    sipp_passes(pbx, "100rel with PRACK");
    let prack = gw.wait_for("call 7: ended", Duration::from_secs(5));
    gw.wait_relays_gone("call 7: ended");
    cloud.command("/answermode auto");
    // Without an offer, 100rel cannot be honoured: 420 naming it.
    let pbx = sipp(
        dir,
        "uac_require_100rel.xml",
        &["-s", "cloud", &format!("127.0.0.1:{GW_SIP}")],
    );
    sipp_passes(pbx, "420 for Require: 100rel with a delayed offer");
    let lines = gw.stop();
    let bs = cloud.output().join("\n");

    println!("{early}\n{early_media}\n{cancelled}\n{timed_out}\n{timed_out_media}");
    assert!(early.contains("Rejected(486)"), "{early}");
    assert!(
        media_count(&early_media, "to cloud ") >= 100,
        "the announcement reached the cloud before any answer: {early_media}"
    );
    assert!(cancelled.contains("Cancelled"), "{cancelled}");
    assert!(timed_out.contains("media timeout"), "{timed_out}");
    assert!(
        silent_for >= Duration::from_secs(8),
        "hung up before the timeout: {silent_for:?}"
    );
    assert!(
        media_count(&timed_out_media, "to cloud ") == 0
            && media_count(&timed_out_media, "to PBX ") > 50,
        "only the cloud's tone flowed: {timed_out_media}"
    );
    // baresip saw each end: the refusal after early media, its own
    // CANCEL, the gateway's BYE on the timed-out call.
    assert!(bs.contains("session closed: 486 Busy Here"), "{bs}");
    assert!(bs.contains("terminate call"), "{bs}");
    assert_eq!(bs.matches("terminated (duration").count(), 5, "{bs}");
    // It decrypted the announcement it got as early media.
    let decoded = cloud.decoded();
    let (samples, rate) = baresip::read_wav(&decoded[0]);
    let seconds = samples.len() as f64 / f64::from(rate);
    println!(
        "baresip decoded {seconds:.1} s of early media, RMS {:.0}",
        baresip::rms(&samples)
    );
    assert!(seconds >= 2.0 && baresip::rms(&samples) > 300.0);
    assert!(!bs.contains("failed to decrypt"), "{bs}");
    for media in [&early_media, &timed_out_media] {
        assert!(
            !media.contains("auth_failed") && !media.contains("srtp_error"),
            "{media}"
        );
    }
    let fin = final_line(&lines);
    println!("{retried}\n{glare}");
    let wait: u64 = retried
        .split("again in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("the wait");
    assert!(
        (2100..=4000).contains(&wait),
        "RFC 3261 §14.1, owner: {wait} ms"
    );
    assert!(glare.contains("Hangup(Cloud)"), "{glare}");
    // Held (cloud to PBX only): the PBX's audio stopped at the relay.
    assert!(
        glare_media.contains("relay direction_inactive="),
        "{glare_media}"
    );
    assert_eq!(field(fin, "glare"), 1, "{fin}");
    assert!(info.contains("Hangup(Pbx)"), "{info}");
    println!("{moved}\n{moved_end}: {arrived} RTP packets at the new port in 2 s");
    assert!(moved.contains("PBX now at 127.0.0.1:"), "{moved}");
    assert!(
        arrived >= 50,
        "the cloud's audio followed the PBX: {arrived}"
    );
    assert!(moved_end.contains("Hangup(Cloud)"), "{moved_end}");
    assert!(prack.contains("Hangup(Pbx)"), "{prack}");
    assert_eq!(field(fin, "calls"), 7, "{fin}");
    assert_eq!(field(fin, "calls_refused"), 1, "{fin}");
    assert_eq!(field(fin, "calls_ended"), 7, "{fin}");
    assert_eq!(field(fin, "media_timeouts"), 1, "{fin}");
    assert_eq!(field(fin, "relays"), 0, "{fin}");
    // The relay counts seen were real: one relay in calls 1, 3 and 4.
    let running: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("relay(s) running"))
        .collect();
    println!("{running:?}");
    assert!(
        running
            .iter()
            .filter(|l| l.contains(": 1 relay(s)"))
            .count()
            >= 3,
        "{running:?}"
    );
    drop(cloud);
}

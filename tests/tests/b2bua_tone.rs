//! Two tones through `pbxlink run`, each detected at the far end: a phone
//! behind the PBX (baresip over UDP, plain RTP, playing 400 Hz) and the
//! cloud (baresip over the TLS trunk with `mediaenc=srtp-mand`, playing
//! 1 kHz), all on 127.0.0.1. One call each way: the phone calls the cloud
//! and hangs up; the cloud calls the phone over the gateway's own trunk
//! connection and hangs up. Each side's recording of what it decoded must
//! be the other side's tone; neither the gateway nor baresip may see an
//! SRTP authentication failure; both relays end freed.

use pbxlink_tests::baresip::{self, Baresip};
use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::rig::{GatewayConfig, Workdir, run_gateway};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const GW_SIP: u16 = 25_850;
const PHONE_SIP: u16 = 25_860;
const CLOUD_SIP: u16 = 25_801; // baresip's TLS: 25_802
const PHONE_TONE: f64 = 400.0;
const CLOUD_TONE: f64 = 1000.0;

/// Each recording of what `b` decoded carries `freq` and little else.
fn hears(b: &Baresip, who: &str, freq: f64, calls: usize) {
    let decoded = b.decoded();
    assert_eq!(decoded.len(), calls, "{who}: {decoded:?}");
    for (i, path) in decoded.iter().enumerate() {
        let (samples, rate) = baresip::read_wav(path);
        let seconds = samples.len() as f64 / f64::from(rate);
        let share = baresip::tone_share(&samples, rate, freq);
        println!(
            "call {}: {who} decoded {seconds:.1} s, {:.0} % of its energy at {freq} Hz",
            i + 1,
            share * 100.0
        );
        assert!(seconds >= 2.0, "call {}: {who} decoded {seconds} s", i + 1);
        assert!(
            share > 0.8,
            "call {}: {who} did not hear {freq} Hz ({share})",
            i + 1
        );
    }
}

#[test]
fn tones_cross_both_ways_without_authentication_failures() {
    let work = Workdir::new("tone");
    let dir = &work.dir;
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (ca_file, cloud_pem) = work.cloud_pki(localhost);
    let cloud_tone = work.tone("cloud.wav", CLOUD_TONE);
    let phone_tone = work.tone("phone.wav", PHONE_TONE);
    let mut cloud = Baresip::start(
        &dir.join("cloud"),
        CLOUD_SIP,
        &cloud_pem,
        &ca_file,
        "cloud",
        &cloud_tone,
    );
    let mut phone = Baresip::lan(&dir.join("phone"), PHONE_SIP, "phone", &phone_tone);

    let config = GatewayConfig::loopback(&ca_file, GW_SIP, PHONE_SIP, CLOUD_SIP + 1).write(dir);
    let (gw, trunk_end) = run_gateway(&Default::default(), &config);

    // The phone calls the cloud and hangs up.
    phone.command(&format!("/dial sip:cloud@127.0.0.1:{GW_SIP}"));
    phone.wait_count("Call established", 1, Duration::from_secs(10));
    cloud.wait_count("Call established", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    phone.command("/hangup");
    let ended_out = gw.wait_for("call 1: ended", Duration::from_secs(10));
    let media_out = gw.wait_for("call 1: media to cloud", Duration::from_secs(1));
    cloud.wait_count("terminated", 1, Duration::from_secs(10));

    // The cloud calls the phone over the gateway's trunk connection.
    cloud.command(&format!("/dial phone@{trunk_end}"));
    cloud.wait_count("Call established", 2, Duration::from_secs(10));
    phone.wait_count("Call established", 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    cloud.command("/hangup");
    let ended_in = gw.wait_for("call 2: ended", Duration::from_secs(10));
    let media_in = gw.wait_for("call 2: media to cloud", Duration::from_secs(1));
    phone.wait_count("terminated", 2, Duration::from_secs(10));
    let lines = gw.stop();
    println!("{ended_out}\n{media_out}\n{ended_in}\n{media_in}");
    assert!(ended_out.contains("Hangup(Pbx)"), "{ended_out}");
    assert!(ended_in.contains("Hangup(Cloud)"), "{ended_in}");
    // baresip sends two RTCP packets in the clear (its NAT-pinhole probe
    // as the call starts, its BYE as it ends): counted as `unprotected`,
    // never as authentication failures.
    for media in [&media_out, &media_in] {
        assert!(
            !media.contains("auth_failed")
                && !media.contains("srtp_error")
                && !media.contains("truncated"),
            "an SRTP failure at the gateway: {media}"
        );
    }

    hears(&phone, "the phone", CLOUD_TONE, 2);
    hears(&cloud, "the cloud", PHONE_TONE, 2);
    let bs = cloud.output().join("\n");
    assert!(bs.contains("SRTP is Enabled"), "{bs}");
    assert!(
        !bs.contains("failed to decrypt"),
        "an SRTP failure at baresip: {bs}"
    );
    let fin = final_line(&lines);
    assert_eq!(field(fin, "calls"), 2, "{fin}");
    assert_eq!(field(fin, "calls_ended"), 2, "{fin}");
    assert_eq!(field(fin, "relays_failed"), 0, "{fin}");
    drop((cloud, phone));
}

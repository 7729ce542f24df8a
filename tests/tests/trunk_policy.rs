//! Trunk policy (issue 7) through `pbxlink run`, real peers on loopback:
//! sipp as the PBX, baresip as the cloud over the TLS trunk.
//!
//! - Only the PBX may use the trunk: sipp from 127.0.0.2 (another loopback
//!   address; the PBX is 127.0.0.1) gets 403 (`untrusted = "reject"`) and
//!   never reaches the B2BUA.
//! - Admission: with `call_limit = 2` and two calls up, a third gets 503
//!   without Retry-After (`peers/sipp/uac_refused.xml`), while a call to an
//!   emergency number (112, SPEC §6) is admitted past the limit and its
//!   audio reaches the cloud.
//! - Liveness, digits, digest, draining (the second test): the PBX silent
//!   raises `Lost trunk connection to PBX` (printed and through the admin
//!   API), cleared when it answers; calls from the cloud reach the PBX
//!   with the inbound digit prepended, 112 unchanged; the PBX's calls are
//!   challenged and carried with the right credentials (the outbound digit
//!   stripped), refused 403 with wrong ones; on SIGTERM new calls get 503
//!   with Retry-After while the call up goes on, then it is hung up and
//!   recorded.
//! - A PBX that challenges the gateway (the third test, sipp
//!   `uas_challenge.xml` checking the credentials with verifyauth) gets
//!   them; one expecting another password refuses, and the cloud hears 403.

use pbxlink_tests::baresip::Baresip;
use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::rig::{
    GatewayConfig, Workdir, http_get_json, media_count, run_gateway, sipp_passes,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const GW_SIP: u16 = 26_250;
const PBX_SIP: u16 = 26_260;
const CLOUD_SIP: u16 = 26_201; // baresip's TLS: 26_202

/// sipp from `ip`:`port` toward the gateway, one run of `args`.
fn sipp(dir: &Path, ip: &str, port: u16, media: u16, args: &[&str]) -> Command {
    sipp_to(GW_SIP, dir, ip, port, media, args)
}

/// sipp from `ip`:`port` toward the gateway at `gw`, one run of `args`.
fn sipp_to(gw: u16, dir: &Path, ip: &str, port: u16, media: u16, args: &[&str]) -> Command {
    let mut c = Command::new("sipp");
    c.args(["-i", ip, "-p", &port.to_string(), "-mp", &media.to_string()])
        .args(["-nostdin", "-aa", "-timeout", "30s", "-timeout_error"])
        .args(args)
        .arg(format!("127.0.0.1:{gw}"))
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
    let (mut cloud, ca_file) = work.cloud(CLOUD_SIP);
    let config = GatewayConfig {
        gateway: "call_limit = 2\ncdr_file = \"cdr.jsonl\"",
        pbx_extra: "untrusted = \"reject\"",
        ..GatewayConfig::loopback(&ca_file, GW_SIP, PBX_SIP, CLOUD_SIP + 1)
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

const GW2_SIP: u16 = 26_280;
const GW2_ADMIN: u16 = 26_285;
const PBX2_SIP: u16 = 26_290;
const CLOUD2_SIP: u16 = 26_203; // baresip's TLS: 26_204
const PASSWORD: &str = "Trunk-pass-1";

#[test]
fn the_pbx_is_watched_numbers_rewritten_callers_authenticated_and_calls_drained() {
    let work = Workdir::new("policy2");
    let dir = &work.dir;
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (mut cloud, ca_file) = work.cloud(CLOUD2_SIP);
    let pbx_extra = format!(
        "keepalive_seconds = 1\nauth_username = \"officelinkmv5000\"\nauth_password = \"{PASSWORD}\""
    );
    let sections = format!(
        "[digits]\noutbound_strip = \"9\"\ninbound_prepend = \"0\"\n\n[admin]\nlisten = \"127.0.0.1:{GW2_ADMIN}\"\napi_token = \"admin-token-0123456789\"\n"
    );
    let config = GatewayConfig {
        gateway: "cdr_file = \"cdr.jsonl\"\ndrain_seconds = 30",
        pbx_extra: &pbx_extra,
        sections: &sections,
        ..GatewayConfig::loopback(&ca_file, GW2_SIP, PBX2_SIP, CLOUD2_SIP + 1)
    }
    .write(dir);
    let (gw, trunk_end) = run_gateway(&Default::default(), &config);
    let admin = SocketAddr::new(localhost, GW2_ADMIN);
    let status = || {
        let (code, body) = http_get_json(admin, "/api/status");
        assert_eq!(code, 200, "{body}");
        body
    };

    // Nothing answers at the PBX's address yet.
    gw.wait_for(
        "status: Lost trunk connection to PBX",
        Duration::from_secs(10),
    );
    let s = status();
    assert_eq!(s["status"], "Lost trunk connection to PBX", "{s}");
    assert_eq!(s["pbx_trunk"], "lost", "{s}");
    assert_eq!(s["cloud_trunk"]["state"], "connected", "{s}");

    // The PBX comes: baresip on the LAN side answers the keep-alives and
    // only calls to 02001 and 112 (a UA each), so a number the digits got
    // wrong would not be answered.
    let pbx_tone = work.tone("pbx.wav", 400.0);
    let mut pbx = Baresip::lan(&dir.join("pbx"), PBX2_SIP, "02001", &pbx_tone);
    pbx.command("/uanew <sip:112@127.0.0.1;transport=udp>;regint=0;answermode=auto;audio_codecs=PCMA/8000/1");
    gw.wait_for("status: Connected", Duration::from_secs(10));
    assert_eq!(status()["status"], "Connected");

    // The cloud calls 2001 (the PBX sees 02001) and 112 (unchanged).
    for (n, number) in ["2001", "112"].into_iter().enumerate() {
        cloud.command(&format!("/dial {number}@{trunk_end}"));
        cloud.wait_count("Call established", n + 1, Duration::from_secs(10));
        pbx.wait_count("Call established", n + 1, Duration::from_secs(10));
        std::thread::sleep(Duration::from_secs(2));
        cloud.command("/hangup");
        gw.wait_for(
            &format!("call {}: media to cloud", n + 1),
            Duration::from_secs(10),
        );
    }

    // The PBX goes silent: lost again, through the API too.
    drop(pbx);
    gw.wait_count(
        "status: Lost trunk connection to PBX",
        2,
        Duration::from_secs(10),
    );
    assert_eq!(status()["pbx_trunk"], "lost");

    // The PBX's calls carry digest credentials; 9 is stripped toward the
    // cloud (baresip answers only "cloud").
    let auth = |scenario_file: &str, password: &str, port: u16| {
        sipp_to(
            GW2_SIP,
            dir,
            "127.0.0.1",
            port,
            26_780 + 10 * (port - PBX2_SIP),
            &[
                "-sf",
                &scenario(scenario_file),
                "-s",
                "9cloud",
                "-au",
                "officelinkmv5000",
                "-ap",
                password,
                "-m",
                "1",
            ],
        )
        .spawn()
        .expect("sipp runs")
    };
    sipp_passes(
        auth("uac_auth.xml", PASSWORD, PBX2_SIP + 1),
        "the right credentials",
    );
    sipp_passes(
        auth("uac_auth_wrong.xml", "not-the-password", PBX2_SIP + 1),
        "wrong credentials",
    );
    let (code, _) = http_get_json(admin, "/api/counters");
    assert_eq!(code, 401, "counters need the API token");
    let answer =
        pbxlink_tests::http::get_with_token(admin, "/api/counters", "admin-token-0123456789");
    let (code, counters) = (answer.status, answer.json);
    assert_eq!(code, 200);
    println!("{counters}");
    assert_eq!(counters["auth_failures"], 1, "{counters}");
    assert!(
        counters["auth_challenges"].as_u64() >= Some(2),
        "{counters}"
    );
    assert_eq!(counters["calls"], 3, "{counters}");
    let (code, _) = http_get_json(admin, "/nothing");
    assert_eq!(code, 404);

    // A call stays up; SIGTERM: the gateway drains — a new call gets 503
    // with Retry-After — then (SIGTERM again) hangs the call up.
    let held = auth("uac_auth_held.xml", PASSWORD, PBX2_SIP + 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status()["calls_in_progress"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the held call never came up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gw.terminate();
    gw.wait_for("draining: 1 call(s) up", Duration::from_secs(5));
    sipp_passes(
        auth("uac_draining.xml", PASSWORD, PBX2_SIP + 3),
        "a call while draining",
    );
    let lines = gw.stop();
    sipp_passes(held, "the call up, hung up by the gateway's shutdown");
    let fin = final_line(&lines);
    println!("{fin}");
    assert_eq!(field(fin, "refused_draining"), 1, "{fin}");
    assert_eq!(field(fin, "calls"), 4, "{fin}");
    assert_eq!(field(fin, "calls_ended"), 4, "{fin}");
    assert_eq!(
        (field(fin, "calls_completed"), field(fin, "calls_failed")),
        (3, 1),
        "by outcome: three hung up by a party, the held one by the shutdown: {fin}"
    );
    assert!(lines.iter().any(|l| l == "shutdown: hanging up 1 call(s)"));

    let records: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("cdr.jsonl"))
        .expect("the CDR file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    println!("{records:#?}");
    let to = |r: &serde_json::Value| r["to"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        records.iter().map(to).collect::<Vec<_>>(),
        ["02001", "112", "cloud", "9cloud", "cloud"],
        "cloud → PBX twice, the authenticated call, the one refused while draining (as \
         dialled: never routed), the held one"
    );
    assert_eq!(records[1]["direction"], "cloud-to-pbx");
    assert!(
        records[1]["to_pbx"]["rtp"].as_u64() > Some(50),
        "112's audio flowed"
    );
    assert_eq!(records[3]["cause"], "Refused(503)");
    let held = &records[4];
    assert_eq!(held["cause"], "Failed(\"shutdown\")", "{held}");
    assert!(
        held["answer"].is_string() && held["end"].is_string(),
        "{held}"
    );
    drop(cloud);
}

const GW3_SIP: u16 = 26_320;
const PBX3_SIP: u16 = 26_330;
const CLOUD3_SIP: u16 = 26_207; // baresip's TLS: 26_208

#[test]
fn a_pbx_that_challenges_the_gateway_gets_its_credentials() {
    let work = Workdir::new("policy3");
    let dir = &work.dir;
    let (mut cloud, ca_file) = work.cloud(CLOUD3_SIP);
    let pbx_extra = format!("auth_username = \"officelinkmv5000\"\nauth_password = \"{PASSWORD}\"");
    let config = GatewayConfig {
        pbx_extra: &pbx_extra,
        ..GatewayConfig::loopback(&ca_file, GW3_SIP, PBX3_SIP, CLOUD3_SIP + 1)
    }
    .write(dir);
    let (gw, trunk_end) = run_gateway(&Default::default(), &config);
    // sipp as the PBX challenges the gateway's INVITE and checks the
    // credentials it gets (peers/sipp/uas_challenge.xml).
    let uas = |password: &str| {
        sipp_to(
            GW3_SIP,
            dir,
            "127.0.0.1",
            PBX3_SIP,
            26_860,
            &[
                "-sf",
                &scenario("uas_challenge.xml"),
                "-set",
                "password",
                password,
                "-m",
                "1",
            ],
        )
        .spawn()
        .expect("sipp runs")
    };
    let pbx = uas(PASSWORD);
    std::thread::sleep(Duration::from_millis(500));
    cloud.command(&format!("/dial 201@{trunk_end}"));
    cloud.wait_count("Call established", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    cloud.command("/hangup");
    sipp_passes(
        pbx,
        "the PBX's challenge answered with the right credentials",
    );
    gw.wait_for("call 1: media to cloud", Duration::from_secs(10));

    // The same PBX expecting another password refuses the credentials
    // (403): the call ends there, the cloud hears 403.
    let pbx = uas("another-password");
    std::thread::sleep(Duration::from_millis(500));
    cloud.command(&format!("/dial 202@{trunk_end}"));
    gw.wait_for("call 2: ended (Rejected(403))", Duration::from_secs(10));
    let refused = pbx.wait_with_output().expect("sipp ends");
    assert!(
        !refused.status.success(),
        "the wrong credentials were refused"
    );
    cloud.wait_for("403 Forbidden", Duration::from_secs(5));
    let lines = gw.stop();
    let fin = final_line(&lines);
    assert_eq!(field(fin, "calls_ended"), 2, "{fin}");
    assert_eq!(
        (field(fin, "calls_completed"), field(fin, "calls_rejected")),
        (1, 1),
        "{fin}"
    );
}

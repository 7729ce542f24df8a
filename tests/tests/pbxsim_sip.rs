//! pbxsim's SIP trunk through `pbxlink run` to a real cloud peer
//! (baresip over TLS with SRTP), with the CSTA link watching the same
//! users: a call from pbxsim's user 1000 to the cloud, and one from the
//! cloud to user 1001. Each carries G.711 both ways (pbxsim counts what
//! it received; baresip decoded what pbxsim sent), and each user's monitor
//! reports the call from ringing to hang-up.

use pbxlink_tests::baresip;
use pbxlink_tests::gateway::{field, final_line};
use pbxlink_tests::http::{self, basic};
use pbxlink_tests::pbxsim::PbxSim;
use pbxlink_tests::rig::{GatewayConfig, Workdir, run_gateway};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const GW_SIP: u16 = 23_500;
const PBX_SIP: u16 = 23_501;
const CLOUD_SIP: u16 = 23_502; // baresip's TLS: 23_503
const ADMIN: u16 = 23_504;
const USERS_API: u16 = 23_505;
const CONTROL: u16 = 23_506;
const CSTA: u16 = 23_510;
const TOKEN: &str = "sip-test-token-0123456789";

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn events_of(device: &str) -> Vec<String> {
    http::get_with_token(at(ADMIN), "/api/cti/events", TOKEN).json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["device"] == device)
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_sip_call(sim: &PbxSim, id: u64, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let calls = http::request(sim.control, "GET", "/sip/calls", &[], "").json;
        if let Some(c) = calls.as_array().unwrap().iter().find(|c| c["id"] == id)
            && c["state"] == state
        {
            return c.clone();
        }
        assert!(
            Instant::now() < deadline,
            "pbxsim call {id} never {state}: {calls}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn calls_from_and_to_pbxsim_carry_media_both_ways_and_show_in_csta() {
    let work = Workdir::new("pbxsim-sip");
    let (mut cloud, ca) = work.cloud(CLOUD_SIP);
    let sim = PbxSim::start(
        at(CONTROL),
        &[
            "--csta",
            &at(CSTA).to_string(),
            "--users",
            "5",
            "--sip",
            &at(PBX_SIP).to_string(),
            "--gateway-sip",
            &at(GW_SIP).to_string(),
            "--rtp-base",
            "47000",
            "--answer-delay-ms",
            "500",
        ],
    );
    let sections = format!(
        "[admin]\nlisten = \"{}\"\napi_token = \"{TOKEN}\"\n\n[users]\nlisten = \"{}\"\npush_password = \"Push-secret-4242\"\n",
        at(ADMIN),
        at(USERS_API)
    );
    let config = GatewayConfig {
        gateway: "state_dir = \"state\"",
        pbx_extra: &format!("csta_ports = [{CSTA}]"),
        sections: &sections,
        ..GatewayConfig::loopback(&ca, GW_SIP, PBX_SIP, CLOUD_SIP + 1)
    }
    .write(&work.dir);
    let (gw, trunk_end) = run_gateway(&Default::default(), &config);
    let users = json!({"users": (1000..1005).map(|d| json!({
        "directory_number": d.to_string(), "first_name": "User", "email": format!("u{d}@example.com"), "role": 1
    })).collect::<Vec<_>>()});
    let pushed = http::request_tls(
        at(USERS_API),
        &work.dir.join("state/users-api.crt"),
        "PUT",
        "/api/v1/users",
        &[("Authorization", &basic("pbx", "Push-secret-4242"))],
        &users.to_string(),
    )
    .unwrap();
    assert_eq!(pushed.status, 200, "{}", pushed.text);
    let deadline = Instant::now() + Duration::from_secs(10);
    while http::get_with_token(at(ADMIN), "/api/cti", TOKEN).json["monitored"] != 5 {
        assert!(Instant::now() < deadline, "users never monitored");
        std::thread::sleep(Duration::from_millis(100));
    }

    // User 1000 calls the cloud; pbxsim hangs up after 4 s.
    let placed = sim.post(
        "/sip/calls",
        "{\"from\": \"1000\", \"to\": \"cloud\", \"seconds\": 4}",
    );
    let id = placed["call"].as_u64().unwrap();
    cloud.wait_count("Call established", 1, Duration::from_secs(10));
    let out = wait_sip_call(&sim, id, "ended by pbxsim");
    cloud.wait_count("terminated", 1, Duration::from_secs(10));
    println!("outgoing: {out}");
    assert!(out["rtp_sent"].as_u64() >= Some(150), "{out}");
    assert!(
        out["rtp_received"].as_u64() >= Some(150),
        "the cloud's audio reached pbxsim: {out}"
    );
    assert_eq!(out["rtp_lost"], 0, "{out}");
    assert_eq!(
        events_of("1000"),
        [
            "service_initiated",
            "originated",
            "delivered",
            "established",
            "connection_cleared"
        ]
    );

    // The cloud calls user 1001, whose phone answers; the cloud hangs up.
    cloud.command(&format!("/dial 1001@{trunk_end}"));
    cloud.wait_count("Call established", 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    cloud.command("/hangup");
    let inc = wait_sip_call(&sim, id + 1, "ended by the gateway");
    println!("incoming: {inc}");
    assert_eq!(
        (inc["direction"].as_str(), inc["to"].as_str()),
        (Some("incoming"), Some("1001"))
    );
    assert!(inc["rtp_received"].as_u64() >= Some(100), "{inc}");
    assert!(inc["rtp_sent"].as_u64() >= Some(100), "{inc}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while events_of("1001").len() < 3 {
        assert!(Instant::now() < deadline, "1001: {:?}", events_of("1001"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        events_of("1001"),
        ["delivered", "established", "connection_cleared"]
    );
    let history =
        http::get_with_token(at(ADMIN), "/api/users/1001", TOKEN).json["history"][0].clone();
    assert_eq!(
        (history["direction"].as_str(), history["outcome"].as_str()),
        (Some("incoming"), Some("answered"))
    );

    // What pbxsim sent reached the cloud, decrypted and audible.
    let decoded = cloud.decoded();
    assert_eq!(decoded.len(), 2, "{decoded:?}");
    for path in &decoded {
        let (samples, rate) = baresip::read_wav(path);
        assert!(samples.len() as f64 / f64::from(rate) >= 2.0, "{path:?}");
        let share = baresip::tone_share(&samples, rate, 1000.0);
        assert!(share > 0.8, "pbxsim's 1 kHz tone in {path:?}: {share}");
    }
    let bs = cloud.output().join("\n");
    assert!(!bs.contains("failed to decrypt"), "{bs}");
    let lines = gw.stop();
    let fin = final_line(&lines);
    assert_eq!(field(fin, "calls"), 2, "{fin}");
    assert_eq!(field(fin, "calls_completed"), 2, "{fin}");
}

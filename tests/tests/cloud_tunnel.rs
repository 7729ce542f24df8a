//! The whole product on loopback (issue 18): pbxsim (the PBX) ↔ pbxlink
//! ↔ cloudsim (the cloud platform), three processes with codecs of their
//! own.
//!
//! - Users pushed by the PBX reach the platform through the tunnel's user
//!   sync, the refused ones with their reasons; a name changed on the PBX
//!   reaches it on the next sync.
//! - A CTI MakeCall sent by the platform rings the pbxsim user through
//!   CSTA; a pbxsim call reaches cloudsim over SIP-TLS with SRTP and the
//!   platform's call reaches a pbxsim user, media checked both ways.
//! - The tunnel is cut in the middle (a TCP proxy the test controls), held
//!   down 30 s and restored: the gateway reconnects by itself, a call in
//!   progress keeps its media, and every event and call record made
//!   meanwhile arrives once — ids contiguous, nothing missing.
//! - The gateway restarted with events in its outbox delivers them when it
//!   is back.

use pbxlink_tests::cloudsim::CloudSim;
use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::http::{self, basic};
use pbxlink_tests::pbxsim::PbxSim;
use pbxlink_tests::proxy::Proxy;
use pbxlink_tests::rig::{GatewayConfig, Workdir};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const GW_SIP: u16 = 23_700;
const PBX_SIP: u16 = 23_701;
const CLOUD_SIP: u16 = 23_702;
const TUNNEL: u16 = 23_703;
const PROXY: u16 = 23_704;
const ADMIN: u16 = 23_705;
const USERS_API: u16 = 23_706;
const PBX_CONTROL: u16 = 23_707;
const CLOUD_CONTROL: u16 = 23_708;
const CSTA: u16 = 23_710;
const TOKEN: &str = "acme-token-0123456789";

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn admin(path: &str) -> Value {
    http::get_with_token(at(ADMIN), path, "admin-token-0123456789").json
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_gateway(config: &Path) -> Gateway {
    let gw = Gateway::start(&[
        "run".into(),
        "--config".into(),
        config.display().to_string(),
        "--seconds".into(),
        "200".into(),
    ]);
    gw.wait_for("trunk: connected to", Duration::from_secs(20));
    gw
}

fn push(work: &Workdir, users: Value) -> http::Answer {
    http::request_tls(
        at(USERS_API),
        &work.dir.join("state/users-api.crt"),
        "PUT",
        "/api/v1/users",
        &[("Authorization", &basic("pbx", "Push-secret-4242"))],
        &users.to_string(),
    )
    .unwrap()
}

fn users(names: &[(u32, &str)]) -> Value {
    let mut list: Vec<Value> = names
        .iter()
        .map(|(dn, first)| {
            json!({"directory_number": dn.to_string(), "first_name": first, "email": format!("u{dn}@example.com"), "role": 1})
        })
        .collect();
    // Two the PBX pushes that cannot be onboarded.
    list.push(json!({"directory_number": "1090", "first_name": "Info", "email": "info@example.com", "role": 1}));
    list.push(json!({"directory_number": "1091", "first_name": "", "email": "nobody@example.com"}));
    json!({ "users": list })
}

/// pbxsim's SIP calls, by id.
fn pbx_call(sim: &PbxSim, id: u64) -> Value {
    http::request(sim.control, "GET", "/sip/calls", &[], "")
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn pbx_gateway_and_cloud_carry_users_cti_calls_and_events_through_cuts_and_restarts() {
    let work = Workdir::new("cloud-tunnel");
    let cloud = CloudSim::start(
        &work.dir,
        at(TUNNEL),
        at(CLOUD_SIP),
        at(CLOUD_CONTROL),
        TOKEN,
    );
    let proxy = Proxy::start(at(PROXY), at(TUNNEL));
    let sim = PbxSim::start(
        at(PBX_CONTROL),
        &[
            "--csta",
            &at(CSTA).to_string(),
            "--users",
            "10",
            "--sip",
            &at(PBX_SIP).to_string(),
            "--gateway-sip",
            &at(GW_SIP).to_string(),
            "--rtp-base",
            "47100",
            "--answer-delay-ms",
            "300",
        ],
    );
    let sections = format!(
        "[admin]\nlisten = \"{}\"\napi_token = \"admin-token-0123456789\"\n\n\
         [users]\nlisten = \"{}\"\npush_password = \"Push-secret-4242\"\n\n\
         [tunnel]\nendpoint = \"{}\"\nserver_name = \"cloud.test\"\nca = \"{}\"\naccount = \"ACME\"\ntoken = \"{TOKEN}\"\n",
        at(ADMIN),
        at(USERS_API),
        at(PROXY),
        cloud.ca.display()
    );
    let config = GatewayConfig {
        gateway: "state_dir = \"state\"\ncall_limit = 3",
        pbx_extra: &format!("csta_ports = [{CSTA}]"),
        cloud_extra: "server_name = \"cloud.test\"",
        sections: &sections,
        ..GatewayConfig::loopback(&cloud.ca, GW_SIP, PBX_SIP, CLOUD_SIP)
    }
    .write(&work.dir);
    let gw = start_gateway(&config);
    gw.wait_for("tunnel: connected to", Duration::from_secs(20));

    // Users: synced on the PBX's push, refusals with their reasons.
    let named: Vec<(u32, &str)> = (1000..1010).map(|d| (d, "User")).collect();
    assert_eq!(push(&work, users(&named)).status, 200);
    let g = cloud.wait_gateway("10 users and 2 sync errors", Duration::from_secs(15), |g| {
        g["users"] == 10 && g["sync_errors"] == 2
    });
    let id = g["gateway"].as_str().unwrap().to_owned();
    let synced = cloud.get(&format!("/gateways/{id}/users"));
    let reasons: Vec<&str> = synced["sync_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("role-based mailbox")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"missing first and last name"),
        "{reasons:?}"
    );
    // A name changed on the PBX reaches the platform with the next sync.
    let mut renamed = named.clone();
    renamed[3].1 = "Renamed";
    assert_eq!(push(&work, users(&renamed)).status, 200);
    wait("the new name synced", Duration::from_secs(15), || {
        cloud.get(&format!("/gateways/{id}/users"))["users"]["1003"]["first_name"] == "Renamed"
    });
    wait("every user monitored", Duration::from_secs(15), || {
        admin("/api/cti")["monitored"] == 10
    });

    // CTI from the platform: MakeCall rings 1001 at the PBX.
    let made = cloud.post(
        "/commands",
        &json!({"name": "cti", "args": {"service": "make-call", "device": "1000", "to": "1001"}})
            .to_string(),
    );
    assert_eq!(made.status, 200, "{}", made.text);
    assert_eq!(made.json["ok"], true, "{}", made.text);
    let call = made.json["body"]["call"].as_str().unwrap().to_owned();
    let ringing = http::request(sim.control, "GET", "/calls", &[], "").json;
    let c = ringing
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call"] == call.as_str())
        .expect("the call at the PBX");
    assert!(
        c["parties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["device"] == "1001" && p["state"] == "alerting"),
        "{c}"
    );
    let cleared = cloud.post(
        "/commands",
        &json!({"name": "cti", "args": {"service": "clear", "device": "1000", "call": call}})
            .to_string(),
    );
    assert_eq!(cleared.json["ok"], true, "{}", cleared.text);
    // The status command answers what GET /api/status says (the same
    // body; uptime aside), the tunnel connected, the limit enforced.
    let by_tunnel = cloud.post("/commands", &json!({"name": "status"}).to_string());
    assert_eq!(by_tunnel.json["ok"], true, "{}", by_tunnel.text);
    let mut by_tunnel = by_tunnel.json["body"].clone();
    let mut by_api = http::request(at(ADMIN), "GET", "/api/status", &[], "").json;
    assert_eq!(by_tunnel["tunnel"], "connected", "{by_tunnel}");
    assert_eq!(by_api["call_limit"], 3, "the file's call_limit: {by_api}");
    for s in [&mut by_tunnel, &mut by_api] {
        s.as_object_mut().unwrap().remove("uptime_seconds");
    }
    assert_eq!(by_tunnel, by_api);
    // A command the gateway does not know is answered, not ignored.
    let odd = cloud.post("/commands", &json!({"name": "teleport"}).to_string());
    assert_eq!(odd.json["ok"], false, "{}", odd.text);

    // Calls both ways with SRTP on the cloud side.
    let out = sim.post(
        "/sip/calls",
        &json!({"from": "1002", "to": "0612345678", "seconds": 3}).to_string(),
    )["call"]
        .as_u64()
        .unwrap();
    let into = cloud
        .post(
            "/sip/calls",
            &json!({"from": "cloud-user", "to": "1003", "seconds": 3}).to_string(),
        )
        .json["call"]
        .as_u64()
        .unwrap();
    wait("both calls over", Duration::from_secs(20), || {
        pbx_call(&sim, out)["state"] == "ended by pbxsim"
            && pbx_call(&sim, 2)["state"] == "ended by the gateway"
    });
    let cloud_calls = cloud.get("/sip/calls");
    for c in cloud_calls.as_array().unwrap() {
        assert!(
            c["srtp_decrypted"].as_u64() >= Some(100),
            "the PBX's audio decrypted at the cloud: {c}"
        );
        assert_eq!(c["srtp_refused"], 0, "{c}");
    }
    assert!(
        pbx_call(&sim, out)["rtp_received"].as_u64() >= Some(100),
        "the cloud's echo reached the PBX"
    );
    assert!(
        pbx_call(&sim, 2)["rtp_received"].as_u64() >= Some(100),
        "the cloud's tone reached the PBX"
    );
    let _ = into;

    // The tunnel cut for 30 s with a call in progress.
    let long = sim.post(
        "/sip/calls",
        &json!({"from": "1004", "to": "0699999999", "seconds": 40}).to_string(),
    )["call"]
        .as_u64()
        .unwrap();
    wait("the long call connected", Duration::from_secs(10), || {
        pbx_call(&sim, long)["rtp_received"].as_u64() > Some(20)
    });
    proxy.cut();
    gw.wait_for("tunnel: lost", Duration::from_secs(10));
    let before = pbx_call(&sim, long)["rtp_received"].as_u64().unwrap();
    // Events made while it is down: calls (records), CTI, a sync.
    for dn in ["1005", "1006"] {
        sim.post(
            "/sip/calls",
            &json!({"from": dn, "to": "0611111111", "seconds": 2}).to_string(),
        );
    }
    let mut later = renamed.clone();
    later[5].1 = "Offline";
    assert_eq!(push(&work, users(&later)).status, 200);
    std::thread::sleep(Duration::from_secs(30));
    let during = pbx_call(&sim, long)["rtp_received"].as_u64().unwrap();
    assert!(
        during >= before + 1000,
        "media went on while the tunnel was down: {before} then {during}"
    );
    assert!(
        admin("/api/tunnel")["backlog"].as_u64() > Some(0),
        "events wait in the outbox"
    );
    proxy.restore();
    gw.wait_count("tunnel: connected to", 2, Duration::from_secs(70));
    let last_id = || admin("/api/tunnel")["last_id"].as_u64().unwrap();
    wait("everything delivered", Duration::from_secs(20), || {
        let g = cloud.gateway();
        g["highest"].as_u64() == Some(last_id()) && admin("/api/tunnel")["backlog"] == 0
    });
    let g = cloud.gateway();
    assert_eq!(g["gaps"], 0, "nothing lost: {g}");
    assert_eq!(g["events"], g["highest"], "each stored once: {g}");
    assert_eq!(
        cloud.get(&format!("/gateways/{id}/users"))["users"]["1005"]["first_name"],
        "Offline"
    );
    wait("the long call over", Duration::from_secs(30), || {
        pbx_call(&sim, long)["state"] == "ended by pbxsim"
    });
    assert_eq!(pbx_call(&sim, long)["rtp_lost"], 0);

    // Events made while the tunnel is down and the gateway restarts.
    proxy.cut();
    gw.wait_count("tunnel: lost", 2, Duration::from_secs(10));
    let quick = sim.post(
        "/sip/calls",
        &json!({"from": "1007", "to": "0622222222", "seconds": 1}).to_string(),
    )["call"]
        .as_u64()
        .unwrap();
    wait(
        "the call before the restart over",
        Duration::from_secs(15),
        || pbx_call(&sim, quick)["state"] == "ended by pbxsim",
    );
    std::thread::sleep(Duration::from_millis(500));
    let owed = last_id();
    let lines = gw.stop();
    let fin = pbxlink_tests::gateway::final_line(&lines);
    let calls = pbxlink_tests::gateway::field(fin, "calls");
    assert!(
        cloud.gateway()["highest"].as_u64() < Some(owed),
        "events still owed when it stopped"
    );
    proxy.restore();
    let gw = start_gateway(&config);
    gw.wait_for("tunnel: connected to", Duration::from_secs(30));
    let g = cloud.wait_gateway(
        "the outbox delivered after the restart",
        Duration::from_secs(20),
        |g| g["highest"].as_u64() >= Some(owed),
    );
    assert_eq!(g["gaps"], 0, "{g}");
    assert_eq!(g["events"], g["highest"], "{g}");
    // Every call's record arrived, once.
    assert_eq!(g["by_kind"]["cdr"].as_u64(), Some(calls), "{g}");
    drop(gw.stop());
}

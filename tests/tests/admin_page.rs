//! The admin page in a real browser (issue 19): a gateway that starts
//! unconfigured (no PBX yet) serves its wizard over HTTPS; headless
//! Chromium (Debian's `chromium`, driven by playwright-core from
//! `tests/browser/wizard.mjs`) sets the first password, walks every step
//! against pbxsim (CSTA, the users it pushes) and cloudsim (the tunnel
//! that carries welcome messages) to `Onboarding complete`, and downloads
//! the log bundle through its temporary link. Screenshots of each step
//! and the downloads are kept in `target/test-artifacts/admin-page/`.
//!
//! The gateway restarts itself three times on the way (the PBX step, the
//! sync schedule, the digits): each time it drains, execs itself and
//! reads its configuration with the wizard's settings laid over it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pbxlink_tests::cloudsim::CloudSim;
use pbxlink_tests::coturn::Stun;
use pbxlink_tests::gateway::{Gateway, workspace_binary};
use pbxlink_tests::http;
use pbxlink_tests::pbxsim::PbxSim;
use pbxlink_tests::rig::Workdir;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const GW_SIP: u16 = 23_900;
const PBX_SIP: u16 = 23_901;
const CLOUD_SIP: u16 = 23_902;
const TUNNEL: u16 = 23_903;
const ADMIN: u16 = 23_904;
const ADMIN_HTTPS: u16 = 23_905;
const USERS_API: u16 = 23_906;
const PBX_CONTROL: u16 = 23_907;
const CLOUD_CONTROL: u16 = 23_908;
const CSTA: u16 = 23_910;
const NTP: u16 = 23_911;
const STUN: u16 = 23_912;
/// A STUN server the diagnostics ask and nobody answers.
const DEAD_STUN: u16 = 23_913;
const TOKEN: &str = "acme-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn artifacts() -> PathBuf {
    pbxlink_tests::browser::artifacts("admin-page")
}

/// The configuration an installer's gateway ships with: where it is, its
/// cloud account; no PBX yet (the wizard names it).
fn config(work: &Workdir, ca: &Path) -> PathBuf {
    let text = format!(
        "[gateway]\nlan_address = \"127.0.0.1\"\nprofile = \"max\"\nstate_dir = \"state\"\n\
         networks = [\"127.0.0.0/8\"]\ndrain_seconds = 2\n\n\
         [pbx]\nport = {PBX_SIP}\n\n\
         [cloud]\ntargets = [\"tls:{}\"]\nca = \"{}\"\nserver_name = \"cloud.test\"\n\
         srtp_suites = [\"AES_CM_128_HMAC_SHA1_80\"]\nntp = \"{}\"\nstun = [\"{}\", \"{}\"]\n\n\
         [sip]\nport = {GW_SIP}\n\n\
         [admin]\nlisten = \"{}\"\nhttps_listen = \"{}\"\napi_token = \"{ADMIN_TOKEN}\"\n\n\
         [users]\nlisten = \"{}\"\npush_password = \"Push-secret-4242\"\n\n\
         [subscriber]\nlisten = \"off\"\n\n\
         [tunnel]\nendpoint = \"{}\"\nserver_name = \"cloud.test\"\nca = \"{}\"\naccount = \"ACME\"\ntoken = \"{TOKEN}\"\n",
        at(CLOUD_SIP),
        ca.display(),
        at(NTP),
        at(STUN),
        at(DEAD_STUN),
        at(ADMIN),
        at(ADMIN_HTTPS),
        at(USERS_API),
        at(TUNNEL),
        ca.display()
    );
    let path = work.dir.join("pbxlink.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The PBX's users: six with their own email, two sharing one.
fn users_file(work: &Workdir) -> PathBuf {
    let mut users: Vec<Value> = (1000..1006)
        .map(|dn| json!({"directory_number": dn.to_string(), "first_name": "User", "last_name": dn.to_string(), "email": format!("u{dn}@example.com"), "role": 1}))
        .collect();
    for dn in [1006, 1007] {
        users.push(json!({"directory_number": dn.to_string(), "first_name": "Shared", "last_name": dn.to_string(), "email": "desk@example.com", "role": 1}));
    }
    let path = work.dir.join("users.json");
    std::fs::write(&path, json!({ "users": users }).to_string()).unwrap();
    path
}

/// A pcap's packets (link type RAW): the UDP payloads of SIP (text) and
/// how many RTP headers (version 2, payload type 0 or 8).
fn pcap_packets(pcap: &[u8]) -> (Vec<String>, usize) {
    let mut sip = Vec::new();
    let mut rtp = 0;
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let kept = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let p = &pcap[at + 16..at + 16 + kept];
        at += 16 + kept;
        if p.len() < 28 || p[0] >> 4 != 4 || p[9] != 17 {
            continue;
        }
        let body = &p[usize::from(p[0] & 15) * 4 + 8..];
        if body.len() >= 12 && body[0] >> 6 == 2 && matches!(body[1] & 0x7f, 0 | 8) {
            rtp += 1;
        } else {
            sip.push(String::from_utf8_lossy(body).into_owned());
        }
    }
    (sip, rtp)
}

#[test]
fn chromium_walks_the_wizard_to_onboarding_complete_and_downloads_the_logs() {
    let out = artifacts();
    let work = Workdir::new("admin-page");
    let cloud = CloudSim::start_with(
        &work.dir,
        at(TUNNEL),
        at(CLOUD_SIP),
        at(CLOUD_CONTROL),
        TOKEN,
        &["--ntp", &at(NTP).to_string()],
    );
    let _stun = Stun::start(Command::new("turnserver"), at(STUN), &work.dir);
    let sim = PbxSim::start(
        at(PBX_CONTROL),
        &[
            "--csta",
            &at(CSTA).to_string(),
            "--users",
            "8",
            "--sip",
            &at(PBX_SIP).to_string(),
            "--gateway-sip",
            &at(GW_SIP).to_string(),
            "--rtp-base",
            "47300",
        ],
    );
    let config = config(&work, &cloud.ca);
    let gw = Gateway::start(&[
        "run".into(),
        "--config".into(),
        config.display().to_string(),
        "--seconds".into(),
        "300".into(),
    ]);
    gw.wait_for(
        "setup: the gateway does not carry calls yet",
        Duration::from_secs(20),
    );
    gw.wait_for("admin: page on https://", Duration::from_secs(10));

    let mut node = pbxlink_tests::browser::Script::start(
        "wizard.mjs",
        &[
            ("PBXLINK_PAGE", format!("https://{}/", at(ADMIN_HTTPS))),
            ("PBXLINK_CSTA_PORT", CSTA.to_string()),
            ("PBXLINK_ARTIFACTS", out.display().to_string()),
            ("PBXLINK_DEAD_STUN", at(DEAD_STUN).to_string()),
        ],
    );

    // The PBX step's settings: the gateway starts again as a gateway, and
    // the PBX (as configured by its installer) pushes its users.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !gw
        .output()
        .iter()
        .any(|l| l.contains("users: user-config API on"))
    {
        let ended = node.ended();
        assert!(
            ended.is_none() && Instant::now() < deadline,
            "the gateway never ran with the PBX step's settings ({ended:?}):\n{}\n--- gateway ---\n{}",
            node.said(),
            gw.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pushed = Command::new(workspace_binary("pbxsim"))
        .args(["push", "--gateway", &at(USERS_API).to_string(), "--ca"])
        .arg(work.dir.join("state/users-api.crt"))
        .args(["--auth", "pbx:Push-secret-4242", "--users-file"])
        .arg(users_file(&work))
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );

    // A call while the browser's trace runs.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !gw.output().iter().any(|l| l.contains("trace: capturing")) {
        if node.ended().is_some() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let placed = sim.post(
        "/sip/calls",
        &json!({"from": "1000", "to": "0612345678", "seconds": 2}).to_string(),
    );
    assert!(placed["call"].is_u64(), "{placed}");

    let _said = node.passes(Duration::from_secs(240), || {
        format!("--- gateway ---\n{}", gw.output().join("\n"))
    });

    // Each step's screenshot is an artefact.
    let shots: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".png"))
        .collect();
    for step in [
        "first-password",
        "gateway-errors",
        "pbx",
        "connect",
        "deployment",
        "advanced-errors",
        "onboarding-complete",
        "operations",
    ] {
        assert!(
            shots.iter().any(|s| s.ends_with(&format!("-{step}.png"))),
            "no screenshot of {step}: {shots:?}"
        );
    }

    // The log bundle is a tar.gz of the gateway's log, whose lines tell
    // the onboarding.
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(out.join("logs.tar.gz"))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.status.success(), "logs.tar.gz is not a tar.gz");
    assert!(names.contains("logs/gateway.log"), "{names}");
    assert!(names.contains("status.json"), "{names}");
    let log = Command::new("tar")
        .arg("xzOf")
        .arg(out.join("logs.tar.gz"))
        .arg("logs/gateway.log")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("admin: Onboarding complete"), "{log}");
    // The structured log beside it: one JSON object a line, with level
    // and module.
    assert!(names.contains("logs/gateway.jsonl"), "{names}");
    let jsonl = Command::new("tar")
        .arg("xzOf")
        .arg(out.join("logs.tar.gz"))
        .arg("logs/gateway.jsonl")
        .output()
        .unwrap();
    let complete: Value = String::from_utf8_lossy(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
        .find(|e| e["fields"]["message"] == "admin: Onboarding complete")
        .expect("the onboarding in the structured log");
    assert_eq!(complete["level"], "INFO", "{complete}");
    assert_eq!(complete["target"], "pbxlink::admin::wizard", "{complete}");
    assert!(
        log.contains("starting again: the wizard's PBX step changed"),
        "{log}"
    );

    // The trace holds the call: its SIP (an INVITE, whole) and its RTP
    // (headers only).
    let pcap = std::fs::read(out.join("trace.pcap")).unwrap();
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "a pcap file");
    let (sip, rtp) = pcap_packets(&pcap);
    assert!(
        sip.iter().any(|p| p.contains("INVITE sip:")),
        "no INVITE in the trace"
    );
    assert!(rtp >= 50, "only {rtp} RTP headers in the trace");

    // The welcome messages went to the cloud platform; the duplicates did
    // not get one.
    let g = cloud.wait_gateway("the gateway linked", Duration::from_secs(10), |g| {
        g["users"].as_u64().unwrap_or(0) > 0
    });
    let id = g["gateway"].as_str().unwrap();
    let welcome = cloud.get(&format!("/gateways/{id}/events?kind=welcome"));
    let sent: Vec<&str> = welcome
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["body"]["users"].as_array().unwrap().iter())
        .filter_map(|u| u["extension"].as_str())
        .collect();
    assert!(sent.contains(&"1000"), "{welcome}");
    assert!(
        !sent.contains(&"1006") && !sent.contains(&"1007"),
        "{welcome}"
    );

    // The start-up diagnostics against the cloud: the names are
    // addresses (nothing to resolve); cloudsim's NTP, its tunnel's HTTPS
    // and its SIP-TLS, coturn's STUN pass; the dead STUN server fails,
    // is logged, and raises an alarm the platform hears of.
    let d = http::get_with_token(at(ADMIN), "/api/diagnostics", ADMIN_TOKEN).json;
    let results: Vec<String> = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["check"].as_str().unwrap(),
                c["target"].as_str().unwrap(),
                c["result"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "dns  skipped".to_owned(),
        format!("ntp {} passed", at(NTP)),
        format!("https {} passed", at(TUNNEL)),
        format!("stun {} passed", at(STUN)),
        format!("stun {} failed", at(DEAD_STUN)),
        format!("sip-tls {} passed", at(CLOUD_SIP)),
    ] {
        assert!(results.contains(&want), "{want:?} not in {results:?}");
    }
    let dead = format!("stun {}", at(DEAD_STUN));
    let alarms = http::get_with_token(at(ADMIN), "/api/alarms", ADMIN_TOKEN).json;
    assert_eq!(alarms["alarms"][0]["source"], dead.as_str(), "{alarms}");
    assert_eq!(alarms["alarms"].as_array().unwrap().len(), 1, "{alarms}");
    let heard = cloud.get(&format!("/gateways/{id}/events?kind=alarm"));
    assert!(
        heard
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["body"]["source"] == dead.as_str() && e["body"]["raised"] == true),
        "{heard}"
    );
    assert!(
        log.contains(&format!("diagnostics: {dead}: FAILED")),
        "the failed check is not in the log"
    );

    // What the wizard set is what the gateway runs with, and it is kept.
    let status = http::request(at(ADMIN), "GET", "/api/status", &[], "").json;
    assert_eq!(status["onboarding"], "Onboarding complete", "{status}");
    assert_eq!(status["csta"], "Connected", "{status}");
    let kept: Value =
        serde_json::from_slice(&std::fs::read(work.dir.join("state/onboarding.json")).unwrap())
            .unwrap();
    assert_eq!(kept["complete"], true);
    assert_eq!(kept["pbx"]["csta_ports"], CSTA.to_string());

    // The download link was one-off secret and is still served until it
    // expires; a made-up one is not.
    let url = std::fs::read_to_string(out.join("logs-url.txt")).unwrap();
    assert_eq!(http::get_head(at(ADMIN), url.trim()).0, 200);
    assert_eq!(
        http::get_head(at(ADMIN), "/downloads/00112233445566778899aabbccddeeff").0,
        404
    );

    // The platform runs the console through the tunnel: a log bundle
    // and a call trace read piece by piece (the cloud cannot reach the
    // LAN's links), then a reboot.
    let ask = |name: &str, args: Value| -> Value {
        let a = cloud.post(
            "/commands",
            &json!({"name": name, "args": args}).to_string(),
        );
        assert_eq!(a.status, 200, "{name}: {}", a.text);
        assert_eq!(a.json["ok"], true, "{name}: {}", a.text);
        a.json["body"].clone()
    };
    let read_through_tunnel = |url: &Value| -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut offset = json!(0);
        while !offset.is_null() {
            let piece = ask("download", json!({"url": url, "offset": offset}));
            bytes.extend(
                BASE64
                    .decode(piece["data_base64"].as_str().unwrap())
                    .unwrap(),
            );
            offset = piece["next"].clone();
        }
        bytes
    };
    let logs = ask("collect_logs", json!({}));
    let bundle = read_through_tunnel(&logs["url"]);
    assert_eq!(bundle.len() as u64, logs["bytes"].as_u64().unwrap());
    std::fs::write(out.join("cloud-logs.tar.gz"), &bundle).unwrap();
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(out.join("cloud-logs.tar.gz"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("logs/gateway.log"),
        "the platform's bundle: {listing:?}"
    );
    assert_eq!(ask("trace", json!({"seconds": 1}))["state"], "running");
    let deadline = Instant::now() + Duration::from_secs(20);
    let traced = loop {
        let t = ask("trace", json!({}));
        if t["state"] == "done" {
            break t;
        }
        assert_eq!(t["state"], "running", "{t}");
        assert!(Instant::now() < deadline, "the trace never ended: {t}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let pcap = read_through_tunnel(&traced["url"]);
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "a pcap file");
    let refused = cloud.post("/commands", &json!({"name": "teleport"}).to_string());
    assert_eq!(refused.json["ok"], false, "{}", refused.text);
    let sessions = cloud.gateway()["sessions"].as_u64().unwrap();
    let reboot = json!({"name": "reboot", "id": "reboot-1"}).to_string();
    let rebooted = cloud.post("/commands", &reboot).json;
    assert!(
        rebooted["body"]["result"]
            .as_str()
            .unwrap()
            .contains("starts again"),
        "{rebooted}"
    );
    gw.wait_for(
        "starting again: reboot from the cloud platform",
        Duration::from_secs(20),
    );
    cloud.wait_gateway("the gateway back", Duration::from_secs(30), |g| {
        g["connected"] == true && g["sessions"].as_u64().unwrap() > sessions
    });
    // The same command again (its answer lost in the cut): answered, not
    // carried out twice.
    let again = cloud.post("/commands", &reboot).json;
    assert_eq!(again["ok"], true, "{again}");
    assert!(
        again["body"]["result"]
            .as_str()
            .unwrap()
            .starts_with("done"),
        "{again}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let restarts = gw
        .output()
        .iter()
        .filter(|l| l.contains("starting again: reboot from the cloud platform"))
        .count();
    assert_eq!(restarts, 1, "rebooted twice");

    // A data reset from the platform forgets the onboarding; the gateway
    // starts again waiting for its wizard.
    let reset = ask("data_reset", json!({}));
    assert!(
        reset["removed"].to_string().contains("onboarding.json"),
        "{reset}"
    );
    gw.wait_for(
        "starting again: data reset from the cloud platform",
        Duration::from_secs(20),
    );
    // Waiting for its wizard a second time (the first was at the start).
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw
        .output()
        .iter()
        .filter(|l| l.contains("setup: the gateway does not carry calls yet"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the gateway never started again unconfigured"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gw.wait_for("admin: page on https://", Duration::from_secs(10));
    assert!(!work.dir.join("state/onboarding.json").exists());
    gw.stop();

    // A replacement gateway (its own state, so its own id) linked to the
    // same account relinks in place of the first: two confirmations on
    // the page, the typed word here; the platform sends the first one's
    // settings and the new gateway runs with them, its own LAN kept.
    let config_b = work.dir.join("pbxlink-b.toml");
    std::fs::write(
        &config_b,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("state_dir = \"state\"", "state_dir = \"state-b\""),
    )
    .unwrap();
    let gw_b = Gateway::start(&[
        "run".into(),
        "--config".into(),
        config_b.display().to_string(),
        "--seconds".into(),
        "120".into(),
    ]);
    gw_b.wait_for("tunnel: connected to", Duration::from_secs(20));
    let admin = |method: &str, path: &str, body: Value| {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        http::request(
            at(ADMIN),
            method,
            path,
            &[("Authorization", auth.as_str())],
            &body,
        )
    };
    let me = admin("GET", "/api/tunnel", Value::Null).json["gateway"].clone();
    assert_ne!(me, json!(id), "the replacement has its own id");
    let word = admin(
        "POST",
        "/api/operations/relink",
        json!({"replaces": id, "network": "own", "confirm": "yes"}),
    );
    assert_eq!(word.status, 422, "{}", word.text);
    assert!(
        word.json["errors"]["confirm"]
            .as_str()
            .unwrap()
            .contains("link")
    );
    // A gateway the account does not have: the platform says so.
    let nope = admin(
        "POST",
        "/api/operations/relink",
        json!({"replaces": "gw-0000000000000000", "network": "own", "confirm": "link"}),
    );
    assert_eq!(nope.status, 202, "{}", nope.text);
    gw_b.wait_for(
        "admin: relink failed: the platform says",
        Duration::from_secs(20),
    );
    let failed = admin("GET", "/api/operations/relink", Value::Null).json;
    assert_eq!(failed["state"], "failed", "{failed}");
    let asked = admin(
        "POST",
        "/api/operations/relink",
        json!({"replaces": id, "network": "own", "confirm": "link"}),
    );
    assert_eq!(asked.status, 202, "{}", asked.text);
    gw_b.wait_for(
        "starting again: relink from the cloud platform",
        Duration::from_secs(20),
    );
    gw_b.wait_for("csta: 127.0.0.1", Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let st = admin("GET", "/api/status", Value::Null).json;
        if st["csta"] == "Connected" || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["onboarding"], "Onboarding complete", "{status}");
    assert_eq!(status["csta"], "Connected", "{status}");
    let taken: Value =
        serde_json::from_slice(&std::fs::read(work.dir.join("state-b/onboarding.json")).unwrap())
            .unwrap();
    assert_eq!(taken["pbx"]["csta_ports"], CSTA.to_string(), "{taken}");
    drop(sim);
    gw_b.stop();
}

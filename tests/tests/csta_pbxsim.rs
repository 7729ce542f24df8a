//! The CSTA link and the PBX's user push, end to end: `pbxlink run`
//! against `pbxsim` (a separate process with its own CSTA codec) on
//! loopback, driven through the gateway's admin API and user-config API
//! by this test's own HTTP client.
//!
//! - 200 users pushed, monitored across two CSTA servers; MakeCall,
//!   Answer, Hold, Retrieve, Consultation, Transfer, Clear, an outside
//!   call answered, one busy, message waiting — each user's events in the
//!   order the PBX sent them, and each user's call history.
//! - One CSTA server stalled then killed with requests in flight: every
//!   request is answered, its users are monitored again on the other
//!   server, and they return when it comes back.
//! - The user-config API refuses each bad user with its reason and keeps
//!   the rest; credentials, throttling, bad bodies; users survive a
//!   restart; a wrong CTI login shows as `wrong credential`.

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::http::{self, Answer, basic};
use pbxlink_tests::pbxsim::PbxSim;
use pbxlink_tests::rig::{GatewayConfig, Workdir};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOKEN: &str = "csta-test-token-0123456789";
const PUSH_PASSWORD: &str = "Push-secret-4242";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Ports of one test's gateway and pbxsim.
struct Ports {
    base: u16,
}

impl Ports {
    fn sip(&self) -> u16 {
        self.base
    }
    fn pbx_sip(&self) -> u16 {
        self.base + 1
    }
    fn cloud(&self) -> u16 {
        self.base + 2
    }
    fn admin(&self) -> SocketAddr {
        addr(self.base + 3)
    }
    fn users_api(&self) -> SocketAddr {
        addr(self.base + 4)
    }
    fn control(&self) -> SocketAddr {
        addr(self.base + 5)
    }
    fn csta(&self, i: u16) -> u16 {
        self.base + 10 + i
    }
}

/// The gateway's configuration: CSTA on `csta_ports`, the user-config API
/// and the admin API with its token, state in the work directory.
fn config(work: &Workdir, p: &Ports, pbx_extra: &str) -> PathBuf {
    let (ca, _) = work.cloud_pki(addr(0).ip());
    let gateway = "state_dir = \"state\"\nprofile = \"small\"".to_string();
    let sections = format!(
        "[admin]\nlisten = \"{}\"\napi_token = \"{TOKEN}\"\n\n[users]\nlisten = \"{}\"\npush_password = \"{PUSH_PASSWORD}\"\n",
        p.admin(),
        p.users_api()
    );
    GatewayConfig {
        gateway: &gateway,
        pbx_extra,
        sections: &sections,
        ..GatewayConfig::loopback(&ca, p.sip(), p.pbx_sip(), p.cloud())
    }
    .write(&work.dir)
}

fn start_gateway(config: &Path) -> Gateway {
    let gw = Gateway::start(&[
        "run".into(),
        "--config".into(),
        config.display().to_string(),
        "--seconds".into(),
        "110".into(),
    ]);
    gw.wait_for("users: user-config API on", Duration::from_secs(20));
    gw
}

fn cert(work: &Workdir) -> PathBuf {
    work.dir.join("state/users-api.crt")
}

fn push(work: &Workdir, p: &Ports, method: &str, path: &str, auth: &str, body: &str) -> Answer {
    http::request_tls(
        p.users_api(),
        &cert(work),
        method,
        path,
        &[("Authorization", auth)],
        body,
    )
    .unwrap_or_else(|e| panic!("user-config API {method} {path}: {e}"))
}

fn users_json(first: u32, n: u32, role: u32) -> String {
    json!({
        "users": (first..first + n).map(|dn| json!({
            "directory_number": dn.to_string(),
            "first_name": "User",
            "last_name": dn.to_string(),
            "email": format!("user{dn}@example.com"),
            "role": role,
        })).collect::<Vec<_>>()
    })
    .to_string()
}

fn admin_get(p: &Ports, path: &str) -> Value {
    let a = http::get_with_token(p.admin(), path, TOKEN);
    assert_eq!(a.status, 200, "GET {path}: {}", a.text);
    a.json
}

fn cti(p: &Ports, command: &str, body: Value) -> Answer {
    http::request(
        p.admin(),
        "POST",
        &format!("/api/cti/{command}"),
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        &body.to_string(),
    )
}

fn cti_ok(p: &Ports, command: &str, body: Value) -> Value {
    let a = cti(p, command, body.clone());
    assert_eq!(a.status, 200, "{command} {body}: {}", a.text);
    a.json
}

/// Connects from `from` and reads: how many bytes came before the close.
fn closed_on_connect_from(from: &str, to: SocketAddr) -> Result<usize, String> {
    use std::io::{Read, Write};
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(3))
        .map_err(|e| e.to_string())?;
    let mut s: std::net::TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // A TLS ClientHello's first bytes; the server must not answer them.
    let _ = s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05]);
    let mut buf = [0u8; 64];
    s.read(&mut buf).or_else(|e| match e.kind() {
        std::io::ErrorKind::ConnectionReset => Ok(0),
        _ => Err(e.to_string()),
    })
}

fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every logged event so far.
fn events(p: &Ports) -> Vec<Value> {
    admin_get(p, "/api/cti/events?limit=10000")["events"]
        .as_array()
        .unwrap()
        .clone()
}

/// `device`'s events after `after` as `kind call` strings, once at least
/// `n` have come.
fn device_events(p: &Ports, device: &str, after: u64, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    wait_until(
        &format!("{n} events for {device}"),
        Duration::from_secs(10),
        || {
            got = events(p)
                .iter()
                .filter(|e| e["device"] == device && e["seq"].as_u64().unwrap() > after)
                .map(|e| {
                    format!(
                        "{} {}",
                        e["event"].as_str().unwrap(),
                        e["call"].as_str().unwrap_or("-")
                    )
                })
                .collect();
            got.len() >= n
        },
    );
    got
}

fn last_seq(p: &Ports) -> u64 {
    admin_get(p, "/api/cti/events?limit=0")["last"]
        .as_u64()
        .unwrap()
}

/// Starts pbxsim with two CSTA servers and `users` users, and the gateway
/// toward them, pushes the users and waits until all are monitored.
fn rig(name: &str, p: &Ports, users: u32, pbx_extra: &str) -> (Workdir, PbxSim, Gateway) {
    let work = Workdir::new(name);
    let csta = [p.csta(0), p.csta(1)].map(|c| addr(c).to_string());
    let sim = PbxSim::start(
        p.control(),
        &[
            "--csta",
            &csta[0],
            "--csta",
            &csta[1],
            "--users",
            &users.to_string(),
            "--busy",
            "0999",
            "--answer-delay-ms",
            "200",
            "--system-status",
            "2",
        ],
    );
    let extra = format!("csta_ports = \"{};{}\"\n{pbx_extra}", p.csta(0), p.csta(1));
    let gw = start_gateway(&config(&work, p, &extra));
    let a = push(
        &work,
        p,
        "PUT",
        "/api/v1/users",
        &basic("pbx", PUSH_PASSWORD),
        &users_json(1000, users, 1),
    );
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["accepted"], users);
    wait_until("every user monitored", Duration::from_secs(20), || {
        let c = admin_get(p, "/api/cti");
        c["monitored"] == users && c["status"] == "Connected"
    });
    (work, sim, gw)
}

#[test]
fn two_hundred_users_are_monitored_and_each_call_flow_reports_its_events_in_order() {
    let p = Ports { base: 23_100 };
    let (_work, sim, gw) = rig("csta-flows", &p, 200, "");

    // Spread over both servers, each user monitored once.
    let s = sim.wait_status("200 monitors", Duration::from_secs(5), |s| {
        s["monitors_total"] == 200
    });
    assert_eq!(s["monitored_devices"], 200);
    for port in [p.csta(0), p.csta(1)] {
        let n = sim.server(port)["monitors"].as_u64().unwrap();
        assert!((60..=140).contains(&n), "server {port} monitors {n} of 200");
    }
    let status = admin_get(&p, "/api/cti");
    assert_eq!(status["result"], "Connection successful");
    assert_eq!(admin_get(&p, "/api/status")["csta"], "Connected");

    // MakeCall 1000 → 1001, answered by CTI at 1001.
    let start = last_seq(&p);
    let c1 = cti_ok(&p, "make-call", json!({"device": "1000", "to": "1001"}))["call"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        device_events(&p, "1000", start, 3),
        [
            format!("service_initiated {c1}"),
            format!("originated {c1}"),
            format!("delivered {c1}")
        ]
    );
    assert_eq!(
        device_events(&p, "1001", start, 1),
        [format!("delivered {c1}")]
    );
    cti_ok(&p, "answer", json!({"device": "1001", "call": c1}));
    // Hold and retrieve at 1000.
    cti_ok(&p, "hold", json!({"device": "1000", "call": c1}));
    cti_ok(&p, "retrieve", json!({"device": "1000", "call": c1}));
    assert_eq!(
        device_events(&p, "1000", start, 6)[3..],
        [
            format!("established {c1}"),
            format!("held {c1}"),
            format!("retrieved {c1}")
        ]
    );
    // Holding a call twice is refused by the PBX, with its error.
    cti_ok(&p, "hold", json!({"device": "1000", "call": c1}));
    let twice = cti(&p, "hold", json!({"device": "1000", "call": c1}));
    assert_eq!(twice.status, 409, "{}", twice.text);
    assert_eq!(
        twice.json["csta_error"],
        "stateIncompatibility/invalidObjectState"
    );
    cti_ok(&p, "retrieve", json!({"device": "1000", "call": c1}));
    device_events(&p, "1000", start, 8);

    // Consultation from 1000 to 1002, answered, then transfer: 1001 and
    // 1002 talk, 1000 is out.
    let before_consult = last_seq(&p);
    let c2 = cti_ok(
        &p,
        "consult",
        json!({"device": "1000", "call": c1, "to": "1002"}),
    )["call"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(c1, c2);
    assert_eq!(
        device_events(&p, "1000", before_consult, 4),
        [
            format!("held {c1}"),
            format!("service_initiated {c2}"),
            format!("originated {c2}"),
            format!("delivered {c2}")
        ]
    );
    cti_ok(&p, "answer", json!({"device": "1002", "call": c2}));
    assert_eq!(
        device_events(&p, "1000", before_consult, 5)[4],
        format!("established {c2}")
    );
    device_events(&p, "1002", before_consult, 2);
    let before_transfer = last_seq(&p);
    let done = cti_ok(
        &p,
        "transfer",
        json!({"device": "1000", "held_call": c1, "active_call": c2}),
    );
    let c3 = done["call"].as_str().unwrap().to_owned();
    for d in ["1000", "1001", "1002"] {
        assert_eq!(
            device_events(&p, d, before_transfer, 1),
            [format!("transferred {c1}")],
            "{d}"
        );
    }
    let t = events(&p)
        .into_iter()
        .find(|e| e["device"] == "1001" && e["event"] == "transferred")
        .unwrap();
    assert_eq!(
        (t["secondary_call"].as_str(), t["transferred_to"].as_str()),
        (Some(c2.as_str()), Some("1002"))
    );
    // 1001 hangs up by CTI: both it and 1002 leave the call.
    let before_clear = last_seq(&p);
    cti_ok(&p, "clear", json!({"device": "1001", "call": c3}));
    assert_eq!(
        device_events(&p, "1002", before_clear, 2),
        vec![format!("connection_cleared {c3}"); 2]
    );

    // An outside number answers by itself; a busy one fails.
    let before_out = last_seq(&p);
    let c4 = cti_ok(
        &p,
        "make-call",
        json!({"device": "1003", "to": "0612345678"}),
    )["call"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        device_events(&p, "1003", before_out, 4)[3],
        format!("established {c4}")
    );
    std::thread::sleep(Duration::from_millis(1100));
    cti_ok(&p, "clear", json!({"device": "1003", "call": c4}));
    let c5 = cti_ok(&p, "make-call", json!({"device": "1004", "to": "0999"}))["call"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        device_events(&p, "1004", before_out, 3)[2],
        format!("failed {c5}")
    );
    cti_ok(&p, "clear", json!({"device": "1004", "call": c5}));

    // Message waiting.
    let before_mwi = last_seq(&p);
    cti_ok(&p, "message-waiting", json!({"device": "1005", "on": true}));
    assert_eq!(
        device_events(&p, "1005", before_mwi, 1),
        ["message_waiting -"]
    );
    let mwi = events(&p)
        .into_iter()
        .find(|e| e["event"] == "message_waiting")
        .unwrap();
    assert_eq!(mwi["message_waiting"], true);

    // What the PBX refuses or the gateway cannot place is answered too.
    let gone = cti(
        &p,
        "answer",
        json!({"device": "1000", "call": "no-such-call"}),
    );
    assert_eq!(
        (gone.status, gone.json["csta_error"].as_str()),
        (409, Some("operation/invalidConnectionID"))
    );
    let stranger = cti(&p, "make-call", json!({"device": "2999", "to": "1000"}));
    assert_eq!(stranger.status, 404, "{}", stranger.text);
    let no_token = http::request(
        p.admin(),
        "POST",
        "/api/cti/make-call",
        &[],
        "{\"device\":\"1000\",\"to\":\"1\"}",
    );
    assert_eq!(no_token.status, 401);

    // Call histories.
    wait_until(
        "1004's busy call in its history",
        Duration::from_secs(5),
        || admin_get(&p, "/api/users/1004")["history"][0]["outcome"] == "busy",
    );
    let h = |d: &str| {
        admin_get(&p, &format!("/api/users/{d}"))["history"]
            .as_array()
            .unwrap()
            .clone()
    };
    let mine = h("1000");
    let outcomes: Vec<(&str, &str, &str)> = mine
        .iter()
        .map(|r| {
            (
                r["direction"].as_str().unwrap(),
                r["peer"].as_str().unwrap_or("-"),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("outgoing", "1002", "transferred"),
            ("outgoing", "1001", "transferred")
        ]
    );
    let r = &h("1001")[0];
    assert_eq!(
        (
            r["direction"].as_str(),
            r["peer"].as_str(),
            r["outcome"].as_str()
        ),
        (Some("incoming"), Some("1002"), Some("answered"))
    );
    let r = &h("1003")[0];
    assert_eq!(
        (r["peer"].as_str(), r["outcome"].as_str()),
        (Some("0612345678"), Some("answered"))
    );
    assert!(r["duration_s"].as_u64().unwrap() >= 1, "{r}");

    // Paging the event log seven at a time reads every event once: `next`
    // is the cursor (the last sequence number in the page).
    let all: Vec<u64> = events(&p)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let (mut after, mut paged) = (0, Vec::new());
    loop {
        let page = admin_get(&p, &format!("/api/cti/events?after={after}&limit=7"));
        let seqs: Vec<u64> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        if seqs.is_empty() {
            assert_eq!(page["next"], after, "an empty page keeps the cursor");
            break;
        }
        assert_eq!(page["next"], *seqs.last().unwrap());
        after = page["next"].as_u64().unwrap();
        paged.extend(seqs);
    }
    assert!(
        paged.len() >= all.len() && all.len() > 7,
        "{} events",
        all.len()
    );
    assert_eq!(paged[..all.len()], all[..], "paged in order, none skipped");

    // The PBX asked after the gateway on both sessions and was answered.
    sim.wait_status(
        "SystemStatus answered on both servers",
        Duration::from_secs(10),
        |s| {
            s["servers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["system_status_answered"].as_u64() > Some(0))
        },
    );
    let out = gw.stop();
    let c = http::request(sim.control, "GET", "/status", &[], "").json;
    assert_eq!(c["calls"], 0, "every call cleared: {c}\n{}", out.join("\n"));
}

#[test]
fn a_csta_server_killed_mid_session_hands_its_users_over_and_every_request_is_answered() {
    let p = Ports { base: 23_200 };
    let (_work, sim, gw) = rig("csta-failover", &p, 200, "csta_timeout_seconds = 3");
    let second = p.csta(1);
    // The second server hangs: it reads requests and answers none.
    sim.post(&format!("/servers/{second}/stall"), "{\"on\": true}");
    let requests: Vec<std::thread::JoinHandle<Answer>> = (1000..1040)
        .map(|d| {
            let p = Ports { base: p.base };
            std::thread::spawn(move || {
                cti(
                    &p,
                    "make-call",
                    json!({"device": d.to_string(), "to": "0612345678"}),
                )
            })
        })
        .collect();
    wait_until(
        "requests stuck on the stalled server",
        Duration::from_secs(5),
        || sim.server(second)["requests_unanswered"].as_u64() > Some(0),
    );
    std::thread::sleep(Duration::from_millis(300));
    // Then it dies.
    let killed = Instant::now();
    sim.post(&format!("/servers/{second}/down"), "");
    let answers: Vec<Answer> = requests.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let lost: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    assert_eq!(
        ok + lost.len(),
        40,
        "every request answered, ok or lost: {:?}",
        answers.iter().map(|a| &a.text).collect::<Vec<_>>()
    );
    assert!(!lost.is_empty() && ok > 0, "{ok} ok, {} lost", lost.len());
    for a in &lost {
        assert!(
            a.json["error"]
                .as_str()
                .unwrap()
                .contains("lost before the PBX answered"),
            "{}",
            a.text
        );
    }
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "answered at the loss, not at a timeout"
    );

    // Every user is monitored again, now all on the first server.
    wait_until(
        "all users on the surviving server",
        Duration::from_secs(10),
        || admin_get(&p, "/api/cti")["monitored"] == 200,
    );
    sim.wait_status(
        "200 monitors on the first server",
        Duration::from_secs(5),
        |s| s["monitors_total"] == 200,
    );
    assert_eq!(sim.server(p.csta(0))["monitors"], 200);
    let servers = admin_get(&p, "/api/cti")["servers"].clone();
    assert_eq!(servers[1]["state"], "down", "{servers}");
    assert_eq!(
        admin_get(&p, "/api/cti")["status"],
        "Connected",
        "one server still carries everyone"
    );
    // A user who lived on the dead server can place calls again.
    for d in 1040..1060 {
        let a = cti(
            &p,
            "make-call",
            json!({"device": d.to_string(), "to": "1999"}),
        );
        assert_eq!(a.status, 200, "user {d}: {}", a.text);
    }

    // A hung server's requests time out with an answer, never silence.
    sim.post(&format!("/servers/{}/stall", p.csta(0)), "{\"on\": true}");
    let t = Instant::now();
    let hung = cti(
        &p,
        "make-call",
        json!({"device": "1000", "to": "0612345678"}),
    );
    assert_eq!(hung.status, 504, "{}", hung.text);
    assert!(
        hung.json["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 3 s")
    );
    assert!(t.elapsed() < Duration::from_secs(6));
    sim.post(&format!("/servers/{}/stall", p.csta(0)), "{\"on\": false}");

    // The dead server comes back: users return to it.
    sim.post(&format!("/servers/{second}/up"), "");
    sim.wait_status("users spread again", Duration::from_secs(40), |s| {
        s["monitors_total"] == 200
            && s["servers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v["monitors"].as_u64() >= Some(60))
    });
    assert_eq!(admin_get(&p, "/api/cti")["monitored"], 200);
    drop(gw.stop());
}

#[test]
fn the_user_config_api_refuses_each_bad_user_with_its_reason_and_keeps_the_rest() {
    let p = Ports { base: 23_300 };
    let work = Workdir::new("users-api");
    let sim = PbxSim::start(
        p.control(),
        &["--csta", &addr(p.csta(0)).to_string(), "--users", "20"],
    );
    let config = config(&work, &p, &format!("csta_ports = [{}]", p.csta(0)));
    let gw = start_gateway(&config);
    let auth = basic("pbx", PUSH_PASSWORD);

    let body = json!({"users": [
        {"directory_number": "1000", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "role": 2},
        {"directory_number": "1001", "first_name": "", "last_name": "", "email": "nobody@example.com", "role": 1},
        {"directory_number": "1002", "first_name": "Cy", "email": ""},
        {"directory_number": "1003", "first_name": "Di", "email": "di@example"},
        {"directory_number": "1004", "first_name": "Ed", "email": "same@example.com"},
        {"directory_number": "1005", "first_name": "Flo", "email": "SAME@example.com"},
        {"directory_number": "1006", "first_name": "Gus", "email": "support@example.com"},
        {"directory_number": "1007", "first_name": "Hal", "email": "hal@example.com", "role": 9},
        {"first_name": "Ivy", "email": "ivy@example.com"},
        {"directory_number": "1009", "first_name": "Jo", "email": "jo@example.com", "role": "CTI"},
        {"directory_number": "1010", "last_name": "Kim", "email": "kim@example.com"},
    ]});
    let a = push(&work, &p, "PUT", "/api/v1/users", &auth, &body.to_string());
    assert_eq!(a.status, 200, "{}", a.text);
    let refused: std::collections::HashMap<String, String> = a.json["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let reason = |u: &str| {
        refused
            .get(u)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{u} not refused: {refused:?}"))
    };
    assert_eq!(reason("1001"), "missing first and last name");
    assert_eq!(reason("1002"), "missing email");
    assert_eq!(reason("1003"), "invalid email \"di@example\"");
    assert!(reason("1004").starts_with("duplicate email"));
    assert!(reason("1005").starts_with("duplicate email"));
    assert!(reason("1006").starts_with("role-based mailbox"));
    assert_eq!(reason("1007"), "unknown role 9");
    assert_eq!(reason("#9"), "missing extension");
    assert_eq!(refused.len(), 8);
    assert_eq!(
        (a.json["accepted"].as_u64(), a.json["onboarded"].as_u64()),
        (Some(3), Some(3))
    );
    let listed = admin_get(&p, "/api/users");
    let onboarded: Vec<(&str, &str)> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["onboarded"] == true)
        .map(|u| {
            (
                u["directory_number"].as_str().unwrap(),
                u["role"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        onboarded,
        [("1000", "Softphone"), ("1009", "CTI"), ("1010", "Basic")]
    );
    // CTI and Softphone users are monitored; Basic ones are not.
    wait_until("two users monitored", Duration::from_secs(10), || {
        admin_get(&p, "/api/cti")["monitored"] == 2
    });

    // A role table from the PBX changes who is monitored.
    let roles = json!({"roles": [
        {"index": 0, "name": "Basic"},
        {"index": 1, "name": "CTI", "cti": true},
        {"index": 2, "name": "Softphone", "softphone": true},
        {"index": 9, "name": "Receptionist", "cti": true},
    ]});
    let r = push(&work, &p, "PUT", "/api/v1/roles", &auth, &roles.to_string());
    assert_eq!(r.status, 200, "{}", r.text);
    wait_until(
        "1007 monitored under its new role",
        Duration::from_secs(10),
        || admin_get(&p, "/api/cti")["monitored"] == 3,
    );
    // Changes: a name changed, a user added, one removed (1000, 1007,
    // 1009 and 1011 onboarded then).
    let change = json!({"users": [
        {"directory_number": "1009", "first_name": "Joanna", "email": "jo@example.com", "role": 1},
        {"directory_number": "1011", "first_name": "Lee", "email": "lee@example.com", "role": 1},
    ]});
    assert_eq!(
        push(
            &work,
            &p,
            "POST",
            "/api/v1/users",
            &auth,
            &change.to_string()
        )
        .status,
        200
    );
    assert_eq!(
        push(&work, &p, "DELETE", "/api/v1/users/1010", &auth, "").status,
        204
    );
    assert_eq!(
        push(&work, &p, "DELETE", "/api/v1/users/1010", &auth, "").status,
        404
    );
    assert_eq!(
        admin_get(&p, "/api/users/1009")["user"]["first_name"],
        "Joanna"
    );

    // Bodies that are not a push change nothing, and say why.
    for bad in ["{\"users\": [", "{\"people\": []}", "[1,2]"] {
        let a = push(&work, &p, "PUT", "/api/v1/users", &auth, bad);
        assert_eq!(a.status, 400, "{bad}: {}", a.text);
        assert!(
            a.json["error"]
                .as_str()
                .unwrap()
                .contains("nothing was changed"),
            "{}",
            a.text
        );
    }
    assert_eq!(admin_get(&p, "/api/users")["onboarded"], 4);

    // Credentials: none, wrong, then too many wrong.
    let none =
        http::request_tls(p.users_api(), &cert(&work), "GET", "/api/v1/users", &[], "").unwrap();
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic"))
    );
    let wrong = basic("pbx", "not-the-password");
    for _ in 0..5 {
        assert_eq!(
            push(&work, &p, "GET", "/api/v1/users", &wrong, "").status,
            401
        );
    }
    let throttled = push(&work, &p, "GET", "/api/v1/users", &auth, "");
    assert_eq!(throttled.status, 429, "{}", throttled.text);
    assert_eq!(throttled.header("retry-after"), Some("60"));
    // Only the PBX may connect at all.
    assert_eq!(
        closed_on_connect_from("127.0.0.2", p.users_api()),
        Ok(0),
        "a stranger is cut off before TLS"
    );

    // The PBX connection cannot be deleted while users hold roles.
    let del = http::request(
        p.admin(),
        "DELETE",
        "/api/pbx",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        "",
    );
    assert_eq!(del.status, 409, "{}", del.text);
    assert!(
        del.json["error"]
            .as_str()
            .unwrap()
            .contains("hold the CTI or Softphone role")
    );

    // Users survive a restart.
    drop(gw.stop());
    let gw = start_gateway(&config);
    gw.wait_for("users: 10 kept", Duration::from_secs(5));
    let after = admin_get(&p, "/api/users");
    assert_eq!(after["onboarded"], 4);
    assert_eq!(after["users"].as_array().unwrap().len(), 10);
    wait_until(
        "monitored again after the restart",
        Duration::from_secs(10),
        || admin_get(&p, "/api/cti")["monitored"] == 4,
    );
    drop(gw.stop());
    drop(sim);
}

#[test]
fn a_wrong_cti_login_shows_as_wrong_credential() {
    let p = Ports { base: 23_400 };
    let work = Workdir::new("csta-login");
    let _sim = PbxSim::start(
        p.control(),
        &[
            "--csta",
            &addr(p.csta(0)).to_string(),
            "--login",
            "cloudlink:Right-password-1",
        ],
    );
    let extra = format!(
        "csta_ports = [{}]\ncsta_username = \"cloudlink\"\ncsta_password = \"Wrong-password-1\"",
        p.csta(0)
    );
    let config = config(&work, &p, &extra).display().to_string();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("mivoice-5000", "mivoice-office-400");
    std::fs::write(&config, text).unwrap();
    let gw = start_gateway(Path::new(&config));
    gw.wait_for("down: wrong credential", Duration::from_secs(10));
    assert_eq!(
        admin_get(&p, "/api/status")["csta"],
        "Lost connection: wrong credential"
    );
    let c = admin_get(&p, "/api/cti");
    assert_eq!(c["servers"][0]["reason"], "wrong credential");
    assert!(
        c["servers"][0]["retry_in_ms"].as_u64().unwrap() >= 10_000,
        "no hammering with a wrong password: {c}"
    );
    drop(gw.stop());
}

//! The admin API as a client sees it (issue 19), against a real `pbxlink
//! run` that starts unconfigured (its wizard waits for the PBX):
//!
//! - plain HTTP: `/healthz`, `/ready` (503 with why), `/metrics` parsed as
//!   Prometheus text, `/` sent on to HTTPS, no login over plain HTTP;
//! - the first password and every rule it breaks; the session cookie's
//!   flags; CSRF refused without the token; the bearer token for
//!   automation;
//! - every validation error of every wizard step (422 naming the field);
//!   steps out of order (409);
//! - a log bundle's link: served, then 410 once expired, 404 if made up;
//! - typed-word confirmations; logout ends the session;
//! - repeated wrong passwords throttled (429 with Retry-After).

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::http::{self, Answer};
use pbxlink_tests::rig::Workdir;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ADMIN: u16 = 23_920;
const ADMIN_HTTPS: u16 = 23_921;
const TOKEN: &str = "admin-token-0123456789";

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Client {
    ca: PathBuf,
    cookie: String,
    csrf: String,
}

impl Client {
    fn send(&self, method: &str, path: &str, body: &Value, csrf: bool) -> Answer {
        let mut headers = vec![("Cookie", self.cookie.as_str())];
        if csrf {
            headers.push(("X-CSRF-Token", self.csrf.as_str()));
        }
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        http::request_tls(at(ADMIN_HTTPS), &self.ca, method, path, &headers, &body).unwrap()
    }

    fn put(&self, path: &str, body: Value) -> Answer {
        self.send("PUT", path, &body, true)
    }

    fn post(&self, path: &str, body: Value) -> Answer {
        self.send("POST", path, &body, true)
    }
}

fn tls(ca: &Path, method: &str, path: &str, body: &str) -> Answer {
    http::request_tls(at(ADMIN_HTTPS), ca, method, path, &[], body).unwrap()
}

/// A 422 naming `field` (and what it says about it).
fn refused(a: &Answer, field: &str) -> String {
    assert_eq!(a.status, 422, "{field}: {}", a.text);
    a.json["errors"][field]
        .as_str()
        .unwrap_or_else(|| panic!("no error for {field}: {}", a.text))
        .to_owned()
}

/// Checks `text` against the Prometheus text format (0.0.4): comments,
/// `name{label="v",…} value` samples with valid names, escapes and
/// numbers, every sample's family declared by a TYPE line first. The
/// families and their samples' values.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, what) = (parts.next().unwrap(), parts.next().unwrap(), parts.next());
            assert!(name_ok(name), "bad family name: {line}");
            if kind == "TYPE" {
                let t = what.unwrap();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "bad type: {line}"
                );
                assert!(!typed.iter().any(|(n, _)| n == name), "TYPE twice: {line}");
                typed.push((name.to_owned(), t.to_owned()));
            } else {
                assert_eq!(kind, "HELP", "{line}");
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "empty line in the exposition");
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let name = match series.split_once('{') {
            Some((n, labels)) => {
                let labels = labels.strip_suffix('}').expect("labels close");
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    assert!(name_ok(k), "bad label name: {line}");
                    let v = v.strip_suffix('"').unwrap_or(v);
                    assert!(!v.contains('\n'), "{line}");
                }
                n
            }
            None => series,
        };
        assert!(name_ok(name), "bad metric name: {line}");
        let family = typed
            .iter()
            .find(|(f, t)| {
                name == f
                    || (t == "histogram"
                        && [
                            format!("{f}_bucket"),
                            format!("{f}_sum"),
                            format!("{f}_count"),
                        ]
                        .contains(&name.to_owned()))
            })
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        samples.push((family.0.clone(), v));
    }
    samples
}

/// Every route the admin listeners serve, with its methods; the open
/// ones answer without credentials (docs/security.md: health, readiness,
/// metrics, status; the page's shell and its login; a download link is
/// its own 128-bit credential). Checked against the router's source so a
/// new route cannot be missed.
const ROUTES: &[(&str, &[&str], bool)] = &[
    ("/healthz", &["GET"], true),
    ("/ready", &["GET"], true),
    ("/metrics", &["GET"], true),
    ("/api/status", &["GET"], true),
    ("/", &["GET"], true),
    ("/app.js", &["GET"], true),
    ("/app.css", &["GET"], true),
    ("/calls.js", &["GET"], true),
    ("/vendor/uplot.js", &["GET"], true),
    ("/vendor/uplot.css", &["GET"], true),
    ("/favicon.ico", &["GET"], true),
    ("/api/auth", &["GET"], true),
    ("/api/auth/setup", &["POST"], true),
    ("/api/auth/login", &["POST"], true),
    ("/downloads/{token}", &["GET"], true),
    ("/api/auth/logout", &["POST"], false),
    ("/api/auth/password", &["POST"], false),
    ("/api/diagnostics", &["GET", "POST"], false),
    ("/api/alarms", &["GET"], false),
    ("/api/counters", &["GET"], false),
    ("/api/calls", &["GET"], false),
    ("/api/users", &["GET"], false),
    ("/api/users/{dn}", &["GET"], false),
    ("/api/cti", &["GET"], false),
    ("/api/softphones", &["GET"], false),
    ("/api/tunnel", &["GET"], false),
    ("/api/sync", &["POST"], false),
    ("/api/cti/events", &["GET"], false),
    ("/api/cti/{command}", &["POST"], false),
    ("/api/pbx", &["DELETE"], false),
    ("/api/onboarding", &["GET"], false),
    ("/api/onboarding/gateway", &["PUT"], false),
    ("/api/onboarding/pbx", &["PUT"], false),
    ("/api/onboarding/connect", &["GET", "PUT"], false),
    ("/api/onboarding/deployment", &["GET", "POST"], false),
    ("/api/onboarding/advanced", &["PUT"], false),
    ("/api/onboarding/complete", &["POST"], false),
    ("/api/versions", &["GET"], false),
    ("/api/operations/logs", &["POST"], false),
    ("/api/operations/trace", &["GET", "POST"], false),
    ("/api/operations/reboot", &["POST"], false),
    (
        "/api/operations/support-ssh",
        &["GET", "POST", "DELETE"],
        false,
    ),
    ("/api/operations/reset", &["POST"], false),
    ("/api/operations/relink", &["GET", "POST"], false),
];

/// The routes the admin router's source declares (every file of the
/// admin module).
fn declared_routes() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../controlplane/src/admin");
    let mut routes = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for piece in text.split(".route(").skip(1) {
            let path = piece.trim_start().trim_start_matches('"');
            routes.push(path[..path.find('"').unwrap()].to_owned());
        }
    }
    routes
}

/// Without a session or the token, on HTTP and on HTTPS, only the open
/// routes answer; every other route and method gets 401.
fn walk_every_route_without_credentials(ca: &Path) {
    let declared = declared_routes();
    for d in &declared {
        assert!(
            ROUTES.iter().any(|(p, _, _)| p == d),
            "route {d} is not in the walk: add it to ROUTES, open or not"
        );
    }
    assert_eq!(declared.len(), ROUTES.len(), "{declared:?}");
    let mut walked = 0;
    for (path, methods, open) in ROUTES {
        let path = path
            .replace("{dn}", "1000")
            .replace("{command}", "make-call")
            .replace("{token}", "0123456789abcdef0123456789abcdef");
        for method in *methods {
            for tls_listener in [false, true] {
                let a = if tls_listener {
                    http::request_tls(at(ADMIN_HTTPS), ca, method, &path, &[], "{}").unwrap()
                } else {
                    http::request(at(ADMIN), method, &path, &[], "{}")
                };
                let refused = matches!(a.status, 401 | 403);
                if *open {
                    assert!(
                        !refused,
                        "{method} {path} (tls {tls_listener}) is open: {}",
                        a.status
                    );
                } else {
                    assert_eq!(
                        a.status, 401,
                        "{method} {path} (tls {tls_listener}) without credentials: {}",
                        a.text
                    );
                    assert!(
                        !a.text.contains("\"users\"") && !a.text.contains("email"),
                        "{method} {path} leaked data: {}",
                        a.text
                    );
                }
                walked += 1;
            }
        }
    }
    println!("walked {walked} route/method/listener triples without credentials");
}

#[test]
fn the_admin_api_checks_every_field_guards_its_sessions_and_expires_its_links() {
    let work = Workdir::new("admin-api");
    let config = work.dir.join("pbxlink.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlan_address = \"127.0.0.1\"\nstate_dir = \"state\"\n\n\
             [cloud]\ntargets = [\"tls:127.0.0.1:23929\"]\nca = \"ca.pem\"\n\n\
             [admin]\nlisten = \"{}\"\nhttps_listen = \"{}\"\napi_token = \"{TOKEN}\"\nlog_link_seconds = 2\n\n\
             [tunnel]\nendpoint = \"127.0.0.1:23928\"\nca = \"ca.pem\"\naccount = \"ACME\"\ntoken = \"acme-token-0123456789\"\n",
            at(ADMIN),
            at(ADMIN_HTTPS)
        ),
    )
    .unwrap();
    let gw = Gateway::start(&[
        "run".into(),
        "--config".into(),
        config.display().to_string(),
        "--seconds".into(),
        "120".into(),
    ]);
    gw.wait_for("admin: page on https://", Duration::from_secs(20));
    let ca = work.dir.join("state/admin.crt");

    // Plain HTTP: health, readiness, metrics; the page is over HTTPS.
    let plain =
        |method: &str, path: &str, body: &str| http::request(at(ADMIN), method, path, &[], body);
    assert_eq!(plain("GET", "/healthz", "").text, "ok\n");
    let ready = plain("GET", "/ready", "");
    assert_eq!(ready.status, 503);
    assert!(
        ready.text.contains("not configured: the PBX"),
        "{}",
        ready.text
    );
    let home = plain("GET", "/", "");
    assert_eq!(home.status, 307);
    assert_eq!(home.header("location"), Some("https://127.0.0.1:23921/"));
    let metrics = plain("GET", "/metrics", "");
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{}",
        metrics.head
    );
    walk_every_route_without_credentials(&work.dir.join("state/admin.crt"));
    let samples = parse_prometheus(&metrics.text);
    for family in [
        "pbxlink_up",
        "pbxlink_onboarded",
        "pbxlink_calls_active",
        "pbxlink_calls_total",
        "pbxlink_relays",
        "pbxlink_media_packets_total",
        "pbxlink_media_drops_total",
        "pbxlink_srtp_failures_total",
        "pbxlink_cloud_trunk_up",
    ] {
        assert!(
            samples.iter().any(|(f, _)| f == family),
            "no {family} in /metrics"
        );
    }
    assert!(samples.contains(&("pbxlink_onboarded".into(), 0.0)));
    let over_http = plain("POST", "/api/auth/login", r#"{"password":"x"}"#);
    assert_eq!(over_http.status, 403, "{}", over_http.text);
    assert!(over_http.text.contains("HTTPS"), "{}", over_http.text);

    // The page itself: HTML with a strict content security policy.
    let page = tls(&ca, "GET", "/", "");
    assert_eq!(page.status, 200);
    assert!(page.text.contains("<title>pbxlink gateway</title>"));
    assert!(
        page.header("content-security-policy")
            .is_some_and(|p| p.contains("default-src 'self'")),
        "{}",
        page.head
    );

    // The first password: each of SPEC §4's rules named when broken.
    let state = tls(&ca, "GET", "/api/auth", "");
    assert_eq!(state.json["password_set"], false);
    for (password, rule) in [
        ("Ab1!", "at least 8 characters"),
        ("gateway2026x", "at least three of"),
        ("MyAcme-2026", "company's name"),
        ("Gateway-2000", "no character three times in a row"),
    ] {
        let a = tls(
            &ca,
            "POST",
            "/api/auth/setup",
            &json!({ "password": password }).to_string(),
        );
        assert_eq!(a.status, 422, "{password}: {}", a.text);
        assert!(
            a.json["error"].as_str().unwrap().contains(rule),
            "{}",
            a.text
        );
        // No part of the password comes back: not the whole, not the
        // run of one character ("000" was echoed).
        assert!(!a.text.contains(password), "{}", a.text);
        assert!(!a.text.contains("000"), "{}", a.text);
    }
    let set = tls(
        &ca,
        "POST",
        "/api/auth/setup",
        r#"{"password":"Gat3way!Secure"}"#,
    );
    assert_eq!(set.status, 200, "{}", set.text);
    let cookie_line = set.header("set-cookie").unwrap().to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(cookie_line.contains(flag), "{cookie_line}");
    }
    let again = tls(
        &ca,
        "POST",
        "/api/auth/setup",
        r#"{"password":"An0ther!Secret"}"#,
    );
    assert_eq!(again.status, 409, "the first login sets it, once");
    let client = Client {
        ca: ca.clone(),
        cookie: cookie_line.split(';').next().unwrap().to_owned(),
        csrf: set.json["csrf"].as_str().unwrap().to_owned(),
    };

    // Without the session nothing is read; without the CSRF token nothing
    // is changed.
    assert_eq!(tls(&ca, "GET", "/api/onboarding", "").status, 401);
    let no_csrf = client.send("PUT", "/api/onboarding/gateway", &json!({}), false);
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.text);
    assert!(no_csrf.text.contains("X-CSRF-Token"));
    let forged = Client {
        csrf: "0".repeat(32),
        ..Client {
            ca: ca.clone(),
            cookie: client.cookie.clone(),
            csrf: String::new(),
        }
    };
    assert_eq!(forged.put("/api/onboarding/gateway", json!({})).status, 403);
    let read = client.send("GET", "/api/onboarding", &Value::Null, false);
    assert_eq!(read.status, 200);
    assert_eq!(read.json["next"], "gateway");
    assert_eq!(read.json["mode"], "setup");

    // Gateway: every field.
    let g = client.put("/api/onboarding/gateway", json!({}));
    for field in ["site", "address", "lan_mode"] {
        refused(&g, field);
    }
    let long = "x".repeat(65);
    let g = client.put(
        "/api/onboarding/gateway",
        json!({"site": long, "address": "Paris", "lan_mode": "static", "ip": "10.0.0.300", "mask": "255.0.255.0", "gateway": "", "dns": ["9.9.9.x"]}),
    );
    assert!(refused(&g, "site").contains("64"));
    assert!(refused(&g, "ip").contains("10.0.0.300"));
    assert!(refused(&g, "mask").contains("not a network mask"));
    refused(&g, "gateway");
    assert!(refused(&g, "dns.0").contains("9.9.9.x"));
    let g = client.put(
        "/api/onboarding/gateway",
        json!({"site": "S", "address": "A", "lan_mode": "static", "ip": "192.168.1.0", "mask": "/24", "gateway": "192.168.2.1", "dns": []}),
    );
    assert!(refused(&g, "ip").contains("network's own"));
    assert!(refused(&g, "gateway").contains("not in the gateway's network"));
    assert!(refused(&g, "dns.0").contains("at least one"));
    let g = client.put(
        "/api/onboarding/gateway",
        json!({"site": "S", "address": "A", "lan_mode": "static", "ip": "192.168.1.20", "mask": "255.255.255.0", "gateway": "192.168.1.20", "dns": ["1.1.1.1", "1.0.0.1", "9.9.9.9", "8.8.8.8"]}),
    );
    assert!(refused(&g, "gateway").contains("another machine"));
    assert!(refused(&g, "dns.3").contains("at most three"));
    let g = client.put(
        "/api/onboarding/gateway",
        json!({"site": "ACME Lyon", "address": "2 place Bellecour", "lan_mode": "dhcp"}),
    );
    assert_eq!(g.status, 200, "{}", g.text);
    assert_eq!(g.json["restarting"], false);

    // PBX: every field; MiVoice Office 400's credentials and their limits.
    let p = client.put("/api/onboarding/pbx", json!({}));
    for field in ["type", "name", "address", "csta_port"] {
        refused(&p, field);
    }
    let p = client.put(
        "/api/onboarding/pbx",
        json!({"type": "mivoice-office-400", "name": "PBX", "address": "300.1.2.3", "csta_port": "70000"}),
    );
    refused(&p, "address");
    refused(&p, "csta_port");
    assert!(refused(&p, "username").contains("CloudLink"));
    refused(&p, "password");
    let p = client.put(
        "/api/onboarding/pbx",
        json!({"type": "mivoice-office-400", "name": "PBX", "address": "pbx.invalid", "csta_port": "7001", "username": "u".repeat(26), "password": "p".repeat(256)}),
    );
    assert!(refused(&p, "username").contains("at most 25"));
    assert!(refused(&p, "password").contains("at most 255"));
    let p = client.put(
        "/api/onboarding/pbx",
        json!({"type": "pabx-9000", "name": "PBX", "address": "pbx.invalid", "csta_port": "7001"}),
    );
    refused(&p, "type");
    let p = client.put(
        "/api/onboarding/pbx",
        json!({"type": "mx-one", "name": "PBX", "address": "pbx.invalid", "csta_port": "8882"}),
    );
    assert!(
        refused(&p, "address").contains("does not resolve"),
        "{}",
        p.text
    );
    // One answer names every bad field, the host name that does not
    // resolve among them.
    let p = client.put(
        "/api/onboarding/pbx",
        json!({"type": "mx-one", "name": "", "address": "pbx.invalid", "csta_port": "0"}),
    );
    refused(&p, "name");
    refused(&p, "csta_port");
    assert!(
        refused(&p, "address").contains("does not resolve"),
        "{}",
        p.text
    );

    // Steps out of order, and the rest of the forms.
    let c = client.put("/api/onboarding/connect", json!({"sync_minutes": "60"}));
    assert_eq!(c.status, 409, "{}", c.text);
    let c = client.put("/api/onboarding/connect", json!({"sync_minutes": "1441"}));
    refused(&c, "sync_minutes");
    let a = client.put(
        "/api/onboarding/advanced",
        json!({"inbound_digits": "9a", "outbound_digits": "12345678901", "update_time": "7:00"}),
    );
    refused(&a, "inbound_digits");
    refused(&a, "outbound_digits");
    refused(&a, "update_time");
    let done = client.post("/api/onboarding/complete", Value::Null);
    assert_eq!(done.status, 409);
    assert!(done.text.contains("pbx step is not done"), "{}", done.text);
    let d = client.send("GET", "/api/onboarding/deployment", &Value::Null, false);
    assert_eq!(d.status, 409, "{}", d.text);

    // Confirmations need their word.
    let r = client.post("/api/operations/reboot", json!({"confirm": "yes"}));
    assert!(refused(&r, "confirm").contains("reboot"));
    let r = client.post(
        "/api/operations/reset",
        json!({"kind": "all", "confirm": "reset"}),
    );
    refused(&r, "kind");
    let r = client.post(
        "/api/operations/reset",
        json!({"kind": "factory", "confirm": "reset"}),
    );
    assert!(refused(&r, "confirm").contains("factory"));

    // A log bundle: its link works, then expires (410); made up: 404.
    let logs = client.post("/api/operations/logs", Value::Null);
    assert_eq!(logs.status, 200, "{}", logs.text);
    let url = logs.json["url"].as_str().unwrap().to_owned();
    assert_eq!(url.len(), "/downloads/".len() + 32);
    let status = |path: &str| http::get_head(at(ADMIN), path);
    let (code, head) = status(&url);
    assert_eq!(code, 200);
    assert!(
        head.to_lowercase()
            .contains("content-type: application/gzip"),
        "{head}"
    );
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(status(&url).0, 410, "an expired link is gone");
    assert_eq!(status("/downloads/0123456789abcdef0123456789abcdef").0, 404);

    // Automation: the bearer token, no session.
    let bearer = format!("Bearer {TOKEN}");
    let by_token = http::request(
        at(ADMIN),
        "POST",
        "/api/operations/logs",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(by_token.status, 200, "{}", by_token.text);
    let wrong = http::request(
        at(ADMIN),
        "POST",
        "/api/operations/logs",
        &[("Authorization", "Bearer wrong-token-000000000")],
        "",
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(plain("POST", "/api/operations/logs", "").status, 401);

    // Logout ends the session.
    assert_eq!(client.post("/api/auth/logout", Value::Null).status, 200);
    assert_eq!(
        client
            .send("GET", "/api/onboarding", &Value::Null, false)
            .status,
        401
    );

    // Wrong passwords: five, then the address waits.
    for _ in 0..5 {
        let a = tls(
            &ca,
            "POST",
            "/api/auth/login",
            r#"{"password":"Wrong!pass1"}"#,
        );
        assert_eq!(a.status, 401, "{}", a.text);
    }
    let throttled = tls(
        &ca,
        "POST",
        "/api/auth/login",
        r#"{"password":"Gat3way!Secure"}"#,
    );
    assert_eq!(throttled.status, 429, "{}", throttled.text);
    assert!(
        throttled
            .header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| (1..=60).contains(&s)),
        "{}",
        throttled.head
    );
    gw.stop();
}

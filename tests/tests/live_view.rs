//! The admin page's live view (issue 33) in a real browser: a gateway
//! between pbxsim (the PBX) and cloudsim (the cloud platform) carries a
//! short call that ends and three that stay up; headless Chromium
//! (Debian's `chromium`, driven by playwright-core from
//! `tests/browser/live.mjs`) logs in and opens Calls, which must list
//! the three with both legs' media addresses, codec, duration and both
//! directions' MOS read from the relays, the ended call with its quality,
//! and the hour's charts with the calls in them; then the same at a
//! phone's width. Before the browser, `GET /api/calls` is read with the
//! API token as automation would; after the calls end, the records of all
//! four are there with their codec and quality, and the MOS bands of the
//! hour count them. Screenshots in `target/test-artifacts/live-view/`.

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::http;
use pbxlink_tests::rig::{GatewayConfig, Workdir};
use pbxlink_tests::site::{ADMIN_TOKEN, Site};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BASE: u16 = 24_600;
const HTTPS: u16 = BASE + 8;
const UP: usize = 3;

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rated(call: &Value) -> bool {
    let q = &call["quality"];
    q["to_pbx"]["mos"].as_f64().is_some()
        && q["pbx_leg"]["inbound"]["packets"].as_u64() > Some(0)
        && q["cloud_leg"]["inbound"]["packets"].as_u64() > Some(0)
}

#[test]
fn chromium_shows_the_calls_up_their_quality_and_the_hours_charts() {
    let out = pbxlink_tests::browser::artifacts("live-view");
    let work = Workdir::new("live-view");
    let site = Site::at(BASE);
    let cloud = site.cloudsim(&work);
    let sim = site.pbxsim(8, 45_600, &[]);
    let sections = format!(
        "[admin]\nlisten = \"{}\"\nhttps_listen = \"{}\"\napi_token = \"{ADMIN_TOKEN}\"\n",
        site.admin(),
        SocketAddr::from(([127, 0, 0, 1], HTTPS))
    );
    let config = GatewayConfig {
        sections: &sections,
        ..site.gateway_config(&cloud.ca)
    }
    .write(&work.dir);
    let gw = Gateway::run(&config, 180);
    gw.wait_for("trunk: connected to", Duration::from_secs(20));
    gw.wait_for("admin: page on https://", Duration::from_secs(10));

    // One short call that ends, then three that stay up.
    sim.place_call("1000", "0611111110", 3);
    wait("the short call ended", Duration::from_secs(20), || {
        sim.sip_calls()["ended by pbxsim"].as_u64() == Some(1)
    });
    for n in 0..UP {
        sim.place_call(&format!("100{}", n + 1), &format!("061111111{}", n + 1), 40);
    }
    let calls = || http::get_with_token(site.admin(), "/api/calls", ADMIN_TOKEN).json;
    let mut view = Value::Null;
    wait(
        "the API listing three rated calls",
        Duration::from_secs(20),
        || {
            view = calls();
            view["calls"]
                .as_array()
                .is_some_and(|c| c.len() == UP && c.iter().all(rated))
        },
    );
    for c in view["calls"].as_array().unwrap() {
        println!("call up: {c}");
        assert_eq!(c["codec"], "PCMA", "{c}");
        assert!(
            c["pbx_media"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:"))
        );
        assert!(
            c["cloud_media"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:"))
        );
        assert_eq!(c["quality"]["rated_as"], "G.711 with PLC");
        assert!(c["quality"]["to_cloud"]["mos"].as_f64() > Some(4.0), "{c}");
    }
    assert!(view["recent"].as_array().is_some_and(|r| !r.is_empty()));

    pbxlink_tests::browser::Script::start(
        "live.mjs",
        &[
            ("PBXLINK_PAGE", format!("https://127.0.0.1:{HTTPS}/")),
            ("PBXLINK_ARTIFACTS", out.display().to_string()),
            ("PBXLINK_CALLS_UP", UP.to_string()),
            ("PBXLINK_CALLS_ENDED", "1".into()),
        ],
    )
    .passes(Duration::from_secs(90), || {
        format!("--- gateway ---\n{}", gw.output().join("\n"))
    });
    for shot in ["live-calls.png", "live-calls-390px.png"] {
        assert!(out.join(shot).exists(), "no screenshot {shot}");
    }

    // The calls end: four records with their codec and quality, newest
    // first, and the hour's MOS bands count them once sampled.
    wait("every call ended", Duration::from_secs(60), || {
        calls()["calls"].as_array().is_some_and(Vec::is_empty)
    });
    let mut recent = Vec::new();
    wait("four records in the view", Duration::from_secs(15), || {
        recent = calls()["recent"].as_array().cloned().unwrap_or_default();
        recent.len() == UP + 1
    });
    for r in &recent {
        assert_eq!(r["codec"], "PCMA", "{r}");
        assert!(r["quality"]["to_pbx"]["mos"].as_f64() > Some(4.0), "{r}");
    }
    wait(
        "the ended calls in the hour's MOS bands",
        Duration::from_secs(15),
        || {
            let h = calls();
            let counted: u64 = h["history"]["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["mos"].as_array().cloned().unwrap_or_default())
                .filter_map(|n| n.as_u64())
                .sum();
            counted == (UP + 1) as u64
        },
    );
}

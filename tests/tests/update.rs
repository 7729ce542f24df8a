//! Software updates with two real builds that differ in version: the
//! gateway as built (`target/debug/pbxlink`, the crate's version) and the
//! next version (`scripts/next-release`, which tests/run runs first:
//! `target/update/pbxlink-next`). cloudsim is the platform: it signs the
//! next build with its own key (the gateway trusts its public key through
//! `[update] public_key`) and sends it through the tunnel in pieces.
//!
//! - A release whose bytes were changed after signing is refused: the
//!   status says `Update Error`, the platform hears why, nothing is
//!   staged. Then the real release, offered for the wizard's update time
//!   with a call up: at that minute the gateway drains the call (it ends
//!   by itself, whole), restarts into the new version in the same process,
//!   passes its health check, and the next call connects on it.
//! - A new version whose cloud trunk cannot come up (its connection cut
//!   in front of it) fails its health check and is rolled back by itself.
//!   Then a gateway killed (SIGKILL) inside the critical phase of another
//!   update, its `current` link already switched, starts on a whole
//!   version — the previous one — and raises
//!   `CLGW_ALARM_CRITICAL_PHASE_FAILED`, which reaches the platform.

use pbxlink_tests::gateway::Gateway;
use pbxlink_tests::proxy::Proxy;
use pbxlink_tests::rig::{GatewayConfig, Workdir};
use pbxlink_tests::site::Site;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SCHEDULED: u16 = 24_400;
const ROLLBACK: u16 = 24_420;

/// The next build and its version (made by `scripts/next-release`).
fn next_release() -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/update");
    let exe = dir.join("pbxlink-next");
    let version = std::fs::read_to_string(dir.join("next-version"))
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build the next version first with scripts/next-release (tests/run does)",
                dir.join("next-version").display()
            )
        })
        .trim()
        .to_owned();
    assert!(
        exe.exists(),
        "{} is missing: run scripts/next-release",
        exe.display()
    );
    (exe.canonicalize().unwrap(), version)
}

fn wait(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The gateway's `/api/status`, or Null while it is restarting.
fn status(site: &Site) -> Value {
    if std::net::TcpStream::connect_timeout(&site.admin(), Duration::from_secs(1)).is_err() {
        return Value::Null;
    }
    std::panic::catch_unwind(|| site.admin_get("/api/status")).unwrap_or(Value::Null)
}

/// The events of `kind` cloudsim stored for the gateway.
fn events(cloud: &pbxlink_tests::cloudsim::CloudSim, kind: &str) -> Vec<Value> {
    let id = cloud.gateway()["gateway"].as_str().unwrap().to_owned();
    cloud
        .get(&format!("/gateways/{id}/events?kind={kind}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["body"].clone())
        .collect()
}

fn phases(cloud: &pbxlink_tests::cloudsim::CloudSim) -> Vec<String> {
    events(cloud, "update")
        .iter()
        .map(|b| b["phase"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The executable process `pid` runs.
fn exe_of(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// Adds the next build to cloudsim's store as `version`.
fn store(cloud: &pbxlink_tests::cloudsim::CloudSim, exe: &Path, version: &str) {
    let a = cloud.post(
        "/releases",
        &json!({ "version": version, "binary": exe }).to_string(),
    );
    assert_eq!(a.status, 200, "storing the release: {}", a.text);
}

fn offer(cloud: &pbxlink_tests::cloudsim::CloudSim, version: &str, body: Value) -> Value {
    let a = cloud.post(&format!("/releases/{version}/offer"), &body.to_string());
    assert_eq!(a.status, 200, "offering {version}: {}", a.text);
    a.json
}

/// The gateway's config with the tunnel, `[update]` trusting cloudsim's
/// key, and the state directory in `work`.
fn config(site: &Site, work: &Workdir, cloud_tls: Option<SocketAddr>, ca: &Path) -> PathBuf {
    let key = std::fs::read_to_string(work.dir.join("update.pub")).unwrap();
    let sections = format!(
        "{}\n[update]\npublic_key = \"{}\"\nhealth_seconds = 10\n",
        site.tunnel_sections(site.tunnel(), ca),
        key.trim()
    );
    let gateway = format!(
        "state_dir = \"{}\"\ndrain_seconds = 60",
        work.dir.join("state").display()
    );
    let base = site.gateway_config(ca);
    // The PBX trunk watched (OPTIONS every 2 s): the health check waits
    // for its answer too.
    let pbx = format!(
        "csta_ports = [{}]\nkeepalive_seconds = 2",
        site.csta().port()
    );
    GatewayConfig {
        gateway: &gateway,
        pbx_extra: &pbx,
        sections: &sections,
        cloud: cloud_tls.unwrap_or(base.cloud),
        ..base
    }
    .write(&work.dir)
}

#[test]
fn a_bad_signature_is_refused_and_a_good_release_applies_at_the_update_time_after_the_call() {
    let (next_exe, next) = next_release();
    let work = Workdir::new("update-scheduled");
    let site = Site::at(SCHEDULED);
    let key_out = work.dir.join("update.pub");
    let cloud = site.cloudsim_with(&work, &["--update-key-out", key_out.to_str().unwrap()]);
    let sim = site.pbxsim(4, 44_900, &[]);
    let config = config(&site, &work, None, &cloud.ca);
    let state = work.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let gw = Gateway::run(&config, 600);
    gw.wait_for("trunk: connected to", Duration::from_secs(30));
    gw.wait_for("tunnel: connected to", Duration::from_secs(30));
    let first = status(&site);
    let running = first["versions"]["gateway"].as_str().unwrap().to_owned();
    assert_ne!(running, next, "two builds, two versions");
    store(&cloud, &next_exe, &next);

    // Changed after signing: refused, said, nothing staged.
    let refused = offer(&cloud, &next, json!({ "apply": "now", "tamper": true }));
    assert_eq!(refused["gateway"]["complete"], true, "{refused}");
    wait("the refusal", Duration::from_secs(60), || {
        phases(&cloud).contains(&"refused".to_owned())
    });
    let s = status(&site);
    let word = s["status"].as_str().unwrap();
    assert!(
        word.starts_with("Update Error: bad signature"),
        "the status says why: {s}"
    );
    assert!(
        events(&cloud, "alarm")
            .iter()
            .any(|a| a["alarm"] == "update_failed" && a["raised"] == true),
        "the platform hears the alarm"
    );
    assert!(
        !state.join("releases").join(&next).exists(),
        "nothing staged"
    );
    assert_eq!(
        exe_of(gw.pid()),
        pbxlink_tests::gateway::binary().canonicalize().unwrap()
    );

    // The wizard's update time, saved as its Advanced step saves it (the
    // API, with the admin token). The first save restarts the gateway
    // (its digit rules join the configuration); the time alone does not.
    let save_time = |hhmm: &str| {
        let saved = pbxlink_tests::http::request(
            site.admin(),
            "PUT",
            "/api/onboarding/advanced",
            &[
                (
                    "Authorization",
                    &format!("Bearer {}", pbxlink_tests::site::ADMIN_TOKEN),
                ),
                ("Content-Type", "application/json"),
            ],
            &json!({ "inbound_digits": "", "outbound_digits": "", "update_time": hhmm })
                .to_string(),
        );
        assert_eq!(saved.status, 200, "the update time saved: {}", saved.text);
        saved.json["restarting"] == true
    };
    if save_time("03:00") {
        gw.wait_count("tunnel: connected to", 2, Duration::from_secs(30));
    }
    // The next minute, once this one has 25 s or more left for the
    // transfer and a call.
    while (SystemTimeSecs::now() % 60) > 35 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let at = SystemTimeSecs::now() / 60 * 60 + 60;
    let hhmm = format!("{:02}:{:02}", at / 3600 % 24, at / 60 % 60);
    assert!(!save_time(&hhmm), "the time alone restarts nothing");
    let answer = offer(&cloud, &next, json!({ "apply": "scheduled" }));
    println!("offered {next} for {hhmm} UTC: {answer}");
    wait("staged", Duration::from_secs(60), || {
        phases(&cloud).contains(&"staged".to_owned())
    });
    let staged = events(&cloud, "update")
        .into_iter()
        .find(|b| b["phase"] == "staged")
        .unwrap();
    assert_eq!(staged["apply_at_ms"].as_u64(), Some(at * 1000), "{staged}");
    assert!(
        status(&site)["status"] == "Connected",
        "a staged release waits"
    );
    assert!(state.join("releases").join(&next).join("pbxlink").exists());

    // A call up when the time comes: it runs to its end, the gateway
    // restarts after it.
    let up_for = (at + 10 - SystemTimeSecs::now()).max(12);
    sim.place_call("1000", "0611111111", up_for);
    wait("the call connected", Duration::from_secs(15), || {
        sim.sip_calls()["connected"].as_u64() == Some(1)
    });
    gw.wait_for("software update to", Duration::from_secs(90));
    assert!(SystemTimeSecs::now() >= at, "not applied before its time");
    let in_progress = status(&site);
    println!("while draining: {}", in_progress["status"]);
    assert_eq!(in_progress["status"], "System update in progress");
    wait("the call ended by the PBX", Duration::from_secs(60), || {
        sim.sip_calls()["ended by pbxsim"].as_u64() == Some(1)
    });
    assert_eq!(
        sim.sip_calls()["ended by the gateway"]
            .as_u64()
            .unwrap_or(0),
        0,
        "the call drained, not cut"
    );

    // The new version, in the same process, healthy.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !phases(&cloud).contains(&"done".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "no health check passed; phases {:?}; process: {} {:?} wchan {:?}; the gateway said:\n{}",
            phases(&cloud),
            std::fs::read_to_string(format!("/proc/{}/status", gw.pid()))
                .unwrap_or_default()
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            std::fs::read_link(format!("/proc/{}/exe", gw.pid())),
            std::fs::read_to_string(format!("/proc/{}/wchan", gw.pid())),
            gw.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = status(&site);
    assert_eq!(s["versions"]["gateway"], next.as_str(), "{s}");
    assert_eq!(s["status"], "Connected");
    assert_eq!(
        exe_of(gw.pid()),
        state.join("releases").join(&next).join("pbxlink"),
        "the release runs in the gateway's process"
    );
    assert_eq!(
        phases(&cloud),
        [
            "receiving",
            "refused",
            "receiving",
            "staged",
            "applying",
            "done"
        ]
    );
    let calls_before = sim.sip_calls()["connected"].as_u64().unwrap_or(0);
    sim.place_call("1001", "0622222222", 2);
    wait(
        "the next call connected on the new version",
        Duration::from_secs(20),
        || {
            sim.sip_calls()["connected"].as_u64() > Some(calls_before)
                || sim.sip_calls()["ended by pbxsim"].as_u64() == Some(2)
        },
    );
    wait("the next call over", Duration::from_secs(20), || {
        sim.sip_calls()["ended by pbxsim"].as_u64() == Some(2)
    });
    println!(
        "update {running} -> {next} at {hhmm}: bad signature refused, call drained, health check passed, next call connected"
    );
    gw.stop();
    drop(sim);
    drop(cloud);
}

#[test]
fn a_failing_health_check_rolls_back_and_a_kill_in_the_critical_phase_starts_a_whole_version() {
    let (next_exe, next) = next_release();
    let work = Workdir::new("update-rollback");
    let site = Site::at(ROLLBACK);
    let key_out = work.dir.join("update.pub");
    let cloud = site.cloudsim_with(&work, &["--update-key-out", key_out.to_str().unwrap()]);
    let _sim = site.pbxsim(4, 45_000, &[]);
    // The cloud trunk through a proxy the test cuts.
    let in_front = SocketAddr::from(([127, 0, 0, 1], ROLLBACK + 9));
    let proxy = Proxy::start(in_front, site.cloud_sip());
    let config = config(&site, &work, Some(in_front), &cloud.ca);
    let state = work.dir.join("state");
    let built = pbxlink_tests::gateway::binary().canonicalize().unwrap();
    let gw = Gateway::run(&config, 600);
    gw.wait_for("trunk: connected to", Duration::from_secs(30));
    gw.wait_for("tunnel: connected to", Duration::from_secs(30));
    let running = status(&site)["versions"]["gateway"]
        .as_str()
        .unwrap()
        .to_owned();
    store(&cloud, &next_exe, &next);

    // The new version's cloud trunk cannot come up.
    proxy.cut();
    offer(&cloud, &next, json!({ "apply": "now" }));
    wait("rolled back", Duration::from_secs(90), || {
        phases(&cloud).contains(&"rolled_back".to_owned())
    });
    wait("the previous version back", Duration::from_secs(30), || {
        status(&site)["versions"]["gateway"] == running.as_str()
    });
    let s = status(&site);
    let word = s["status"].as_str().unwrap_or_default().to_owned();
    assert!(
        word.starts_with(&format!(
            "Update Error: version {next} failed its health check"
        )),
        "{s}"
    );
    assert!(word.contains("the cloud trunk is"), "{word}");
    assert_eq!(exe_of(gw.pid()), built, "the previous build runs again");
    assert!(
        events(&cloud, "alarm")
            .iter()
            .any(|a| a["alarm"] == "update_failed" && a["raised"] == true)
    );
    proxy.restore();
    gw.wait_for("trunk: connected to", Duration::from_secs(30));
    println!("health check: {next} rolled back to {running}: {word}");
    gw.stop();

    // Another update, killed inside its critical phase once `current`
    // names the new version and before the journal says it switched.
    let mut cmd = std::process::Command::new(pbxlink_tests::gateway::binary());
    cmd.args([
        "run",
        "--config",
        config.to_str().unwrap(),
        "--seconds",
        "600",
    ])
    .env("PBXLINK_TEST_SWITCH_PAUSE_MS", "4000");
    let gw = Gateway::spawn(cmd);
    gw.wait_for("tunnel: connected to", Duration::from_secs(30));
    offer(&cloud, &next, json!({ "apply": "now" }));
    gw.wait_for("critical phase: switched", Duration::from_secs(60));
    let link = std::fs::read_link(state.join("releases/current")).unwrap();
    assert_eq!(link, Path::new(&next), "killed with `current` switched");
    let journal = std::fs::read_to_string(state.join("update.journal")).unwrap();
    assert!(
        journal.contains("\"switching\""),
        "in the critical phase: {journal}"
    );
    drop(gw); // SIGKILL

    let gw = Gateway::run(&config, 600);
    gw.wait_for("trunk: connected to", Duration::from_secs(30));
    let s = status(&site);
    assert_eq!(
        s["versions"]["gateway"],
        running.as_str(),
        "a whole version: {s}"
    );
    assert_eq!(exe_of(gw.pid()), built);
    assert_eq!(
        std::fs::read_link(state.join("releases/current")).unwrap(),
        Path::new(&running)
    );
    let on_page = site.admin_get("/api/alarms");
    assert!(
        on_page["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["code"] == "CLGW_ALARM_CRITICAL_PHASE_FAILED"),
        "{on_page}"
    );
    wait("the alarm at the platform", Duration::from_secs(30), || {
        events(&cloud, "alarm")
            .iter()
            .any(|a| a["alarm"] == "CLGW_ALARM_CRITICAL_PHASE_FAILED" && a["raised"] == true)
    });
    println!(
        "SIGKILL in the critical phase: {running} runs whole, CLGW_ALARM_CRITICAL_PHASE_FAILED at the platform; status: {}",
        s["status"]
    );
    drop(cloud);
    gw.stop();
}

/// Seconds since the UNIX epoch.
struct SystemTimeSecs;

impl SystemTimeSecs {
    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
}

//! Call quality under impairment: one Small site (its gateway in its own
//! namespace, its PBX pbxsim and its cloud cloudsim, as `density` builds
//! them), with the cloud leg only impaired ([`pbxlink_bench::impair`]:
//! `tc netem`, or netfilter where the kernel has no netem): the UDP the
//! cloud sends the gateway (its SRTP) loses 3 % and is delayed by a normal
//! 100 ms ± 30 ms by default; the PBX's RTP and all signalling pass clean.
//! The PBX places calls, holds them, and hangs up; then each call's record
//! (the CDR file) must show the cloud leg's inbound way degraded as netem
//! made it — the loss the gateway counted equal to what the impairment dropped, and
//! within `--loss-tolerance` of the figure asked for; the jitter within
//! `--jitter-tolerance` of the σ asked for — and the PBX leg clean; the direction
//! toward the PBX rated under `[quality] poor_mos`; the `poor_calls`
//! alarm up on the gateway and delivered to the platform (cloudsim's
//! stored events), with the records.
//!
//! ```text
//! quality --calls 2 --seconds 120 --require
//! ```

use anyhow::{Context, ensure};
use clap::Parser;
use pbxlink_bench::impair::Impairment;
use pbxlink_bench::sites::{Sites, get, post};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    about = "Call quality with tc netem on the cloud leg: records, metrics, the poor-call alarm"
)]
struct Args {
    /// Calls placed at once.
    #[arg(long, default_value_t = 2)]
    calls: usize,
    /// How long each call lasts, seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// netem's loss on the cloud's media, percent.
    #[arg(long, default_value_t = 3.0)]
    loss: f64,
    /// netem's mean delay, ms.
    #[arg(long, default_value_t = 100)]
    delay_ms: u32,
    /// netem's jitter (the normal distribution's σ), ms.
    #[arg(long, default_value_t = 30)]
    jitter_ms: u32,
    /// How far the loss measured over all calls may be from --loss, points.
    #[arg(long, default_value_t = 0.5)]
    loss_tolerance: f64,
    /// How far each call's jitter may be from --jitter-ms, share (0.25: ±25 %).
    #[arg(long, default_value_t = 0.25)]
    jitter_tolerance: f64,
    /// Where the site's configuration, state and logs go.
    #[arg(long, default_value = "/tmp/pbxlink-quality")]
    dir: PathBuf,
    /// Fail unless every figure above holds.
    #[arg(long)]
    require: bool,
}

/// The exit status when only the jitter missed its bound: a caller may
/// measure again; any other failure exits 1.
const SLOW_EXIT: i32 = 3;

/// Each call's record as the gateway wrote it, once every call has one.
fn records(dir: &std::path::Path, calls: usize, within: Duration) -> anyhow::Result<Vec<Value>> {
    let file = dir.join("site1/cdr.jsonl");
    let until = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &Value| !v["quality"].is_null())
            .collect();
        if found.len() >= calls {
            return Ok(found);
        }
        ensure!(
            Instant::now() < until,
            "{} of {calls} records with their quality in {}",
            found.len(),
            file.display()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// One call's figures (a record's, or the live view's): the cloud leg's
/// inbound way degraded by the impairment's jitter, the PBX leg clean,
/// the direction toward the PBX poor and the other not. Prints them;
/// returns the cloud leg's lost and expected packets.
fn judge(label: &str, q: &Value, args: &Args, problems: &mut Vec<String>) -> (i64, i64) {
    let cloud_in = &q["cloud_leg"]["inbound"];
    let pbx_in = &q["pbx_leg"]["inbound"];
    let packets = cloud_in["packets"].as_i64().unwrap_or(0);
    let l = cloud_in["lost"].as_i64().unwrap_or(0);
    println!(
        "  {label}: cloud leg in: {} packets, lost {} ({} %), out of order {}, jitter {} ms on average (at the end {}, at most {}); PBX leg in: lost {} ({} %), jitter {} ms; MOS to PBX {} (R {}, late in the buffer {} %), to cloud {}",
        packets,
        l,
        cloud_in["loss_percent"],
        cloud_in["late"],
        cloud_in["jitter_avg_ms"],
        cloud_in["jitter_ms"],
        cloud_in["jitter_max_ms"],
        pbx_in["lost"],
        pbx_in["loss_percent"],
        pbx_in["jitter_avg_ms"],
        q["to_pbx"]["mos"],
        q["to_pbx"]["r"],
        q["to_pbx"]["late_percent"],
        q["to_cloud"]["mos"],
    );
    let jitter = f(&cloud_in["jitter_avg_ms"]);
    let want = f64::from(args.jitter_ms);
    if (jitter - want).abs() > want * args.jitter_tolerance || jitter.is_nan() {
        problems.push(format!(
            "{label}: the cloud-leg jitter {jitter} ms is not within {} % of {want} ms",
            args.jitter_tolerance * 100.0
        ));
    }
    if pbx_in["lost"].as_i64() != Some(0) || f(&pbx_in["jitter_avg_ms"]) > 5.0 {
        problems.push(format!("{label}: the PBX leg was not clean: {pbx_in}"));
    }
    let (to_pbx, to_cloud) = (f(&q["to_pbx"]["mos"]), f(&q["to_cloud"]["mos"]));
    if to_pbx.is_nan() || to_pbx >= 3.6 {
        problems.push(format!(
            "{label}: the MOS toward the PBX is {} (not under 3.6)",
            q["to_pbx"]["mos"]
        ));
    }
    if to_cloud.is_nan() || to_cloud < 4.0 {
        problems.push(format!(
            "{label}: the clean direction rated {} (under 4.0)",
            q["to_cloud"]["mos"]
        ));
    }
    (l, packets + l)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!((1..=25).contains(&args.calls), "--calls: 1 to 25");
    ensure!((10..=3600).contains(&args.seconds), "--seconds: 10 to 3600");
    ensure!(
        (0.0..50.0).contains(&args.loss),
        "--loss: a percentage under 50"
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One call poor is the alarm's share (20 %) from the first call.
    let mut sites = Sites::start_with(
        1,
        cpus,
        &args.dir,
        false,
        "[quality]\npoor_alarm_min_calls = 1\n",
    )?;
    sites.enter_hub()?;
    sites.wait_ready(Duration::from_secs(60))?;
    let impairment = Impairment::on_cloud_leg(1, args.loss, args.delay_ms, args.jitter_ms)?;
    println!(
        "quality: 1 Small site; the cloud's media to the gateway impaired: {}",
        impairment.describe
    );
    let site = &sites.sites[0];
    for c in 0..args.calls {
        let v = post(
            site.pbx_control(),
            "/sip/calls",
            &json!({"from": "1000", "to": format!("0601{c:06}"), "seconds": args.seconds}),
        );
        ensure!(v["call"].is_u64(), "pbxsim placed no call: {v}");
    }
    println!(
        "  {} call(s) placed for {} s each",
        args.calls, args.seconds
    );
    // The admin page's live view near the calls' end: one read starts the
    // relays' figures coming, the next (two seconds on) has them.
    std::thread::sleep(Duration::from_secs(args.seconds.saturating_sub(15).max(5)));
    let view = || {
        pbxlink_tests::http::get_with_token(
            site.admin(),
            "/api/calls",
            pbxlink_bench::sites::ADMIN_TOKEN,
        )
        .json
    };
    view();
    std::thread::sleep(Duration::from_secs(2));
    let live = view();
    let records = records(
        &args.dir,
        args.calls,
        Duration::from_secs(args.seconds + 60),
    )?;
    let dropped = impairment.dropped()?;
    if let Some(n) = impairment.delayed() {
        println!("  {n} packet(s) delayed");
    }
    let admin = site.admin();
    let alarms = get(admin, "/api/alarms");
    let metrics =
        pbxlink_tests::http::get_with_token(admin, "/metrics", pbxlink_bench::sites::ADMIN_TOKEN)
            .text;
    let gateways = get(site.cloud_control(), "/status")["gateways"].clone();
    let gw = gateways
        .as_array()
        .and_then(|g| g.first())
        .and_then(|g| g["gateway"].as_str())
        .context("cloudsim knows no gateway")?
        .to_owned();
    let delivered = get(site.cloud_control(), &format!("/gateways/{gw}/events"));
    let events = delivered.as_array().cloned().unwrap_or_default();

    let mut problems = Vec::new();
    let (mut lost, mut expected) = (0i64, 0i64);
    for r in &records {
        let (l, e) = judge(
            &format!("call {}", r["call"]),
            &r["quality"],
            &args,
            &mut problems,
        );
        lost += l;
        expected += e;
    }
    // The live view read while the calls were up shows the same: its own
    // figures, judged alike (the loss over its calls so far).
    let (mut live_lost, mut live_expected) = (0i64, 0i64);
    for c in live["calls"].as_array().into_iter().flatten() {
        let (l, e) = judge(
            &format!("live view, call {} at {} s", c["call"], c["duration_s"]),
            &c["quality"],
            &args,
            &mut problems,
        );
        live_lost += l;
        live_expected += e;
    }
    let live_loss = live_lost as f64 * 100.0 / live_expected.max(1) as f64;
    println!(
        "  live view: {} call(s) up, {live_lost} of {live_expected} lost on the cloud leg so far ({live_loss:.2} %)",
        live["calls"].as_array().map_or(0, Vec::len)
    );
    if live["calls"].as_array().map_or(0, Vec::len) != args.calls {
        problems.push(format!(
            "the live view listed {} call(s), not {}",
            live["calls"].as_array().map_or(0, Vec::len),
            args.calls
        ));
    }
    if (live_loss - args.loss).abs() > args.loss_tolerance {
        problems.push(format!(
            "the live view's cloud-leg loss {live_loss:.2} % is not within {} points of {} %",
            args.loss_tolerance, args.loss
        ));
    }
    let loss = lost as f64 * 100.0 / expected.max(1) as f64;
    println!(
        "  all calls: the gateway counted {lost} of {expected} lost on the cloud leg ({loss:.2} %); the impairment dropped {dropped}"
    );
    if (loss - args.loss).abs() > args.loss_tolerance {
        problems.push(format!(
            "the cloud leg's loss {loss:.2} % is not within {} points of {} %",
            args.loss_tolerance, args.loss
        ));
    }
    // Each call's trailing packets (sent by the cloud after its relay
    // ended) can be dropped too, and no call's count sees them.
    let trailing = 5 * args.calls as i64;
    if lost > dropped as i64 || dropped as i64 - lost > trailing {
        problems.push(format!(
            "the gateway counted {lost} lost, the impairment dropped {dropped} (at most {trailing} more)"
        ));
    }
    let up = alarms["alarms"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["code"] == "poor_calls");
    println!(
        "  alarm on the gateway: {}",
        up.map_or("none".to_owned(), |a| a.to_string())
    );
    if up.is_none() {
        problems.push("the poor_calls alarm is not up on the gateway".into());
    }
    let raised = events.iter().find(|e| {
        e["kind"] == "alarm" && e["body"]["alarm"] == "poor_calls" && e["body"]["raised"] == true
    });
    let cdrs = events
        .iter()
        .filter(|e| e["kind"] == "cdr" && !e["body"]["quality"].is_null())
        .count();
    println!(
        "  delivered to the platform: {cdrs} record(s) with their quality; alarm event: {}",
        raised.map_or("none".to_owned(), |e| e["body"].to_string())
    );
    if raised.is_none() {
        problems.push("the platform got no poor_calls alarm".into());
    }
    if cdrs < args.calls {
        problems.push(format!(
            "the platform got {cdrs} of {} records with quality",
            args.calls
        ));
    }
    for family in [
        "pbxlink_call_poor_total{direction=\"to_pbx\"}",
        "pbxlink_call_mos_count{direction=\"to_pbx\"}",
    ] {
        let line = metrics.lines().find(|l| l.starts_with(family));
        println!("  /metrics: {}", line.unwrap_or("(missing)"));
        if line.is_none_or(|l| !l.ends_with(&format!(" {}", args.calls))) {
            problems.push(format!("/metrics: {family} is not {}", args.calls));
        }
    }
    drop(impairment);
    drop(sites);
    if args.require {
        if !problems.is_empty() && problems.iter().all(|p| p.contains("jitter")) {
            // Only the jitter, which the host's timing moves (the delay is
            // held by a thread here where the kernel has no netem).
            eprintln!(
                "quality: {} (timing only: exit status {SLOW_EXIT})",
                problems.join("; ")
            );
            std::process::exit(SLOW_EXIT);
        }
        ensure!(problems.is_empty(), "quality: {}", problems.join("; "));
        println!("quality: every requirement holds");
    } else if !problems.is_empty() {
        println!("quality: missed: {}", problems.join("; "));
    }
    Ok(())
}

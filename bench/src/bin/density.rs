//! `density`: many customer sites on one host (issue 32). N sites, each
//! its own `pbxlink run` (Small profile) in its own network namespace with
//! its own address, PBX (pbxsim) and cloud platform (cloudsim) — see
//! `pbxlink_bench::sites` — first idle, then each carrying its profile's
//! calls at once through the real B2BUA: SIP from the PBX over UDP, SIP
//! over TLS and SDES-SRTP toward the cloud, G.711 both ways, every packet
//! counted at both ends (pbxsim: sequence gaps in what comes back;
//! cloudsim: each SRTP packet authenticated by libsrtp2, gaps). It prints
//! per site and in total: CPU (from /proc schedstat, all threads),
//! wake-ups a second (context switches, all threads), resident and
//! proportional memory, loss, failed calls, and the p99 of the call set-up
//! delay the gateways add (their `pbxlink_call_setup_added_seconds`
//! histograms, merged); the idle figures with no calls; and the vendor's
//! figure for the same sites (a VM of one core and 1 GiB each). Bounded in
//! sites, calls and time; stops by itself.
//!
//! ```text
//! density --sites 40 --seconds 60            # the full run (about 3 min)
//! density --sites 3 --seconds 10 --idle-seconds 10 --require   # CI
//! ```

use anyhow::{Context, ensure};
use clap::Parser;
use pbxlink_bench::host::CpuTimes;
use pbxlink_bench::sites::{ADMIN_TOKEN, Sites, get, post};
use pbxlink_tests::http;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Many Small sites on one host: idle and loaded figures per site")]
struct Args {
    /// Sites, each its own gateway, namespace, PBX and cloud.
    #[arg(long, default_value_t = 40)]
    sites: usize,
    /// Calls each site carries at once (Small: 25).
    #[arg(long, default_value_t = 25)]
    calls: usize,
    /// Measured seconds with every call up.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Measured seconds idle (every site up, no call).
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Calls placed a second, over all sites.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Write the figures here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Each PBX sends its calls' packets on one 20 ms clock (as a TDM
    /// PBX's media board does) instead of each call on its own.
    #[arg(long)]
    shared_clock: bool,
    /// Where the sites' configurations, state and logs go.
    #[arg(long, default_value = "/tmp/pbxlink-density")]
    dir: PathBuf,
    /// Fail unless every call connected and ended as placed with no packet
    /// lost or refused (every packet the PBXs sent came back through the
    /// cloud), the set-up delay's p99 is under --max-setup-ms, and every
    /// idle site stayed within --max-idle-wakeups and --max-idle-rss-mib
    /// (and --max-idle-cpu, unless --no-cpu-bound).
    #[arg(long)]
    require: bool,
    /// Idle bound: percent of a core per site.
    #[arg(long, default_value_t = 0.1)]
    max_idle_cpu: f64,
    /// Idle bound: wake-ups a second per site.
    #[arg(long, default_value_t = 5.0)]
    max_idle_wakeups: f64,
    /// Idle bound: resident MiB per site.
    #[arg(long, default_value_t = 16.0)]
    max_idle_rss_mib: f64,
    /// Bound on the --setup-quantile of each set-up step the gateways add
    /// (ms). Missing only this bound exits with status 3 (see SLOW_EXIT).
    #[arg(long, default_value_t = 5.0)]
    max_setup_ms: f64,
    /// Which quantile of the set-up delay --max-setup-ms bounds (0.99: the
    /// p99). Over a few calls the p99 is the slowest call, which a host's
    /// scheduling (another tenant, a stolen vCPU) decides; a short run
    /// judges a lower quantile, and prints the p99 all the same.
    #[arg(long, default_value_t = 0.99)]
    setup_quantile: f64,
    /// With --require: leave the idle CPU unchecked (a CI machine's speed
    /// is not the product's).
    #[arg(long)]
    no_cpu_bound: bool,
}

/// The exit status when everything held but the set-up delay's bound: on
/// a shared or busy host that is the machine's scheduling, so a caller may
/// measure again; any other failure exits 1.
const SLOW_EXIT: i32 = 3;

/// A process's cumulative CPU (ns, all threads) and context switches.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    cpu_ns: u64,
    switches: u64,
}

fn sample(pid: u32) -> Sample {
    let mut s = Sample::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return s;
    };
    for t in tasks.flatten() {
        let p = t.path();
        if let Ok(text) = std::fs::read_to_string(p.join("schedstat")) {
            s.cpu_ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(text) = std::fs::read_to_string(p.join("status")) {
            s.switches += text
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    s
}

/// Resident and proportional memory of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let field = |file: &str, name: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    (field("status", "VmRSS:"), field("smaps_rollup", "Pss:"))
}

/// One measured window of a set of processes.
#[derive(Debug, Clone)]
struct Window {
    /// Per process: percent of a core, wake-ups a second.
    per: Vec<(f64, f64)>,
    /// The host's busy share of all its cores over the window (percent).
    host_busy: f64,
    /// Of all its cores' time, the share stolen by the hypervisor (percent).
    steal: f64,
}

fn measure(pids: &[u32], seconds: u64) -> Window {
    let before: Vec<Sample> = pids.iter().map(|&p| sample(p)).collect();
    let host0 = CpuTimes::now();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let secs = t0.elapsed().as_secs_f64();
    let host1 = CpuTimes::now();
    let per = pids
        .iter()
        .zip(&before)
        .map(|(&p, b)| {
            let a = sample(p);
            (
                (a.cpu_ns - b.cpu_ns) as f64 / 1e9 / secs * 100.0,
                (a.switches - b.switches) as f64 / secs,
            )
        })
        .collect();
    Window {
        per,
        host_busy: host0.busy_percent(&host1),
        steal: host0.steal_percent(&host1),
    }
}

/// The set-up histogram of one step from a gateway's `/metrics`:
/// (upper bound in seconds, cumulative count) per bucket.
fn setup_buckets(metrics: &str, step: &str) -> Vec<(f64, u64)> {
    let prefix = format!("pbxlink_call_setup_added_seconds_bucket{{step=\"{step}\",le=\"");
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, n) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, n.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which `q` of the observations fall, and the count.
fn quantile(buckets: &[(f64, u64)], q: f64) -> (f64, u64) {
    let total = buckets.last().map_or(0, |b| b.1);
    let want = (total as f64 * q).ceil() as u64;
    let bound = buckets
        .iter()
        .find(|(_, n)| *n >= want)
        .map_or(f64::INFINITY, |b| b.0);
    (bound, total)
}

/// Calls in `state` at every site's PBX (pbxsim's `/sip/stats`).
fn pbx_calls(sites: &Sites, state: &str) -> u64 {
    sites
        .sites
        .iter()
        .map(|s| {
            get(s.pbx_control(), "/sip/stats")["calls"][state]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure!(
        args.setup_quantile > 0.0 && args.setup_quantile <= 1.0,
        "--setup-quantile is a share of the calls, over 0 and at most 1"
    );
    ensure!(
        args.calls >= 1 && args.calls <= 25,
        "--calls: 1 to 25 (a Small site's limit)"
    );
    ensure!(
        args.seconds >= 5 && args.seconds <= 600,
        "--seconds: 5 to 600"
    );
    ensure!(
        args.idle_seconds >= 5 && args.idle_seconds <= 600,
        "--idle-seconds: 5 to 600"
    );
    ensure!(
        (1..=500).contains(&args.rate),
        "--rate: 1 to 500 calls a second"
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = args.sites;
    println!(
        "density: {n} Small site(s) on {cpus} core(s), {} calls each; idle {} s, loaded {} s; each PBX's calls on {}",
        args.calls,
        args.idle_seconds,
        args.seconds,
        if args.shared_clock {
            "one media clock"
        } else {
            "their own media clocks"
        }
    );
    let started = Instant::now();
    let mut sites = Sites::start(n, cpus, &args.dir, args.shared_clock)?;
    sites.enter_hub()?;
    sites.wait_ready(Duration::from_secs(60 + 2 * n as u64))?;
    println!(
        "  {n} site(s) up in {:.1} s: PBX trunk up, cloud trunk connected, tunnel connected, CSTA connected",
        started.elapsed().as_secs_f64()
    );

    // Idle: every site up, nothing calling.
    std::thread::sleep(Duration::from_secs(5));
    let gateways: Vec<u32> = sites.sites.iter().map(|s| s.gateway.pid()).collect();
    let idle = measure(&gateways, args.idle_seconds);
    let idle_mem: Vec<(u64, u64)> = gateways.iter().map(|&p| memory(p)).collect();
    sites.check_running()?;

    // Loaded: each site's calls placed by its PBX, all up at once.
    let total = n * args.calls;
    let ramp = Duration::from_millis(1000 * total as u64 / args.rate);
    let hold = ramp.as_secs() + 10 + args.seconds + 5;
    let gap = Duration::from_micros(1_000_000 / args.rate);
    let host0 = CpuTimes::now();
    let t0 = Instant::now();
    let mut placed = 0usize;
    let mut refused = Vec::new();
    for c in 0..args.calls {
        for s in &sites.sites {
            let to = format!("06{:02}{:06}", s.number, c);
            let v = post(
                s.pbx_control(),
                "/sip/calls",
                &json!({"from": "1000", "to": to, "seconds": hold}),
            );
            if v["call"].is_u64() {
                placed += 1;
            } else {
                refused.push(format!("site {}: {v}", s.number));
            }
            let due = t0 + gap * placed as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    ensure!(refused.is_empty(), "calls not placed: {refused:?}");
    // Every call connected (pbxsim says so once the 200 came).
    let until = Instant::now() + ramp + Duration::from_secs(20);
    let connected = loop {
        let up = pbx_calls(&sites, "connected");
        if up as usize >= total || Instant::now() > until {
            break up;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let setup_steal = host0.steal_percent(&CpuTimes::now());
    println!(
        "  {placed} calls placed at {} a second; {connected} connected after {:.1} s (CPU time stolen by the hypervisor meanwhile: {setup_steal:.1} %)",
        args.rate,
        t0.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(3));
    let mut all_pids = gateways.clone();
    all_pids.extend(sites.sites.iter().map(|s| s.pbx.pid()));
    all_pids.extend(sites.sites.iter().map(|s| s.cloud.pid()));
    let loaded = measure(&all_pids, args.seconds);
    let loaded_mem: Vec<(u64, u64)> = gateways.iter().map(|&p| memory(p)).collect();
    let still = pbx_calls(&sites, "connected");
    sites.check_running()?;

    // The calls end as placed (pbxsim hangs up, the last placed last),
    // then the counts.
    let end = t0 + ramp + Duration::from_secs(hold + 30);
    std::thread::sleep((t0 + Duration::from_secs(hold)).saturating_duration_since(Instant::now()));
    loop {
        let ended = pbx_calls(&sites, "ended by pbxsim");
        if ended as usize >= total || Instant::now() > end {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The last packets in flight, the records written.
    std::thread::sleep(Duration::from_secs(2));
    let mut rows = Vec::new();
    let mut merged: BTreeMap<&str, Vec<(f64, u64)>> = BTreeMap::new();
    let mut totals = json!({"rtp_sent": 0, "srtp_decrypted": 0, "srtp_echoed": 0, "rtp_received": 0, "lost": 0, "refused": 0, "ended_as_placed": 0, "failed": 0});
    for (k, s) in sites.sites.iter().enumerate() {
        let pbx = get(s.pbx_control(), "/sip/stats");
        let cloud = get(s.cloud_control(), "/sip/stats");
        let metrics = http::get_with_token(s.admin(), "/metrics", ADMIN_TOKEN).text;
        for step in ["invite", "answer"] {
            let b = setup_buckets(&metrics, step);
            let m = merged
                .entry(step)
                .or_insert_with(|| b.iter().map(|(le, _)| (*le, 0)).collect());
            for (into, (_, n)) in m.iter_mut().zip(&b) {
                into.1 += n;
            }
        }
        let ended = pbx["calls"]["ended by pbxsim"].as_u64().unwrap_or(0);
        let calls_seen: u64 = pbx["calls"]
            .as_object()
            .map_or(0, |o| o.values().filter_map(Value::as_u64).sum());
        let lost = pbx["rtp_lost"].as_u64().unwrap_or(0) + cloud["rtp_lost"].as_u64().unwrap_or(0);
        let refused = cloud["srtp_refused"].as_u64().unwrap_or(0);
        let (cpu, wake) = loaded.per[k];
        let (icpu, iwake) = idle.per[k];
        let row = json!({
            "site": s.number,
            "cpu": s.cpu,
            "idle": {"cpu_percent": icpu, "wakeups_per_s": iwake, "rss_kib": idle_mem[k].0, "pss_kib": idle_mem[k].1},
            "loaded": {"cpu_percent": cpu, "wakeups_per_s": wake, "rss_kib": loaded_mem[k].0, "pss_kib": loaded_mem[k].1},
            "rtp_sent": pbx["rtp_sent"], "rtp_received": pbx["rtp_received"],
            "srtp_decrypted": cloud["srtp_decrypted"], "srtp_echoed": cloud["srtp_sent"],
            "lost": lost, "refused": refused,
            "ended_as_placed": ended, "failed": calls_seen - ended,
            "round_trip_p99_us": pbx["round_trip"]["all"]["p99_us"],
        });
        for key in [
            "rtp_sent",
            "srtp_decrypted",
            "srtp_echoed",
            "rtp_received",
            "lost",
            "refused",
            "ended_as_placed",
            "failed",
        ] {
            totals[key] = json!(totals[key].as_u64().unwrap_or(0) + row[key].as_u64().unwrap_or(0));
        }
        rows.push(row);
    }
    let gw_idle_cpu: f64 = idle.per.iter().map(|p| p.0).sum();
    let gw_idle_wake: f64 = idle.per.iter().map(|p| p.1).sum();
    let gw_cpu: f64 = loaded.per[..n].iter().map(|p| p.0).sum();
    let gw_wake: f64 = loaded.per[..n].iter().map(|p| p.1).sum();
    let peers_cpu: f64 = loaded.per[n..].iter().map(|p| p.0).sum();
    let (irss, ipss): (u64, u64) = idle_mem.iter().fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
    let (lrss, lpss): (u64, u64) = loaded_mem
        .iter()
        .fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
    let step = |name: &str, q: f64| quantile(merged.get(name).map_or(&[][..], |v| v), q);
    let (inv_p99, inv_n) = step("invite", 0.99);
    let (ans_p99, ans_n) = step("answer", 0.99);
    let judged = args.setup_quantile;
    let (inv_q, ans_q) = (step("invite", judged).0, step("answer", judged).0);

    println!();
    println!(
        "site cpu | idle: %core wake/s RSS MiB PSS MiB | loaded: %core wake/s RSS MiB | RTP sent/back lost refused | calls ok failed"
    );
    for r in &rows {
        println!(
            "{:>4} {:>3} | {:>6.3} {:>6.2} {:>7.1} {:>7.1} | {:>6.2} {:>6.1} {:>7.1} | {:>7}/{:<7} {:>3} {:>3} | {:>3} {:>3}",
            r["site"],
            r["cpu"],
            r["idle"]["cpu_percent"].as_f64().unwrap_or(0.0),
            r["idle"]["wakeups_per_s"].as_f64().unwrap_or(0.0),
            mib(r["idle"]["rss_kib"].as_u64().unwrap_or(0)),
            mib(r["idle"]["pss_kib"].as_u64().unwrap_or(0)),
            r["loaded"]["cpu_percent"].as_f64().unwrap_or(0.0),
            r["loaded"]["wakeups_per_s"].as_f64().unwrap_or(0.0),
            mib(r["loaded"]["rss_kib"].as_u64().unwrap_or(0)),
            r["rtp_sent"],
            r["rtp_received"],
            r["lost"],
            r["refused"],
            r["ended_as_placed"],
            r["failed"]
        );
    }
    let worst = |f: &dyn Fn(&Value) -> f64| rows.iter().map(f).fold(0.0, f64::max);
    let idle_cpu_max = worst(&|r| r["idle"]["cpu_percent"].as_f64().unwrap_or(0.0));
    let idle_wake_max = worst(&|r| r["idle"]["wakeups_per_s"].as_f64().unwrap_or(0.0));
    let idle_rss_max = worst(&|r| mib(r["idle"]["rss_kib"].as_u64().unwrap_or(0)));
    println!();
    println!(
        "idle, {n} sites: {gw_idle_cpu:.3} % of a core in all ({:.4} % a site, worst {idle_cpu_max:.4}), {gw_idle_wake:.1} wake-ups/s ({:.2} a site, worst {idle_wake_max:.2}), RSS {:.1} MiB ({:.1} a site, worst {idle_rss_max:.1}), PSS {:.1} MiB ({:.1} a site); host busy {:.1} %",
        gw_idle_cpu / n as f64,
        gw_idle_wake / n as f64,
        mib(irss),
        mib(irss) / n as f64,
        mib(ipss),
        mib(ipss) / n as f64,
        idle.host_busy
    );
    println!(
        "loaded, {total} calls ({still} up through the window): gateways {gw_cpu:.1} % of a core in all ({:.2} % a site), {gw_wake:.0} wake-ups/s, RSS {:.1} MiB, PSS {:.1} MiB; the peers (pbxsim, cloudsim) {peers_cpu:.1} %; host busy {:.1} % of {cpus} cores, stolen {:.1} %",
        gw_cpu / n as f64,
        mib(lrss),
        mib(lpss),
        loaded.host_busy,
        loaded.steal
    );
    println!(
        "media: {} RTP sent by the PBXs, {} decrypted by the clouds and {} echoed, {} came back; lost (gaps at either end) {}, SRTP refused by the clouds {}",
        totals["rtp_sent"],
        totals["srtp_decrypted"],
        totals["srtp_echoed"],
        totals["rtp_received"],
        totals["lost"],
        totals["refused"]
    );
    println!(
        "calls: {} ended as placed, {} failed; set-up delay the gateways add, p99: INVITE in to out <= {:.2} ms ({inv_n} calls), answer in to out <= {:.2} ms ({ans_n})",
        totals["ended_as_placed"],
        totals["failed"],
        inv_p99 * 1e3,
        ans_p99 * 1e3
    );
    for (step, b) in &merged {
        let shown: Vec<String> = b
            .iter()
            .map(|(le, c)| format!("<={}ms:{c}", le * 1e3))
            .collect();
        println!("  set-up {step}, cumulative: {}", shown.join(" "));
    }
    println!(
        "vendor: {n} Small sites are {n} VMs of 1 core and 1 GiB: {n} cores and {n} GiB; here {cpus} cores carried them with the host {:.0} % busy, the gateways resident in {:.2} GiB",
        loaded.host_busy,
        mib(lrss) / 1024.0
    );

    let report = json!({
        "sites": n, "calls_per_site": args.calls, "cores": cpus,
        "idle_seconds": args.idle_seconds, "loaded_seconds": args.seconds,
        "rows": rows, "totals": totals,
        "idle": {"cpu_percent": gw_idle_cpu, "wakeups_per_s": gw_idle_wake, "rss_kib": irss, "pss_kib": ipss, "host_busy_percent": idle.host_busy},
        "loaded": {"cpu_percent": gw_cpu, "wakeups_per_s": gw_wake, "rss_kib": lrss, "pss_kib": lpss, "peers_cpu_percent": peers_cpu, "host_busy_percent": loaded.host_busy, "steal_percent": loaded.steal, "connected_through_window": still},
        "setup_steal_percent": setup_steal,
        "setup_p99_seconds": {"invite": inv_p99, "answer": ans_p99, "invite_calls": inv_n, "answer_calls": ans_n},
        "setup_judged": {"quantile": judged, "invite_seconds": inv_q, "answer_seconds": ans_q},
        "vendor": {"cores": n, "memory_gib": n},
    });
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // Every gateway and peer stopped, their namespaces gone, before the
    // verdict (an exit skips destructors).
    drop(sites);
    if args.require {
        let mut problems = Vec::new();
        let t = &totals;
        if connected as usize != total || still as usize != total {
            problems.push(format!(
                "{connected} of {total} calls connected, {still} up through the window"
            ));
        }
        if t["ended_as_placed"].as_u64() != Some(total as u64) || t["failed"] != 0 {
            problems.push(format!(
                "{} of {total} calls ended as placed, {} failed",
                t["ended_as_placed"], t["failed"]
            ));
        }
        if t["lost"] != 0 || t["refused"] != 0 || t["rtp_sent"] != t["rtp_received"] {
            problems.push(format!(
                "{} packets lost, {} refused, {} of {} back",
                t["lost"], t["refused"], t["rtp_received"], t["rtp_sent"]
            ));
        }
        if inv_n as usize != total || ans_n as usize != total {
            problems.push(format!(
                "set-up delay measured for {inv_n} INVITEs and {ans_n} answers of {total} calls"
            ));
        }
        // The one figure a busy or shared host moves: judged apart.
        let slow = (inv_q * 1e3 >= args.max_setup_ms || ans_q * 1e3 >= args.max_setup_ms)
            .then(|| {
                format!(
                    "set-up p{} {:.2} ms (INVITE) / {:.2} ms (answer) over {total} calls, bound {} ms",
                    judged * 100.0,
                    inv_q * 1e3,
                    ans_q * 1e3,
                    args.max_setup_ms
                )
            });
        if idle_wake_max > args.max_idle_wakeups {
            problems.push(format!(
                "an idle site woke {idle_wake_max:.2} times a second"
            ));
        }
        if idle_rss_max > args.max_idle_rss_mib {
            problems.push(format!("an idle site held {idle_rss_max:.1} MiB"));
        }
        if !args.no_cpu_bound && idle_cpu_max > args.max_idle_cpu {
            problems.push(format!("an idle site used {idle_cpu_max:.4} % of a core"));
        }
        if let Some(slow) = &slow {
            problems.push(slow.clone());
        }
        if problems.len() == 1 && slow.is_some() {
            // Only the timing missed: the exit status says so, and a
            // caller may measure again (the CI step tries up to 3 times).
            eprintln!(
                "density: {} (timing only: exit status {SLOW_EXIT})",
                problems[0]
            );
            std::process::exit(SLOW_EXIT);
        }
        ensure!(problems.is_empty(), "density: {}", problems.join("; "));
        println!("density: every requirement holds");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setup_p99_is_the_first_bucket_holding_99_percent() {
        let metrics = "\
# TYPE pbxlink_call_setup_added_seconds histogram
pbxlink_call_setup_added_seconds_bucket{step=\"invite\",le=\"0.00025\"} 90
pbxlink_call_setup_added_seconds_bucket{step=\"invite\",le=\"0.001\"} 98
pbxlink_call_setup_added_seconds_bucket{step=\"invite\",le=\"0.003\"} 99
pbxlink_call_setup_added_seconds_bucket{step=\"invite\",le=\"+Inf\"} 100
pbxlink_call_setup_added_seconds_bucket{step=\"answer\",le=\"0.00025\"} 100
pbxlink_call_setup_added_seconds_bucket{step=\"answer\",le=\"+Inf\"} 100
";
        let invite = setup_buckets(metrics, "invite");
        assert_eq!(invite.len(), 4);
        assert_eq!(quantile(&invite, 0.99), (0.003, 100));
        assert_eq!(
            quantile(&setup_buckets(metrics, "answer"), 0.99),
            (0.00025, 100)
        );
        assert_eq!(quantile(&[], 0.99), (f64::INFINITY, 0));
        // The p90 of 100: the 90th call's bucket.
        assert_eq!(quantile(&invite, 0.9), (0.00025, 100));
        assert_eq!(quantile(&invite, 0.91), (0.001, 100));
    }
}

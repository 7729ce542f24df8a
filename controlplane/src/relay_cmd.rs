//! `pbxlink relay`: static relays from the command line, for debugging,
//! demos and benchmarks without SIP. Relay i uses LAN RTP port P+2i (RTCP
//! P+2i+1) and cloud port Q+2i (SRTCP Q+2i+1).

use anyhow::{Context, bail, ensure};
use pbxlink_dataplane::control::{Event, WorkerStats};
use pbxlink_dataplane::engine::{Backend, DataPlane, DataPlaneConfig};
use pbxlink_dataplane::net::{Networks, Prefix};
use pbxlink_dataplane::profile::{Profile, Resources};
use pbxlink_dataplane::relay::{MediaDirection, RelaySpec, RelayStats};
use pbxlink_dataplane::srtp::Suite;
use pbxlink_dataplane::{DirectionConfig, DropCounters, MasterKey};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Options of `pbxlink relay`.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    /// First LAN RTP port (relay i uses P+2i, RTCP P+2i+1).
    #[arg(long)]
    lan_port: u16,
    /// First cloud SRTP port (relay i uses Q+2i, SRTCP Q+2i+1).
    #[arg(long)]
    cloud_port: u16,
    /// Number of relays.
    #[arg(long, default_value_t = 1)]
    calls: u32,
    /// PBX RTP addresses, one per relay in order; omitted: latch.
    #[arg(long, value_delimiter = ',')]
    lan_remote: Vec<SocketAddr>,
    /// Cloud SRTP addresses, one per relay in order; omitted: latch on authenticated packets.
    #[arg(long, value_delimiter = ',')]
    cloud_remote: Vec<SocketAddr>,
    /// SRTP suite on the cloud leg.
    #[arg(long)]
    suite: Suite,
    /// SDES inline key (base64 key‖salt) the gateway protects toward the cloud with.
    #[arg(long)]
    tx_key: String,
    /// SDES inline key the cloud protects toward the gateway with.
    #[arg(long)]
    rx_key: String,
    /// Local address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Performance profile (small, smallplus, medium, large, max); picked from the host when omitted.
    #[arg(long)]
    profile: Option<Profile>,
    /// Exit after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
    /// I/O backend: uring, epoll or xdp (default: uring where the kernel allows it).
    #[arg(long, value_parser = parse_backend)]
    backend: Option<Backend>,
    /// Interface the xdp backend diverts relay traffic on.
    #[arg(long, default_value = "lo")]
    xdp_interface: String,
    /// Networks media may come from and go to (repeatable). Default: loopback only.
    #[arg(long = "allow-net")]
    allow_net: Vec<Prefix>,
    /// Direction media may flow: sendrecv, sendonly, recvonly, inactive.
    #[arg(long, default_value = "sendrecv")]
    direction: MediaDirection,
    /// Seconds of silence before a relay reports a media timeout.
    #[arg(long, default_value_t = 60)]
    media_timeout: u64,
    /// Payload type of RFC 4733 telephone-events (checked and counted).
    #[arg(long, default_value_t = 101)]
    telephone_event_pt: u8,
    /// DSCP of RTP packets (46 = EF).
    #[arg(long, default_value_t = 46)]
    dscp: u8,
}

pub fn parse_backend(s: &str) -> Result<Backend, String> {
    match s {
        "uring" | "io_uring" => Ok(Backend::Uring),
        "epoll" => Ok(Backend::Epoll),
        "xdp" => Ok(Backend::Xdp),
        _ => Err(format!("unknown backend {s:?}: use uring, epoll or xdp")),
    }
}

fn totals(workers: &BTreeMap<usize, WorkerStats>) -> WorkerStats {
    let mut t = WorkerStats::default();
    for w in workers.values() {
        t.relays += w.relays;
        t.received += w.received;
        t.sent += w.sent;
        t.drops.add(&w.drops);
        t.enobufs += w.enobufs;
        t.kernel_drops += w.kernel_drops;
        t.stray += w.stray;
        t.events_dropped += w.events_dropped;
        t.multishot_completions += w.multishot_completions;
        t.provided_buffer_completions += w.provided_buffer_completions;
        t.xdp_sent += w.xdp_sent;
        t.xdp_received += w.xdp_received;
        t.xdp_kicks_failed += w.xdp_kicks_failed;
        t.xdp_foreign_dropped += w.xdp_foreign_dropped;
        t.xdp_foreign_passed += w.xdp_foreign_passed;
        t.xdp_map_failures += w.xdp_map_failures;
    }
    t
}

fn drops_text(d: &DropCounters) -> String {
    let parts: Vec<String> = d.nonzero().map(|(r, n)| format!("{r}={n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

/// Runs `pbxlink relay`.
pub fn run(args: &RelayArgs) -> anyhow::Result<()> {
    ensure!(args.calls > 0, "--calls must be at least 1");
    ensure!(
        args.lan_remote.len() <= args.calls as usize
            && args.cloud_remote.len() <= args.calls as usize,
        "more remotes than relays: give at most one --lan-remote/--cloud-remote per call"
    );
    let last = |p: u16| p as u32 + 2 * (args.calls - 1) + 1;
    ensure!(
        last(args.lan_port) <= 65535 && last(args.cloud_port) <= 65535,
        "--calls {} does not fit above the given ports",
        args.calls
    );
    let tx_key = MasterKey::from_sdes(args.suite, &args.tx_key).context("--tx-key")?;
    let rx_key = MasterKey::from_sdes(args.suite, &args.rx_key).context("--rx-key")?;
    let networks = if args.allow_net.is_empty() {
        Networks::loopback()
    } else {
        Networks::new(args.allow_net.clone())
    };

    let resources = Resources::detect();
    let profile = args
        .profile
        .unwrap_or_else(|| Profile::select(resources.cpus.len(), resources.memory));
    let spec = profile.spec(resources.cpus.len());
    println!("{}", resources.startup_line(profile));
    if args.calls > spec.call_limit {
        bail!(
            "--calls {} exceeds the {profile} profile's limit of {} calls; use --profile max to go beyond the vendor figures",
            args.calls,
            spec.call_limit
        );
    }
    let config = DataPlaneConfig {
        profile,
        backend: args.backend,
        max_relays_per_worker: (args.calls as usize).max(16),
        dscp: args.dscp,
        xdp_interface: args.xdp_interface.clone(),
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::start(&config, &resources)?;
    println!("{}", plane.describe());

    let te = DirectionConfig {
        telephone_event_pt: Some(args.telephone_event_pt),
        ..DirectionConfig::default()
    };
    for i in 0..args.calls {
        let spec = RelaySpec {
            lan_remote: args.lan_remote.get(i as usize).copied(),
            cloud_remote: args.cloud_remote.get(i as usize).copied(),
            lan_to_cloud: te.clone(),
            cloud_to_lan: te.clone(),
            direction: args.direction,
            networks: networks.clone(),
            media_timeout: Duration::from_secs(args.media_timeout),
            ..RelaySpec::new(
                i as u64,
                args.bind,
                args.lan_port + 2 * i as u16,
                args.cloud_port + 2 * i as u16,
                args.suite,
                tx_key.clone(),
                rx_key.clone(),
            )
        };
        while plane.add_relay(spec.clone()).is_err() {
            // Only while the worker works through a burst of adds.
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;

    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut workers = BTreeMap::new();
    let mut up = 0u32;
    let mut failed = 0u32;
    let mut next_line = started + Duration::from_secs(1);
    let handle = |e: Event,
                  workers: &mut BTreeMap<usize, WorkerStats>,
                  up: &mut u32,
                  failed: &mut u32,
                  finals: &mut Vec<(u64, RelayStats)>| match e {
        Event::Added { .. } => *up += 1,
        Event::AddFailed { id, reason } => {
            *failed += 1;
            eprintln!("relay {id}: could not start: {reason:?}");
        }
        Event::Relay { id, event } => println!("relay {id}: {event:?}"),
        Event::Worker { worker, stats } => {
            workers.insert(worker, stats);
        }
        Event::Removed { id, stats } => finals.push((id, stats)),
        _ => {}
    };
    let mut finals = Vec::new();
    let mut announced = false;
    loop {
        plane.drain_events(|e| handle(e, &mut workers, &mut up, &mut failed, &mut finals));
        if !announced && up + failed == args.calls {
            announced = true;
            println!("relay: {up} relays up, {failed} failed");
            if failed > 0 {
                stop.store(true, Ordering::Relaxed);
            }
        }
        let now = Instant::now();
        if now >= next_line {
            next_line += Duration::from_secs(1);
            let t = totals(&workers);
            println!(
                "stats t={}s relays={} received={} sent={} kernel_drops={} enobufs={} multishot={} provided_buffers={} xdp_sent={} xdp_foreign_dropped={} xdp_foreign_passed={} drops: {}",
                now.duration_since(started).as_secs(),
                t.relays,
                t.received,
                t.sent,
                t.kernel_drops,
                t.enobufs,
                t.multishot_completions,
                t.provided_buffer_completions,
                t.xdp_sent,
                t.xdp_foreign_dropped,
                t.xdp_foreign_passed,
                drops_text(&t.drops)
            );
        }
        if stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| now >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    plane.shutdown()?;
    plane.drain_events(|e| handle(e, &mut workers, &mut up, &mut failed, &mut finals));
    let mut sum = RelayStats::default();
    let mut drops = DropCounters::default();
    for (_, s) in &finals {
        sum.lan_to_cloud.rtp_out += s.lan_to_cloud.rtp_out;
        sum.lan_to_cloud.rtcp_out += s.lan_to_cloud.rtcp_out;
        sum.cloud_to_lan.rtp_out += s.cloud_to_lan.rtp_out;
        sum.cloud_to_lan.rtcp_out += s.cloud_to_lan.rtcp_out;
        drops.add(&s.lan_to_cloud.drops);
        drops.add(&s.cloud_to_lan.drops);
        drops.add(&s.relay_drops);
    }
    let t = totals(&workers);
    println!(
        "final: relays={} to_cloud_rtp={} to_cloud_rtcp={} to_lan_rtp={} to_lan_rtcp={} kernel_drops={} enobufs={} multishot={} provided_buffers={} xdp_received={} xdp_sent={} xdp_kicks_failed={} xdp_foreign_dropped={} xdp_foreign_passed={} xdp_map_failures={} drops: {}",
        finals.len(),
        sum.lan_to_cloud.rtp_out,
        sum.lan_to_cloud.rtcp_out,
        sum.cloud_to_lan.rtp_out,
        sum.cloud_to_lan.rtcp_out,
        t.kernel_drops,
        t.enobufs,
        t.multishot_completions,
        t.provided_buffer_completions,
        t.xdp_received,
        t.xdp_sent,
        t.xdp_kicks_failed,
        t.xdp_foreign_dropped,
        t.xdp_foreign_passed,
        t.xdp_map_failures,
        drops_text(&drops)
    );
    if failed > 0 {
        bail!("{failed} relays could not start (see above)");
    }
    Ok(())
}

//! `core_replay`: generated calls replayed through the sans-IO media core,
//! in process, with simulated time — the repeatable workload for callgrind
//! (perf/README.md): no sockets, no threads, no clock-driven pacing.
//!
//! Each call has a simulated PBX speaking plain RTP and a simulated cloud
//! speaking SRTP with its own SDES key. The gateway's two directions (native
//! SRTP engine) sit in between; the cloud's sender and receiver are libsrtp2
//! sessions, an independent implementation, so every packet is checked after
//! crossing between the two engines. Media time is simulated (the core takes
//! time as an input), so seconds of calls run in milliseconds. Sockets and
//! worker threads arrive with the relay.

use anyhow::{Context, bail, ensure};
use clap::Parser;
use pbxlink_dataplane::srtp::{self, LibsrtpContext, Role, Suite};
use pbxlink_dataplane::{CloudToLan, DirectionConfig, DirectionCounters, LanToCloud, MasterKey};
use std::time::{Duration, Instant};

const PACKET_INTERVAL: Duration = Duration::from_millis(20);
const G711_PAYLOAD: usize = 160;
const TELEPHONE_EVENT_PT: u8 = 101;
/// Buffer per packet: MTU-sized packet plus the SRTP trailer room.
const BUF_LEN: usize = 1500 + srtp::TRAILER_ROOM;

/// Options.
#[derive(Debug, Parser)]
#[command(about = "Replay generated calls through the media core (simulated time)")]
struct DemoArgs {
    /// Simultaneous calls (25 = the Small profile's limit).
    #[arg(long, default_value_t = 25)]
    calls: u32,
    /// Seconds of media per call.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Suites to run; all three when omitted.
    #[arg(long, value_parser = parse_suite)]
    suite: Vec<Suite>,
}

fn parse_suite(s: &str) -> Result<Suite, String> {
    s.parse().map_err(|e: srtp::KeyError| e.to_string())
}

/// One call: the gateway's two directions and the simulated cloud's libsrtp
/// sessions facing them.
struct Call {
    gateway_up: LanToCloud,
    cloud_rx: LibsrtpContext,
    cloud_tx: LibsrtpContext,
    gateway_down: CloudToLan,
}

fn key(suite: Suite, call: u32, side: u8) -> anyhow::Result<MasterKey> {
    // Deterministic demo keys; real calls get fresh keys per SDP offer.
    let material: Vec<u8> = (0..suite.master_len())
        .map(|i| (i as u32 * 131 + call * 7 + side as u32 * 59) as u8)
        .collect();
    Ok(MasterKey::from_bytes(suite, &material)?)
}

fn g711_packet(buf: &mut [u8], pt: u8, seq: u16, ts: u32, ssrc: u32, fill: u8) -> usize {
    buf[0] = 0x80;
    buf[1] = pt;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    if pt == TELEPHONE_EVENT_PT {
        buf[12..16].copy_from_slice(&[5, 0x8a, 0, 160]);
        16
    } else {
        buf[12..12 + G711_PAYLOAD].fill(fill);
        12 + G711_PAYLOAD
    }
}

struct Totals {
    up: DirectionCounters,
    down: DirectionCounters,
    jumps: u64,
    mismatches: u64,
    elapsed: Duration,
    max_jitter: u32,
    lost: i64,
}

fn run_suite(suite: Suite, args: &DemoArgs) -> anyhow::Result<Totals> {
    let cfg = DirectionConfig {
        telephone_event_pt: Some(TELEPHONE_EVENT_PT),
        ..DirectionConfig::default()
    };
    let mut calls = Vec::with_capacity(args.calls as usize);
    for c in 0..args.calls {
        let gw_key = key(suite, c, 1)?;
        let cloud_key = key(suite, c, 2)?;
        calls.push(Call {
            gateway_up: LanToCloud::new(suite, &gw_key, cfg.clone())?,
            cloud_rx: LibsrtpContext::new(suite, &gw_key, Role::Unprotect)?,
            cloud_tx: LibsrtpContext::new(suite, &cloud_key, Role::Protect)?,
            gateway_down: CloudToLan::new(suite, &cloud_key, cfg.clone())?,
        });
    }
    let packets = args.seconds * 1000 / PACKET_INTERVAL.as_millis() as u32;
    let media_t0 = Instant::now();
    let mut mismatches = 0;
    let mut buf = vec![0u8; BUF_LEN];
    let mut sent = vec![0u8; BUF_LEN];
    let mut gateway_time = Duration::ZERO;
    for n in 0..packets {
        let now = media_t0 + PACKET_INTERVAL * n;
        for (c, call) in calls.iter_mut().enumerate() {
            let c = c as u32;
            // Call 0 is transferred half-way: same SSRC, sequence back 30,000.
            let transferred = c == 0 && n >= packets / 2;
            let seq = (c * 1000 + n + if transferred { 35_536 } else { 0 }) as u16;
            let ts = 160 * n;
            let pt = if n % 50 == 25 { TELEPHONE_EVENT_PT } else { 0 };

            // PBX → gateway → cloud.
            let len = g711_packet(&mut sent, pt, seq, ts, 0x1000 + c, n as u8);
            buf[..len].copy_from_slice(&sent[..len]);
            let t = Instant::now();
            let srtp_len = call.gateway_up.rtp(now, &mut buf, len);
            gateway_time += t.elapsed();
            let ok = srtp_len
                .and_then(|l| call.cloud_rx.unprotect_rtp(&mut buf, l))
                .is_ok_and(|l| {
                    l == len
                        && buf[12..l] == sent[12..l]
                        && (transferred || buf[..12] == sent[..12])
                });
            mismatches += !ok as u64;

            // Cloud → gateway → PBX.
            let len = g711_packet(&mut sent, pt, n as u16, ts, 0x2000 + c, !n as u8);
            buf[..len].copy_from_slice(&sent[..len]);
            let ok = match call.cloud_tx.protect_rtp(&mut buf, len) {
                Ok(l) => {
                    let t = Instant::now();
                    let r = call.gateway_down.rtp(now, &mut buf, l);
                    gateway_time += t.elapsed();
                    r.is_ok_and(|l| buf[..l] == sent[..len])
                }
                Err(_) => false,
            };
            mismatches += !ok as u64;
        }
    }
    let elapsed = gateway_time;
    let mut t = Totals {
        up: DirectionCounters::default(),
        down: DirectionCounters::default(),
        jumps: 0,
        mismatches,
        elapsed,
        max_jitter: 0,
        lost: 0,
    };
    for call in &calls {
        add(&mut t.up, call.gateway_up.counters());
        add(&mut t.down, call.gateway_down.counters());
        t.jumps += call.gateway_up.jumps();
        t.max_jitter = t.max_jitter.max(call.gateway_up.stats().jitter());
        t.lost += call.gateway_up.stats().lost() + call.gateway_down.stats().lost();
    }
    Ok(t)
}

fn add(total: &mut DirectionCounters, c: &DirectionCounters) {
    total.rtp_in += c.rtp_in;
    total.rtp_out += c.rtp_out;
    total.rtp_bytes_in += c.rtp_bytes_in;
    total.rtp_bytes_out += c.rtp_bytes_out;
    total.telephone_events += c.telephone_events;
    total.drops.add(&c.drops);
}

fn main() -> anyhow::Result<()> {
    let args = &DemoArgs::parse();
    ensure!(
        args.calls > 0 && args.seconds > 0,
        "--calls and --seconds must be at least 1"
    );
    let suites = if args.suite.is_empty() {
        Suite::ALL.to_vec()
    } else {
        args.suite.clone()
    };
    println!(
        "core replay: {} calls x {} s of G.711 + RFC 4733 DTMF, both directions; cloud side on {}",
        args.calls,
        args.seconds,
        srtp::library_version()
    );
    println!(
        "  PBX (RTP) -> gateway (native SRTP) -> cloud (libsrtp2, an independent engine) and back; call 0 is transferred mid-call"
    );
    let mut failed = false;
    for suite in suites {
        let t = run_suite(suite, args).with_context(|| format!("running {suite}"))?;
        let packets = t.up.rtp_out + t.down.rtp_out;
        let drops = t.up.drops.total() + t.down.drops.total();
        println!(
            "  {:<24} relayed {:>7} packets ({} to cloud, {} to PBX), {} DTMF, {} jump renumbered, \
             {} dropped, {} mismatched, loss {}, max jitter {} ts, gateway {:.0} ns/packet",
            suite.sdp_name(),
            packets,
            t.up.rtp_out,
            t.down.rtp_out,
            t.up.telephone_events + t.down.telephone_events,
            t.jumps,
            drops,
            t.mismatches,
            t.lost,
            t.max_jitter,
            t.elapsed.as_nanos() as f64 / packets.max(1) as f64,
        );
        for (reason, n) in t.up.drops.nonzero().chain(t.down.drops.nonzero()) {
            println!("    drop {reason}: {n}");
        }
        failed |= t.mismatches > 0 || drops > 0 || t.lost != 0;
    }
    if failed {
        bail!("media did not cross the core intact: see the counts above");
    }
    println!("all calls carried intact: 0 dropped, 0 mismatched");
    Ok(())
}

//! `pbxlink-demo media`: the media core alone on an embedded default (the
//! whole product's demo is `pbxlink demo`). The data plane starts as
//! in production (profile, pinned workers, io_uring where usable) with one
//! relay per call on loopback; a simulated PBX sends G.711 and RFC 4733 DTMF
//! as plain RTP to the LAN ports; a simulated cloud sends SRTP made by
//! libsrtp2 (an engine independent of the gateway's) to the cloud ports and
//! decrypts what arrives with libsrtp2. Every packet is checked at the far
//! end; call 0 is transferred half-way (its sequence jumps back 30,000) and
//! must still decrypt at the cloud.

use anyhow::{Context, bail, ensure};
use pbxlink_dataplane::control::Event;
use pbxlink_dataplane::engine::{DataPlane, DataPlaneConfig};
use pbxlink_dataplane::net::Networks;
use pbxlink_dataplane::profile::{Profile, Resources};
use pbxlink_dataplane::relay::{RelaySpec, RelayStats};
use pbxlink_dataplane::srtp::{self, LibsrtpContext, Role, Suite};
use pbxlink_dataplane::{DirectionConfig, DropCounters, MasterKey};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PACKET_INTERVAL: Duration = Duration::from_millis(20);
const TELEPHONE_EVENT_PT: u8 = 101;
/// Below the kernel's usual ephemeral range (32768–60999), so no outgoing
/// socket can hold a demo port.
const LAN_BASE: u16 = 28_000;
const CLOUD_BASE: u16 = 30_000;

/// Options of `pbxlink-demo media`.
#[derive(Debug, clap::Args)]
pub struct MediaDemoArgs {
    /// Simultaneous calls (25 = the Small profile's limit).
    #[arg(long, default_value_t = 25)]
    calls: u16,
    /// Seconds of media per suite.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Suites to run; all three when omitted.
    #[arg(long)]
    suite: Vec<Suite>,
}

fn key(suite: Suite, call: u16, side: u8) -> anyhow::Result<MasterKey> {
    // Deterministic demo keys; real calls get fresh keys per SDP offer.
    let material: Vec<u8> = (0..suite.master_len())
        .map(|i| (i as u32 * 131 + call as u32 * 7 + side as u32 * 59) as u8)
        .collect();
    Ok(MasterKey::from_bytes(suite, &material)?)
}

/// One G.711 (or DTMF) packet of `call` at step `n`; the payload encodes
/// call and step so the far end can check it without shared state.
fn packet(call: u16, n: u32, seq: u16, ssrc: u32) -> Vec<u8> {
    let dtmf = n % 50 == 25;
    let mut p = vec![0x80, if dtmf { TELEPHONE_EVENT_PT } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(160 * n).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    if dtmf {
        p.extend_from_slice(&[5, 0x8a, 0, 160]);
    } else {
        p.extend_from_slice(&call.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.resize(12 + 160, 0xd5);
    }
    p
}

/// Checks what a simulated end receives: the payload matches what was sent.
fn payload_ok(p: &[u8], call: u16) -> bool {
    p.len() == 16 || (p.len() == 172 && p[12..14] == call.to_be_bytes() && p[18..] == [0xd5; 154])
}

struct Side {
    socket: UdpSocket,
    verified: AtomicU64,
    bad: AtomicU64,
}

fn receive(
    side: Arc<Side>,
    stop: Arc<AtomicBool>,
    base: u16,
    calls: u16,
    mut check: impl FnMut(u16, &mut [u8], usize) -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            // Empty datagrams are the relays' NAT pinholes (RFC 6263).
            let Ok((n @ 1.., from)) = side.socket.recv_from(&mut buf) else {
                continue;
            };
            let call = from.port().wrapping_sub(base) / 2;
            let ok = call < calls && from.port() % 2 == base % 2 && check(call, &mut buf, n);
            let counter = if ok { &side.verified } else { &side.bad };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    })
}

struct Outcome {
    sent_each_way: u64,
    to_cloud_ok: u64,
    to_pbx_ok: u64,
    bad: u64,
    stats: RelayStats,
    drops: DropCounters,
}

fn run_suite(plane: &mut DataPlane, suite: Suite, args: &MediaDemoArgs) -> anyhow::Result<Outcome> {
    let pbx = Arc::new(Side {
        socket: UdpSocket::bind("127.0.0.1:0")?,
        verified: AtomicU64::new(0),
        bad: AtomicU64::new(0),
    });
    let cloud = Arc::new(Side {
        socket: UdpSocket::bind("127.0.0.1:0")?,
        verified: AtomicU64::new(0),
        bad: AtomicU64::new(0),
    });
    for s in [&pbx.socket, &cloud.socket] {
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
    }
    let networks = Networks::loopback();
    let dtmf = DirectionConfig {
        telephone_event_pt: Some(TELEPHONE_EVENT_PT),
        ..DirectionConfig::default()
    };
    for c in 0..args.calls {
        plane.add_relay(RelaySpec {
            lan_remote: Some(pbx.socket.local_addr()?),
            cloud_remote: Some(cloud.socket.local_addr()?),
            lan_to_cloud: dtmf.clone(),
            cloud_to_lan: dtmf.clone(),
            networks: networks.clone(),
            ..RelaySpec::new(
                c as u64,
                "127.0.0.1".parse()?,
                LAN_BASE + 2 * c,
                CLOUD_BASE + 2 * c,
                suite,
                key(suite, c, 1)?,
                key(suite, c, 2)?,
            )
        })?;
    }
    let mut up = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while up < args.calls {
        let mut failure = None;
        plane.drain_events(|e| match e {
            Event::Added { .. } => up += 1,
            Event::AddFailed { id, reason } => failure = Some(format!("relay {id}: {reason:?}")),
            _ => {}
        });
        if let Some(f) = failure {
            bail!(
                "a relay could not start ({f}); are ports {LAN_BASE}-{} free?",
                CLOUD_BASE + 2 * args.calls
            );
        }
        ensure!(Instant::now() < deadline, "relays did not come up");
        std::thread::sleep(Duration::from_millis(5));
    }

    // The cloud: libsrtp sessions, one per call and direction.
    let mut cloud_rx: Vec<LibsrtpContext> = Vec::new();
    let mut cloud_tx: Vec<LibsrtpContext> = Vec::new();
    for c in 0..args.calls {
        cloud_rx.push(LibsrtpContext::new(
            suite,
            &key(suite, c, 1)?,
            Role::Unprotect,
        )?);
        cloud_tx.push(LibsrtpContext::new(
            suite,
            &key(suite, c, 2)?,
            Role::Protect,
        )?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let calls = args.calls;
    let cloud_thread = receive(
        cloud.clone(),
        stop.clone(),
        CLOUD_BASE,
        calls,
        move |call, buf, n| {
            cloud_rx[call as usize]
                .unprotect_rtp(buf, n)
                .is_ok_and(|len| payload_ok(&buf[..len], call))
        },
    );
    let pbx_thread = receive(
        pbx.clone(),
        stop.clone(),
        LAN_BASE,
        calls,
        move |call, buf, n| payload_ok(&buf[..n], call),
    );

    let steps = args.seconds * 1000 / PACKET_INTERVAL.as_millis() as u32;
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    for n in 0..steps {
        for c in 0..calls {
            // Call 0 is transferred half-way: same SSRC, sequence back 30,000.
            let jump = if c == 0 && n >= steps / 2 { 35_536 } else { 0 };
            let p = packet(c, n, (40_000 + n + jump) as u16, 0x1000 + c as u32);
            pbx.socket
                .send_to(&p, SocketAddr::from(([127, 0, 0, 1], LAN_BASE + 2 * c)))?;
            let p = packet(c, n, n as u16, 0x2000 + c as u32);
            buf[..p.len()].copy_from_slice(&p);
            let len = cloud_tx[c as usize]
                .protect_rtp(&mut buf, p.len())
                .map_err(|r| anyhow::anyhow!("cloud protect: {r}"))?;
            cloud.socket.send_to(
                &buf[..len],
                SocketAddr::from(([127, 0, 0, 1], CLOUD_BASE + 2 * c)),
            )?;
        }
        if let Some(d) = (start + PACKET_INTERVAL * (n + 1)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(d);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let _ = (cloud_thread.join(), pbx_thread.join());

    let mut stats = RelayStats::default();
    let mut drops = DropCounters::default();
    for c in 0..calls {
        plane.command(
            c as u64,
            pbxlink_dataplane::control::Command::Remove { id: c as u64 },
        )?;
    }
    let mut removed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while removed < calls && Instant::now() < deadline {
        plane.drain_events(|e| {
            if let Event::Removed { stats: s, .. } = e {
                removed += 1;
                stats.lan_to_cloud.rtp_out += s.lan_to_cloud.rtp_out;
                stats.cloud_to_lan.rtp_out += s.cloud_to_lan.rtp_out;
                stats.lan_to_cloud.telephone_events += s.lan_to_cloud.telephone_events;
                stats.jumps += s.jumps;
                drops.add(&s.lan_to_cloud.drops);
                drops.add(&s.cloud_to_lan.drops);
                drops.add(&s.relay_drops);
            }
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Outcome {
        sent_each_way: steps as u64 * calls as u64,
        to_cloud_ok: cloud.verified.load(Ordering::Relaxed),
        to_pbx_ok: pbx.verified.load(Ordering::Relaxed),
        bad: cloud.bad.load(Ordering::Relaxed) + pbx.bad.load(Ordering::Relaxed),
        stats,
        drops,
    })
}

/// Runs the demo and prints what it saw.
pub fn run(args: &MediaDemoArgs) -> anyhow::Result<()> {
    ensure!(
        args.calls > 0 && args.seconds > 0,
        "--calls and --seconds must be at least 1"
    );
    ensure!(
        args.calls <= 1000,
        "--calls above 1000 does not fit the demo's port ranges"
    );
    let suites = if args.suite.is_empty() {
        Suite::ALL.to_vec()
    } else {
        args.suite.clone()
    };
    let resources = Resources::detect();
    let profile = Profile::select(resources.cpus.len(), resources.memory);
    let profile = if args.calls as u32 > profile.spec(resources.cpus.len()).call_limit {
        Profile::Max
    } else {
        profile
    };
    println!("{}", resources.startup_line(profile));
    let config = DataPlaneConfig {
        profile,
        max_relays_per_worker: args.calls as usize + 8,
        buffers_per_worker: 1024,
        ..DataPlaneConfig::default()
    };
    let mut plane = DataPlane::start(&config, &resources).context("starting the data plane")?;
    println!("{}", plane.describe());
    println!(
        "demo: {} calls x {} s per suite on loopback: PBX (plain RTP + RFC 4733 DTMF) <-> gateway relays <-> cloud ({}, independent of the gateway's SRTP); call 0 is transferred half-way",
        args.calls,
        args.seconds,
        srtp::library_version()
    );
    let mut failed = false;
    for suite in suites {
        let o = run_suite(&mut plane, suite, args).with_context(|| format!("running {suite}"))?;
        let drops: Vec<String> = o.drops.nonzero().map(|(r, n)| format!("{r}={n}")).collect();
        println!(
            "  {:<24} to cloud {}/{} verified, to PBX {}/{} verified, {} bad, {} DTMF, {} jump renumbered, drops: {}",
            suite.sdp_name(),
            o.to_cloud_ok,
            o.sent_each_way,
            o.to_pbx_ok,
            o.sent_each_way,
            o.bad,
            o.stats.lan_to_cloud.telephone_events,
            o.stats.jumps,
            if drops.is_empty() {
                "none".into()
            } else {
                drops.join(" ")
            }
        );
        failed |= o.to_cloud_ok != o.sent_each_way
            || o.to_pbx_ok != o.sent_each_way
            || o.bad > 0
            || !drops.is_empty();
    }
    plane.shutdown()?;
    if failed {
        bail!("media did not cross the gateway intact: see the counts above");
    }
    println!("all calls carried intact over real sockets, both ways");
    Ok(())
}

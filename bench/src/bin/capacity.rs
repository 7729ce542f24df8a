//! `capacity`: N simultaneous G.711 calls (20 ms, 172-byte RTP) both ways
//! through a relay target — pbxlink's data plane or rtpengine 10.5 in user
//! space — paced like real calls, every packet verified (count, sequence,
//! payload), with loss, latency through the relay (hdrhistogram) and the
//! target's CPU cost per relayed packet, measured from /proc: the process's
//! CPU time (all threads, exact, from schedstat; the projection uses it) and
//! the busy time of the target's core (softirq included, from cpuidle
//! residency: reported beside it). Both targets run one worker pinned to
//! the core the generator does not use. Bounded in calls and time; stops
//! by itself.
//!
//! ```text
//! capacity --target both --calls 1000 --seconds 10 --json out.json
//! capacity --target both --calls 1000 --seconds 10 --rounds 5
//! capacity --calls 500 --seconds 5 --rounds 6 --baseline /tmp/base/release/pbxlink
//! capacity --profile small
//! capacity --calls 500 --seconds 10 --flood garbage --max-loss 0.0001
//! ```
//!
//! With `--flood`, the generator's thread (CPU 0; the relay runs on CPU 1)
//! also sends hostile datagrams (see `pbxlink_bench::flood`) at
//! `--flood-rate` a second over the live relays' own ports through the
//! measured window, and prints the target's drops by reason and its CPU
//! use. The rate is what the kernel accepted. A run whose generator fell
//! behind its schedule, or whose flood sent less than asked, is not a
//! result: with `--tries N` it is run again (with `--calibrate`, at a
//! lower flood rate: 70 % of the last, at most 95 % of what the machine
//! really sent, and after a generator behind its schedule with 70 % of
//! the calls, down to a fifth of `--calls`), loss is judged only on a run
//! that is a result, and the command fails only if no try was one. A run
//! whose generator fell behind but whose relay held `--max-loss` anyway
//! is a result for that bound: late calls' packets come in bursts, which
//! is harsher on the relay, not gentler. Each
//! run prints the share of the generator's and the relay's cores the
//! hypervisor stole through its window (`stolen=`): on a shared VM that,
//! not the relay, is what puts a generator behind. With `--flood-on-relay-core` the
//! flood comes from a thread of its own on the relay's core instead: its
//! sending and the kernel's receive work then take that core's time from
//! the relay (harsher than a flood from the network).

use anyhow::{Context, bail, ensure};
use clap::Parser;
use hdrhistogram::Histogram;
use pbxlink_bench::flood::{Flood, FloodKind, RelayPorts};
use pbxlink_bench::host::CpuTimes;
use pbxlink_bench::wire::Wire;
use pbxlink_dataplane::MasterKey;
use pbxlink_dataplane::profile::Profile;
use pbxlink_dataplane::srtp::{Role, SrtpContext, Suite};
use pbxlink_dataplane::udp_batch::{RecvBatch, SendBatch};
use pbxlink_tests::rtpengine::Rtpengine;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SUITE: Suite = Suite::AesCm128HmacSha1_80;
const PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Scheduling slice: every millisecond the generator sends the packets of
/// the calls whose phase falls in it, then drains what came back.
const SLICE: Duration = Duration::from_millis(1);
/// The generator fell behind its schedule — the run is flagged and not
/// reported as a result — when, in the measured window, a slice started
/// more than a packet interval late (a call's packet went out after its
/// next one was due: the offered load was no longer G.711's), or the
/// slices were late by this much on average (the generator, not the
/// target, near its limit). An isolated stall it catches up from is
/// neither: this VM stops the generator for 3–6 ms now and then
/// (measured: one or two a second, caught up within ten slices), which
/// leaves the offered load and the target's cost per packet as they were.
const BEHIND_MAX: Duration = PACKET_INTERVAL;
const BEHIND_MEAN: Duration = Duration::from_micros(250);
const GENERATOR_CPU: usize = 0;
/// The generator's nice value while it runs the load (see `set_nice`).
const GENERATOR_NICE: i32 = -20;
/// Receive buffer of each generator socket.
const GENERATOR_RCVBUF: usize = 4 << 20;
const TARGET_CPU: usize = 1;
const PBX_LAN_BASE: u16 = 20_000;
const PBX_CLOUD_BASE: u16 = 24_000;
const RTPENGINE_PORTS: (u16, u16) = (10_000, 19_999);
const RTPENGINE_NG: u16 = 22_240;

#[derive(Debug, Parser)]
#[command(about = "Relay capacity: calls per core side by side with rtpengine")]
struct Args {
    /// pbxlink, rtpengine, or both (then the ratio is printed).
    #[arg(long, default_value = "pbxlink")]
    target: String,
    /// Run the targets this many times, alternating, and print the spread
    /// of the ratio (a VM's run-to-run noise can exceed a margin).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Simultaneous calls.
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Write results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Check a performance profile: its call limit, then how far past it goes.
    #[arg(long)]
    profile: Option<Profile>,
    /// Seconds of the profile's limit run.
    #[arg(long, default_value_t = 30)]
    profile_seconds: u64,
    /// Fail unless every target relays every packet intact (and pbxlink's
    /// xdp backend sends by its fast path): for smoke runs.
    #[arg(long)]
    require_zero_loss: bool,
    /// pbxlink's I/O backend: xdp (AF_XDP fast path on loopback; needs
    /// root), uring or epoll.
    #[arg(long, default_value = "xdp")]
    pbxlink_backend: String,
    /// Where generator and target meet: loopback, or veth (a pair into a
    /// namespace the harness creates and deletes; needs root): an Ethernet
    /// link with a native-XDP driver, as a gateway's media interface.
    #[arg(long, default_value = "loopback")]
    wire: String,
    /// The pbxlink binary (default: target/release/pbxlink of this workspace).
    #[arg(long)]
    pbxlink: Option<PathBuf>,
    /// Another pbxlink binary to compare with, as `--target both` compares
    /// with rtpengine: a base commit's build (`git worktree add`, then
    /// `cargo build --release --target-dir`). Each round runs both through
    /// the same load, alternating; the ratio is this build's calls per
    /// core over the baseline's (1.00: the same CPU per packet).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Flood the live relays' ports through the measured window: garbage
    /// (random bytes), rtp (well-formed RTP, unknown SSRCs) or calls
    /// (RTP/RTCP with the calls' own SSRCs, SRTP without or with a wrong
    /// tag), from sources no call latched.
    #[arg(long)]
    flood: Option<FloodKind>,
    /// With --flood: flood from a thread of its own pinned to the relay's
    /// core (CPU 1) instead of the generator's thread (CPU 0).
    #[arg(long)]
    flood_on_relay_core: bool,
    /// Flood datagrams a second (accepted by the kernel); a run that
    /// sends fewer is not a result.
    #[arg(long, default_value_t = 200_000)]
    flood_rate: u64,
    /// With --flood: run up to this many times until a run is a result
    /// (the generator on schedule, the flood at its rate).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    tries: u32,
    /// With --flood and --tries: each try after one that is not a result
    /// floods at a lower rate (70 % of the last, at most 95 % of what was
    /// really sent), to find what this machine can send beside its calls;
    /// after one whose generator fell behind, it also carries fewer calls
    /// (70 % of the last, down to a fifth of --calls).
    #[arg(long)]
    calibrate: bool,
    /// Fail if any target loses more than this share of the calls'
    /// packets (0.0001 is 0.01 %) or delivers one that is not a call's.
    #[arg(long)]
    max_loss: Option<f64>,
}

/// Where the generator sends and how to read what comes back, per call.
struct Wiring {
    /// Target port for the call's plain RTP (LAN side).
    lan_in: Vec<u16>,
    /// Target port for the call's SRTP (cloud side).
    cloud_in: Vec<u16>,
    /// Source port → call, for what arrives at the generator's LAN socket.
    lan_out: Vec<(u16, usize)>,
    /// Source port → call, for what arrives at the generator's cloud socket.
    cloud_out: Vec<(u16, usize)>,
    /// Key the target protects toward the cloud with, per call.
    to_cloud: Vec<MasterKey>,
    /// Key the generator's cloud protects with, per call.
    from_cloud: Vec<MasterKey>,
}

enum Running {
    /// The relay process, and its `final:` line once it has stopped.
    Pbxlink(Child, std::sync::mpsc::Receiver<String>),
    Rtpengine(Rtpengine),
}

impl Running {
    fn pid(&self) -> u32 {
        match self {
            Running::Pbxlink(c, _) => c.id(),
            Running::Rtpengine(r) => r.pid(),
        }
    }

    /// Stops the target; for pbxlink, returns its `final:` line (its
    /// tally: AF_XDP frames sent, drops by reason).
    fn stop(self) -> anyhow::Result<Option<String>> {
        match self {
            Running::Pbxlink(mut c, finals) => {
                Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status()?;
                let status = c.wait()?;
                ensure!(status.success(), "pbxlink exited with {status}");
                Ok(finals.recv_timeout(Duration::from_secs(5)).ok())
            }
            Running::Rtpengine(r) => {
                drop(r);
                Ok(None)
            }
        }
    }
}

fn key(seed: u8) -> MasterKey {
    let m: Vec<u8> = (0..SUITE.master_len() as u8)
        .map(|i| i.wrapping_mul(29) ^ seed)
        .collect();
    MasterKey::from_bytes(SUITE, &m).expect("fixed length")
}

fn pbxlink_binary(args: &Args) -> PathBuf {
    args.pbxlink.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/pbxlink")
    })
}

fn start_pbxlink(
    args: &Args,
    bin: PathBuf,
    wire: &Wire,
    calls: usize,
    lan: SocketAddr,
    cloud: SocketAddr,
) -> anyhow::Result<(Running, Wiring)> {
    ensure!(
        bin.exists(),
        "{} missing: cargo build --release -p pbxlink",
        bin.display()
    );
    let (tx, rx) = (key(1), key(2));
    let remotes = vec![cloud.to_string(); calls].join(",");
    // Pinned to one core, `max` gives exactly one worker there.
    let mut child = Command::new("taskset")
        .args(["-c", &TARGET_CPU.to_string()])
        .arg(&bin)
        .args([
            "relay",
            "--profile",
            "max",
            "--backend",
            &args.pbxlink_backend,
            "--suite",
            SUITE.sdp_name(),
            "--bind",
            &wire.target_ip().to_string(),
            "--allow-net",
            wire.networks(),
            "--xdp-interface",
            wire.target_interface(),
        ])
        .args([
            "--lan-port",
            &PBX_LAN_BASE.to_string(),
            "--cloud-port",
            &PBX_CLOUD_BASE.to_string(),
        ])
        .args([
            "--calls",
            &calls.to_string(),
            "--cloud-remote",
            &remotes,
            "--lan-remote",
        ])
        .arg(vec![lan.to_string(); calls].join(","))
        .args([
            "--tx-key",
            &tx.to_sdes_inline(),
            "--rx-key",
            &rx.to_sdes_inline(),
            "--seconds",
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting pbxlink relay")?;
    // Wait for all relays.
    let stdout = child.stdout.take().expect("piped");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (final_tx, final_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("relay:") || line.starts_with("data plane:") {
                let _ = ready_tx.send(line);
            } else if line.starts_with("final:") {
                // The target's own tally, for a run with loss to be read by.
                eprintln!("pbxlink {line}");
                let _ = final_tx.send(line);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = ready_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .context("pbxlink relay did not come up")?;
        if line.starts_with("data plane:") {
            let backend = match args.pbxlink_backend.as_str() {
                "uring" => "io_uring",
                other => other,
            };
            ensure!(
                line.contains(&format!("1 worker(s), backend {backend}")),
                "unexpected data plane: {line}"
            );
        }
        if line.starts_with("relay:") {
            ensure!(line.contains(", 0 failed"), "{line}");
            break;
        }
    }
    let wiring = Wiring {
        lan_in: (0..calls).map(|i| PBX_LAN_BASE + 2 * i as u16).collect(),
        cloud_in: (0..calls).map(|i| PBX_CLOUD_BASE + 2 * i as u16).collect(),
        lan_out: (0..calls)
            .map(|i| (PBX_LAN_BASE + 2 * i as u16, i))
            .collect(),
        cloud_out: (0..calls)
            .map(|i| (PBX_CLOUD_BASE + 2 * i as u16, i))
            .collect(),
        to_cloud: vec![tx; calls],
        from_cloud: vec![rx; calls],
    };
    Ok((Running::Pbxlink(child, final_rx), wiring))
}

fn start_rtpengine(
    wire: &Wire,
    calls: usize,
    lan: SocketAddr,
    cloud: SocketAddr,
) -> anyhow::Result<(Running, Wiring)> {
    let mut engine = Rtpengine::start_at(
        RTPENGINE_NG,
        RTPENGINE_PORTS,
        Some(TARGET_CPU),
        wire.target_ip(),
        wire.generator_ip(),
    );
    let mut w = Wiring {
        lan_in: Vec::new(),
        cloud_in: Vec::new(),
        lan_out: Vec::new(),
        cloud_out: Vec::new(),
        to_cloud: Vec::new(),
        from_cloud: Vec::new(),
    };
    let ours = key(2);
    for i in 0..calls {
        let (a, b) = engine.plain_to_srtp_call(
            &format!("capacity-{i}"),
            lan.port(),
            cloud.port(),
            |offered| {
                let (tag, name, _) = offered
                    .crypto
                    .iter()
                    .find(|(_, s, _)| s == SUITE.sdp_name())
                    .expect("rtpengine offers AES_CM_128_HMAC_SHA1_80");
                (*tag, name.clone(), ours.to_sdes_inline())
            },
        );
        let (_, _, theirs) = b
            .crypto
            .iter()
            .find(|(_, s, _)| s == SUITE.sdp_name())
            .expect("offered");
        w.lan_in.push(a.rtpengine_port);
        w.cloud_in.push(b.rtpengine_port);
        w.lan_out.push((a.rtpengine_port, i));
        w.cloud_out.push((b.rtpengine_port, i));
        w.to_cloud.push(MasterKey::from_sdes(SUITE, theirs)?);
        w.from_cloud.push(ours.clone());
    }
    Ok((Running::Rtpengine(engine), w))
}

/// CPU time of a process (all threads, user and system), nanoseconds, from
/// each thread's schedstat (exact, where /proc/PID/stat ticks at 10 ms).
/// Threads that ended are missed; the relay's threads live for the run.
fn process_cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

fn clock_ticks() -> u64 {
    100
}

/// Busy time of one core, ns (softirq included): wall time less the
/// core's idle residency from cpuidle (exact, where the kernel has a
/// cpuidle driver, as this VM's haltpoll), otherwise /proc/stat's busy
/// ticks — sampled at each timer tick, which a relay that works between
/// ticks escapes (measured here: 80–9,950 ns per packet for one 3.3 µs
/// relay across runs).
fn core_busy_ns(cpu: usize) -> anyhow::Result<i128> {
    match core_idle_ns(cpu) {
        Some(idle) => Ok(monotonic_ns() as i128 - idle as i128),
        None => Ok(core_busy_ticks_ns(cpu)? as i128),
    }
}

/// The core's total idle residency, ns, summed over its cpuidle states;
/// `None` without cpuidle.
fn core_idle_ns(cpu: usize) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}/cpuidle")).ok()?;
    let mut us = 0u64;
    for state in dir.flatten() {
        let time = std::fs::read_to_string(state.path().join("time")).ok()?;
        us += time.trim().parse::<u64>().ok()?;
    }
    (us > 0).then_some(us * 1_000)
}

/// Nanoseconds on a monotonic clock since some fixed point (only
/// differences matter: busy time is compared across the window).
fn monotonic_ns() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Busy ticks of one core from /proc/stat (user, nice, system, irq,
/// softirq), ns.
fn core_busy_ticks_ns(cpu: usize) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string("/proc/stat")?;
    let line = s
        .lines()
        .find(|l| l.starts_with(&format!("cpu{cpu} ")))
        .context("cpu line")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let busy = v[0] + v[1] + v[2] + v[5] + v[6];
    Ok(busy * 1_000_000_000 / clock_ticks())
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[derive(Debug, Default)]
struct Outcome {
    target: String,
    calls: usize,
    seconds: u64,
    sent: u64,
    relayed: u64,
    bad: u64,
    out_of_order: u64,
    window_relayed: u64,
    cpu_ns: u64,
    core_ns: u64,
    rss_mib: f64,
    /// The latest a slice of the measured window started.
    behind: Duration,
    /// Sum of the window's slices' lateness, and their number.
    late_total: Duration,
    window_slices: u32,
    latency: Option<Histogram<u64>>,
    /// pbxlink: datagrams its workers sent as AF_XDP frames.
    xdp_sent: Option<u64>,
    /// pbxlink: its drops by reason and the kernel's, from its tally.
    drops: Option<String>,
    /// The flood, when there was one.
    flood: Option<FloodOutcome>,
    /// Through the window, the share of the generator's and the target's
    /// cores the hypervisor took (percent, /proc/stat steal).
    steal: [f64; 2],
}

/// What the flood sent in the measured window.
#[derive(Debug)]
struct FloodOutcome {
    kind: FloodKind,
    /// The rate asked for.
    asked: u64,
    /// Accepted by the kernel in the window.
    sent: u64,
    /// Refused by the kernel in the window (not in `sent`).
    refused: u64,
    window: Duration,
    /// Datagrams the target's kernel found no socket for meanwhile.
    no_ports: u64,
    /// The CPU the flood was sent from.
    cpu: usize,
}

impl FloodOutcome {
    fn rate(&self) -> f64 {
        Flood::rate_over(self.sent, self.window)
    }
}

/// The kernel's count of UDP datagrams that found no socket (`Udp:
/// NoPorts` in /proc/net/snmp). A relay's LAN socket connected to its PBX
/// peer is no socket for any other source: the kernel refuses those
/// datagrams before the relay sees them and counts them here.
fn udp_no_ports() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "NoPorts")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A field of pbxlink's `final:` line.
fn final_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
}

impl Outcome {
    fn loss_ratio(&self) -> f64 {
        1.0 - self.relayed as f64 / self.sent.max(1) as f64
    }
    fn cpu_ns_per_packet(&self) -> f64 {
        self.cpu_ns as f64 / self.window_relayed.max(1) as f64
    }
    fn core_ns_per_packet(&self) -> f64 {
        self.core_ns as f64 / self.window_relayed.max(1) as f64
    }
    /// Projected from the process's exact CPU time. A G.711 call relays 100
    /// packets a second (50 each way).
    fn calls_per_core(&self) -> f64 {
        1e9 / (self.cpu_ns_per_packet() * 100.0)
    }
    /// The same from the core's busy time (see `core_busy_ns`).
    fn calls_per_core_by_core_busy(&self) -> f64 {
        1e9 / (self.core_ns_per_packet() * 100.0)
    }
    fn latency_us(&self, q: f64) -> f64 {
        self.latency
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
    }
    fn behind_mean(&self) -> Duration {
        self.late_total / self.window_slices.max(1)
    }
    fn flagged(&self) -> bool {
        self.behind > BEHIND_MAX || self.behind_mean() > BEHIND_MEAN
    }
    /// Why a flood run is not a result for a loss bound (none: it is).
    /// A generator behind its schedule sends its calls' packets late and
    /// then in bursts, which is harsher on the relay, never gentler: a run
    /// that held the bound all the same is a result for the bound (not
    /// for latency or calls per core, which its JSON marks invalid); one
    /// that missed it says nothing of the relay.
    fn not_a_result(&self, max_loss: Option<f64>) -> Option<String> {
        let held_anyway = max_loss.is_some_and(|m| self.loss_ratio() <= m && self.bad == 0);
        if self.flagged() && !held_anyway {
            return Some(format!(
                "the generator fell behind its schedule (late up to {:.1} ms, {} us on average)",
                self.behind.as_secs_f64() * 1000.0,
                self.behind_mean().as_micros()
            ));
        }
        let f = self.flood.as_ref()?;
        (f.rate() < f.asked as f64).then(|| {
            format!(
                "the flood sent {:.0}/s (accepted by the kernel), under the {} asked for",
                f.rate(),
                f.asked
            )
        })
    }
    /// The target's CPU use through the window, as a share of one core.
    fn cpu_share(&self) -> f64 {
        self.cpu_ns as f64 / (self.seconds as f64 * 1e9)
    }
    /// A valid result with every packet relayed intact and p99 under 1 ms.
    fn held(&self) -> bool {
        self.relayed == self.sent
            && self.bad == 0
            && self.latency_us(0.99) < 1000.0
            && !self.flagged()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "calls": self.calls,
            "seconds": self.seconds,
            "packets_sent": self.sent,
            "packets_relayed": self.relayed,
            "loss_ratio": self.loss_ratio(),
            "bad_packets": self.bad,
            "latency_us": {
                "p50": self.latency_us(0.5), "p99": self.latency_us(0.99),
                "p999": self.latency_us(0.999), "max": self.latency.as_ref().map_or(0.0, |h| h.max() as f64 / 1000.0),
            },
            "cpu_ns_per_packet": self.cpu_ns_per_packet(),
            "core_ns_per_packet": self.core_ns_per_packet(),
            "projected_calls_per_core": self.calls_per_core(),
            "projected_calls_per_core_by_core_busy": self.calls_per_core_by_core_busy(),
            "rss_mib": self.rss_mib,
            "generator_behind_ms": self.behind.as_secs_f64() * 1000.0,
            "generator_behind_mean_ms": self.behind_mean().as_secs_f64() * 1000.0,
            "xdp_sent": self.xdp_sent,
            "target_cpu_share": self.cpu_share(),
            "drops": self.drops,
            "flood": self.flood.as_ref().map(|f| serde_json::json!({
                "kind": f.kind.to_string(), "asked_per_s": f.asked, "sent": f.sent,
                "refused_by_kernel": f.refused, "rate_per_s": f.rate(),
                "cores": {"generator": GENERATOR_CPU, "flood": f.cpu, "relay": TARGET_CPU},
                "kernel_no_socket": f.no_ports,
            })),
            "valid": !self.flagged(),
            "steal_percent": {"generator_core": self.steal[0], "target_core": self.steal[1]},
        })
    }
    fn line(&self) -> String {
        format!(
            "{:<9} calls={} relayed={}/{} loss={:.5} bad={} p50={:.0}us p99={:.0}us p99.9={:.0}us max={:.0}us cpu={:.0}ns/pkt core={:.0}ns/pkt => {:.0} calls/core rss={:.1}MiB generator late max={:.1}ms mean={:.0}us stolen={:.1}%/{:.1}%{}",
            self.target,
            self.calls,
            self.relayed,
            self.sent,
            self.loss_ratio(),
            self.bad,
            self.latency_us(0.5),
            self.latency_us(0.99),
            self.latency_us(0.999),
            self.latency
                .as_ref()
                .map_or(0.0, |h| h.max() as f64 / 1000.0),
            self.cpu_ns_per_packet(),
            self.core_ns_per_packet(),
            self.calls_per_core(),
            self.rss_mib,
            self.behind.as_secs_f64() * 1000.0,
            self.behind_mean().as_micros(),
            self.steal[0],
            self.steal[1],
            if self.flagged() {
                " [GENERATOR BEHIND its schedule: not a result]".to_string()
            } else {
                String::new()
            }
        )
    }
}

/// Runs `flood` on a thread of its own pinned to `cpu` until told to
/// stop; the thread hands it back with its counts. Between bursts it
/// sleeps (the rate, not a spinning loop, decides what it costs the core).
fn flood_on(
    cpu: usize,
    mut flood: Flood,
) -> (
    Arc<AtomicBool>,
    std::thread::JoinHandle<anyhow::Result<Flood>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        pbxlink_dataplane::cpu::pin_to_cpu(cpu).context("pinning the flood")?;
        while !stopped.load(Ordering::Relaxed) {
            flood.catch_up(Instant::now());
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(flood)
    });
    (stop, thread)
}

/// Per-call receive state.
#[derive(Clone, Copy, Default)]
struct Track {
    next_seq: u16,
    started: bool,
}

fn run(
    args: &Args,
    wire: &Wire,
    target: &str,
    calls: usize,
    seconds: u64,
    flood_rate: u64,
) -> anyhow::Result<Outcome> {
    let lan = wire.generator_socket()?;
    let cloud = wire.generator_socket()?;
    for s in [&lan, &cloud] {
        s.set_nonblocking(true)?;
        // One socket per side takes every call's packets: room for a whole
        // batch of a relay's sends (the kernel caps this at rmem_max).
        socket2::SockRef::from(s).set_recv_buffer_size(GENERATOR_RCVBUF)?;
    }
    let (running, w) = match target {
        "pbxlink" => start_pbxlink(
            args,
            pbxlink_binary(args),
            wire,
            calls,
            lan.local_addr()?,
            cloud.local_addr()?,
        )?,
        "baseline" => start_pbxlink(
            args,
            args.baseline.clone().context("--baseline BIN")?,
            wire,
            calls,
            lan.local_addr()?,
            cloud.local_addr()?,
        )?,
        "rtpengine" => start_rtpengine(wire, calls, lan.local_addr()?, cloud.local_addr()?)?,
        _ => bail!("unknown target {target:?}: use pbxlink, rtpengine or both"),
    };
    let pid = running.pid();
    let target_ip = wire.target_ip();
    let mut flood = match args.flood {
        Some(kind) => {
            let relays: Vec<RelayPorts> = (0..calls)
                .map(|c| RelayPorts {
                    lan_rtp: SocketAddr::from((target_ip, w.lan_in[c])),
                    cloud_rtp: SocketAddr::from((target_ip, w.cloud_in[c])),
                    // The generator's calls' SSRCs (see the send loop).
                    ssrc: c as u32 + 1,
                })
                .collect();
            Some(Flood::new(
                kind,
                wire.generator_socket()?,
                &relays,
                flood_rate,
            ))
        }
        None => None,
    };
    let mut flood_from: Option<(Instant, u64, u64, u64)> = None;
    // With --flood-on-relay-core: the flood's own thread, and its stop.
    let mut flooder: Option<(
        Arc<AtomicBool>,
        std::thread::JoinHandle<anyhow::Result<Flood>>,
    )> = None;
    let port_map = |pairs: &[(u16, usize)]| {
        let mut map = vec![usize::MAX; 65536];
        for &(p, c) in pairs {
            map[p as usize] = c;
        }
        map
    };
    let mut cloud_tx: Vec<SrtpContext> = w
        .from_cloud
        .iter()
        .map(|k| SrtpContext::new(SUITE, k, Role::Protect))
        .collect::<Result<_, _>>()?;
    let mut o = Outcome {
        target: target.into(),
        calls,
        seconds,
        ..Outcome::default()
    };
    let t0 = Instant::now();
    let mut sink = Sink {
        lan: &lan,
        cloud: &cloud,
        batch: RecvBatch::new(64),
        lan_map: port_map(&w.lan_out),
        cloud_map: port_map(&w.cloud_out),
        cloud_rx: w
            .to_cloud
            .iter()
            .map(|k| SrtpContext::new(SUITE, k, Role::Unprotect))
            .collect::<Result<_, _>>()?,
        lan_track: vec![Track::default(); calls],
        cloud_track: vec![Track::default(); calls],
        latency: Histogram::<u64>::new_with_bounds(1_000, 10_000_000_000, 3)?,
        t0,
    };
    let warm = Duration::from_secs(args.warmup);
    let total = warm + Duration::from_secs(seconds);
    let slices_per_cycle = (PACKET_INTERVAL.as_micros() / SLICE.as_micros()) as usize;
    let mut window: Option<(u64, i128, u64)> = None;
    let mut window_cores: Option<[CpuTimes; 2]> = None;
    let mut slice = 0u64;
    let mut step = vec![0u32; calls];
    // The generator batches its system calls so that it, not the target,
    // has headroom: one sendmmsg per side per slice, recvmmsg to drain.
    let mut lan_batch = SendBatch::new(64);
    let mut cloud_batch = SendBatch::new(64);
    let niced = pbxlink_bench::set_nice(GENERATOR_NICE).is_ok();
    loop {
        let due = t0 + SLICE * slice as u32;
        let now = Instant::now();
        if now < due {
            // Drain while waiting for the next slice. Spinning, not
            // sleeping: a sleeping receiver makes every target pay for
            // waking it (measured: about 0.1 µs per packet more).
            sink.drain(&mut o);
            std::hint::spin_loop();
            continue;
        }
        if now >= t0 + total {
            break;
        }
        if window.is_some() {
            o.behind = o.behind.max(now - due);
            o.late_total += now - due;
            o.window_slices += 1;
        }
        if window.is_none() && now >= t0 + warm {
            sink.latency.reset();
            window = Some((process_cpu_ns(pid)?, core_busy_ns(TARGET_CPU)?, o.relayed));
            window_cores = Some([CpuTimes::core(GENERATOR_CPU), CpuTimes::core(TARGET_CPU)]);
            // The flood starts with the window: every call has latched.
            flood_from = flood
                .as_ref()
                .map(|f| (now, f.sent, f.refused, udp_no_ports()));
            if args.flood_on_relay_core {
                if let Some(f) = flood.take() {
                    flooder = Some(flood_on(TARGET_CPU, f));
                }
            }
        }
        // The calls whose 20 ms phase falls in this slice.
        let phase = slice as usize % slices_per_cycle;
        let (from, to) = (
            phase * calls / slices_per_cycle,
            (phase + 1) * calls / slices_per_cycle,
        );
        let stamp = t0.elapsed().as_nanos() as u64;
        for c in from..to {
            let n = step[c];
            step[c] += 1;
            let mut p = [0u8; 172 + 64];
            p[0] = 0x80;
            p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            p[4..8].copy_from_slice(&(160 * n).to_be_bytes());
            p[8..12].copy_from_slice(&(c as u32 + 1).to_be_bytes());
            p[12..20].copy_from_slice(&stamp.to_be_bytes());
            p[20..24].copy_from_slice(&(c as u32).to_be_bytes());
            p[24..172].fill(0xd5);
            if lan_batch.is_full() {
                lan_batch.send(&lan);
            }
            lan_batch.push(&p[..172], SocketAddr::from((target_ip, w.lan_in[c])));
            let len = cloud_tx[c]
                .protect_rtp(&mut p, 172)
                .map_err(|r| anyhow::anyhow!("protect: {r}"))?;
            if cloud_batch.is_full() {
                cloud_batch.send(&cloud);
            }
            cloud_batch.push(&p[..len], SocketAddr::from((target_ip, w.cloud_in[c])));
            o.sent += 2;
        }
        lan_batch.send(&lan);
        cloud_batch.send(&cloud);
        if let (Some(f), Some(_)) = (flood.as_mut(), flood_from) {
            f.catch_up(Instant::now());
        }
        slice += 1;
    }
    if let Some((stop, thread)) = flooder.take() {
        stop.store(true, Ordering::Relaxed);
        let f = thread
            .join()
            .map_err(|_| anyhow::anyhow!("the flood's thread panicked"))??;
        flood = Some(f);
    }
    if let (Some(f), Some((from, sent0, refused0, no_ports0))) = (&flood, flood_from) {
        o.flood = Some(FloodOutcome {
            cpu: if args.flood_on_relay_core {
                TARGET_CPU
            } else {
                GENERATOR_CPU
            },
            kind: f.kind(),
            asked: flood_rate,
            sent: f.sent - sent0,
            refused: f.refused - refused0,
            window: from.elapsed(),
            no_ports: udp_no_ports().saturating_sub(no_ports0),
        });
    }
    if niced {
        pbxlink_bench::set_nice(0)?;
    }
    // Window end: CPU first, then let the last packets arrive.
    let (cpu0, core0, relayed0) = window.context("the run never left its warm-up")?;
    let (cpu1, core1, relayed1) = (process_cpu_ns(pid)?, core_busy_ns(TARGET_CPU)?, o.relayed);
    o.cpu_ns = cpu1 - cpu0;
    o.core_ns = (core1 - core0).max(0) as u64;
    o.window_relayed = relayed1 - relayed0;
    if let Some([g, t]) = window_cores {
        o.steal = [
            g.steal_percent(&CpuTimes::core(GENERATOR_CPU)),
            t.steal_percent(&CpuTimes::core(TARGET_CPU)),
        ];
    }
    o.rss_mib = rss_mib(pid);
    let tail = Instant::now() + Duration::from_millis(300);
    while Instant::now() < tail {
        sink.drain(&mut o);
    }
    o.latency = Some(sink.latency);
    let tally = running.stop()?;
    o.xdp_sent = tally
        .as_deref()
        .and_then(|l| final_field(l, "xdp_sent")?.parse().ok());
    o.drops = tally.map(|l| {
        let kernel = final_field(&l, "kernel_drops").unwrap_or("?");
        let reasons = l.split_once("drops: ").map_or("", |(_, d)| d);
        format!("kernel {kernel}; {reasons}")
    });
    Ok(o)
}

/// The generator's receiving side: what came back through the target,
/// checked packet by packet.
struct Sink<'a> {
    lan: &'a UdpSocket,
    cloud: &'a UdpSocket,
    batch: RecvBatch,
    /// Source port → call, for each side.
    lan_map: Vec<usize>,
    cloud_map: Vec<usize>,
    /// Unprotects what the target sent toward the cloud, per call.
    cloud_rx: Vec<SrtpContext>,
    lan_track: Vec<Track>,
    cloud_track: Vec<Track>,
    latency: Histogram<u64>,
    t0: Instant,
}

impl Sink<'_> {
    /// Reads and checks what is waiting on both sockets.
    fn drain(&mut self, o: &mut Outcome) {
        let Sink {
            lan,
            cloud,
            batch: receiver,
            lan_map,
            cloud_map,
            cloud_rx,
            lan_track,
            cloud_track,
            latency,
            t0,
        } = self;
        let t0 = *t0;
        for (socket, map, track, srtp) in [
            (*lan, &lan_map[..], &mut lan_track[..], false),
            (*cloud, &cloud_map[..], &mut cloud_track[..], true),
        ] {
            for _ in 0..4 {
                let got = receiver.recv(socket, |from, buf| {
                    let call = map[from.port() as usize];
                    if call == usize::MAX {
                        o.bad += 1;
                        return;
                    }
                    let n = buf.len();
                    if n == 0 {
                        return; // a NAT pinhole from a relay starting (RFC 6263)
                    }
                    let len = if srtp {
                        match cloud_rx[call].unprotect_rtp(buf, n) {
                            Ok(l) => l,
                            Err(_) => {
                                o.bad += 1;
                                return;
                            }
                        }
                    } else {
                        n
                    };
                    let ok = len == 172
                        && buf[20..24] == (call as u32).to_be_bytes()
                        && buf[24..172].iter().all(|&b| b == 0xd5);
                    if !ok {
                        o.bad += 1;
                        return;
                    }
                    let seq = u16::from_be_bytes([buf[2], buf[3]]);
                    let t = &mut track[call];
                    if t.started && seq != t.next_seq {
                        o.out_of_order += 1;
                    }
                    t.started = true;
                    t.next_seq = seq.wrapping_add(1);
                    let stamp = u64::from_be_bytes(buf[12..20].try_into().unwrap_or_default());
                    let now = t0.elapsed().as_nanos() as u64;
                    let _ = latency.record(now.saturating_sub(stamp).max(1_000));
                    o.relayed += 1;
                });
                if !matches!(got, Ok(64)) {
                    break;
                }
            }
        }
    }
}

/// The exit status when no flood run was a result (the generator could
/// not keep its schedule on this host): the machine's state, not the
/// target's; any other failure exits 1.
const NO_RESULT_EXIT: i32 = 3;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cpus = pbxlink_dataplane::cpu::allowed_cpus();
    ensure!(
        cpus.contains(&GENERATOR_CPU) && cpus.contains(&TARGET_CPU),
        "capacity needs CPUs {GENERATOR_CPU} (generator) and {TARGET_CPU} (target); this process may use {cpus:?}"
    );
    pbxlink_dataplane::cpu::pin_to_cpu(GENERATOR_CPU).context("pinning the generator")?;
    let wire = Wire::open(&args.wire)?;
    if args.pbxlink_backend == "xdp" && args.target != "rtpengine" && matches!(wire, Wire::Loopback)
    {
        pbxlink_tests::loopback_accepts_xdp_frames()
            .context("the xdp backend on loopback (run as root, or --pbxlink-backend uring)")?;
    }
    if let Some(profile) = args.profile {
        return profile_check(&args, &wire, profile, cpus.len());
    }
    let targets: Vec<&str> = match (args.target.as_str(), &args.baseline) {
        ("pbxlink", Some(_)) => vec!["pbxlink", "baseline"],
        (_, Some(_)) => bail!("--baseline compares pbxlink builds: --target pbxlink"),
        ("both", None) => vec!["pbxlink", "rtpengine"],
        (t, None) => vec![t],
    };
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        if args.rounds > 1 {
            println!("round {round} of {}", args.rounds);
        }
        rounds.push(one_round(&args, &wire, &targets)?);
    }
    let json = match &rounds[..] {
        [one] => one.json.clone(),
        _ => spread(&rounds),
    };
    let outcomes: Vec<&Outcome> = rounds.iter().flat_map(|r| &r.outcomes).collect();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
    }
    if args.require_zero_loss {
        for o in &outcomes {
            ensure!(
                o.relayed == o.sent && o.bad == 0,
                "{}: {} of {} packets relayed intact",
                o.target,
                o.relayed,
                o.sent
            );
            if o.target != "rtpengine" && args.pbxlink_backend == "xdp" {
                ensure!(
                    o.xdp_sent.unwrap_or(0) > 0,
                    "pbxlink sent nothing as AF_XDP frames"
                );
            }
        }
    }
    // A flood run that is not a result (after its tries) says nothing of
    // the target: that is the failure, not its loss. It exits with its own
    // status, so a caller may measure again when the host is calmer.
    for o in &outcomes {
        if let Some(why) = o.not_a_result(args.max_loss).filter(|_| o.flood.is_some()) {
            eprintln!(
                "Error: {}: no run of {} was a result on this machine; the last: {why} (exit status {NO_RESULT_EXIT})",
                o.target, args.tries
            );
            std::process::exit(NO_RESULT_EXIT);
        }
    }
    if let Some(max) = args.max_loss {
        for o in &outcomes {
            ensure!(
                o.loss_ratio() <= max && o.bad == 0,
                "{}: loss {:.5} % (at most {:.5} % allowed), {} datagrams that were not a call's",
                o.target,
                o.loss_ratio() * 100.0,
                max * 100.0,
                o.bad
            );
        }
    }
    if outcomes.iter().any(|o| o.flagged()) {
        // Flagged, not failed: the target did nothing wrong, and the JSON
        // marks the result invalid for anyone comparing figures.
        println!("note: the generator fell behind its schedule; flagged results are not valid");
    }
    Ok(())
}

/// One target's run; with a flood, tried again (`--tries`, at a lower
/// rate with `--calibrate`) while a run is not a result. Each try's line
/// is printed.
fn run_to_a_result(args: &Args, wire: &Wire, target: &str) -> anyhow::Result<Outcome> {
    let mut rate = args.flood_rate;
    let mut calls = args.calls;
    let mut attempt = 1;
    loop {
        let o = run(args, wire, target, calls, args.seconds, rate)?;
        println!("{}", o.line());
        if let Some(f) = &o.flood {
            println!(
                "  flood {}: {} datagrams accepted by the kernel at {:.0}/s (asked {}/s; {} refused) over the calls' ports, from CPU {} (the generator on CPU {GENERATOR_CPU}, the relay on CPU {TARGET_CPU}); target CPU {:.0} % of its core; refused by the target's kernel (no socket for that source) {}; drops: {}",
                f.kind,
                f.sent,
                f.rate(),
                f.asked,
                f.refused,
                f.cpu,
                o.cpu_share() * 100.0,
                f.no_ports,
                o.drops.as_deref().unwrap_or("not reported by this target"),
            );
        }
        let why = match (&o.flood, o.not_a_result(args.max_loss)) {
            (Some(_), Some(why)) => why,
            (Some(_), None) if o.flagged() => {
                println!(
                    "  a result for the loss bound though the generator fell behind: its calls' packets came late and in bursts, and the relay still lost none past the bound (not a result for latency or calls per core)"
                );
                return Ok(o);
            }
            _ => return Ok(o),
        };
        if attempt >= args.tries {
            return Ok(o);
        }
        let achieved = o.flood.as_ref().map_or(0.0, FloodOutcome::rate);
        if args.calibrate {
            let lower = (rate as f64 * 0.7).min(achieved * 0.95);
            rate = ((lower / 1000.0).floor() * 1000.0).max(1000.0) as u64;
            // A generator behind its schedule is the calls' load as much
            // as the flood's: the generator sends and checks both.
            if o.flagged() {
                calls = (calls * 7 / 10).max(args.calls.div_ceil(5)).max(1);
            }
        }
        println!(
            "  try {attempt} of {} is not a result ({why}; the hypervisor took {:.0} % of the generator's core and {:.0} % of the relay's); trying again with {calls} calls at {rate}/s",
            args.tries, o.steal[0], o.steal[1]
        );
        attempt += 1;
    }
}

/// One round: each target's outcome, and their JSON (with both, the ratio).
struct Round {
    outcomes: Vec<Outcome>,
    json: serde_json::Value,
}

impl Round {
    /// pbxlink's calls per core over rtpengine's, with both targets.
    fn ratio(&self) -> Option<f64> {
        match &self.outcomes[..] {
            [p, r] => Some(p.calls_per_core() / r.calls_per_core()),
            _ => None,
        }
    }
}

/// Each target once through the same load; with both, their ratio.
fn one_round(args: &Args, wire: &Wire, targets: &[&str]) -> anyhow::Result<Round> {
    let mut results = serde_json::Map::new();
    let mut outcomes = Vec::new();
    for &t in targets {
        let o = run_to_a_result(args, wire, t)?;
        let mut json = o.json();
        if t != "rtpengine" {
            json["backend"] = serde_json::json!(args.pbxlink_backend);
        }
        results.insert(t.into(), json);
        outcomes.push(o);
    }
    let mut round = Round {
        outcomes,
        json: serde_json::Value::Null,
    };
    if let (Some(ratio), [p, r]) = (round.ratio(), &round.outcomes[..]) {
        println!(
            "ratio: pbxlink relays {ratio:.3}x the calls per core of {} ({:.0} vs {:.0}; CPU per packet {:.0} vs {:.0} ns)",
            r.target,
            p.calls_per_core(),
            r.calls_per_core(),
            p.cpu_ns_per_packet(),
            r.cpu_ns_per_packet()
        );
        results.insert("ratio_calls_per_core".into(), serde_json::json!(ratio));
    }
    round.json = serde_json::Value::Object(results);
    Ok(round)
}

/// Several rounds: each as one run's JSON, and the spread of the ratio
/// over the rounds both targets' results are valid in (printed too), with
/// how many of those pbxlink held (no loss, p99 under 1 ms).
fn spread(rounds: &[Round]) -> serde_json::Value {
    let valid: Vec<&Round> = rounds
        .iter()
        .filter(|r| r.outcomes.len() == 2 && !r.outcomes.iter().any(Outcome::flagged))
        .collect();
    let clean = valid.iter().filter(|r| r.outcomes[0].held()).count();
    let mut ratios: Vec<f64> = valid.iter().filter_map(|r| r.ratio()).collect();
    ratios.sort_by(f64::total_cmp);
    let summary = match ratios.len() {
        0 => serde_json::Value::Null,
        n => {
            let median = if n % 2 == 1 {
                ratios[n / 2]
            } else {
                (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
            };
            println!(
                "ratio over {n} valid round(s) of {}: median {median:.2}x, min {:.2}x, max {:.2}x; pbxlink without loss and p99 under 1 ms in {clean}",
                rounds.len(),
                ratios[0],
                ratios[n - 1]
            );
            serde_json::json!({
                "valid_rounds": n, "median": median, "min": ratios[0], "max": ratios[n - 1],
                "pbxlink_lossless_p99_under_1ms": clean,
            })
        }
    };
    let rounds: Vec<&serde_json::Value> = rounds.iter().map(|r| &r.json).collect();
    serde_json::json!({ "rounds": rounds, "ratio_calls_per_core_spread": summary })
}

fn profile_check(args: &Args, wire: &Wire, profile: Profile, cores: usize) -> anyhow::Result<()> {
    let spec = profile.spec(1);
    let name = format!("{profile:?}");
    if spec.workers > cores.saturating_sub(1) {
        println!(
            "{name}: not representable on this machine ({} cores needed for its workers plus one for the generator, {cores} here)",
            spec.workers + 1
        );
        return Ok(());
    }
    let limit = run(
        args,
        wire,
        "pbxlink",
        spec.call_limit as usize,
        args.profile_seconds,
        args.flood_rate,
    )?;
    let pass = limit.held();
    println!("{}", limit.line());
    // Past the limit: grow until loss appears or the generator falls behind.
    let mut best = spec.call_limit as usize;
    let mut calls = best * 4;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stopped_by = "time bound";
    while Instant::now() < deadline {
        let o = run(args, wire, "pbxlink", calls, 5, args.flood_rate)?;
        println!("  search: {}", o.line());
        if o.flagged() {
            stopped_by = "the generator's own limit";
            break;
        }
        if o.relayed != o.sent || o.bad > 0 {
            stopped_by = "loss";
            break;
        }
        best = calls;
        calls *= 2;
    }
    println!(
        "{name}: limit {} {} (loss {}, p99 {:.0} us); port pool holds {}; 1 worker sustains {best} with zero loss (search stopped by {stopped_by})",
        spec.call_limit,
        if pass { "held" } else { "FAILED" },
        limit.sent - limit.relayed.min(limit.sent),
        limit.latency_us(0.99),
        pbxlink_dataplane::ports::PortPool::new(&spec.port_ranges).calls(),
    );
    ensure!(pass, "{name}: the profile's limit was not held");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Histogram, Outcome, Round, spread};
    use std::time::Duration;

    /// A round whose ratio is `ratio` (rtpengine at 10 µs a packet).
    fn round(ratio: f64, valid: bool, loss: f64, p99: f64) -> Round {
        let target = |ns: f64, lost: u64, p99_us: f64| {
            let mut latency = Histogram::<u64>::new_with_bounds(1_000, 10_000_000_000, 3).unwrap();
            latency.record((p99_us * 1000.0) as u64).unwrap();
            Outcome {
                sent: 100_000,
                relayed: 100_000 - lost,
                window_relayed: 1_000,
                cpu_ns: (ns * 1_000.0) as u64,
                latency: Some(latency),
                ..Outcome::default()
            }
        };
        let pbxlink = target(10_000.0 / ratio, (loss * 100_000.0) as u64, p99);
        let mut rtpengine = target(10_000.0, 0, 1.0);
        if !valid {
            rtpengine.behind = Duration::from_secs(1);
        }
        Round {
            outcomes: vec![pbxlink, rtpengine],
            json: serde_json::Value::Null,
        }
    }

    #[test]
    fn spread_takes_the_valid_rounds_only() {
        let s = spread(&[
            round(3.2, true, 0.0, 600.0),
            round(9.9, false, 0.0, 600.0), // generator behind: not a result
            round(2.8, true, 0.0, 1500.0),
            round(3.0, true, 0.001, 600.0),
        ]);
        let r = &s["ratio_calls_per_core_spread"];
        let near = |v: &serde_json::Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-6;
        assert_eq!(r["valid_rounds"], 3);
        assert!(near(&r["median"], 3.0));
        assert!(near(&r["min"], 2.8));
        assert!(near(&r["max"], 3.2));
        assert_eq!(r["pbxlink_lossless_p99_under_1ms"], 1);
        assert_eq!(s["rounds"].as_array().map(Vec::len), Some(4));
        let even = spread(&[round(3.0, true, 0.0, 1.0), round(3.2, true, 0.0, 1.0)]);
        assert!(near(&even["ratio_calls_per_core_spread"]["median"], 3.1));
        let none = spread(&[round(3.0, false, 0.0, 1.0)]);
        assert!(none["ratio_calls_per_core_spread"].is_null());
    }
}

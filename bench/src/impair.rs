//! Impairing one leg of a site (see [`crate::sites`]): what the site's
//! cloud sends its gateway over UDP — its SRTP; the TLS signalling passes
//! untouched — loses a share of its packets and is delayed by a normal
//! distribution (mean and σ), each packet on its own, so packets reorder
//! as they do behind a jittery network.
//!
//! With `tc netem` when the kernel has it (`sch_netem`): on the hub's end
//! of the site's link, a `prio` qdisc whose fourth band holds the netem
//! and takes the cloud's UDP by a `u32` filter on its source address;
//! netem's own counter says what it dropped.
//!
//! A kernel built without `sch_netem` (this project's CI machine's:
//! `CONFIG_NET_SCH_NETEM is not set`, and no `prio` either) gets the same
//! from netfilter in the hub namespace: the loss by iptables' `statistic`
//! match (`--mode random --probability`) with its rule's packet counter
//! saying what it dropped, and the delay by an `NFQUEUE` rule whose queue
//! this module holds: each packet is held for its draw from the normal
//! distribution (below zero: none) and then accepted, by netlink
//! (the `nfq` crate), in the order their times come.

use crate::sites::{HUB, cloud_ip, hub_link};
use anyhow::{Context, ensure};
use std::collections::BinaryHeap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The queue number the delay takes packets from.
const QUEUE: u16 = 7;

/// What impairs the leg.
#[derive(Debug)]
pub struct Impairment {
    site: usize,
    how: How,
    /// How it is done, for the operator.
    pub describe: String,
}

#[derive(Debug)]
enum How {
    Netem,
    Netfilter {
        stop: Arc<AtomicBool>,
        delayed: Arc<AtomicU64>,
        thread: Option<JoinHandle<()>>,
    },
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tc(args: &[&str]) -> anyhow::Result<String> {
    run("tc", &[&["-n", HUB][..], args].concat())
}

fn iptables(args: &[&str]) -> anyhow::Result<String> {
    run(
        "ip",
        &[&["netns", "exec", HUB, "iptables", "-w"][..], args].concat(),
    )
}

impl Impairment {
    /// Impairs site `site`'s cloud → gateway UDP: `loss` percent lost, a
    /// delay of `delay_ms` ± `jitter_ms` (σ). The calling thread must be in
    /// the hub namespace ([`crate::sites::Sites::enter_hub`]).
    pub fn on_cloud_leg(
        site: usize,
        loss: f64,
        delay_ms: u32,
        jitter_ms: u32,
    ) -> anyhow::Result<Impairment> {
        let dev = hub_link(site);
        let src = format!("{}/32", cloud_ip(site));
        let priomap = ["0"; 16];
        let prio = [
            &[
                "qdisc", "add", "dev", &dev, "root", "handle", "1:", "prio", "bands", "4",
            ][..],
            &["priomap"][..],
            &priomap[..],
        ]
        .concat();
        let netem_args = [
            "loss".to_owned(),
            format!("{loss}%"),
            "delay".into(),
            format!("{delay_ms}ms"),
            format!("{jitter_ms}ms"),
            "distribution".into(),
            "normal".into(),
            "limit".into(),
            "10000".into(),
        ];
        let netem: Vec<&str> = netem_args.iter().map(String::as_str).collect();
        if tc(&prio).is_ok() {
            tc(&[
                &[
                    "qdisc", "add", "dev", &dev, "parent", "1:4", "handle", "40:", "netem",
                ][..],
                &netem[..],
            ]
            .concat())?;
            tc(&[
                "filter", "add", "dev", &dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "src", &src, "match", "ip", "protocol", "17", "0xff", "flowid",
                "1:4",
            ])?;
            return Ok(Impairment {
                site,
                how: How::Netem,
                describe: format!("tc netem {} on {dev}", netem.join(" ")),
            });
        }
        // No prio or netem in this kernel: netfilter, and the delay here.
        let probability = format!("{}", loss / 100.0);
        let cloud_udp = |then: &[&str]| {
            iptables(&[&["-A", "OUTPUT", "-s", &src, "-p", "udp"][..], then].concat())
        };
        cloud_udp(&[
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &probability,
            "-j",
            "DROP",
        ])?;
        let mut queue = nfq::Queue::open().context("opening an NFQUEUE netlink socket")?;
        queue.bind(QUEUE).context("binding NFQUEUE 7")?;
        queue.set_copy_range(QUEUE, 0)?;
        queue.set_queue_max_len(QUEUE, 10_000)?;
        queue.set_nonblocking(true);
        cloud_udp(&["-j", "NFQUEUE", "--queue-num", &QUEUE.to_string()])?;
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), delayed.clone());
        let (mean, sigma) = (f64::from(delay_ms), f64::from(jitter_ms));
        let thread = std::thread::Builder::new()
            .name("impair-delay".into())
            .spawn(move || hold(queue, mean, sigma, &s, &d))?;
        Ok(Impairment {
            site,
            how: How::Netfilter {
                stop,
                delayed,
                thread: Some(thread),
            },
            describe: format!(
                "this kernel has no netem: iptables -m statistic --mode random --probability {probability} -j DROP, then NFQUEUE {QUEUE} held {delay_ms} ms ± {jitter_ms} ms (normal) on the cloud's UDP from {src}"
            ),
        })
    }

    /// The packets the impairment dropped.
    pub fn dropped(&self) -> anyhow::Result<u64> {
        match &self.how {
            How::Netem => {
                let text = tc(&["-s", "qdisc", "show", "dev", &hub_link(self.site)])?;
                text.split("qdisc ")
                    .find(|q| q.starts_with("netem"))
                    .and_then(|q| q.split("dropped ").nth(1))
                    .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse().ok())
                    .context("netem's dropped count")
            }
            How::Netfilter { .. } => {
                let text = iptables(&["-L", "OUTPUT", "-v", "-x", "-n"])?;
                text.lines()
                    .find(|l| l.contains("DROP") && l.contains("statistic"))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                    .context("the DROP rule's packet count")
            }
        }
    }

    /// Packets delayed (netfilter's way only; netem does not say).
    pub fn delayed(&self) -> Option<u64> {
        match &self.how {
            How::Netem => None,
            How::Netfilter { delayed, .. } => Some(delayed.load(Ordering::Relaxed)),
        }
    }
}

impl Drop for Impairment {
    fn drop(&mut self) {
        match &mut self.how {
            How::Netem => {
                let _ = tc(&["qdisc", "del", "dev", &hub_link(self.site), "root"]);
            }
            How::Netfilter { stop, thread, .. } => {
                // The rules first: nothing new is queued, what is held goes.
                let _ = iptables(&["-F", "OUTPUT"]);
                stop.store(true, Ordering::Relaxed);
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

/// A packet held until `at` (the heap's top is the earliest).
struct Held {
    at: Instant,
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.at.cmp(&self.at)
    }
}

/// Holds each queued packet for its draw, then accepts it; until `stop`,
/// then every packet still held goes at once.
fn hold(mut queue: nfq::Queue, mean: f64, sigma: f64, stop: &AtomicBool, delayed: &AtomicU64) {
    let mut held = BinaryHeap::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        while let Ok(msg) = queue.recv() {
            let ms = (mean + sigma * normal()).max(0.0);
            let at = Instant::now() + Duration::from_secs_f64(ms / 1000.0);
            held.push(Held { at, msg });
            delayed.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h: &Held| h.at <= now || stopping) {
            let mut h = held.pop().expect("peeked");
            h.msg.set_verdict(nfq::Verdict::Accept);
            let _ = queue.verdict(h.msg);
        }
        if stopping && held.is_empty() {
            return;
        }
        // Sleep to the next packet's time, or 0.5 ms for new ones.
        let wait = held.peek().map_or(Duration::from_micros(500), |h| {
            h.at.saturating_duration_since(now)
                .min(Duration::from_micros(500))
        });
        std::thread::sleep(wait);
    }
}

/// One draw from the standard normal distribution (Box–Muller).
fn normal() -> f64 {
    let u1: f64 = rand::random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rand::random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

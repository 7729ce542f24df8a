//! Many customer sites on one host, as a hosting provider runs them: each
//! site is its own `pbxlink run` in its own network namespace with its own
//! LAN (a link of its own: one customer's broadcast and multicast, mDNS
//! included, never reach another's), its own configuration and state
//! directory, and its own PBX (pbxsim) and cloud platform (cloudsim) at
//! their own addresses. The harness creates (and deletes) every namespace
//! and link itself:
//!
//! ```text
//!  hub namespace                               site namespace i
//!    pbxdIh 10.88.I.1 pbxsim (site i's PBX:      pbxdIs 10.88.I.10
//!           SIP 5060, CSTA 3211, control 8081) ─ veth ─  pbxlink run (Small),
//!           10.88.I.2 cloudsim (its cloud: SIP-TLS       its worker pinned
//!           5061, tunnel 4443, control 8082)             by taskset
//! ```
//!
//! Nothing leaves the namespaces: the hub has no route out and no link to
//! the host's own network.

use crate::wire::setns;
use anyhow::{Context, bail, ensure};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The hub namespace (every site's peers, each site's link's far end).
pub const HUB: &str = "pbxd-hub";
/// Most sites: a site's third address byte is its number.
pub const MAX_SITES: usize = 200;
/// The admin API's token of every site.
pub const ADMIN_TOKEN: &str = "density-admin-0123456789";
const PBX_SIP: u16 = 5060;
const PBX_CSTA: u16 = 3211;
const PBX_CONTROL: u16 = 8081;
const CLOUD_SIP: u16 = 5061;
const CLOUD_TUNNEL: u16 = 4443;
const CLOUD_CONTROL: u16 = 8082;
const ADMIN: u16 = 8080;

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    ensure!(
        out.status.success(),
        "ip {}: {} (the density benchmark needs root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A site's admin API, or a peer's control API, with the sites' token.
pub fn get(addr: SocketAddr, path: &str) -> serde_json::Value {
    pbxlink_tests::http::get_with_token(addr, path, ADMIN_TOKEN).json
}

/// [`get`] of a program that may not listen yet (none: it does not).
pub fn try_get(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    Some(get(addr, path))
}

/// A JSON POST.
pub fn post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> serde_json::Value {
    pbxlink_tests::http::request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .json
}

fn quietly(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Site `i`'s link's end in the hub (its veth there).
pub fn hub_link(i: usize) -> String {
    format!("pbxd{i}h")
}

/// Site `i`'s namespace.
fn site_ns(i: usize) -> String {
    format!("pbxd-site{i}")
}

/// Where a program runs.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// A gateway: on this CPU (its worker and its control plane).
    Pinned(usize),
    /// A peer: anywhere, at [`PEER_NICE`].
    Behind,
}

/// The peers' nice value: they stand in for a PBX and a cloud platform
/// that run on other machines, so the host's CPU goes to the gateways
/// first; they still get what the gateways leave (and are checked to keep
/// up: every packet counted).
pub const PEER_NICE: i32 = 10;

/// A running program of the benchmark, stopped when dropped.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Proc {
    fn start(
        name: String,
        ns: &str,
        placement: Placement,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<Proc> {
        let log = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        match placement {
            Placement::Pinned(cpu) => {
                cmd.args(["taskset", "-c", &cpu.to_string()]);
            }
            Placement::Behind => {
                cmd.args(["nice", "-n", &PEER_NICE.to_string()]);
            }
        }
        let child = cmd
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc { name, child })
    }

    /// Its process id (`ip netns exec` and `taskset` exec it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.exited() {
            self.stop(Duration::from_secs(3));
        }
    }
}

/// One site: its gateway and its two peers.
#[derive(Debug)]
pub struct Site {
    /// 1-based.
    pub number: usize,
    /// The CPU its gateway (and so its one worker) is pinned to.
    pub cpu: usize,
    /// `pbxlink run`.
    pub gateway: Proc,
    /// pbxsim: its PBX.
    pub pbx: Proc,
    /// cloudsim: its cloud platform.
    pub cloud: Proc,
    /// Its directory (configuration, state, logs).
    pub dir: PathBuf,
}

impl Site {
    /// The gateway's LAN address.
    pub fn lan(&self) -> Ipv4Addr {
        lan_ip(self.number)
    }
    fn pbx_ip(&self) -> Ipv4Addr {
        pbx_ip(self.number)
    }
    fn cloud_ip(&self) -> Ipv4Addr {
        cloud_ip(self.number)
    }
    /// The gateway's admin API (plain HTTP, on its LAN address).
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from((self.lan(), ADMIN))
    }
    /// pbxsim's control API.
    pub fn pbx_control(&self) -> SocketAddr {
        SocketAddr::from((self.pbx_ip(), PBX_CONTROL))
    }
    /// cloudsim's control API.
    pub fn cloud_control(&self) -> SocketAddr {
        SocketAddr::from((self.cloud_ip(), CLOUD_CONTROL))
    }
}

fn lan_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 88, n as u8, 10)
}
fn pbx_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 88, n as u8, 1)
}
/// Site `n`'s cloud (cloudsim) address, in the hub.
pub fn cloud_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 88, n as u8, 2)
}

/// The gateway's configuration for site `n` (a Small site, as shipped,
/// with its own addresses).
fn gateway_toml(n: usize, dir: &Path, extra: &str) -> String {
    let (lan, pbx, cloud) = (lan_ip(n), pbx_ip(n), cloud_ip(n));
    let d = dir.display();
    format!(
        "# Site {n} of the density benchmark.\n\
         [gateway]\nlan_address = \"{lan}\"\nnetworks = [\"10.88.{n}.0/24\"]\nprofile = \"small\"\n\
         state_dir = \"{d}/state\"\ncdr_file = \"{d}/cdr.jsonl\"\ndrain_seconds = 5\n\n\
         [pbx]\ntype = \"mivoice-5000\"\naddress = \"{pbx}\"\nport = {PBX_SIP}\ncsta_ports = \"{PBX_CSTA}\"\n\n\
         [cloud]\ntargets = [\"tls:{cloud}:{CLOUD_SIP}\"]\nserver_name = \"cloud.test\"\nca = \"{d}/cloud-ca.pem\"\n\
         srtp_suites = [\"AES_CM_128_HMAC_SHA1_80\"]\n\n\
         [sip]\nport = 5060\n\n\
         [admin]\nlisten = \"{lan}:{ADMIN}\"\nhttps_listen = \"off\"\napi_token = \"{ADMIN_TOKEN}\"\n\n\
         [tunnel]\nendpoint = \"{cloud}:{CLOUD_TUNNEL}\"\nserver_name = \"cloud.test\"\naccount = \"SITE{n}\"\n\
         token = \"site{n}-token-0123456789\"\n\n{extra}"
    )
}

/// Every site, their namespaces and the hub; all taken down when dropped.
#[derive(Debug)]
pub struct Sites {
    /// The sites, site 1 first.
    pub sites: Vec<Site>,
    /// The benchmark's directory.
    pub dir: PathBuf,
}

/// The binaries of this build next to the running one.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name(name);
    ensure!(
        p.exists(),
        "{} is missing: cargo build --release -p pbxlink -p pbxsim -p cloudsim",
        p.display()
    );
    Ok(p)
}

/// Removes what an interrupted run left.
fn clear(n: usize) {
    for i in 1..=n.max(MAX_SITES) {
        if Path::new(&format!("/run/netns/{}", site_ns(i))).exists() {
            quietly(&["netns", "del", &site_ns(i)]);
        }
    }
    quietly(&["netns", "del", HUB]);
}

impl Sites {
    /// Builds the hub and `n` sites, starts every site's peers and gateway
    /// (site i's gateway pinned to CPU `i mod cpus`), in `dir`; with
    /// `shared_clock`, each PBX sends all its calls' packets on one 20 ms
    /// clock.
    pub fn start(n: usize, cpus: usize, dir: &Path, shared_clock: bool) -> anyhow::Result<Sites> {
        Self::start_with(n, cpus, dir, shared_clock, "")
    }

    /// [`Sites::start`], each gateway's configuration ending with `extra`
    /// (sections of its own, e.g. `[quality]`).
    pub fn start_with(
        n: usize,
        cpus: usize,
        dir: &Path,
        shared_clock: bool,
        extra: &str,
    ) -> anyhow::Result<Sites> {
        ensure!(
            (1..=MAX_SITES).contains(&n),
            "--sites takes 1 to {MAX_SITES}"
        );
        let (pbxlink, pbxsim, cloudsim) = (
            sibling("pbxlink")?,
            sibling("pbxsim")?,
            sibling("cloudsim")?,
        );
        clear(n);
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut sites = Sites {
            sites: Vec::with_capacity(n),
            dir: dir.to_owned(),
        };
        ip(&["netns", "add", HUB])?;
        let hub = ["-n", HUB];
        ip(&[&hub[..], &["link", "set", "lo", "up"]].concat())?;
        for i in 1..=n {
            let ns = site_ns(i);
            let (host, inner) = (hub_link(i), format!("pbxd{i}s"));
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", HUB, "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns",
                &ns,
            ])?;
            for peer in [pbx_ip(i), cloud_ip(i)] {
                ip(&[
                    "-n",
                    HUB,
                    "addr",
                    "add",
                    &format!("{peer}/24"),
                    "dev",
                    &host,
                ])?;
            }
            ip(&["-n", HUB, "link", "set", &host, "up"])?;
            let lan = format!("{}/24", lan_ip(i));
            ip(&["-n", &ns, "addr", "add", &lan, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
        }
        for i in 1..=n {
            let d = dir.join(format!("site{i}"));
            std::fs::create_dir_all(&d)?;
            let (pbx_ip, cloud_ip) = (pbx_ip(i), cloud_ip(i));
            let at = |ip: Ipv4Addr, port: u16| SocketAddr::from((ip, port)).to_string();
            let cloud_args: Vec<String> = [
                "--tunnel",
                &at(cloud_ip, CLOUD_TUNNEL),
                "--sip",
                &at(cloud_ip, CLOUD_SIP),
                "--control",
                &at(cloud_ip, CLOUD_CONTROL),
                "--account",
                &format!("SITE{i}:site{i}-token-0123456789"),
                "--ca-out",
                &d.join("cloud-ca.pem").display().to_string(),
                "--rtp-base",
                "40000",
                "--rtp-ports",
                "1000",
            ]
            .map(str::to_owned)
            .to_vec();
            let cloud = Proc::start(
                format!("site {i}'s cloudsim"),
                HUB,
                Placement::Behind,
                &cloudsim,
                &cloud_args,
                &d.join("cloudsim.log"),
            )?;
            let pbx_args: Vec<String> = [
                "run",
                "--csta",
                &at(pbx_ip, PBX_CSTA),
                "--users",
                "10",
                "--sip",
                &at(pbx_ip, PBX_SIP),
                "--gateway-sip",
                &at(lan_ip(i), 5060),
                "--rtp-base",
                "30000",
                "--rtp-ports",
                "1000",
                "--control",
                &at(pbx_ip, PBX_CONTROL),
            ]
            .map(str::to_owned)
            .to_vec();
            let mut pbx_args = pbx_args;
            // Each call stops sending a second before its BYE: what its
            // packets' echo still carries (the peers run behind the
            // gateways on a busy host) is counted before the call ends.
            pbx_args.extend(["--hangup-drain-ms".into(), "1000".into()]);
            if shared_clock {
                pbx_args.push("--shared-media-clock".into());
            }
            let pbx = Proc::start(
                format!("site {i}'s pbxsim"),
                HUB,
                Placement::Behind,
                &pbxsim,
                &pbx_args,
                &d.join("pbxsim.log"),
            )?;
            // The gateway needs the cloud's CA, which cloudsim writes.
            let ca = d.join("cloud-ca.pem");
            let until = Instant::now() + Duration::from_secs(20);
            while !ca.exists() {
                ensure!(
                    Instant::now() < until,
                    "site {i}'s cloudsim wrote no CA (see {})",
                    d.join("cloudsim.log").display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let config = d.join("pbxlink.toml");
            std::fs::write(&config, gateway_toml(i, &d, extra))?;
            let cpu = (i - 1) % cpus.max(1);
            let gateway = Proc::start(
                format!("site {i}'s gateway"),
                &site_ns(i),
                Placement::Pinned(cpu),
                &pbxlink,
                &[
                    "run".into(),
                    "--config".into(),
                    config.display().to_string(),
                ],
                &d.join("pbxlink.log"),
            )?;
            sites.sites.push(Site {
                number: i,
                cpu,
                gateway,
                pbx,
                cloud,
                dir: d,
            });
        }
        Ok(sites)
    }

    /// Waits until every site's gateway has its PBX trunk, cloud trunk,
    /// tunnel and CSTA link up (its admin API says so).
    pub fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        let mut waiting: Vec<usize> = (0..self.sites.len()).collect();
        while !waiting.is_empty() {
            self.check_running()?;
            waiting.retain(|&i| {
                let s = &self.sites[i];
                let Some(st) = try_get(s.admin(), "/api/status") else {
                    return true;
                };
                !(st["pbx_trunk"] == "up"
                    && st["cloud_trunk"]["state"] == "connected"
                    && st["tunnel"] == "connected"
                    && st["csta"] == "Connected")
            });
            if Instant::now() > until {
                bail!(
                    "sites not up within {} s: {:?} (their logs are in their directories)",
                    within.as_secs(),
                    waiting.iter().map(|i| i + 1).collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }

    /// Moves the calling thread into the hub namespace, where every
    /// site's admin API and its peers' control APIs answer.
    pub fn enter_hub(&self) -> anyhow::Result<()> {
        let hub = File::open(format!("/run/netns/{HUB}")).context("the hub namespace")?;
        setns(&hub)
    }

    /// Fails when a program of the benchmark has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for s in &mut self.sites {
            for p in [&mut s.gateway, &mut s.pbx, &mut s.cloud] {
                if p.exited() {
                    bail!("{} exited (logs in {})", p.name, s.dir.display());
                }
            }
        }
        Ok(())
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        // Gateways first (they drain), then their peers, then the links.
        for s in &mut self.sites {
            let _ = Command::new("kill")
                .args(["-TERM", &s.gateway.pid().to_string()])
                .status();
        }
        for s in &mut self.sites {
            s.gateway.stop(Duration::from_secs(10));
        }
        for s in &mut self.sites {
            s.pbx.stop(Duration::from_secs(3));
            s.cloud.stop(Duration::from_secs(3));
        }
        let n = self.sites.len();
        self.sites.clear();
        clear(n);
    }
}

//! `pbxlink-demo`: the whole product on loopback from an embedded default
//! configuration. The gateway (`pbxlink run`) sits between pbxsim (the
//! PBX: CSTA servers, a SIP trunk with G.711, a user pusher) and cloudsim
//! (the cloud platform: the management tunnel's server, a SIP-TLS
//! endpoint with SDES-SRTP); three processes, each its own program. The
//! demo onboards (the PBX pushes its users), syncs them to the cloud, runs
//! CTI commands from the cloud, keeps calls up both ways with media
//! through the data plane and prints a line a second (calls, packets,
//! loss, round trip, tunnel events) until Ctrl-C or `--seconds`. Then it
//! lets the calls finish, checks the whole run and fails (exit status 1)
//! when a call failed, a packet was lost or refused, or an event did not
//! reach the cloud exactly once.
//!
//! It owns the demo's processes and directory (`$TMPDIR/pbxlink-demo`) and
//! talks to the processes only through their public interfaces: control
//! APIs, the admin API, the PBX's push.

use crate::api::Api;
use crate::processes::{Process, sibling, stop_leftovers};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The gateway's configuration, with `{name}` holes filled at start.
const GATEWAY_TOML: &str = include_str!("gateway.toml");

/// `N` bytes from the OS's random source.
fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source");
    b
}

/// Loopback ports (TCP unless said).
const CLOUD_SIP: u16 = 25_802;
const TUNNEL: u16 = 25_803;
const GATEWAY_SIP: u16 = 25_850; // UDP
const PBX_SIP: u16 = 25_860; // UDP
const CSTA: [u16; 2] = [25_870, 25_871];
const ADMIN: u16 = 25_880;
const ADMIN_HTTPS: u16 = 25_881;
const USERS_API: u16 = 25_886;
const PBX_CONTROL: u16 = 25_890;
const CLOUD_CONTROL: u16 = 25_891;
const CLOUD_NTP: u16 = 25_892; // UDP
const CLOUD_STUN: [u16; 2] = [25_893, 25_894]; // UDP
/// First RTP ports of pbxsim's and cloudsim's calls (UDP).
const PBX_RTP: u16 = 47_000;
const CLOUD_RTP: u16 = 48_000;

/// Users the PBX has and the gateway onboards; four more it pushes are
/// refused (a role-based mailbox, an incorrect email, an email used
/// twice).
const MIN_USERS: u16 = 20;
/// A call lasts between these (seconds).
const CALL_SECONDS: (u64, u64) = (4, 10);
/// Beyond its planned end, a call still up this long is counted stuck.
const CALL_GRACE: Duration = Duration::from_secs(15);

/// Options of `pbxlink-demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Seconds of calls, then the calls finish and the run is checked
    /// (default: until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
    /// Calls kept up at once, half each way (PBX → cloud, cloud → PBX).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(2..=200))]
    calls: u16,
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(args))
}

/// Where the demo is: its processes, their APIs, what it has seen.
struct Demo {
    dir: PathBuf,
    procs: Vec<Process>,
    gateway: Api,
    pbx: Api,
    cloud: Api,
    interrupts: Arc<AtomicU32>,
    /// Interrupts (Ctrl-C, SIGTERM) waits go on after: 0 while starting,
    /// 1 once the calls are winding down (the second stops at once).
    patience: u32,
    /// The gateway's id at the cloud.
    gateway_id: String,
    problems: Vec<String>,
    rng: u64,
}

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn hex_token() -> String {
    random::<12>().iter().map(|b| format!("{b:02x}")).collect()
}

async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join("pbxlink-demo");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    stop_leftovers(&dir);
    for old in ["state", "cdr.jsonl", "pbxlink.toml", "users.json"] {
        let p = dir.join(old);
        let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
    }
    ports_free()?;
    let interrupts = Arc::new(AtomicU32::new(0));
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut int, mut term) = (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        );
        let interrupts = interrupts.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = int.recv() => {}
                    Some(()) = term.recv() => {}
                    else => return,
                }
                interrupts.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let admin_token = hex_token();
    let mut d = Demo {
        dir,
        procs: Vec::new(),
        gateway: Api::new("the gateway", at(ADMIN), Some(admin_token.clone())),
        pbx: Api::new("pbxsim", at(PBX_CONTROL), None),
        cloud: Api::new("cloudsim", at(CLOUD_CONTROL), None),
        interrupts,
        patience: 0,
        gateway_id: String::new(),
        problems: Vec::new(),
        rng: u64::from_be_bytes(random()) | 1,
    };
    println!("pbxlink-demo: the whole product on loopback");
    println!("  pbxsim (the PBX) <-> pbxlink (the gateway) <-> cloudsim (the cloud platform)");
    println!(
        "  logs, configuration and call records in {}",
        d.dir.display()
    );
    let users = MIN_USERS.max(args.calls);
    d.start(users, &admin_token).await?;
    d.onboard(users).await?;
    d.sync(users).await?;
    d.cti().await?;
    let run = d.calls(args).await?;
    d.finish(run).await
}

/// Fails when a port the demo needs is taken.
fn ports_free() -> anyhow::Result<()> {
    let tcp = [
        CLOUD_SIP,
        TUNNEL,
        CSTA[0],
        CSTA[1],
        ADMIN,
        USERS_API,
        PBX_CONTROL,
        CLOUD_CONTROL,
    ];
    for port in tcp {
        std::net::TcpListener::bind(at(port)).with_context(|| {
            format!("TCP port {port} on 127.0.0.1 is taken (the demo uses 25800-25899)")
        })?;
    }
    for port in [
        GATEWAY_SIP,
        PBX_SIP,
        CLOUD_NTP,
        CLOUD_STUN[0],
        CLOUD_STUN[1],
    ] {
        std::net::UdpSocket::bind(at(port)).with_context(|| {
            format!("UDP port {port} on 127.0.0.1 is taken (the demo uses 25800-25899)")
        })?;
    }
    Ok(())
}

/// The PBX's users: `count` that can be onboarded and four that cannot.
fn users_json(count: u16) -> Value {
    let mut list: Vec<Value> = (0..count)
        .map(|i| {
            let dn = 1000 + u32::from(i);
            json!({
                "directory_number": dn.to_string(),
                "first_name": "User",
                "last_name": dn.to_string(),
                "email": format!("user{dn}@example.com"),
                "role": 1,
            })
        })
        .collect();
    let refused = [
        ("Front", "Desk", "info@example.com"),
        ("Lobby", "Phone", "lobby.example.com"),
        ("Shared", "Desk", "desk@example.com"),
        ("Night", "Desk", "desk@example.com"),
    ];
    for (i, (first, last, email)) in refused.into_iter().enumerate() {
        list.push(json!({
            "directory_number": (1000 + u32::from(count) + i as u32).to_string(),
            "first_name": first,
            "last_name": last,
            "email": email,
            "role": 1,
        }));
    }
    json!({ "users": list })
}

/// Milliseconds as "1.23".
fn ms(us: &Value) -> String {
    us.as_u64()
        .map_or("-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
}

/// What the calls part leaves for the end.
struct CallsRun {
    placed: [u64; 2],
    stuck: u64,
    place_errors: u64,
}

/// One of the calls kept up: an extension, a direction, the call now.
struct Slot {
    extension: String,
    toward_cloud: bool,
    /// The call's id (at pbxsim or cloudsim) and when it should be over.
    call: Option<(u64, Instant)>,
}

impl Demo {
    fn interrupted(&self) -> bool {
        self.interrupts.load(Ordering::Relaxed) > 0
    }

    fn random(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        lo + self.rng % (hi - lo + 1)
    }

    /// Waits until `check` gives a value, failing when a process exits,
    /// the user interrupts, or `within` passes.
    async fn wait<F, Fut>(
        &mut self,
        what: &str,
        within: Duration,
        mut check: F,
    ) -> anyhow::Result<Value>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<Value>>>,
    {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        loop {
            for p in &mut self.procs {
                p.check_running()?;
            }
            ensure!(
                self.interrupts.load(Ordering::Relaxed) <= self.patience,
                "interrupted while waiting for {what}"
            );
            match check().await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = format!(" ({e:#})"),
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .procs
                    .iter()
                    .map(|p| p.log().display().to_string())
                    .collect();
                bail!(
                    "{what}: not within {} s{last}; see {}",
                    within.as_secs(),
                    logs.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts cloudsim, pbxsim and the gateway; waits until the gateway's
    /// trunks and tunnel are up.
    async fn start(&mut self, users: u16, admin_token: &str) -> anyhow::Result<()> {
        println!();
        println!("[1/5] start");
        let dir = self.dir.clone();
        let tunnel_token = hex_token();
        let ca = dir.join("cloudsim-ca.pem");
        let args: Vec<String> = [
            "--tunnel",
            &at(TUNNEL).to_string(),
            "--sip",
            &at(CLOUD_SIP).to_string(),
            "--control",
            &at(CLOUD_CONTROL).to_string(),
            "--account",
            &format!("DEMO:{tunnel_token}"),
            "--ca-out",
            &ca.display().to_string(),
            "--rtp-base",
            &CLOUD_RTP.to_string(),
            "--ntp",
            &at(CLOUD_NTP).to_string(),
            "--stun",
            &at(CLOUD_STUN[0]).to_string(),
            "--stun",
            &at(CLOUD_STUN[1]).to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        self.procs.push(Process::start(
            "cloudsim",
            &sibling("cloudsim")?,
            &args,
            &dir,
        )?);
        let cloud = self.cloud.clone();
        self.wait("cloudsim's control API", Duration::from_secs(15), || {
            let cloud = cloud.clone();
            async move { cloud.get("/status").await.map(Some) }
        })
        .await?;
        println!(
            "  cloudsim: management tunnel on tls:{}, SIP-TLS (SDES-SRTP) on {}, its CA in {}",
            at(TUNNEL),
            at(CLOUD_SIP),
            ca.display()
        );

        std::fs::write(
            dir.join("users.json"),
            serde_json::to_string_pretty(&users_json(users))?,
        )?;
        let mut args: Vec<String> = vec!["run".into()];
        for port in CSTA {
            args.extend(["--csta".into(), at(port).to_string()]);
        }
        args.extend(
            [
                "--users-file",
                &dir.join("users.json").display().to_string(),
                "--sip",
                &at(PBX_SIP).to_string(),
                "--gateway-sip",
                &at(GATEWAY_SIP).to_string(),
                "--rtp-base",
                &PBX_RTP.to_string(),
                "--control",
                &at(PBX_CONTROL).to_string(),
            ]
            .map(str::to_owned),
        );
        self.procs
            .push(Process::start("pbxsim", &sibling("pbxsim")?, &args, &dir)?);
        let pbx = self.pbx.clone();
        self.wait("pbxsim's control API", Duration::from_secs(15), || {
            let pbx = pbx.clone();
            async move { pbx.get("/status").await.map(Some) }
        })
        .await?;
        println!(
            "  pbxsim: {} users, CSTA on {} and {}, SIP trunk on udp:{}",
            users + 4,
            at(CSTA[0]),
            at(CSTA[1]),
            at(PBX_SIP)
        );

        let config = GATEWAY_TOML
            .replace("{dir}", &dir.display().to_string())
            .replace("{pbx_sip}", &PBX_SIP.to_string())
            .replace("{csta}", &format!("{};{}", CSTA[0], CSTA[1]))
            .replace("{cloud_sip}", &CLOUD_SIP.to_string())
            .replace("{cloud_ntp}", &CLOUD_NTP.to_string())
            .replace("{cloud_stun_1}", &CLOUD_STUN[0].to_string())
            .replace("{cloud_stun_2}", &CLOUD_STUN[1].to_string())
            .replace("{gateway_sip}", &GATEWAY_SIP.to_string())
            .replace("{admin}", &ADMIN.to_string())
            .replace("{admin_https}", &ADMIN_HTTPS.to_string())
            .replace("{admin_token}", admin_token)
            .replace("{tunnel}", &TUNNEL.to_string())
            .replace("{tunnel_token}", &tunnel_token)
            .replace("{users_api}", &USERS_API.to_string())
            .replace("{push_password}", &format!("push-{tunnel_token}"));
        let path = dir.join("pbxlink.toml");
        std::fs::write(&path, config)?;
        let gateway = sibling("pbxlink")?;
        let args = ["run".into(), "--config".into(), path.display().to_string()];
        self.procs
            .push(Process::start("gateway", &gateway, &args, &dir)?);
        let gateway = self.gateway.clone();
        let status = self
            .wait(
                "the gateway's PBX trunk, cloud trunk and tunnel up",
                Duration::from_secs(30),
                || {
                    let gateway = gateway.clone();
                    async move {
                        let s = gateway.get("/api/status").await?;
                        let up = s["pbx_trunk"] == "up"
                            && s["cloud_trunk"]["state"] == "connected"
                            && s["tunnel"] == "connected";
                        Ok(up.then_some(s))
                    }
                },
            )
            .await?;
        println!(
            "  pbxlink run --config {}: profile {}, up to {} calls",
            path.display(),
            status["profile"].as_str().unwrap_or("?"),
            status["call_limit"]
        );
        println!(
            "    PBX trunk udp:{} up; cloud trunk tls:{} connected; tunnel connected; admin API on http://{}/api/status, admin page on https://127.0.0.1:{ADMIN_HTTPS}/",
            at(PBX_SIP),
            at(CLOUD_SIP),
            at(ADMIN)
        );
        let limit = status["call_limit"].as_u64().unwrap_or(0);
        ensure!(
            u64::from(users) <= limit || limit == 0,
            "this host's profile allows {limit} calls: use --calls {limit} or fewer"
        );
        let cloud = self.cloud.clone();
        let g = self
            .wait("the gateway at the cloud", Duration::from_secs(10), || {
                let cloud = cloud.clone();
                async move {
                    let s = cloud.get("/status").await?;
                    Ok(s["gateways"].as_array().and_then(|g| g.first()).cloned())
                }
            })
            .await?;
        self.gateway_id = g["gateway"].as_str().unwrap_or_default().to_owned();
        println!(
            "  cloudsim: gateway {} of account {} registered: {}",
            self.gateway_id, g["account"], g["hello"]
        );
        Ok(())
    }

    /// The PBX pushes its users to the gateway; the gateway monitors the
    /// onboarded ones through CSTA.
    async fn onboard(&mut self, users: u16) -> anyhow::Result<()> {
        println!();
        println!(
            "[2/5] onboard: the PBX pushes its users to the gateway's user-config API (HTTPS, Basic)"
        );
        let cert = self.dir.join("state/users-api.crt");
        let config = std::fs::read_to_string(self.dir.join("pbxlink.toml"))?;
        let password = config
            .lines()
            .find_map(|l| l.strip_prefix("push_password = "))
            .map(|p| p.trim_matches('"').to_owned())
            .context("the push password in the demo's configuration")?;
        let out = std::process::Command::new(sibling("pbxsim")?)
            .args(["push", "--gateway", &at(USERS_API).to_string(), "--ca"])
            .arg(&cert)
            .args(["--auth", &format!("pbx:{password}"), "--users-file"])
            .arg(self.dir.join("users.json"))
            .output()
            .context("running pbxsim push")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "pbxsim push failed: {text}");
        for line in text.lines() {
            let short: String = line.chars().take(150).collect();
            println!(
                "  pbxsim push: {short}{}",
                if short.len() < line.len() { "…" } else { "" }
            );
        }
        let gateway = self.gateway.clone();
        let cti = self
            .wait(
                "every onboarded user monitored through CSTA",
                Duration::from_secs(20),
                || {
                    let gateway = gateway.clone();
                    async move {
                        let c = gateway.get("/api/cti").await?;
                        Ok((c["monitored"] == u64::from(users)).then_some(c))
                    }
                },
            )
            .await?;
        let servers: Vec<String> = cti["servers"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|s| {
                        format!(
                            "{} {} ({} users)",
                            s["server"].as_str().unwrap_or("?"),
                            s["state"].as_str().unwrap_or("?"),
                            s["monitored"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "  CSTA: {}: {}; {} users monitored on {}",
            cti["status"].as_str().unwrap_or("?"),
            cti["result"].as_str().unwrap_or(""),
            cti["monitored"],
            servers.join(", ")
        );
        Ok(())
    }

    /// The push started a user sync: the cloud has the users and the
    /// refusals with their reasons.
    async fn sync(&mut self, users: u16) -> anyhow::Result<()> {
        println!();
        println!("[3/5] sync: the users reach the cloud platform through the tunnel");
        let cloud = self.cloud.clone();
        let path = format!("/gateways/{}/users", self.gateway_id);
        let synced = self
            .wait("the users at the cloud", Duration::from_secs(20), || {
                let (cloud, path) = (cloud.clone(), path.clone());
                async move {
                    let u = cloud.get(&path).await?;
                    let n = u["users"].as_object().map_or(0, |m| m.len());
                    let errors = u["sync_errors"].as_array().map_or(0, Vec::len);
                    Ok((n == usize::from(users) && errors >= 4).then_some(u))
                }
            })
            .await?;
        println!(
            "  cloudsim has {} users of account DEMO; not onboarded, with the reason:",
            synced["users"].as_object().map_or(0, |m| m.len())
        );
        for e in synced["sync_errors"].as_array().into_iter().flatten() {
            println!(
                "    {}: {}",
                e["user"].as_str().unwrap_or("?"),
                e["reason"].as_str().unwrap_or("?")
            );
        }
        Ok(())
    }

    /// CTI from the cloud: 1001 calls 1002, which answers; hold, retrieve,
    /// clear. The CSTA events the cloud received for the call.
    async fn cti(&mut self) -> anyhow::Result<()> {
        println!();
        println!("[4/5] CTI from the cloud platform, through the tunnel and CSTA");
        let started = Instant::now();
        let made = self
            .command(
                json!({"service": "make-call", "device": "1001", "to": "1002"}),
                "make-call 1001 -> 1002",
            )
            .await?;
        let Some(call) = made["call"].as_str().map(str::to_owned) else {
            self.problems.push("CTI make-call gave no call".into());
            return Ok(());
        };
        let at_pbx = self.pbx.get("/calls").await?;
        let ringing = at_pbx.as_array().into_iter().flatten().any(|c| {
            c["call"] == call.as_str()
                && c["parties"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["device"] == "1002" && p["state"] == "alerting")
        });
        println!(
            "    pbxsim: 1002 {}",
            if ringing { "rings" } else { "does not ring" }
        );
        if !ringing {
            self.problems
                .push(format!("CTI: 1002 did not ring for call {call}"));
        }
        for (args, what) in [
            (
                json!({"service": "answer", "device": "1002", "call": call}),
                "answer at 1002",
            ),
            (
                json!({"service": "hold", "device": "1001", "call": call}),
                "hold at 1001",
            ),
            (
                json!({"service": "retrieve", "device": "1001", "call": call}),
                "retrieve at 1001",
            ),
            (
                json!({"service": "clear", "device": "1001", "call": call}),
                "clear at 1001",
            ),
        ] {
            self.command(args, what).await?;
        }
        let path = format!("/gateways/{}/events?kind=cti_event", self.gateway_id);
        let cloud = self.cloud.clone();
        let call2 = call.clone();
        let events = self
            .wait(
                "the call's CSTA events at the cloud",
                Duration::from_secs(10),
                || {
                    let (cloud, path, call) = (cloud.clone(), path.clone(), call2.clone());
                    async move {
                        let all = cloud.get(&path).await?;
                        let mine: Vec<Value> = all
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|e| e["body"]["call"] == call.as_str())
                            .cloned()
                            .collect();
                        let cleared = mine
                            .iter()
                            .any(|e| e["body"]["event"] == "connection_cleared");
                        Ok(cleared.then_some(Value::Array(mine)))
                    }
                },
            )
            .await;
        match events {
            Ok(events) => {
                let seen: Vec<String> = events
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        format!(
                            "{}@{}",
                            e["body"]["event"].as_str().unwrap_or("?"),
                            e["body"]["device"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                println!("  CSTA events the cloud received for call {call}:");
                for chunk in seen.chunks(6) {
                    println!("    {}", chunk.join(", "));
                }
            }
            Err(e) => self.problems.push(format!("CTI events: {e:#}")),
        }
        println!("  CTI done in {:.1} s", started.elapsed().as_secs_f64());
        Ok(())
    }

    /// One CTI command through cloudsim; its result printed. A refusal is
    /// a problem, not a stop.
    async fn command(&mut self, args: Value, what: &str) -> anyhow::Result<Value> {
        let t = Instant::now();
        let a = self
            .cloud
            .post("/commands", &json!({"name": "cti", "args": args}))
            .await?;
        let ok = a.json["ok"] == true;
        println!(
            "  {what}: {} in {} ms {}",
            if ok { "ok" } else { "refused" },
            t.elapsed().as_millis(),
            if ok {
                a.json["body"].to_string()
            } else {
                a.json["error"].to_string()
            }
        );
        if !ok {
            self.problems.push(format!("CTI {what}: {}", a.json));
        }
        Ok(a.json["body"].clone())
    }

    /// Keeps `--calls` calls up, half each way, printing a line a second,
    /// until Ctrl-C or `--seconds`; then waits for the calls to end.
    async fn calls(&mut self, args: &DemoArgs) -> anyhow::Result<CallsRun> {
        println!();
        println!(
            "[5/5] calls: {} at a time ({} PBX -> cloud, {} cloud -> PBX), {}-{} s each, G.711; RTP on the LAN side, SRTP on the cloud side",
            args.calls,
            args.calls.div_ceil(2),
            args.calls / 2,
            CALL_SECONDS.0,
            CALL_SECONDS.1
        );
        match args.seconds {
            Some(s) => println!("  for {s} s (Ctrl-C stops earlier)"),
            None => println!("  until Ctrl-C"),
        }
        println!(
            "  {:>5} {:>4} {:>6} {:>6} {:>8} {:>5} {:>7} {:>17} {:>7}",
            "time", "up", "done", "failed", "pkt/s", "lost", "refused", "round trip ms", "events"
        );
        println!(
            "  {:>5} {:>4} {:>6} {:>6} {:>8} {:>5} {:>7} {:>17} {:>7}",
            "", "", "", "", "gateway", "", "SRTP", "p50/p99/max", "tunnel"
        );
        let mut slots: Vec<Slot> = (0..args.calls)
            .map(|i| Slot {
                extension: (1000 + u32::from(i)).to_string(),
                toward_cloud: i % 2 == 0,
                call: None,
            })
            .collect();
        let mut run = CallsRun {
            placed: [0, 0],
            stuck: 0,
            place_errors: 0,
        };
        let started = Instant::now();
        let stop_at = args.seconds.map(|s| started + Duration::from_secs(s));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_sent: Option<(Instant, u64)> = None;
        let mut placing = true;
        loop {
            tick.tick().await;
            for p in &mut self.procs {
                p.check_running()?;
            }
            let now = Instant::now();
            if placing && (self.interrupted() || stop_at.is_some_and(|t| now >= t)) {
                placing = false;
                self.patience = 1;
                println!(
                    "  no new calls; waiting for the {} up to end (at most {} s; Ctrl-C again: stop now)",
                    slots.iter().filter(|s| s.call.is_some()).count(),
                    CALL_SECONDS.1 + CALL_GRACE.as_secs()
                );
            }
            if self.interrupts.load(Ordering::Relaxed) > 1 {
                println!("  stopping now");
                break;
            }
            for slot in &mut slots {
                self.tend(slot, now, placing, &mut run).await?;
            }
            self.line(started, &mut last_sent).await?;
            if !placing && slots.iter().all(|s| s.call.is_none()) {
                break;
            }
        }
        Ok(run)
    }

    /// Frees a slot whose call is over, and places its next call.
    async fn tend(
        &mut self,
        slot: &mut Slot,
        now: Instant,
        placing: bool,
        run: &mut CallsRun,
    ) -> anyhow::Result<()> {
        if let Some((id, ends)) = slot.call {
            if now < ends {
                return Ok(());
            }
            let sim = if slot.toward_cloud {
                &self.pbx
            } else {
                &self.cloud
            };
            let a = sim.find(&format!("/sip/calls/{id}")).await?;
            let over = a.as_ref().is_none_or(|c| c["over"] == true);
            if over {
                slot.call = None;
            } else if now >= ends + CALL_GRACE {
                run.stuck += 1;
                self.problems.push(format!(
                    "call {id} ({} {}) still up {} s after its end: {}",
                    if slot.toward_cloud {
                        "PBX -> cloud from"
                    } else {
                        "cloud -> PBX to"
                    },
                    slot.extension,
                    CALL_GRACE.as_secs(),
                    a.unwrap_or_default()
                ));
                slot.call = None;
            }
        }
        if slot.call.is_some() || !placing {
            return Ok(());
        }
        let seconds = self.random(CALL_SECONDS.0, CALL_SECONDS.1);
        let placed = if slot.toward_cloud {
            let to = format!("061234{:04}", self.random(0, 9999));
            self.pbx
                .post(
                    "/sip/calls",
                    &json!({"from": slot.extension, "to": to, "seconds": seconds}),
                )
                .await?
        } else {
            self.cloud
                .post(
                    "/sip/calls",
                    &json!({"from": "cloud-user", "to": slot.extension, "seconds": seconds}),
                )
                .await?
        };
        match placed.json["call"].as_u64() {
            Some(id) => {
                run.placed[usize::from(!slot.toward_cloud)] += 1;
                // Ringing (pbxsim answers after 300 ms) and set-up on top.
                slot.call = Some((
                    id,
                    now + Duration::from_secs(seconds) + Duration::from_millis(1500),
                ));
            }
            None => {
                run.place_errors += 1;
                self.problems.push(format!(
                    "placing a call {} {}: {} {}",
                    if slot.toward_cloud { "from" } else { "to" },
                    slot.extension,
                    placed.status,
                    placed.json
                ));
            }
        }
        Ok(())
    }

    /// The line of the second.
    async fn line(
        &mut self,
        started: Instant,
        last_sent: &mut Option<(Instant, u64)>,
    ) -> anyhow::Result<()> {
        let status = self.gateway.get("/api/status").await?;
        let counters = self.gateway.get("/api/counters").await?;
        let pbx = self.pbx.get("/sip/stats").await?;
        let cloud = self.cloud.get("/status").await?;
        let now = Instant::now();
        let sent = counters["media_sent"].as_u64().unwrap_or(0);
        let rate = match *last_sent {
            Some((t, n)) => (sent.saturating_sub(n) as f64
                / now.duration_since(t).as_secs_f64().max(0.001))
            .round() as u64,
            None => 0,
        };
        *last_sent = Some((now, sent));
        let (done, failed) = outcomes(&pbx["calls"], &cloud["sip"]["calls"]);
        let lost =
            pbx["rtp_lost"].as_u64().unwrap_or(0) + cloud["sip"]["rtp_lost"].as_u64().unwrap_or(0);
        let rt = &pbx["round_trip"]["last_second"];
        let round_trip = if rt["samples"].as_u64().unwrap_or(0) > 0 {
            format!(
                "{}/{}/{}",
                ms(&rt["p50_us"]),
                ms(&rt["p99_us"]),
                ms(&rt["max_us"])
            )
        } else {
            "-".into()
        };
        let events = cloud["gateways"]
            .as_array()
            .and_then(|g| g.first())
            .map_or(0, |g| g["events"].as_u64().unwrap_or(0));
        println!(
            "  {:>4}s {:>4} {:>6} {:>6} {:>8} {:>5} {:>7} {:>17} {:>7}",
            started.elapsed().as_secs(),
            status["calls_in_progress"].as_u64().unwrap_or(0),
            done,
            failed,
            rate,
            lost,
            cloud["sip"]["srtp_refused"].as_u64().unwrap_or(0),
            round_trip,
            events
        );
        Ok(())
    }

    /// Every event delivered once, a record per call at the cloud; the
    /// gateway stopped (drained); the verdict.
    async fn finish(mut self, run: CallsRun) -> anyhow::Result<()> {
        println!();
        let gateway = self.gateway.clone();
        let cloud = self.cloud.clone();
        let delivered = self
            .wait(
                "every event and call record at the cloud",
                Duration::from_secs(15),
                || {
                    let (gateway, cloud) = (gateway.clone(), cloud.clone());
                    async move {
                        let t = gateway.get("/api/tunnel").await?;
                        let c = gateway.get("/api/counters").await?;
                        let s = cloud.get("/status").await?;
                        let g = s["gateways"]
                            .as_array()
                            .and_then(|g| g.first())
                            .cloned()
                            .unwrap_or_default();
                        let all_in = t["backlog"] == 0
                            && g["highest"] == t["last_id"]
                            && g["by_kind"]["cdr"].as_u64().unwrap_or(0)
                                >= c["calls"].as_u64().unwrap_or(0);
                        Ok(all_in.then(
                            || json!({ "tunnel": t, "counters": c, "cloud": g, "sip": s["sip"] }),
                        ))
                    }
                },
            )
            .await;
        let pbx = self.pbx.get("/sip/stats").await?;
        let cloud_now = self.cloud.get("/status").await?;
        let counters = self.gateway.get("/api/counters").await?;
        let (done, failed) = outcomes(&pbx["calls"], &cloud_now["sip"]["calls"]);
        let lost = pbx["rtp_lost"].as_u64().unwrap_or(0)
            + cloud_now["sip"]["rtp_lost"].as_u64().unwrap_or(0);
        let refused = cloud_now["sip"]["srtp_refused"].as_u64().unwrap_or(0);
        let all = &pbx["round_trip"]["all"];
        println!(
            "calls: {} placed ({} PBX -> cloud, {} cloud -> PBX), {done} completed, {failed} failed, {} stuck",
            run.placed[0] + run.placed[1],
            run.placed[0],
            run.placed[1],
            run.stuck
        );
        println!(
            "media: the gateway relayed {} packets; pbxsim sent {} and received {}, cloudsim decrypted {}; {lost} lost, {refused} refused by SRTP",
            counters["media_sent"],
            pbx["rtp_sent"],
            pbx["rtp_received"],
            cloud_now["sip"]["srtp_decrypted"]
        );
        println!(
            "round trip pbxsim -> gateway -> cloudsim -> gateway -> pbxsim: p50 {} ms, p99 {} ms, max {} ms over {} packets",
            ms(&all["p50_us"]),
            ms(&all["p99_us"]),
            ms(&all["max_us"]),
            all["samples"]
        );
        match &delivered {
            Ok(d) => {
                let g = &d["cloud"];
                println!(
                    "tunnel: {} events at the cloud (ids 1-{}, {} gaps, {} duplicates dropped), by kind {}; {} call records for the gateway's {} calls",
                    g["events"],
                    g["highest"],
                    g["gaps"],
                    g["duplicates"],
                    g["by_kind"],
                    g["by_kind"]["cdr"].as_u64().unwrap_or(0),
                    d["counters"]["calls"]
                );
                if g["gaps"] != 0 || g["events"] != g["highest"] {
                    self.problems
                        .push(format!("tunnel: events lost or stored twice: {g}"));
                }
                if g["by_kind"]["cdr"] != d["counters"]["calls"] {
                    self.problems.push(format!(
                        "tunnel: {} call records at the cloud for {} calls",
                        g["by_kind"]["cdr"], d["counters"]["calls"]
                    ));
                }
            }
            Err(e) => self.problems.push(format!("{e:#}")),
        }
        if failed > 0 {
            self.problems.push(format!("{failed} call(s) failed"));
        }
        if done == 0 {
            self.problems.push("no call completed".into());
        }
        if lost > 0 {
            self.problems.push(format!("{lost} packet(s) lost"));
        }
        if refused > 0 {
            self.problems
                .push(format!("{refused} SRTP packet(s) refused at the cloud"));
        }
        // The gateway drains and stops; then the simulators.
        let mut procs = std::mem::take(&mut self.procs);
        procs.reverse();
        for p in &mut procs {
            let name = p.name();
            if !p.stop(Duration::from_secs(10)) {
                self.problems
                    .push(format!("{name} did not stop on SIGTERM within 10 s"));
            }
            if name == "gateway"
                && let Some(fin) = p.output().lines().rev().find(|l| l.starts_with("final: "))
            {
                let keep = [
                    "calls",
                    "calls_completed",
                    "calls_failed",
                    "calls_refused",
                    "media_received",
                    "media_sent",
                    "media_kernel_drops",
                    "relays_failed",
                ];
                let fields: Vec<&str> = fin
                    .split_whitespace()
                    .filter(|f| f.split_once('=').is_some_and(|(k, _)| keep.contains(&k)))
                    .collect();
                println!("gateway stopped: {}", fields.join(" "));
            }
        }
        println!(
            "logs: {}/{{gateway,pbxsim,cloudsim}}.log; call records: {}/cdr.jsonl",
            self.dir.display(),
            self.dir.display()
        );
        if self.problems.is_empty() {
            println!(
                "OK: calls both ways with media, users synced, CTI, every event delivered once"
            );
            Ok(())
        } else {
            for p in &self.problems {
                println!("problem: {p}");
            }
            bail!("{} problem(s) in the demo run", self.problems.len())
        }
    }
}

/// Calls completed and failed, from pbxsim's and cloudsim's outcomes.
/// Every call has a pbxsim leg: its outcomes count completions; a call
/// the gateway refused shows as failed at pbxsim or refused at cloudsim.
fn outcomes(pbx: &Value, cloud: &Value) -> (u64, u64) {
    let count = |v: &Value, f: &dyn Fn(&str) -> bool| -> u64 {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| f(k))
                    .map(|(_, n)| n.as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let done = count(pbx, &|k| k.starts_with("ended"));
    let failed =
        count(pbx, &|k| k.starts_with("failed")) + count(cloud, &|k| k.starts_with("refused"));
    (done, failed)
}

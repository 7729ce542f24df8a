//! `pbxsim`: a PBX for pbxlink's tests and demo, on loopback.
//!
//! - `pbxsim run`: CSTA XML servers (one per `--csta` address, all the
//!   same PBX) with users and scripted call flows that emit the events a
//!   real PBX sends; optionally a SIP trunk toward the gateway with G.711
//!   RTP (`--sip`); a control API (`--control`) to script the PBX's side.
//! - `pbxsim push`: sends the PBX's users (and role table) to the
//!   gateway's user-config API, prints the gateway's answer.
//!
//! Its CSTA codec, SIP and HTTPS client are its own, not the gateway's.

mod control;
mod csta;
mod media_stats;
mod pbx;
mod push;
mod sip;
mod wire;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "pbxsim",
    version,
    about = "A simulated PBX: CSTA servers, a SIP trunk, a user pusher"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the PBX.
    Run(RunArgs),
    /// Push users to the gateway's user-config API.
    Push(PushArgs),
}

#[derive(Debug, clap::Args)]
struct Users {
    /// Generated users: extensions from --first-dn up, "User N",
    /// userN@example.com.
    #[arg(long, default_value_t = 10)]
    users: u32,
    /// The first generated extension.
    #[arg(long, default_value_t = 1000)]
    first_dn: u32,
    /// Role index of generated users (1: CTI in MiVoice 5000's table).
    #[arg(long, default_value_t = 1)]
    role: u32,
    /// Users from a file instead: `{"users": [{"directory_number", …}]}`,
    /// as the user-config API takes them.
    #[arg(long)]
    users_file: Option<PathBuf>,
}

impl Users {
    fn list(&self) -> anyhow::Result<serde_json::Value> {
        if let Some(f) = &self.users_file {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", f.display()))?;
            anyhow::ensure!(
                v["users"].is_array(),
                "{}: needs {{\"users\": [...]}}",
                f.display()
            );
            return Ok(v);
        }
        Ok(json!({
            "users": (0..self.users).map(|i| {
                let dn = self.first_dn + i;
                json!({
                    "directory_number": dn.to_string(),
                    "first_name": "User",
                    "last_name": dn.to_string(),
                    "email": format!("user{dn}@example.com"),
                    "role": self.role,
                })
            }).collect::<Vec<_>>()
        }))
    }

    fn extensions(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.list()?["users"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|u| u["directory_number"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A CSTA server's address; repeat for several (one PBX).
    #[arg(long = "csta", required = true)]
    csta: Vec<SocketAddr>,
    #[command(flatten)]
    users: Users,
    /// The CTI login the PBX insists on, `user:password` (MiVoice Office
    /// 400); a wrong one is refused with `wrong credential`.
    #[arg(long)]
    login: Option<String>,
    /// A number that is always busy.
    #[arg(long)]
    busy: Vec<String>,
    /// Milliseconds an outside number (or a user's phone, for the
    /// gateway's SIP calls) rings before answering.
    #[arg(long, default_value_t = 300)]
    answer_delay_ms: u64,
    /// Longest CSTA session granted, in seconds.
    #[arg(long, default_value_t = 300)]
    session_max: u32,
    /// Seconds between SystemStatus requests to each session (0: none).
    #[arg(long, default_value_t = 20)]
    system_status: u64,
    /// The control API's address.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// The SIP trunk's address (UDP); needs --gateway-sip.
    #[arg(long, requires = "gateway_sip")]
    sip: Option<SocketAddr>,
    /// The gateway's PBX-side SIP address.
    #[arg(long)]
    gateway_sip: Option<SocketAddr>,
    /// First RTP port of the SIP trunk's calls.
    #[arg(long, default_value_t = 46000)]
    rtp_base: u16,
    /// How many ports from --rtp-base its calls use, in turn (default: up
    /// to 65,534).
    #[arg(long, default_value_t = u16::MAX)]
    rtp_ports: u16,
    /// Send every SIP call's RTP on one 20 ms clock, as a TDM PBX's media
    /// board frames all its channels (default: each call on its own clock,
    /// from its answer).
    #[arg(long)]
    shared_media_clock: bool,
    /// Milliseconds a call it hangs up stops sending before its BYE,
    /// counting what is still on its way back (0: the BYE at once).
    #[arg(long, default_value_t = 0)]
    hangup_drain_ms: u64,
    /// Exit after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
}

#[derive(Debug, clap::Args)]
struct PushArgs {
    /// The gateway's user-config API (ADDR:PORT).
    #[arg(long)]
    gateway: SocketAddr,
    /// The gateway's certificate (PEM) to trust.
    #[arg(long)]
    ca: PathBuf,
    /// `user:password` of the PBX on the gateway.
    #[arg(long)]
    auth: String,
    #[command(flatten)]
    users: Users,
    /// A role table to push first: `{"roles": [{"index", "name", "cti",
    /// "softphone"}]}`.
    #[arg(long)]
    roles_file: Option<PathBuf>,
    /// Add and update only (default: the whole list replaces the old).
    #[arg(long)]
    add: bool,
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match Cli::parse().command {
        Command::Run(args) => rt.block_on(run(args)),
        Command::Push(args) => rt.block_on(push(args)),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let users = args.users.extensions()?;
    let login = match &args.login {
        Some(l) => Some(
            l.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
                .context("--login takes user:password")?,
        ),
        None => None,
    };
    println!("pbxsim: {} user(s)", users.len());
    let sim = csta::Sim::new(
        pbx::Pbx::new(users, args.busy.clone()),
        &args.csta,
        csta::CstaOptions {
            login,
            answer_delay: Duration::from_millis(args.answer_delay_ms),
            session_max: args.session_max,
            system_status: args.system_status,
        },
    );
    csta::start_all(&sim).await?;
    let sip = match (args.sip, args.gateway_sip) {
        (Some(bind), Some(gateway)) => Some(
            sip::SipAgent::start(
                sim.clone(),
                sip::SipOptions {
                    bind,
                    gateway,
                    rtp: simsip::RtpPorts::new(args.rtp_base, args.rtp_ports),
                    answer_delay: Duration::from_millis(args.answer_delay_ms),
                    shared_clock: args.shared_media_clock,
                    hangup_drain: Duration::from_millis(args.hangup_drain_ms),
                },
            )
            .await?,
        ),
        _ => None,
    };
    if let Some(addr) = args.control {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the control API on {addr}"))?;
        println!("pbxsim: control API on http://{addr}/status");
        let app = control::router(sim.clone(), sip.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = async {
            match args.seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending().await,
            }
        } => {}
    }
    println!("pbxsim: final: {}", sim.lock().expect("sim").status());
    Ok(())
}

async fn push(args: PushArgs) -> anyhow::Result<()> {
    let target = push::Target {
        addr: args.gateway,
        ca: args.ca.clone(),
        auth: args.auth.clone(),
    };
    if let Some(f) = &args.roles_file {
        let roles =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let (status, body) = push::request(&target, "PUT", "/api/v1/roles", Some(roles)).await?;
        println!("roles: {status} {body}");
        anyhow::ensure!(status == 200, "the gateway refused the role table");
    }
    let users = args.users.list()?.to_string();
    let method = if args.add { "POST" } else { "PUT" };
    let (status, body) = push::request(&target, method, "/api/v1/users", Some(users)).await?;
    println!("users: {status} {body}");
    anyhow::ensure!(status == 200, "the gateway refused the push ({status})");
    Ok(())
}

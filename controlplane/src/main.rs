//! `pbxlink`: the gateway binary: `run` (the gateway from a configuration
//! file), `demo` (the whole product on loopback with pbxsim and cloudsim),
//! and the tools around them (see ARCHITECTURE.md).

mod admin;
mod alarms;
mod cdr;
mod config;
mod cti;
mod demo;
mod diagnostics;
mod events;
mod http_error;
mod https;
mod latency;
mod media_demo;
mod node;
mod node_control;
mod onboarding;
mod operations;
mod outbox;
mod random;
mod relay_cmd;
mod signalling;
mod state_file;
mod sync;
mod throttle;
mod tls;
mod tunnel;
mod users;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "pbxlink", version, about = "PBX ↔ cloud media gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole product on loopback from an embedded default: the
    /// gateway between pbxsim (the PBX) and cloudsim (the cloud platform);
    /// users pushed and synced, CTI from the cloud, calls both ways with a
    /// line of stats a second, until Ctrl-C or --seconds.
    Demo(demo::DemoArgs),
    /// Run generated calls through the media core alone: a simulated PBX
    /// and cloud exchanging G.711 and DTMF both ways through relays (no
    /// SIP), every packet verified, with a transfer mid-call.
    MediaDemo(media_demo::MediaDemoArgs),
    /// Run static relays (no SIP): plain RTP on LAN ports, SRTP on cloud ports.
    Relay(relay_cmd::RelayArgs),
    /// Run the gateway from a configuration file: the PBX trunk, the cloud
    /// trunk, the data plane and calls between them.
    Run(node::run::RunArgs),
    /// Check a configuration file: print the effective settings, or every
    /// problem found (exit status 2).
    CheckConfig(config::CheckArgs),
    /// Run the SIP transports alone (UDP, TCP, TLS; optionally the cloud
    /// trunk): OPTIONS answered, malformed rejected.
    SipListen(signalling::SipListenArgs),
}

fn main() -> anyhow::Result<()> {
    operations::structured_log::init();
    match Cli::parse().command {
        Command::Demo(args) => demo::run(&args),
        Command::MediaDemo(args) => media_demo::run(&args),
        Command::Relay(args) => relay_cmd::run(&args),
        Command::SipListen(args) => node::services::serve(&args, None).map(|_| ()),
        Command::CheckConfig(args) => config::check(&args),
        Command::Run(args) => node::run::run(&args),
    }
}

//! `pbxlink`: the gateway binary. Today it carries the media core's demo;
//! the relay, SIP B2BUA and CSTA client arrive as their issues land (see
//! ARCHITECTURE.md).

mod admin;
mod cdr;
mod config;
mod cti;
mod demo;
mod http_error;
mod https;
mod outbox;
mod relay_cmd;
mod run_cmd;
mod signalling;
mod sync;
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
    /// Run generated calls through the media core on an embedded default:
    /// a simulated PBX and cloud exchanging G.711 and DTMF both ways, every
    /// packet verified, with a transfer mid-call.
    Demo(demo::DemoArgs),
    /// Run static relays (no SIP): plain RTP on LAN ports, SRTP on cloud ports.
    Relay(relay_cmd::RelayArgs),
    /// Run the gateway from a configuration file: the PBX trunk, the cloud
    /// trunk, the data plane and calls between them.
    Run(run_cmd::RunArgs),
    /// Check a configuration file: print the effective settings, or every
    /// problem found (exit status 2).
    CheckConfig(config::CheckArgs),
    /// Run the SIP transports alone (UDP, TCP, TLS; optionally the cloud
    /// trunk): OPTIONS answered, malformed rejected.
    SipListen(signalling::SipListenArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => demo::run(&args),
        Command::Relay(args) => relay_cmd::run(&args),
        Command::SipListen(args) => signalling::run(&args),
        Command::CheckConfig(args) => config::check(&args),
        Command::Run(args) => run_cmd::run(&args),
    }
}

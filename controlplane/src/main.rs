//! `pbxlink`: the gateway binary: `run` (the gateway from a configuration
//! file) and the tools around it. The demos are another program
//! (`pbxlink-demo`, the `demos` crate).

mod admin;
mod alarms;
mod call_quality;
mod capture;
mod cdr;
mod config;
mod cti;
mod diagnostics;
mod emodel;
mod events;
mod http_error;
mod https;
mod latency;
mod live_calls;
mod node;
mod node_control;
mod onboarding;
mod operations;
mod outbox;
mod poor_calls;
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
#[command(name = "pbxlink", version = operations::versions::GATEWAY, about = "PBX ↔ cloud media gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
        Command::Relay(args) => relay_cmd::run(&args),
        Command::SipListen(args) => node::services::serve(&args, None).map(|_| ()),
        Command::CheckConfig(args) => config::check(&args),
        Command::Run(args) => node::run::run(&args),
    }
}

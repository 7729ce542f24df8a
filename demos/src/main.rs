//! `pbxlink-demo`: pbxlink shown working on loopback, outside the gateway.
//!
//! - `pbxlink-demo [--seconds N] [--calls N]` (what `./demo` runs): the
//!   whole product — the gateway (`pbxlink run`) between pbxsim (the PBX)
//!   and cloudsim (the cloud platform), three programs of this build
//!   started side by side ([`node`]).
//! - `pbxlink-demo media [--calls N] [--seconds N]`: the media core alone,
//!   relays carrying generated calls, each packet checked ([`media`]).

mod api;
mod media;
mod node;
mod processes;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "pbxlink-demo", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Demo>,
    #[command(flatten)]
    node: node::DemoArgs,
}

#[derive(Debug, Subcommand)]
enum Demo {
    /// The media core alone: relays on loopback carrying generated calls.
    Media(media::MediaDemoArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Demo::Media(args)) => media::run(&args),
        None => node::run(&cli.node),
    }
}

//! `pbxlink check-config`.

use super::file::load;
use std::path::PathBuf;

/// Options of `pbxlink check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
}

/// Runs `pbxlink check-config`: the effective configuration, or every
/// problem found (exit status 2).
pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    match load(&args.config) {
        Ok(c) => {
            println!("{c}");
            println!("{}: ok", args.config.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}

//! `pbxlink check-config`.

use super::file::{load_with, read_table, state_dir_of};
use super::setup::setup_config;
use std::path::PathBuf;

/// Options of `pbxlink check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long)]
    config: PathBuf,
}

/// Runs `pbxlink check-config`: what `pbxlink run` would do with the
/// file and the wizard's saved settings — carry calls, or serve the setup
/// page alone — or every problem found (exit status 2).
pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let state_dir = state_dir_of(&args.config);
    let overlay = match crate::onboarding::store::Store::new(&state_dir).load() {
        Ok(o) => o.overlay(),
        Err(e) => {
            eprintln!("warning: the wizard's settings are left out: {e:#}");
            toml::Table::new()
        }
    };
    let checked = read_table(&args.config, &overlay).and_then(|table| {
        match setup_config(&args.config, &table)? {
            Some(setup) => Ok(format!(
                "{setup}\n{}: ok (setup mode)",
                args.config.display()
            )),
            None => load_with(&args.config, &overlay)
                .map(|c| format!("{c}\n{}: ok", args.config.display())),
        }
    });
    match checked {
        Ok(text) => {
            println!("{text}");
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}

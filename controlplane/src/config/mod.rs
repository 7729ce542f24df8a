//! The gateway's configuration file (TOML), checked as a whole before
//! anything starts: every error names the file, the section and key, what
//! was found and what would do. `pbxlink check-config --config FILE`
//! prints the effective configuration or the errors.
//!
//! One module per section (`gateway`, `pbx`, `cloud`, `sip`, `digits`,
//! `admin`, `subscriber`, `users`, `tunnel`, `log`, `update`, `support`,
//! `quality`, `capture`), each with its keys as
//! the file has them and what they become once checked; every default in
//! `defaults`; the whole file documented by example in
//! `pbxlink.example.toml` at the top of the repository, which a test loads.

mod admin;
mod capture;
mod check;
mod checked;
mod cloud;
mod defaults;
mod digits;
mod display;
mod error;
mod file;
mod gateway;
mod log;
mod pbx;
mod quality;
mod setup;
mod sip;
mod subscriber;
mod support;
#[cfg(test)]
mod tests;
mod tunnel;
mod update;
mod users;

pub use admin::AdminSettings;
pub use capture::CaptureSettings;
pub use check::{CheckArgs, check};
pub use checked::Config;
pub use cloud::CloudTargets;
pub use file::{configured, load_with, parse_table, read_table, state_dir_of};
pub use log::log_level;
pub use quality::QualitySettings;
pub use setup::{SetupConfig, setup_config};
pub use subscriber::SubscriberConfig;
pub use support::SupportSettings;
pub use tunnel::TunnelSettings;
pub use update::{UpdateSettings, update_health};
pub use users::UsersApiConfig;

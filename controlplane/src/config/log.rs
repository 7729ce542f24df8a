//! `[log]`: how much the gateway logs.

use serde::Deserialize;

/// `[log]`: how much the gateway logs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSection {
    /// error, warn, info (default), debug or trace: pbxlink's own
    /// modules; its dependencies log warnings and errors only.
    pub(super) level: Option<String>,
}

/// The log levels `[log] level` takes.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// `[log] level` of a configuration file's table (info when not set);
/// read before the rest so that even a gateway in setup logs as asked.
pub fn log_level(table: &toml::Table) -> Result<&str, String> {
    match table
        .get("log")
        .and_then(|l| l.get("level"))
        .map(|v| v.as_str().ok_or(v))
    {
        None => Ok("info"),
        Some(Ok(l)) if LOG_LEVELS.contains(&l) => Ok(l),
        Some(Ok(l)) => Err(format!(
            "[log] level = {l:?}: use error, warn, info, debug or trace"
        )),
        Some(Err(v)) => Err(format!(
            "[log] level = {v}: use \"error\", \"warn\", \"info\", \"debug\" or \"trace\""
        )),
    }
}
